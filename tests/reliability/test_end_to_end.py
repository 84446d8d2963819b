"""The real path under faults: producer -> moto Kinesis -> shard consumer -> raw -> merge -> query == oracle.

Each example replays a generated source history through the components
themselves, with faults drawn per example at their seams (all passed-in
adapters, no component changes):

* the producer is killed with events in its spool (the spool is closed
  unsent) and a new producer on the same folder sends them;
* Kinesis throttles: PutRecords reports entries as throttled (partial
  failure), and GetRecords answers ``ProvisionedThroughputExceededException``
  at the HTTP level, which botocore's retry configuration must absorb;
* the consumer is killed between its raw write and its checkpoint, and a new
  worker takes over once the dead one's leases expire;
* a paused consumer loses its lease to another worker, then wakes and flushes:
  its file lands but its checkpoint is refused (fencing);
* the merge runs in process mid-way (in some examples), then the batch workflow
  (the real ASL on moto's interpreter, its Glue job runs executing ``glue_jobs``
  as subprocesses) merges the rest, and the curated table, read through the
  query path, must equal the source's final state.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from glue_jobs.merge import MergeContext, run_merge
from hybrid_ingest import workflow
from hybrid_ingest.aws import Clients
from hybrid_ingest.bootstrap import init
from hybrid_ingest.config import Settings
from hybrid_ingest.convert import row_from_json
from hybrid_ingest.errors import ConditionFailedError
from hybrid_ingest.lake import Lake
from hybrid_ingest.position import Position
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore
from hybrid_ingest.state_leases import Lease
from producers.kinesis import KinesisDelivery
from producers.producer import ChangeEventProducer, ProducerConfig, RecordProducer
from producers.spool import Spool
from streaming_consumer.runtime import ConsumerConfig, FlushPolicy, Worker
from tests.conftest import reset_moto
from tests.reliability import tally
from tests.reliability.contexts import HISTORY_SETTINGS
from tests.reliability.driver import InjectedCrash, compare, read_tables
from tests.reliability.history import EVOLVED_FIELD, TableHistory, evolved, source_histories
from tests.reliability.landing import land_extract, register_evolution
from tests.reliability.oracle import Change, Extract, TableOracle

LEASE_SECONDS = 10.0
QUIET = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)  # shrinking an end-to-end case takes minutes


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


class ThrottlingKinesis:
    """A Kinesis client whose PutRecords throttles some entries (the partial failure producers must retry)."""

    def __init__(self, kinesis: Any, every: int) -> None:
        self._kinesis = kinesis
        self._every = every
        self._calls = 0
        self.throttled = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kinesis, name)

    def put_records(self, **kwargs: Any) -> Any:
        self._calls += 1
        records = kwargs["Records"]
        if self._calls % self._every:
            return self._kinesis.put_records(**kwargs)
        keep = records[: len(records) // 2]
        sent = self._kinesis.put_records(**{**kwargs, "Records": keep}) if keep else {"Records": []}
        self.throttled += len(records) - len(keep)
        failed = [{"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"}
                  for _ in records[len(keep):]]
        return {"FailedRecordCount": sent.get("FailedRecordCount", 0) + len(failed),
                "Records": list(sent["Records"]) + failed}


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_kwargs: Any) -> Any:
        yield self._data


def throttle_get_records(kinesis: Any, every: int) -> list[int]:
    """Answer every ``every``-th GetRecords with HTTP 400 ProvisionedThroughputExceeded, before it is sent."""
    from botocore.awsrequest import AWSResponse, HTTPHeaders

    count = [0, 0]  # calls, throttled

    def before_send(request: Any, **_kwargs: Any) -> AWSResponse | None:
        count[0] += 1
        if count[0] % every:
            return None
        count[1] += 1
        body = json.dumps({"__type": "ProvisionedThroughputExceededException", "message": "Rate exceeded"})
        headers = HTTPHeaders()
        headers["x-amzn-ErrorType"] = "ProvisionedThroughputExceededException"
        headers["Content-Type"] = "application/x-amz-json-1.1"
        return AWSResponse(request.url, 400, headers, _Body(body.encode()))

    kinesis.meta.events.register("before-send.kinesis.GetRecords", before_send)
    return count


class CheckpointKiller(StateStore):
    """Dies at its ``die_at``-th checkpoint: after that batch's raw files are durable, before the checkpoint."""

    die_at = 1
    seen = 0

    def set_checkpoint(self, stream: str, shard: str, position: Position, lease: Lease | None = None,
                       finished: bool = False) -> None:
        self.seen += 1
        if self.seen == self.die_at:
            raise InjectedCrash("consumer between raw write and checkpoint")
        super().set_checkpoint(stream, shard, position, lease, finished)


