"""Kafka bridge logic a broker cannot show cheaply, against a fake consumer built on kafka-python's own types.

What a real broker shows (poison messages, a refused commit after a rebalance,
SIGKILL, two bridges in a group, the round trip to curated) is in
``test_kafka_broker.py`` and ``test_kafka_bridge_cli.py``; here: the full spool's
rewind, a retriable commit failure, the idle rule and the metrics.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from kafka import ConsumerRebalanceListener
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import GroupAuthorizationFailedError, KafkaTimeoutError
from kafka.structs import OffsetAndMetadata, TopicPartition

from hybrid_ingest.aws import Clients
from hybrid_ingest.lake import Lake
from hybrid_ingest.metrics import Metrics
from hybrid_ingest.registry import Registry
from producers import ChangeEventProducer, ProducerConfig
from producers.kafka_bridge import KafkaBridge, refusal
from tests.producers.helpers import event_json, interleaved_events, order_event, read_stream, seqs_per_key


class FakeConsumer:
    """poll/commit/seek over in-memory partitions, committed offsets kept like a group coordinator's."""

    def __init__(self, messages: Mapping[TopicPartition, list[bytes | None]]) -> None:
        self.messages = messages
        self.committed: dict[TopicPartition, int] = {}
        self.position_of = dict.fromkeys(messages, 0)
        self.commit_errors: list[Exception] = []
        self.listener: ConsumerRebalanceListener | None = None
        self.fetched: set[TopicPartition] = set()

    def subscribe(self, topics: Sequence[str], *, listener: ConsumerRebalanceListener) -> None:
        self.listener = listener

    def join(self) -> None:
        assert self.listener is not None
        self.listener.on_partitions_assigned(list(self.messages))

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> Mapping[TopicPartition, Sequence[Any]]:
        out: dict[TopicPartition, list[Any]] = {}
        budget = max_records or 500
        for tp, values in self.messages.items():
            self.fetched.add(tp)
            start = self.position_of[tp]
            chunk = values[start:start + budget]
            if chunk:
                out[tp] = [ConsumerRecord(tp.topic, tp.partition, -1, start + i, 0, 0, None, value, [], None,
                                          -1, len(value or b""), -1) for i, value in enumerate(chunk)]
                self.position_of[tp] = start + len(chunk)
                budget -= len(chunk)
        return out

    def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata] | None = None) -> None:
        if self.commit_errors:
            raise self.commit_errors.pop(0)
        assert offsets is not None
        for tp, meta in offsets.items():
            self.committed[tp] = meta.offset

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.position_of[partition] = offset

    def assignment(self) -> Collection[TopicPartition]:
        return list(self.messages)

    def position(self, partition: TopicPartition) -> int | None:
        return self.position_of[partition]

    def highwater(self, partition: TopicPartition) -> int | None:
        return len(self.messages[partition]) if partition in self.fetched else None


def partitions(events: list[dict[str, Any]], count: int = 3) -> dict[TopicPartition, list[bytes | None]]:
    """Events keyed into partitions by order_id, as a Kafka producer keyed by primary key would."""
    out: dict[TopicPartition, list[bytes | None]] = defaultdict(list)
    for event in events:
        out[TopicPartition("erp.orders", event["row"]["order_id"] % count)].append(event_json(event))
    return dict(out)


def expected_seqs(events: list[dict[str, Any]]) -> dict[int, list[int]]:
    want: dict[int, list[int]] = defaultdict(list)
    for e in events:
        want[e["row"]["order_id"]].append(e["seq"])
    return dict(want)


@pytest.fixture
def producer(initialized: Clients, registry: Registry, tmp_path: Path) -> ChangeEventProducer:
    return ChangeEventProducer.open(initialized.kinesis, initialized.settings.names.stream, registry.latest,
                                    tmp_path / "spool", ProducerConfig(linger=0.01))


def test_full_spool_rewinds_instead_of_skipping(initialized: Clients, registry: Registry, lake: Lake,
                                                tmp_path: Path) -> None:
    producer = ChangeEventProducer.open(initialized.kinesis, initialized.settings.names.stream, registry.latest,
                                        tmp_path / "spool", ProducerConfig(spool_max_bytes=3_000, linger=3600,
                                                                           flush_count=10**9))
    events = interleaved_events(keys=5, per_key=8, seed=4)
    consumer = FakeConsumer(partitions(events))
    bridge = KafkaBridge(consumer, producer, {"erp.orders": "orders"}, lake, max_records=40, sleep=None)
    assert bridge.run_once() == 0
    assert bridge.stats.spool_full == 1
    assert consumer.committed == {}
    assert all(p == 0 for p in consumer.position_of.values())
    bridge.max_records = 10
    while bridge.run_once(timeout_ms=0):
        assert producer.flush(timeout=30)
    assert producer.close(timeout=30)
    got = seqs_per_key(read_stream(initialized.kinesis, initialized.settings.names.stream, registry))
    assert got == expected_seqs(events)
    assert bridge.stats.polled == len(events)


