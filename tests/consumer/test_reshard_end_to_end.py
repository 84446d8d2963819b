"""Resharding end to end: produce while the stream reshards, consume, merge, curated == oracle.

Run on kinesis-mock (which closes shards as Kinesis does: puts after the reshard go to
the children) and on moto (which keeps writing into the closed parents). A source
history of inserts, updates and deletes over a few hundred keys is produced in
batches; a third of the way in, the stream is resharded (UpdateShardCount 2 -> 4, a
split or a merge) and production goes on while it is UPDATING. On kinesis-mock the
consumer reads along between batches, so it is inside the parents when they close.
moto is consumed after production only: its closed parents keep taking puts, which
no Kinesis does. Then the DuckDB merge runs and the curated table must equal the
oracle (tests/reliability/oracle.py), and raw must hold each event once.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest

from glue_jobs.merge import MergeContext, run_merge
from hybrid_ingest.aws import Clients
from hybrid_ingest.convert import row_from_json
from hybrid_ingest.lake import Lake
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore
from streaming_consumer.runtime import ConsumerConfig, FlushPolicy, Worker
from streaming_consumer.shards import list_shards
from tests.consumer.events import put_aggregated, read_raw
from tests.consumer.workers import make_stream, wait_active
from tests.reliability import tally
from tests.reliability.driver import compare, read_tables
from tests.reliability.oracle import Change, expected_state

TIERS = ("bronze", "silver", "gold")
START = dt.datetime(2026, 11, 21, 10, 0, tzinfo=dt.UTC)
SMALL = FlushPolicy(max_records=2)  # with GetRecords limited to 3 Kinesis records: a flush every call
DEFAULT = FlushPolicy()


def source_history(keys: int, changes: int, seed: int) -> list[Change]:
    """Inserts, updates, deletes and re-inserts in commit order (seq 1, 2, ...), rows spelled as JSON."""
    rng = random.Random(seed)
    live: set[int] = set()
    history: list[Change] = []
    for seq in range(1, changes + 1):
        key = rng.randrange(keys)
        if key in live and rng.random() < 0.2:
            live.discard(key)
            history.append(Change("d", seq, {"customer_id": key}))
            continue
        op = "u" if key in live else "c"
        live.add(key)
        history.append(Change(op, seq, {
            "customer_id": key, "email": f"c{key}.{seq}@example.com", "full_name": f"Customer {key}",
            "country": "FR", "tier": TIERS[seq % 3], "credit_limit": f"{seq}.25", "is_active": seq % 2 == 0,
            "signup_date": "2024-01-01", "updated_at": (START + dt.timedelta(seconds=seq)).isoformat().replace(
                "+00:00", "Z"), "phone": None if seq % 4 else f"+33 1 {seq:08d}",
        }))
    return history


def reshard(clients: Clients, stream: str, kind: str) -> None:
    """Start the reshard (asynchronous on Kinesis and kinesis-mock: the stream is UPDATING for a while)."""
    first, second = list_shards(clients.kinesis, stream)[:2]
    if kind == "scale":
        clients.kinesis.update_shard_count(StreamName=stream, TargetShardCount=4, ScalingType="UNIFORM_SCALING")
    elif kind == "split":
        low, high = first.hash_range
        clients.kinesis.split_shard(StreamName=stream, ShardToSplit=first.shard_id,
                                    NewStartingHashKey=str((low + high + 1) // 2))
    else:
        clients.kinesis.merge_shards(StreamName=stream, ShardToMerge=first.shard_id,
                                     AdjacentShardToMerge=second.shard_id)


def run_reshard_case(stack: Clients, lake: Lake, registry: Registry, kinesis: str, kind: str,
                     flush: FlushPolicy, changes: int, keys: int) -> dict[str, Any]:
    stream = make_stream(stack, f"{stack.settings.names.prefix}-e2e-{kind}", 2)
    version = registry.latest("customers")
    spec = version.spec
    history = source_history(keys, changes, seed=changes + keys)
    items = [(f"customers|{c.row['customer_id']}", version.codec.encode({
        "op": c.op, "seq": c.seq, "ts": START + dt.timedelta(seconds=c.seq),
        "row": row_from_json(spec, dict(c.row), key_only=c.op == "d")})) for c in history]
    names = stack.settings.names
    store = StateStore(stack.dynamodb, names.state_table, names.runs_table)
    config = ConsumerConfig(stream=stream, flush=flush, idle_sleep_seconds=0.01, rebalance_seconds=0.5,
                            get_records_limit=3 if flush == SMALL else ConsumerConfig.get_records_limit)
    worker = Worker(stack.kinesis, store, lake, registry.by_fingerprint, config)
    read_along = kinesis == "kinesis-mock"

    batch = 25
    batches = [items[i:i + batch] for i in range(0, len(items), batch)]
    for index, chunk in enumerate(batches):
        if index == len(batches) // 3:
            reshard(stack, stream, kind)
        put_aggregated(stack.kinesis, stream, chunk)
        if read_along:
            worker.step()
    wait_active(stack, stream)
    worker.run(until_idle=True)

    ctx = MergeContext(clients=stack, lake=lake, registry=registry, store=store)
    run_merge(ctx, "customers", engine="duckdb")
    rows = read_tables(ctx, ["customers"])["customers"]
    expected = expected_state(spec.primary_key, history)
    shards = list_shards(stack.kinesis, stream)
    figures = {"events": len(history), "raw_rows": read_raw(lake, "customers").num_rows,
               "curated_rows": len(rows), "oracle_rows": len(expected), "shards": len(shards),
               "closed": sum(s.closed for s in shards), "flushes": len(worker.flushes)}
    print(f"reshard e2e {kinesis} {kind} flush={flush.max_records}: {figures}")
    compare(rows, expected, spec.primary_key, spec.field_names, f"customers after {kind} on {kinesis}")
    tally.add(f"reshard_runs_{kinesis}")
    tally.add("events_resharded", len(history))
    return figures


def case(kinesis: str, kind: str, flush: str, slow: bool = False) -> Any:
    marks = [pytest.mark.slow] if slow else []
    return pytest.param(kinesis, kind, flush, marks=marks, id=f"{kinesis}-{kind}-{flush}")


CASES = [
    case("kinesis-mock", "scale", "small"), case("kinesis-mock", "scale", "default"),
    case("kinesis-mock", "split", "small"), case("kinesis-mock", "merge", "small"),
    case("moto", "scale", "small"), case("moto", "scale", "default"),
    case("kinesis-mock", "split", "default", slow=True), case("kinesis-mock", "merge", "default", slow=True),
    case("moto", "split", "small", slow=True), case("moto", "merge", "default", slow=True),
]


@pytest.mark.parametrize(("kinesis", "kind", "flush"), CASES, indirect=["kinesis"])
def test_produce_while_resharding_then_merge_equals_oracle(kinesis: str, kind: str, flush: str, stack: Clients,
                                                           lake: Lake, stack_registry: Registry) -> None:
    figures = run_reshard_case(stack, lake, stack_registry, kinesis, kind, SMALL if flush == "small" else DEFAULT,
                               changes=1500, keys=300)
    expected_closed = {"scale": 2, "split": 1, "merge": 2}[kind]
    assert figures["closed"] == expected_closed
    if kinesis == "moto" and kind == "merge":
        assert figures["raw_rows"] >= figures["events"]  # moto copies the parents' records into the child
    else:
        assert figures["raw_rows"] == figures["events"]  # one clean worker: every event once in raw


@pytest.mark.slow
@pytest.mark.parametrize("flush", ["small", "default"])
@pytest.mark.parametrize("kind", ["scale", "split", "merge"])
@pytest.mark.parametrize("kinesis", ["kinesis-mock"], indirect=True)
def test_produce_while_resharding_large(kinesis: str, kind: str, flush: str, stack: Clients, lake: Lake,
                                        stack_registry: Registry) -> None:
    policy = FlushPolicy(max_records=50) if flush == "small" else DEFAULT
    figures = run_reshard_case(stack, lake, stack_registry, kinesis, kind, policy, changes=20_000, keys=3_000)
    assert figures["raw_rows"] == figures["events"]