def python_event(history: TableHistory, change: Change, version: int) -> dict[str, Any]:
    spec = evolved(history.spec) if version == 2 else history.spec
    return {"op": change.op, "seq": change.seq,
            "ts": dt.datetime(2026, 11, 20, tzinfo=dt.UTC) + dt.timedelta(seconds=change.seq),
            "row": row_from_json(spec, dict(change.row), key_only=change.op == "d")}


def expected_final(history: TableHistory) -> dict[Any, Any]:
    items: list[Change | Extract] = [c for c, _ in history.changes] + [x for x, _ in history.extracts]
    defaults = {EVOLVED_FIELD["name"]: EVOLVED_FIELD["default"]} if history.evolved_at_step is not None else {}
    return TableOracle(history.spec.primary_key).apply_all(items).project(defaults)


@st.composite
def e2e_cases(draw: Any) -> tuple[dict[str, TableHistory], dict[str, int]]:
    histories = draw(source_histories(max_steps=30))
    faults = {
        "producer_kill_at": draw(st.integers(0, 30)),
        "put_throttle_every": draw(st.integers(2, 4)),
        "get_throttle_every": draw(st.integers(3, 6)),
        "consumer_kill_at": draw(st.integers(1, 3)),
        "mid_merge_after": draw(st.integers(0, 30)),
    }
    return histories, faults


