"""The shard consumer against moto's server: leases, checkpoints, crashes, the CLI (resharding: test_shard_lifecycle)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
from click.testing import CliRunner

from hybrid_ingest.aws import Clients
from hybrid_ingest.cli import cli
from hybrid_ingest.lake import Lake
from hybrid_ingest.metrics import Metrics
from hybrid_ingest.position import Position
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore
from streaming_consumer.runtime import ConsumerConfig, FlushPolicy
from streaming_consumer.shards import ShardInfo, list_shards, readable
from tests.consumer.events import read_dlq, read_raw
from tests.consumer.workers import (
    FakeClock,
    config,
    make_store,
    make_stream,
    merged_view,
    produce_customers,
    worker,
)


class Crash(BaseException):
    """Stands for the process dying: nothing in the consumer catches it."""


class CrashingStore(StateStore):
    """Dies on the first checkpoint, i.e. after the batch's raw files were written."""

    def set_checkpoint(self, *args: Any, **kwargs: Any) -> None:
        raise Crash("killed between file write and checkpoint")


def test_until_idle_reads_every_shard_checkpoints_and_records_stats(
        initialized: Clients, lake: Lake, registry: Registry) -> None:
    stream = initialized.settings.names.stream
    produced = produce_customers(initialized, registry, stream, range(200))
    clock = FakeClock()
    seen: list[str] = []
    w = worker(initialized, lake, registry, config(stream), clock)
    w.metrics = Metrics("HybridIngest", sink=seen.append, cloudwatch=initialized.cloudwatch)
    w.run(until_idle=True)
    assert merged_view(lake) == Counter(produced)
    assert read_raw(lake, "customers").num_rows == 200
    store = make_store(initialized, clock)
    checkpoints = store.checkpoints(stream)
    assert set(checkpoints) == {s.shard_id for s in list_shards(initialized.kinesis, stream)}
    stats = store.consumer_stats(stream)
    assert sum(s["records"] for s in stats.values()) == 200
    assert all(s["dlq"] == 0 and s["lag_ms"] == 0 and s["owner"] == w.worker_id for s in stats.values())
    assert store.leases("shard#") == []  # released at shutdown
    assert len(seen) == len(w.flushes)
    names = {m["MetricName"] for m in initialized.cloudwatch.list_metrics(Namespace="HybridIngest")["Metrics"]}
    assert {"Records", "Bytes", "Batches", "DeadLetters", "MillisBehindLatest"} <= names
    # a second run finds nothing new and writes nothing
    files = [(f.path, f.mtime_ns) for f in lake.files("raw", ".parquet")]
    worker(initialized, lake, registry, config(stream), clock).run(until_idle=True)
    assert [(f.path, f.mtime_ns) for f in lake.files("raw", ".parquet")] == files


def test_crash_between_write_and_checkpoint_loses_nothing_and_merges_nothing_twice(
        initialized: Clients, lake: Lake, registry: Registry) -> None:
    stream = initialized.settings.names.stream
    produced = produce_customers(initialized, registry, stream, range(120))
    clock = FakeClock()
    doomed = worker(initialized, lake, registry, config(stream), clock, CrashingStore)
    with pytest.raises(Crash):
        doomed.run(until_idle=True)
    written_before = lake.files("raw", ".parquet")
    assert written_before, "the crash must come after a raw file was written"
    assert make_store(initialized, clock).checkpoints(stream) == {}
    produced += produce_customers(initialized, registry, stream, range(100, 150), seq=2)
    clock.now += 11  # the dead worker's leases expire
    survivor = worker(initialized, lake, registry, config(stream), clock)
    survivor.run(until_idle=True)
    assert merged_view(lake) == Counter(produced)
    raw_rows = read_raw(lake, "customers").num_rows
    assert raw_rows >= len(produced)  # overlaps are allowed in raw, the merge dedups them


def test_restart_from_a_checkpoint_inside_an_aggregate(initialized: Clients, lake: Lake, registry: Registry) -> None:
    stream = make_stream(initialized, "agg-one-shard", 1)
    produced = produce_customers(initialized, registry, stream, range(30))
    [shard] = list_shards(initialized.kinesis, stream)
    sequence = initialized.kinesis.get_records(ShardIterator=initialized.kinesis.get_shard_iterator(
        StreamName=stream, ShardId=shard.shard_id, ShardIteratorType="TRIM_HORIZON")["ShardIterator"],
    )["Records"][0]["SequenceNumber"]
    clock = FakeClock()
    make_store(initialized, clock).set_checkpoint(stream, shard.shard_id, Position.of(sequence, 11))
    worker(initialized, lake, registry, config(stream), clock).run(until_idle=True)
    assert merged_view(lake) == Counter(produced[12:])


def test_two_workers_split_four_shards_and_one_takes_over_when_the_other_dies(
        initialized: Clients, lake: Lake, registry: Registry) -> None:
    stream = make_stream(initialized, "four-shards", 4)
    produced = produce_customers(initialized, registry, stream, range(400))
    clock = FakeClock()
    a = worker(initialized, lake, registry, config(stream), clock, name="worker-a")
    b = worker(initialized, lake, registry, config(stream), clock, name="worker-b")
    for _ in range(3):
        a.step()
        b.step()
    assert len(a.readers) == 2
    assert len(b.readers) == 2
    assert set(a.readers).isdisjoint(b.readers)
    # a dies without letting go; more events arrive; b takes over once a's leases expire
    produced += produce_customers(initialized, registry, stream, range(400, 480), seq=5)
    b.step()
    assert len(b.readers) == 2
    clock.now += 11
    b.run(until_idle=True)
    assert len({f.shard for f in b.flushes}) == 4
    assert merged_view(lake) == Counter(produced)


