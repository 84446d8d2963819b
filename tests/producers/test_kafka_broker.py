"""The bridge as a library on a real broker (Tansu): poison messages and a commit refused after a rebalance."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer

from hybrid_ingest.aws import Clients
from hybrid_ingest.lake import Lake
from hybrid_ingest.registry import Registry
from producers import ChangeEventProducer, ProducerConfig
from producers.kafka_bridge import KafkaBridge
from tests.producers.helpers import event_json, interleaved_events, read_stream, seqs_per_key
from tests.producers.tansu import GROUP_TIMEOUTS, Broker, fresh_group

TOPIC = "erp.orders"
PARTITIONS = 3
DEEP = b"[" * 200_000


def keyed(events: list[dict[str, Any]]) -> list[tuple[int, bytes | None]]:
    """(partition, value) by order_id, as a Kafka producer keyed by the primary key would place them."""
    return [(e["row"]["order_id"] % PARTITIONS, event_json(e)) for e in events]


def expected_seqs(events: list[dict[str, Any]]) -> dict[int, list[int]]:
    want: dict[int, list[int]] = {}
    for e in events:
        want.setdefault(e["row"]["order_id"], []).append(e["seq"])
    return want


@pytest.fixture
def producer(initialized: Clients, registry: Registry, tmp_path: Path) -> Iterator[ChangeEventProducer]:
    opened = ChangeEventProducer.open(initialized.kinesis, initialized.settings.names.stream, registry.latest,
                                      tmp_path / "spool", ProducerConfig(linger=0.01))
    yield opened
    opened.close(timeout=30)


def consumer_for(broker: Broker, **overrides: Any) -> KafkaConsumer:
    settings: dict[str, Any] = {"group_id": fresh_group(), "enable_auto_commit": False,
                                "auto_offset_reset": "earliest", **GROUP_TIMEOUTS, **overrides}
    return KafkaConsumer(bootstrap_servers=broker.bootstrap, **settings)


def run_until_settled(bridge: KafkaBridge, total: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while bridge.stats.forwarded + bridge.stats.dead_lettered < total:
        assert time.monotonic() < deadline, f"only {bridge.stats} of {total} messages settled"
        bridge.run_once(timeout_ms=500)


def test_poison_messages_go_to_the_dead_letters_and_their_neighbours_go_on(
        broker: Broker, initialized: Clients, registry: Registry, lake: Lake,
        producer: ChangeEventProducer) -> None:
    broker.create_topic(TOPIC, PARTITIONS)
    broker.create_topic("erp.unmapped", 1)
    events = interleaved_events(keys=12, per_key=6, seed=3)
    half = len(events) // 2
    poison = {  # (topic, partition): the bad value, sent in the middle of that partition's good messages
        (TOPIC, 0): (DEEP, "invalid-row"),
        (TOPIC, 1): (b'{"op": "c", "seq": 1, "row": {"order_id": "not a number"}}', "invalid-row"),
        (TOPIC, 2): (b"{broken", "invalid-row"),
        ("erp.unmapped", 0): (event_json(events[0]), "unknown-table"),
    }
    broker.publish(TOPIC, keyed(events[:half]))
    broker.publish(TOPIC, [(p, value) for (topic, p), (value, _) in poison.items() if topic == TOPIC])
    broker.publish("erp.unmapped", [(0, poison[("erp.unmapped", 0)][0])])
    broker.publish(TOPIC, keyed(events[half:]))
    ends = {p: sum(1 for e in events if e["row"]["order_id"] % PARTITIONS == p) + 1 for p in range(PARTITIONS)}
    where = {p: sum(1 for e in events[:half] if e["row"]["order_id"] % PARTITIONS == p) for p in range(PARTITIONS)}

    consumer = consumer_for(broker)
    bridge = KafkaBridge(consumer, producer, {TOPIC: "orders"}, lake, max_records=20)
    bridge.subscribe([TOPIC, "erp.unmapped"])  # a topic without a table: its messages are dead letters too
    try:
        run_until_settled(bridge, len(events) + len(poison))
    finally:
        consumer.close()
    assert producer.close(timeout=30)

    assert bridge.stats.forwarded == len(events)
    got = seqs_per_key(read_stream(initialized.kinesis, initialized.settings.names.stream, registry))
    assert got == expected_seqs(events)
    dead = {(d["topic"], d["partition"]): d for d in
            (json.loads(Path(f.path).read_text()) for f in lake.files("dlq/kafka-bridge"))}
    assert set(dead) == set(poison)
    for (topic, partition), (value, reason) in poison.items():
        letter = dead[(topic, partition)]
        assert letter["reason"] == reason
        assert letter["offset"] == (where[partition] if topic == TOPIC else 0)
        assert base64.b64decode(letter["data_base64"]) == value
        assert letter["error"]
        assert Path(lake.path(f"dlq/kafka-bridge/{reason}")).is_dir()
    assert "nest" in dead[(TOPIC, 0)]["error"]
    assert broker.committed(consumer.config["group_id"], TOPIC, PARTITIONS) == ends


def test_a_commit_refused_after_the_group_moved_on_is_logged_and_redelivered(
        broker: Broker, initialized: Clients, registry: Registry, lake: Lake, producer: ChangeEventProducer,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The bridge stalls past max.poll.interval.ms before its commit: the group drops it, the commit fails.

    kafka-python raises ``CommitFailedError``; the bridge must log it, rejoin on its
    next poll and forward the re-delivered messages again (duplicates, never a gap).
    """
    broker.create_topic(TOPIC, PARTITIONS)
    events = interleaved_events(keys=9, per_key=8, seed=11)
    broker.publish(TOPIC, keyed(events))
    consumer = consumer_for(broker, max_poll_interval_ms=3_000)
    bridge = KafkaBridge(consumer, producer, {TOPIC: "orders"}, lake, max_records=30)
    bridge.subscribe()
    put = producer.records.put
    stalled: list[int] = []

    def stalls_once(entries: list[tuple[str, bytes]]) -> None:
        put(entries)
        if not stalled:
            stalled.append(len(entries))
            time.sleep(6)  # past max_poll_interval_ms: the heartbeat thread leaves the group

    monkeypatch.setattr(producer.records, "put", stalls_once)
    try:
        deadline = time.monotonic() + 90
        while broker.committed(consumer.config["group_id"], TOPIC, PARTITIONS) != {
                p: sum(1 for e in events if e["row"]["order_id"] % PARTITIONS == p) for p in range(PARTITIONS)}:
            assert time.monotonic() < deadline, f"not everything was committed: {bridge.stats}"
            bridge.run_once(timeout_ms=500)
    finally:
        consumer.close()
    assert producer.close(timeout=30)

    assert stalled, "the stall never happened"
    assert bridge.stats.commit_failures >= 1
    assert any("commit" in r.getMessage().lower() and "rejoin" in r.getMessage().lower() for r in caplog.records)
    got = seqs_per_key(read_stream(initialized.kinesis, initialized.settings.names.stream, registry))
    want = expected_seqs(events)
    assert set(got) == set(want)
    for key, seqs in want.items():
        assert list(dict.fromkeys(got[key])) == seqs, f"key {key}: a gap or a reordering"
    assert sum(map(len, got.values())) >= len(events) + stalled[0], "the uncommitted batch was not re-delivered"