def run_e2e(histories: dict[str, TableHistory], faults: dict[str, int], endpoint: str, root: Path) -> None:
    reset_moto(endpoint)
    settings_ = Settings(home=root, lake_uri=(root / "lake").as_uri(), endpoint_url=endpoint)
    clients = Clients(settings_)
    lake = Lake.from_uri(settings_.lake_uri)
    init(clients, lake, [])
    names = settings_.names
    registry = Registry(clients.dynamodb, names.registry_table)
    for history in histories.values():
        registry.register(history.spec)
    clock = FakeClock()
    store = StateStore(clients.dynamodb, names.state_table, names.runs_table, clock=clock)
    ctx = MergeContext(clients=clients, lake=lake, registry=registry,
                       store=StateStore(clients.dynamodb, names.state_table, names.runs_table))
    ctx.store.put_settings(HISTORY_SETTINGS)

    # -- produce, in source order, with a kill and a throttling stream ------------------------------
    flaky = ThrottlingKinesis(clients.kinesis, faults["put_throttle_every"])
    spool_dir = root / "spool"

    def open_producer() -> ChangeEventProducer:
        delivery = KinesisDelivery(flaky, names.stream, base_delay=0.001, throttle_base_delay=0.001,  # type: ignore[arg-type]
                                   max_delay=0.01)
        records = RecordProducer(Spool(spool_dir), delivery, ProducerConfig(linger=0), background=False)
        return ChangeEventProducer(records, registry.latest)

    def drain(producer: ChangeEventProducer) -> None:
        while producer.records.spool.pending_count:
            assert producer.records.drain_round()

    ordered = sorted(((c.seq, t, c, v) for t, h in histories.items() for c, v in h.changes), key=lambda x: x[0])
    producer = open_producer()
    evolved_now: set[str] = set()
    sent = 0
    for index, (_seq, table, change, version) in enumerate(ordered):
        if version == 2 and table not in evolved_now:
            drain(producer)
            producer.records.spool.close()
            register_evolution(registry, histories[table])
            evolved_now.add(table)
            producer = open_producer()
        producer.send(table, python_event(histories[table], change, version))
        sent += 1
        if index == faults["producer_kill_at"] % len(ordered):
            producer.records.spool.close()  # killed: what is in the spool was never sent
            tally.fault("producer killed with events in its spool")
            producer = open_producer()
        elif index % 4 == 3:
            drain(producer)
    for table, history in histories.items():
        if history.evolved_at_step is not None and table not in evolved_now:
            register_evolution(registry, history)
    drain(producer)
    producer.records.spool.close()
    if flaky.throttled:
        tally.fault("kinesis PutRecords throttled")

    # -- land the extracts --------------------------------------------------------------------------
    from tests.reliability.history import Delivery

    for table, history in histories.items():
        for extract, version in history.extracts:
            land_extract(lake, registry, Delivery(0, table, version, extract=extract))

    # -- consume: a throttled stream, a killed worker, a paused one that loses its lease --------------
    throttled = throttle_get_records(clients.kinesis, faults["get_throttle_every"])
    config = ConsumerConfig(stream=names.stream, flush=FlushPolicy(max_records=7, max_seconds=3600),
                            lease_seconds=LEASE_SECONDS, idle_sleep_seconds=0)
    killer = CheckpointKiller(clients.dynamodb, names.state_table, names.runs_table, clock=clock)
    killer.die_at = faults["consumer_kill_at"]
    doomed = Worker(clients.kinesis, killer, lake, registry.by_fingerprint, config, worker_id="doomed", clock=clock)
    try:
        # stepped by hand: ``run`` would flush and checkpoint in its ``finally``, which kill -9 never does
        for _ in range(200):
            doomed.step()
            if doomed.idle():
                break
        doomed.shutdown()  # the kill point was never reached: a clean exit
    except InjectedCrash:
        tally.fault("consumer killed between raw write and checkpoint")
    clock.now += LEASE_SECONDS + 1
    paused = Worker(clients.kinesis, store, lake, registry.by_fingerprint,
                    ConsumerConfig(stream=names.stream, flush=FlushPolicy(max_records=10**6, max_seconds=10**6),
                                   lease_seconds=LEASE_SECONDS, idle_sleep_seconds=0, flush_when_idle=False),
                    worker_id="paused", clock=clock)
    paused.step()
    paused.step()
    clock.now += LEASE_SECONDS + 1
    if faults["mid_merge_after"] % 2 == 0:
        for table in histories:
            run_merge(ctx, table, engine="duckdb")
    survivor = Worker(clients.kinesis, store, lake, registry.by_fingerprint, config, worker_id="survivor",
                      clock=clock)
    survivor.run(until_idle=True)
    for reader in list(paused.readers.values()):
        if not reader.buffer:
            continue
        before = store.checkpoints(names.stream)
        try:
            reader.flush()  # its raw file lands (overlapping the survivor's); its checkpoint must not move
        except ConditionFailedError:
            tally.fault("consumer lease lost while paused")
        assert store.checkpoints(names.stream) == before, "a worker that lost its lease moved a checkpoint"
    if throttled[1]:
        tally.fault("kinesis GetRecords throttled")

    # -- the batch workflow (Step Functions on moto, Glue job runs as real subprocesses), then compare ---
    workflow.deploy(clients)
    result = workflow.start_and_wait(clients, tables=sorted(histories), timeout=600)
    assert result.succeeded, (result.error, result.cause, result.tables)
    tables = read_tables(ctx, list(histories))
    for table, history in histories.items():
        spec = history.final_spec
        compare(tables[table], expected_final(history), spec.primary_key, spec.field_names, f"{table} end to end")
    dead = len(lake.files("dlq", ".jsonl"))
    assert dead == 0, "valid events must not be dead-lettered"
    tally.add("events_end_to_end", sent)
    tally.add("examples_end_to_end")


@settings(max_examples=3, deadline=None, suppress_health_check=QUIET, phases=NO_SHRINK)
@given(case=e2e_cases())
def test_real_path_under_faults_equals_oracle(case: tuple[dict[str, TableHistory], dict[str, int]],
                                              moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    histories, faults = case
    run_e2e(histories, faults, moto_endpoint, tmp_path_factory.mktemp("e2e"))


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=QUIET, phases=NO_SHRINK)
@given(case=e2e_cases())
def test_real_path_under_faults_equals_oracle_soak(case: tuple[dict[str, TableHistory], dict[str, int]],
                                                   moto_endpoint: str,
                                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    histories, faults = case
    run_e2e(histories, faults, moto_endpoint, tmp_path_factory.mktemp("e2e"))
