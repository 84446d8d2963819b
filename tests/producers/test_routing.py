"""Pure parts: partition keys, shard routing (checked against moto's), call planning, backoff."""

from __future__ import annotations

import base64
import datetime as dt
import itertools
from collections import deque

import pytest
from aws_kinesis_agg.deaggregator import iter_deaggregate_records, messages_pb2

from hybrid_ingest.aws import Clients
from hybrid_ingest.errors import ValidationError
from hybrid_ingest.registry import Registry
from hybrid_ingest.tables import TableSpec
from producers import kinesis
from producers.kinesis import MAX_CALL_BYTES, Blob, aggregate, backoff_delay, plan_call
from producers.routing import MAX_PARTITION_KEY_CHARS, ShardMap, ShardRange, hash_key, partition_key


def test_partition_key_is_table_plus_key_values(registry: Registry) -> None:
    items = registry.latest("order_items").spec
    assert partition_key(items, {"order_id": 42, "line_no": 3, "sku": "x"}) == "order_items|42|3"
    with pytest.raises(ValidationError, match="must not be null"):
        partition_key(items, {"order_id": 42, "line_no": None})
    with pytest.raises(ValidationError, match="lacks primary key field 'line_no'"):
        partition_key(items, {"order_id": 42})


def test_overlong_partition_key_is_hashed_deterministically() -> None:
    def spec(table: str) -> TableSpec:
        return TableSpec(table, ("k",), {"type": "record", "name": table, "fields": [{"name": "k", "type": "string"}]})
    long_value = "v" * 300
    key = partition_key(spec("docs"), {"k": long_value})
    assert key.startswith("docs|sha256:")
    assert key == partition_key(spec("docs"), {"k": long_value})
    assert key != partition_key(spec("docs"), {"k": long_value + "w"})
    longest_table = "t" * 63  # the longest table name there can be: its hashed key still fits
    hashed = partition_key(spec(longest_table), {"k": "v" * 300})
    assert hashed.startswith(f"{longest_table}|sha256:")
    assert len(hashed) <= MAX_PARTITION_KEY_CHARS
    assert partition_key(spec("docs"), {"k": "v" * 200}) == "docs|" + "v" * 200


def test_shard_routing_matches_kinesis(initialized: Clients) -> None:
    stream = initialized.settings.names.stream
    shard_map = ShardMap.from_list_shards(initialized.kinesis.list_shards(StreamName=stream)["Shards"])
    keys = [f"orders|{i}" for i in range(300)] + [f"customers|{dt.date(2026, 1, 1) + dt.timedelta(i)}"
                                                  for i in range(100)]
    response = initialized.kinesis.put_records(StreamName=stream,
                                               Records=[{"Data": b"x", "PartitionKey": k} for k in keys])
    assert [r["ShardId"] for r in response["Records"]] == [shard_map.shard_for(k) for k in keys]
    assert len({shard_map.shard_for(k) for k in keys}) == 2


def test_shard_map_skips_closed_shards_and_uses_inclusive_ranges() -> None:
    def shard(sid: str, start: int, end: int, closed: bool = False) -> dict[str, object]:
        seq: dict[str, str] = {"StartingSequenceNumber": "1"}
        if closed:
            seq["EndingSequenceNumber"] = "9"
        return {"ShardId": sid, "HashKeyRange": {"StartingHashKey": str(start), "EndingHashKey": str(end)},
                "SequenceNumberRange": seq}
    top = 2**128 - 1
    shard_map = ShardMap.from_list_shards([shard("parent", 0, top, closed=True), shard("low", 0, 2**127 - 1),
                                           shard("high", 2**127, top)])
    assert shard_map.shard_ids == ["low", "high"]
    for key in (f"k{i}" for i in range(100)):
        expected = "low" if hash_key(key) <= 2**127 - 1 else "high"
        assert shard_map.shard_for(key) == expected
    gap = ShardMap([ShardRange("low", 0, 10)])
    with pytest.raises(ValidationError, match="no open shard covers"):
        gap.shard_for("anything")