def test_tombstones_and_oversize_messages_are_dead_letters(
        initialized: Clients, registry: Registry, lake: Lake, producer: ChangeEventProducer) -> None:
    big = order_event(1, 2)
    big["row"]["notes"] = "x" * (1024 * 1024)
    tp = TopicPartition("erp.orders", 0)
    consumer = FakeConsumer({tp: [event_json(order_event(1, 1)), None, event_json(big), event_json(order_event(2, 3))]})
    bridge = KafkaBridge(consumer, producer, {"erp.orders": "orders"}, lake)
    assert bridge.run_once() == 4
    assert producer.close(timeout=30)
    dead = sorted((d["offset"], d["reason"], d["data_base64"] is None) for d in
                  (json.loads(Path(f.path).read_text()) for f in lake.files("dlq/kafka-bridge")))
    assert dead == [(1, "invalid-row", True), (2, "oversize-record", False)]
    assert consumer.committed == {tp: 4}
    assert seqs_per_key(read_stream(initialized.kinesis, initialized.settings.names.stream, registry)) == {
        1: [1], 2: [3]}


def test_unforeseen_errors_of_one_message_have_their_own_reason() -> None:
    assert refusal(ZeroDivisionError("boom")) == ("undecodable", "ZeroDivisionError: boom")


def test_a_retriable_commit_failure_is_retried_with_the_next_commit(
        lake: Lake, producer: ChangeEventProducer) -> None:
    events = interleaved_events(keys=6, per_key=4, seed=8)
    consumer = FakeConsumer(partitions(events, count=2))
    tp0, tp1 = consumer.messages  # in the order the fake serves them
    bridge = KafkaBridge(consumer, producer, {"erp.orders": "orders"}, lake,
                         max_records=len(consumer.messages[tp0]))
    consumer.commit_errors.append(KafkaTimeoutError("coordinator slow"))
    assert bridge.run_once() == len(consumer.messages[tp0])  # tp0 only: its commit times out
    assert consumer.committed == {}
    assert bridge.stats.commit_failures == 1
    bridge.run_once()  # tp1; the commit carries tp0's offset too
    assert consumer.committed == {tp0: len(consumer.messages[tp0]), tp1: len(consumer.messages[tp1])}
    assert producer.close(timeout=30)


def test_a_revoked_partition_is_not_committed_by_its_former_owner(lake: Lake, producer: ChangeEventProducer) -> None:
    events = interleaved_events(keys=6, per_key=4, seed=8)
    consumer = FakeConsumer(partitions(events, count=2))
    tp0, tp1 = consumer.messages  # in the order the fake serves them
    bridge = KafkaBridge(consumer, producer, {"erp.orders": "orders"}, lake,
                         max_records=len(consumer.messages[tp0]))
    consumer.commit_errors.append(KafkaTimeoutError("coordinator slow"))
    bridge.run_once()
    bridge.revoked([tp0])  # another bridge owns tp0 now and starts from its committed offset
    bridge.run_once()
    assert consumer.committed == {tp1: len(consumer.messages[tp1])}
    assert producer.close(timeout=30)


def test_an_authorization_error_on_commit_stops_the_bridge(lake: Lake, producer: ChangeEventProducer) -> None:
    consumer = FakeConsumer(partitions(interleaved_events(keys=2, per_key=2)))
    bridge = KafkaBridge(consumer, producer, {"erp.orders": "orders"}, lake)
    consumer.commit_errors.append(GroupAuthorizationFailedError("bridge-group"))
    with pytest.raises(GroupAuthorizationFailedError):
        bridge.run_once()
    assert producer.close(timeout=30)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.25
        return self.now


def test_until_idle_needs_a_join_the_watermark_and_a_quiet_period(
        lake: Lake, producer: ChangeEventProducer) -> None:
    events = interleaved_events(keys=4, per_key=5, seed=1)
    consumer = FakeConsumer(partitions(events))
    bridge = KafkaBridge(consumer, producer, {"erp.orders": "orders"}, lake, max_records=7)
    bridge.subscribe()
    assert not bridge.caught_up(), "not joined yet"
    consumer.join()
    assert not bridge.caught_up(), "no fetch has reported a high watermark yet"
    seen: list[str] = []
    metrics = Metrics("HybridIngest/Test", sink=seen.append)
    clock = Clock()
    last_data = [0.0]
    run_once = bridge.run_once

    def noting_data(timeout_ms: int = 1000) -> int:
        settled = run_once(timeout_ms)
        if settled:
            last_data[0] = clock.now
        return settled

    bridge.run_once = noting_data  # type: ignore[method-assign]
    outcome = bridge.run(threading.Event(), until_idle=True, idle_seconds=2.0, metrics=metrics,
                         dimensions={"KafkaGroup": "g"}, clock=clock)
    assert outcome == "idle"
    assert bridge.stats.forwarded == len(events)
    assert bridge.caught_up()
    assert clock.now - last_data[0] >= 2.0, "left before the quiet period"
    docs = [json.loads(line) for line in seen]
    assert sum(d["Forwarded"] for d in docs) == len(events)
    assert docs[-1]["RecordsBehind"] == 0
    assert docs[-1]["KafkaGroup"] == "g"
    assert producer.close(timeout=30)


def test_a_stop_request_ends_the_loop_after_the_current_batch(lake: Lake, producer: ChangeEventProducer) -> None:
    consumer = FakeConsumer(partitions(interleaved_events(keys=3, per_key=3)))
    bridge = KafkaBridge(consumer, producer, {"erp.orders": "orders"}, lake, max_records=2)
    stop = threading.Event()
    run_once = bridge.run_once

    def then_stop(timeout_ms: int = 1000) -> int:
        stop.set()
        return run_once(timeout_ms)

    bridge.run_once = then_stop  # type: ignore[method-assign]
    assert bridge.run(stop) == "stopped"
    assert sum(consumer.committed.values()) == bridge.stats.polled == 2
    assert producer.close(timeout=30)
