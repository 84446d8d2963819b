"""Shard lifecycle (split, merge, UpdateShardCount, takeover during a reshard) on moto AND kinesis-mock.

moto closes a shard only on paper: it keeps routing puts to the parent, never ends its
iterator and reports a real ``EndingSequenceNumber`` (the fallback path). kinesis-mock
behaves like Kinesis: puts after the reshard go to the children, and a closed shard's
last records come with ``NextShardIterator: null`` and ``ChildShards``, while its
``EndingSequenceNumber`` is 9223372036854775807 (no position). Each test runs on both;
the last one checks the Glue streaming path's shard attribution after a reshard.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import TYPE_CHECKING

from hybrid_ingest.aws import Clients
from hybrid_ingest.lake import Lake
from hybrid_ingest.registry import Registry
from streaming_consumer.glue_streaming_job import SourceRow, records_by_shard
from streaming_consumer.reader import ShardReader
from streaming_consumer.runtime import Worker
from streaming_consumer.shards import ShardInfo, drained_without_end_signal, list_shards
from tests.consumer.events import read_raw
from tests.consumer.workers import (
    FakeClock,
    config,
    make_store,
    make_stream,
    merged_view,
    produce_customers,
    wait_active,
    worker,
)

if TYPE_CHECKING:
    from mypy_boto3_kinesis.type_defs import RecordTypeDef


class RecordingWorker(Worker):
    """Keeps the readers it lets go of, to look at how each shard ended."""

    dropped: list[ShardReader]

    def _drop(self, shard_id: str, release: bool) -> None:
        self.dropped = [*getattr(self, "dropped", []), self.readers[shard_id]]
        super()._drop(shard_id, release)


def stream_name(clients: Clients, what: str) -> str:
    return f"{clients.settings.names.prefix}-{what}"


def children_of(clients: Clients, stream: str, parents: set[str]) -> set[str]:
    return {s.shard_id for s in list_shards(clients.kinesis, stream) if set(s.parents) & parents}


def assert_parents_first(w: Worker, parents: set[str], children: set[str]) -> None:
    """Every child is taken only after every one of its parents was finished by this worker."""
    last_finish = max(w.history.index(("finish", p)) for p in parents)
    for child in children:
        assert w.history.index(("take", child)) > last_finish, (child, w.history)


def assert_exactly_once(lake: Lake, produced: list[tuple[int, int]]) -> None:
    """One clean worker writes each event once: nothing lost, nothing read twice."""
    assert merged_view(lake) == Counter(produced)
    assert read_raw(lake, "customers").num_rows == len(produced)


def test_split_finishes_the_parent_before_its_children(kinesis: str, stack: Clients, lake: Lake,
                                                       stack_registry: Registry) -> None:
    stream = make_stream(stack, stream_name(stack, "split"), 1)
    produced = produce_customers(stack, stack_registry, stream, range(60), seq=1)
    [parent] = list_shards(stack.kinesis, stream)
    stack.kinesis.split_shard(StreamName=stream, ShardToSplit=parent.shard_id, NewStartingHashKey=str(2**127))
    wait_active(stack, stream)
    produced += produce_customers(stack, stack_registry, stream, range(60), seq=2)
    cfg = config(stream, max_records=4)
    w = worker(stack, lake, stack_registry, cfg, FakeClock())
    w.run(until_idle=True)
    children = children_of(stack, stream, {parent.shard_id})
    assert len(children) == 2
    assert_parents_first(w, {parent.shard_id}, children)
    assert parent.shard_id in make_store(stack, FakeClock()).finished_shards(stream)
    assert_exactly_once(lake, produced)
    if kinesis == "kinesis-mock":  # moto keeps writing into the parent: its children stay empty
        assert {f.shard for f in w.flushes} >= children


def test_merged_shard_starts_after_both_parents(kinesis: str, stack: Clients, lake: Lake,
                                                stack_registry: Registry) -> None:
    stream = make_stream(stack, stream_name(stack, "merge"), 2)
    before = produce_customers(stack, stack_registry, stream, range(80), seq=1)
    produced = list(before)
    left, right = list_shards(stack.kinesis, stream)
    stack.kinesis.merge_shards(StreamName=stream, ShardToMerge=left.shard_id, AdjacentShardToMerge=right.shard_id)
    wait_active(stack, stream)
    produced += produce_customers(stack, stack_registry, stream, range(80), seq=2)
    w = worker(stack, lake, stack_registry, config(stream, max_records=5), FakeClock())
    w.run(until_idle=True)
    [child] = children_of(stack, stream, {left.shard_id, right.shard_id})
    assert set(next(s for s in list_shards(stack.kinesis, stream) if s.shard_id == child).parents) == {
        left.shard_id, right.shard_id}
    assert_parents_first(w, {left.shard_id, right.shard_id}, {child})
    if kinesis == "kinesis-mock":
        assert child in {f.shard for f in w.flushes}
        assert_exactly_once(lake, produced)
    else:  # moto copies both parents' records into the merged shard (Kinesis does not): read twice
        assert merged_view(lake) == Counter(produced) + Counter(before)


def test_update_shard_count_with_small_flushes_loses_and_doubles_nothing(
        kinesis: str, stack: Clients, lake: Lake, stack_registry: Registry) -> None:
    stream = make_stream(stack, stream_name(stack, "scale"), 2)
    produced = produce_customers(stack, stack_registry, stream, range(150), seq=1)
    parents = {s.shard_id for s in list_shards(stack.kinesis, stream)}
    stack.kinesis.update_shard_count(StreamName=stream, TargetShardCount=4, ScalingType="UNIFORM_SCALING")
    wait_active(stack, stream)
    produced += produce_customers(stack, stack_registry, stream, range(150), seq=2)
    cfg = config(stream, max_records=3)
    w = worker(stack, lake, stack_registry, cfg, FakeClock())
    w.run(until_idle=True)
    children = children_of(stack, stream, parents)
    assert len(children) >= 2
    for parent in parents:
        assert_parents_first(w, {parent}, children_of(stack, stream, {parent}))
    assert_exactly_once(lake, produced)


def test_takeover_of_a_parent_during_a_reshard(kinesis: str, stack: Clients, lake: Lake,
                                               stack_registry: Registry) -> None:
    """A worker dies half-way through a closed parent; the next one resumes it and reads the children."""
    stream = make_stream(stack, stream_name(stack, "takeover"), 2)
    produced = produce_customers(stack, stack_registry, stream, range(100), seq=1, aggregated=False)
    parents = {s.shard_id for s in list_shards(stack.kinesis, stream)}
    stack.kinesis.update_shard_count(StreamName=stream, TargetShardCount=4, ScalingType="UNIFORM_SCALING")
    wait_active(stack, stream)
    produced += produce_customers(stack, stack_registry, stream, range(100), seq=2, aggregated=False)
    clock = FakeClock()
    cfg = config(stream, max_records=7)
    cfg = replace(cfg, get_records_limit=10)
    doomed = worker(stack, lake, stack_registry, cfg, clock, name="doomed")
    for _ in range(3):
        doomed.step()  # some flushes and checkpoints inside the parents, then it dies holding them
    assert doomed.flushes
    assert not make_store(stack, clock).finished_shards(stream) & parents
    clock.now += cfg.lease_seconds + 1
    survivor = worker(stack, lake, stack_registry, config(stream, max_records=7), clock, name="survivor")
    survivor.run(until_idle=True)
    assert parents <= {shard for verb, shard in survivor.history if verb == "finish"}
    for parent in parents:
        assert_parents_first(survivor, {parent}, children_of(stack, stream, {parent}))
    assert_exactly_once(lake, produced)


def test_moto_fallback_finishes_a_closed_shard_it_never_ends(stack: Clients, lake: Lake,
                                                              stack_registry: Registry, kinesis: str) -> None:
    """On moto the null iterator never comes: the closed parent is finished once read past its ending."""
    stream = make_stream(stack, stream_name(stack, "fallback"), 1)
    produced = produce_customers(stack, stack_registry, stream, range(40), seq=1)
    [parent] = list_shards(stack.kinesis, stream)
    stack.kinesis.split_shard(StreamName=stream, ShardToSplit=parent.shard_id, NewStartingHashKey=str(2**127))
    wait_active(stack, stream)
    produced += produce_customers(stack, stack_registry, stream, range(40), seq=2)
    w = RecordingWorker(stack.kinesis, make_store(stack, FakeClock()), lake, stack_registry.by_fingerprint,
                        config(stream, max_records=6))
    w.run(until_idle=True)
    readers = [r for r in w.dropped if r.shard_id == parent.shard_id]
    [reader] = readers
    assert ("finish", parent.shard_id) in w.history
    # which signal ended it: the null iterator on kinesis-mock, the fallback on moto
    assert reader.ended is (kinesis == "kinesis-mock")
    assert_exactly_once(lake, produced)


def test_the_fallback_needs_a_real_ending_everything_read_and_an_empty_answer() -> None:
    moto_parent = ShardInfo("p", starting_sequence="1", ending_sequence="11")
    assert drained_without_end_signal(moto_parent, read_through=11, caught_up=True)
    assert not drained_without_end_signal(moto_parent, read_through=10, caught_up=True)
    assert not drained_without_end_signal(moto_parent, read_through=11, caught_up=False)
    assert not drained_without_end_signal(ShardInfo("open", starting_sequence="1"), read_through=99, caught_up=True)
    # moto's closed shard that never held a record: its ending is its start
    assert drained_without_end_signal(ShardInfo("e", starting_sequence="0", ending_sequence="0"), None, True)
    # kinesis-mock: Long.MaxValue is below every real sequence number, so it never ends a shard here
    start = "49680698936285183061523857366888328605584346861002555394"
    mock_parent = ShardInfo("m", starting_sequence=start, ending_sequence="9223372036854775807")
    assert not mock_parent.ending_known
    assert not drained_without_end_signal(mock_parent, read_through=int(start) + 10**30, caught_up=True)


def read_back(clients: Clients, stream: str, shard: ShardInfo) -> list[RecordTypeDef]:
    """Every record of a shard as GetRecords returns it (to the null iterator, or an empty answer on moto)."""
    records: list[RecordTypeDef] = []
    iterator: str | None = clients.kinesis.get_shard_iterator(
        StreamName=stream, ShardId=shard.shard_id, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    while iterator:
        response = clients.kinesis.get_records(ShardIterator=iterator, Limit=25)
        records += response["Records"]
        iterator = response.get("NextShardIterator")
        if not response["Records"] and response.get("MillisBehindLatest", 0) == 0:
            break
    return records


def test_glue_rows_are_given_the_shard_that_holds_them_after_a_reshard(kinesis: str, stack: Clients,
                                                                     stack_registry: Registry) -> None:
    """Glue's Kinesis source rows carry no shard id: it is recovered from ListShards, children included."""
    stream = make_stream(stack, stream_name(stack, "glue"), 2)
    produce_customers(stack, stack_registry, stream, range(80), seq=1, aggregated=False)
    stack.kinesis.update_shard_count(StreamName=stream, TargetShardCount=4, ScalingType="UNIFORM_SCALING")
    wait_active(stack, stream)
    produce_customers(stack, stack_registry, stream, range(80), seq=2, aggregated=False)
    shards = list_shards(stack.kinesis, stream)
    truth: set[tuple[str, str, str]] = set()
    rows: list[SourceRow] = []
    for shard in shards:
        for r in read_back(stack, stream, shard):
            truth.add((shard.shard_id, r["SequenceNumber"], r["PartitionKey"]))
            rows.append((r["Data"], r["PartitionKey"], r["SequenceNumber"], 0))
    assert len(truth) == 160
    grouped = records_by_shard(rows, shards)
    assert {(shard, r.sequence, r.partition_key) for shard, records in grouped.items() for r in records} == truth
