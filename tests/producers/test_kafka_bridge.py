"""Kafka bridge, tested with a FAKE consumer (no broker runs here) built on kafka-python's own types."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import OffsetAndMetadata, TopicPartition

from hybrid_ingest.aws import Clients
from hybrid_ingest.convert import to_json_value
from hybrid_ingest.lake import Lake
from hybrid_ingest.registry import Registry
from producers import ChangeEventProducer, ProducerConfig
from producers.kafka_bridge import KafkaBridge
from tests.producers.helpers import interleaved_events, read_stream


def as_json(event: dict[str, Any]) -> bytes:
    return json.dumps({"op": event["op"], "seq": event["seq"], "ts": to_json_value(event["ts"]),
                       "row": {k: to_json_value(v) for k, v in event["row"].items()}}).encode()


class FakeConsumer:
    """poll/commit/seek over in-memory partitions, with committed offsets kept like a group coordinator."""

    def __init__(self, messages: Mapping[TopicPartition, list[bytes | None]],
                 committed: dict[TopicPartition, int] | None = None, fail_commit: bool = False) -> None:
        self.messages = messages
        self.committed = committed if committed is not None else {}
        self.position = {tp: self.committed.get(tp, 0) for tp in messages}
        self.fail_commit = fail_commit

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> Mapping[TopicPartition, Sequence[Any]]:
        out: dict[TopicPartition, list[Any]] = {}
        budget = max_records or 500
        for tp, values in self.messages.items():
            start = self.position[tp]
            chunk = values[start:start + budget]
            if chunk:
                out[tp] = [ConsumerRecord(tp.topic, tp.partition, -1, start + i, 0, 0, None, value, [], None,
                                          -1, len(value or b""), -1) for i, value in enumerate(chunk)]
                self.position[tp] = start + len(chunk)
                budget -= len(chunk)
        return out

    def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata] | None = None) -> None:
        if self.fail_commit:
            raise RuntimeError("simulated crash before the commit reached Kafka")
        assert offsets is not None
        for tp, meta in offsets.items():
            self.committed[tp] = meta.offset

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.position[partition] = offset


def partitions(events: list[dict[str, Any]], bad: dict[int, bytes | None]) -> dict[TopicPartition, list[bytes | None]]:
    """Events keyed into 3 partitions by order_id (as a Kafka producer keyed by PK would), bad values mixed in."""
    out: dict[TopicPartition, list[bytes | None]] = defaultdict(list)
    for index, event in enumerate(events):
        tp = TopicPartition("erp.orders", event["row"]["order_id"] % 3)
        if index in bad:
            out[tp].append(bad[index])
        out[tp].append(as_json(event))
    return dict(out)


def per_key(shards: dict[str, list[dict[str, Any]]]) -> dict[int, list[int]]:
    got: dict[int, list[int]] = defaultdict(list)
    for evs in shards.values():
        for e in evs:
            got[e["row"]["order_id"]].append(e["seq"])
    return got


def expected_per_key(events: list[dict[str, Any]]) -> dict[int, list[int]]:
    want: dict[int, list[int]] = defaultdict(list)
    for e in events:
        want[e["row"]["order_id"]].append(e["seq"])
    return want


@pytest.fixture
def producer(initialized: Clients, registry: Registry, tmp_path: Path) -> ChangeEventProducer:
    return ChangeEventProducer.open(initialized.kinesis, initialized.settings.names.stream, registry.latest,
                                    tmp_path / "spool", ProducerConfig(linger=0.01))


def test_forwards_in_order_dead_letters_bad_messages_commits_after(
        initialized: Clients, registry: Registry, lake: Lake, producer: ChangeEventProducer) -> None:
    events = interleaved_events(keys=12, per_key=10, seed=9)
    consumer = FakeConsumer(partitions(events, bad={5: b"{broken", 40: None, 77: b'{"op": "c", "seq": 1}'}))
    bridge = KafkaBridge(consumer, producer, {"erp.orders": "orders"}, lake, max_records=25)
    while bridge.run_once(timeout_ms=0):
        pass
    assert producer.close(timeout=30)
    assert consumer.committed == {tp: len(values) for tp, values in consumer.messages.items()}
    assert bridge.stats.forwarded == len(events)
    assert bridge.stats.dead_lettered == 3
    dead = [json.loads(Path(f.path).read_text()) for f in lake.files("dlq/kafka-bridge")]
    assert sorted(d["reason"] for d in dead) == ["invalid-row", "invalid-row", "invalid-row"]
    assert {d["value"] for d in dead} == {"{broken", None, '{"op": "c", "seq": 1}'}
    assert all(d["error"] for d in dead)
    got = per_key(read_stream(initialized.kinesis, initialized.settings.names.stream, registry))
    assert got == expected_per_key(events)


def test_crash_before_commit_redelivers_and_loses_nothing(
        initialized: Clients, registry: Registry, lake: Lake, producer: ChangeEventProducer) -> None:
    events = interleaved_events(keys=6, per_key=10, seed=2)
    messages = partitions(events, bad={})
    crashing = FakeConsumer(messages, fail_commit=True)
    bridge = KafkaBridge(crashing, producer, {"erp.orders": "orders"}, lake, max_records=20)
    with pytest.raises(RuntimeError, match="simulated crash"):
        bridge.run_once()
    assert crashing.committed == {}
    restarted = FakeConsumer(messages, committed=crashing.committed)
    bridge = KafkaBridge(restarted, producer, {"erp.orders": "orders"}, lake, max_records=20)
    while bridge.run_once(timeout_ms=0):
        pass
    assert producer.close(timeout=30)
    got = per_key(read_stream(initialized.kinesis, initialized.settings.names.stream, registry))
    want = expected_per_key(events)
    assert set(got) == set(want)
    for key, seqs in want.items():
        assert list(dict.fromkeys(got[key])) == seqs
    assert sum(map(len, got.values())) == len(events) + 20  # the first poll went out twice


def test_full_spool_rewinds_instead_of_skipping(initialized: Clients, registry: Registry, lake: Lake,
                                                tmp_path: Path) -> None:
    producer = ChangeEventProducer.open(initialized.kinesis, initialized.settings.names.stream, registry.latest,
                                        tmp_path / "spool", ProducerConfig(spool_max_bytes=3_000, linger=3600,
                                                                           flush_count=10**9))
    events = interleaved_events(keys=5, per_key=8, seed=4)
    consumer = FakeConsumer(partitions(events, bad={}))
    bridge = KafkaBridge(consumer, producer, {"erp.orders": "orders"}, lake, max_records=40)
    assert bridge.run_once() == 0
    assert bridge.stats.spool_full == 1
    assert consumer.committed == {}
    assert all(p == 0 for p in consumer.position.values())
    bridge.max_records = 10
    while bridge.run_once(timeout_ms=0):
        assert producer.flush(timeout=30)
    assert producer.close(timeout=30)
    got = per_key(read_stream(initialized.kinesis, initialized.settings.names.stream, registry))
    assert got == expected_per_key(events)