def test_readable_waits_for_every_parent() -> None:
    shards = [ShardInfo("p1", ending_sequence="9"), ShardInfo("p2", ending_sequence="9"),
              ShardInfo("merged", parents=("p1", "p2")), ShardInfo("orphan", parents=("trimmed",))]
    assert [s.shard_id for s in readable(shards, set())] == ["p1", "p2", "orphan"]
    assert [s.shard_id for s in readable(shards, {"p1"})] == ["p2", "orphan"]
    assert [s.shard_id for s in readable(shards, {"p1", "p2"})] == ["merged", "orphan"]


def test_a_corrupt_record_lands_in_dlq_while_its_neighbours_are_written(
        initialized: Clients, lake: Lake, registry: Registry) -> None:
    stream = make_stream(initialized, "with-garbage", 1)
    before = produce_customers(initialized, registry, stream, range(5), aggregated=False)
    initialized.kinesis.put_record(StreamName=stream, PartitionKey="customers|x", Data=b'{"not": "avro"}')
    after = produce_customers(initialized, registry, stream, range(5, 10), aggregated=False)
    clock = FakeClock()
    worker(initialized, lake, registry, config(stream), clock).run(until_idle=True)
    assert merged_view(lake) == Counter(before + after)
    [letter] = read_dlq(lake)
    assert letter["reason"] == "bad-wire-format"
    assert letter["partition_key"] == "customers|x"
    stats = make_store(initialized, clock).consumer_stats(stream)
    assert sum(s["dlq"] for s in stats.values()) == 1


def test_flush_policy_by_records_cuts_batches(initialized: Clients, lake: Lake, registry: Registry) -> None:
    stream = make_stream(initialized, "small-batches", 1)
    produced = produce_customers(initialized, registry, stream, range(40), aggregated=False)
    cfg = ConsumerConfig(stream=stream, flush=FlushPolicy(max_records=10), lease_seconds=10,
                         get_records_limit=10, idle_sleep_seconds=0, flush_when_idle=False, rebalance_seconds=0)
    w = worker(initialized, lake, registry, cfg, FakeClock())
    for _ in range(4):
        w.step()
    assert [f.rows for f in w.flushes] == [10, 10, 10, 10]
    assert merged_view(lake) == Counter(produced)


def test_cli_consume_until_idle(initialized: Clients, lake: Lake, registry: Registry) -> None:
    settings = initialized.settings
    produce_customers(initialized, registry, settings.names.stream, range(30))
    env = {"AWS_ENDPOINT_URL": settings.endpoint_url or "", "HYBRID_INGEST_HOME": str(settings.home),
           "HYBRID_INGEST_LAKE_URI": settings.lake_uri}
    result = CliRunner().invoke(cli, ["consume", "--until-idle"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("shardId-")]
    assert len(lines) == 2
    assert sum(int(line.split(": ")[1].split()[0]) for line in lines) == 30
    assert read_raw(lake, "customers").num_rows == 30


def test_a_paused_worker_that_lost_its_leases_cannot_checkpoint(
        initialized: Clients, lake: Lake, registry: Registry) -> None:
    stream = make_stream(initialized, "zombie", 1)
    produced = produce_customers(initialized, registry, stream, range(20), aggregated=False)
    cfg = ConsumerConfig(stream=stream, flush=FlushPolicy(max_seconds=3600), lease_seconds=10,
                         idle_sleep_seconds=0, flush_when_idle=False, rebalance_seconds=0)
    clock = FakeClock()
    zombie = worker(initialized, lake, registry, cfg, clock, name="zombie")
    zombie.step()  # holds the shard with 20 buffered records, then stalls past its lease
    assert zombie.readers
    clock.now += 11
    successor = worker(initialized, lake, registry, config(stream), clock, name="successor")
    successor.run(until_idle=True)
    zombie.step()
    assert ("lost", zombie.history[0][1]) in zombie.history
    assert zombie.flushes == []
    assert merged_view(lake) == Counter(produced)
    [shard] = list_shards(initialized.kinesis, stream)
    assert make_store(initialized, clock).checkpoint(stream, shard.shard_id) == successor.flushes[-1].last


def test_stop_flushes_checkpoints_and_releases(initialized: Clients, lake: Lake, registry: Registry) -> None:
    stream = make_stream(initialized, "stopping", 1)
    produced = produce_customers(initialized, registry, stream, range(15))
    cfg = ConsumerConfig(stream=stream, flush=FlushPolicy(max_seconds=3600), lease_seconds=10,
                         idle_sleep_seconds=0, flush_when_idle=False, rebalance_seconds=0)
    clock = FakeClock()
    w = worker(initialized, lake, registry, cfg, clock)
    w.step()
    w.step()
    assert w.flushes == []  # nothing is due yet: the records wait in the buffer
    clock.now += 6  # past half the lease: the next step renews it
    w.step()
    [reader] = w.readers.values()
    assert reader.lease.expires == clock.now + 10
    stop = threading.Event()
    stop.set()
    w.run(stop=stop)  # as after SIGTERM: no more reads, but flush, checkpoint, release
    assert merged_view(lake) == Counter(produced)
    store = make_store(initialized, clock)
    assert store.checkpoint(stream, reader.shard_id) == w.flushes[-1].last
    assert store.leases(f"shard#{stream}#") == []