def test_aggregation_keeps_each_shards_records_in_order() -> None:
    shard_map = ShardMap([ShardRange("a", 0, 2**127 - 1), ShardRange("b", 2**127, 2**128 - 1)])
    entries = [(f"t|{i}", bytes([i % 251]) * 3000) for i in range(2000)]
    queues = aggregate(entries, shard_map, max_size=256 * 1024)
    for shard, blobs in queues.items():
        assert all(b.size <= 256 * 1024 for b in blobs)
        assert all(shard_map.shard_for(b.partition_key) == shard for b in blobs)
        records = [{"Data": b.data, "PartitionKey": b.partition_key, "SequenceNumber": str(i),
                    "ApproximateArrivalTimestamp": 0} for i, b in enumerate(blobs)]
        users = [(u["kinesis"]["partitionKey"], base64.b64decode(u["kinesis"]["data"]))
                 for u in iter_deaggregate_records(records, data_format="Boto3")]
        assert users == [e for e in entries if shard_map.shard_for(e[0]) == shard]


def test_plan_call_takes_one_record_per_shard_within_limits() -> None:
    def blob(shard: str, size: int) -> Blob:
        return Blob(shard, "k", b"x" * size, 1)
    queues = {s: deque([blob(s, 1024 * 1024 - 10), blob(s, 10)]) for s in "abcdefg"}
    call = plan_call(queues)
    assert [b.shard_id for b in call] == ["a", "b", "c", "d", "e"]
    assert sum(b.size for b in call) <= MAX_CALL_BYTES
    many = {str(i): deque([blob(str(i), 10)]) for i in range(600)}
    assert len(plan_call(many)) == 500


def test_backoff_is_capped_exponential_with_jitter() -> None:
    assert [backoff_delay(a, 0.1, 1.0, lambda: 1.0) for a in (1, 2, 3, 4, 5, 9)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff_delay(3, 0.1, 1.0, lambda: 0.5) == pytest.approx(0.2)


@pytest.mark.parametrize("max_size", [300, 4_000, 70_000, 1_000_000])
def test_aggregates_are_as_full_as_the_limit_allows(max_size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The packing adds up protobuf field sizes itself: its sum is the serialized size, within the limit.

    Sizes straddle the varint steps (127/128 bytes, 16383/16384 bytes), keys repeat, are not all
    ASCII and come in hundreds (key indexes past 127), so every size rule is exercised; protobuf's
    own serialization is the ground truth. And no aggregate is closed while the next record fits.
    """
    sizes: list[tuple[int, int]] = []
    blob = kinesis._Packing.blob

    def checked(packing: kinesis._Packing, shard_id: str) -> Blob:
        made = blob(packing, shard_id)
        sizes.append((packing.size, len(made.data)))
        return made

    monkeypatch.setattr(kinesis._Packing, "blob", checked)
    shard_map = ShardMap([ShardRange("a", 0, 2**128 - 1)])
    lengths = [0, 1, 100, 115, 116, 117, 127, 128, 129, 200, 16_360, 16_383, 16_384, 16_400, 30_000]
    entries = [(f"t|{i % 300}" + "é" * (i % 3), bytes(lengths[i % len(lengths)] if i % 4 else i % 20))
               for i in range(3_000)]
    entries = [(pk, data) for pk, data in entries if len(data) + 100 < max_size]
    blobs = list(aggregate(entries, shard_map, max_size=max_size)["a"])
    assert sum(b.user_records for b in blobs) == len(entries)
    assert all(computed == actual <= max_size for computed, actual in sizes)
    assert max(b.user_records for b in blobs) > 128 or max_size < 1_000_000
    for one, following in itertools.pairwise(blobs):
        message = messages_pb2.AggregatedRecord()
        message.ParseFromString(one.data[4:-16])
        nxt = messages_pb2.AggregatedRecord()
        nxt.ParseFromString(following.data[4:-16])
        key = nxt.partition_key_table[nxt.records[0].partition_key_index]
        keys = list(message.partition_key_table)
        if key not in keys:
            message.partition_key_table.append(key)
            keys.append(key)
        message.records.add(partition_key_index=keys.index(key), data=nxt.records[0].data)
        assert 4 + len(message.SerializeToString()) + 16 > max_size, "the next record would have fitted"
