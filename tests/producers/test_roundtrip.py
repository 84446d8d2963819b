"""Producer -> Kinesis (moto's server) -> deaggregate + decode: every event once, in order per key."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, cast

import pytest

from hybrid_ingest.aws import Clients
from hybrid_ingest.errors import RecordTooLargeError, SpoolFullError, ValidationError
from hybrid_ingest.registry import Registry
from producers import ChangeEventProducer, ProducerConfig, RecordProducer
from producers.kinesis import AGGREGATE_MAX_BYTES, USER_RECORD_OVERHEAD, KinesisDelivery
from producers.spool import Spool
from tests.producers.helpers import FlakyKinesis, interleaved_events, order_event, read_stream

FAST = ProducerConfig(flush_count=500, linger=0.05, round_max_count=2_000)


def check_exactly_once_in_order(sent: list[dict[str, Any]], shards: dict[str, list[dict[str, Any]]],
                                allow_duplicates: bool = False) -> None:
    by_key: dict[int, list[int]] = defaultdict(list)
    shard_of_key: dict[int, set[str]] = defaultdict(set)
    for sid, events in shards.items():
        for e in events:
            by_key[e["row"]["order_id"]].append(e["seq"])
            shard_of_key[e["row"]["order_id"]].add(sid)
    expected: dict[int, list[int]] = defaultdict(list)
    for e in sent:
        expected[e["row"]["order_id"]].append(e["seq"])
    assert set(by_key) == set(expected)
    for key, seqs in by_key.items():
        assert len(shard_of_key[key]) == 1, f"key {key} spread over shards {shard_of_key[key]}"
        if allow_duplicates:
            deduped = [s for i, s in enumerate(seqs) if s not in seqs[:i]]
            assert deduped == expected[key]
            assert seqs == sorted(seqs)
        else:
            assert seqs == expected[key], f"key {key}: got {seqs}"


def test_round_trip_every_event_once_in_order(initialized: Clients, registry: Registry, tmp_path: Path) -> None:
    stream = initialized.settings.names.stream
    events = interleaved_events(keys=40, per_key=25)
    with ChangeEventProducer.open(initialized.kinesis, stream, registry.latest, tmp_path / "spool",
                                  FAST) as producer:
        for e in events[:300]:
            producer.send("orders", e)
        producer.send_many("orders", events[300:])
    shards = read_stream(initialized.kinesis, stream, registry)
    assert sum(map(len, shards.values())) == len(events)
    check_exactly_once_in_order(events, shards)
    decoded = {(e["row"]["order_id"], e["seq"]): e for evs in shards.values() for e in evs}
    first = events[0]
    got = decoded[(first["row"]["order_id"], first["seq"])]
    assert got["row"] | {"external_ref": str(got["row"]["external_ref"])} == first["row"]
    assert got["ts"] == first["ts"]
    assert got["_pk"] == f"orders|{first['row']['order_id']}"
    assert producer.records.stats.records < len(events) / 10, "records were not aggregated"


def test_throttling_and_partial_failures_lose_nothing(initialized: Clients, registry: Registry,
                                                      tmp_path: Path) -> None:
    stream = initialized.settings.names.stream
    flaky = FlakyKinesis(initialized.kinesis, entry_failure_rate=0.4, call_failure_rate=0.2, outage_calls=2)
    delivery = KinesisDelivery(cast(Any, flaky), stream, base_delay=0.001, throttle_base_delay=0.002, max_delay=0.01)
    spool = Spool(tmp_path / "spool")
    config = ProducerConfig(flush_count=50, linger=0.01, round_max_count=120)
    producer = ChangeEventProducer(RecordProducer(spool, delivery, config), registry.latest)
    events = interleaved_events(keys=30, per_key=20, seed=3)
    for start in range(0, len(events), 37):
        producer.send_many("orders", events[start:start + 37])
    assert producer.close(timeout=60)
    assert flaky.refused_entries > 0
    assert delivery.stats.entry_failures == flaky.refused_entries
    assert delivery.stats.call_failures > 2
    check_exactly_once_in_order(events, read_stream(initialized.kinesis, stream, registry))


def test_invalid_and_oversize_events_are_refused(initialized: Clients, registry: Registry,
                                                 tmp_path: Path) -> None:
    stream = initialized.settings.names.stream
    with ChangeEventProducer.open(initialized.kinesis, stream, registry.latest, tmp_path / "spool",
                                  FAST) as producer:
        big = order_event(1, 1)
        big["row"]["notes"] = "x" * (1024 * 1024)
        with pytest.raises(RecordTooLargeError, match=r"exceeds the \d+-byte limit of one Kinesis record"):
            producer.send("orders", big)
        bad = order_event(2, 2)
        del bad["row"]["status"]
        with pytest.raises(ValidationError, match="needs non-null \\['status'\\]"):
            producer.send("orders", bad)
        with pytest.raises(ValidationError, match="event 1: "):
            producer.send_many("orders", [order_event(3, 3), big])
        assert producer.records.spool.pending_count == 0
        producer.send("orders", order_event(4, 4, op="d"))
    shards = read_stream(initialized.kinesis, stream, registry)
    assert [e["row"]["order_id"] for evs in shards.values() for e in evs] == [4]


def test_full_spool_refuses_loudly(initialized: Clients, registry: Registry, tmp_path: Path) -> None:
    stream = initialized.settings.names.stream
    config = ProducerConfig(spool_max_bytes=2_000, flush_count=10**9, linger=3600)
    producer = ChangeEventProducer.open(initialized.kinesis, stream, registry.latest, tmp_path / "spool",
                                        config)
    accepted = 0
    while producer.records.spool.pending_bytes + 200 < 2_000:
        producer.send("orders", order_event(accepted, accepted + 1))
        accepted += 1
    with pytest.raises(SpoolFullError, match="would pass its limit of 2000"):
        producer.send_many("orders", [order_event(i, i + 1) for i in range(accepted, accepted + 5)])
    assert 0 < accepted < 100
    assert producer.close(timeout=30)
    shards = read_stream(initialized.kinesis, stream, registry)
    assert sum(map(len, shards.values())) == accepted


def test_largest_accepted_event_fits_one_kinesis_record(initialized: Clients, registry: Registry,
                                                        tmp_path: Path) -> None:
    stream = initialized.settings.names.stream
    codec = registry.latest("orders").codec
    event = order_event(7, 7)
    event["row"]["notes"] = "x" * (AGGREGATE_MAX_BYTES - 400)
    key = "orders|7"
    slack = AGGREGATE_MAX_BYTES - USER_RECORD_OVERHEAD - len(key) - len(codec.encode(event))
    event["row"]["notes"] += "x" * slack
    assert len(key) + len(codec.encode(event)) + USER_RECORD_OVERHEAD == AGGREGATE_MAX_BYTES
    too_big = order_event(8, 8)
    too_big["row"]["notes"] = event["row"]["notes"] + "x"
    with ChangeEventProducer.open(initialized.kinesis, stream, registry.latest, tmp_path / "spool",
                                  FAST) as producer:
        with pytest.raises(RecordTooLargeError):
            producer.send("orders", too_big)
        producer.send_many("orders", [order_event(6, 6), event, order_event(9, 9)])
    events = [e for evs in read_stream(initialized.kinesis, stream, registry).values() for e in evs]
    assert sorted(e["seq"] for e in events) == [6, 7, 9]
    assert next(e for e in events if e["seq"] == 7)["row"]["notes"] == event["row"]["notes"]
