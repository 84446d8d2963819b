"""Kafka bridge: forward on-prem Kafka topics of JSON change events through the producer.

At-least-once, never lossy: offsets are committed only after the polled events
are in the producer's durable spool (from which they reach Kinesis even across a
crash) or, for a message that is not a valid event, in the dead-letter area with
its reason. A crash between the spool append and the commit re-delivers those
messages from Kafka: duplicates, which the merge drops by ``seq``.

If the spool is full, the bridge seeks its partitions back to the first
unforwarded offset and backs off, so nothing is skipped.

Only two ``kafka.KafkaConsumer`` methods are used (``poll``, ``commit``, plus
``seek`` when the spool is full); the consumer is passed in, created with
``enable_auto_commit=False``. No Kafka broker runs in this project's tests: the
bridge is tested against a fake consumer implementing those methods with
kafka-python's own ``TopicPartition``/``OffsetAndMetadata``/``ConsumerRecord`` types.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kafka.structs import OffsetAndMetadata, TopicPartition

from hybrid_ingest.errors import HybridIngestError, SpoolFullError, UnknownTableError, ValidationError
from hybrid_ingest.lake import Lake
from hybrid_ingest.layout import dlq_file
from producers.events import event_from_line
from producers.producer import ChangeEventProducer
from producers.spool import Entry

log = logging.getLogger(__name__)

DLQ_STAGE = "kafka-bridge"


class Consumer(Protocol):
    """The part of ``kafka.KafkaConsumer`` the bridge needs."""

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> Mapping[TopicPartition, Sequence[Any]]:
        ...

    def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata] | None = None) -> None:
        ...

    def seek(self, partition: TopicPartition, offset: int) -> None:
        ...


@dataclass
class BridgeStats:
    polled: int = 0
    forwarded: int = 0
    dead_lettered: int = 0
    commits: int = 0
    spool_full: int = 0


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode()


class KafkaBridge:
    """Polls a consumer, forwards events of mapped topics, commits what is safe."""

    def __init__(self, consumer: Consumer, producer: ChangeEventProducer, topics: Mapping[str, str],
                 lake: Lake, *, max_records: int = 1000, full_backoff: float = 1.0,
                 sleep: Callable[[float], Any] | None = None) -> None:
        self.consumer = consumer
        self.producer = producer
        self.topics = dict(topics)
        self.lake = lake
        self.max_records = max_records
        self.full_backoff = full_backoff
        self.sleep = sleep
        self.stats = BridgeStats()

    def _dead_letter(self, record: Any, error: HybridIngestError) -> None:
        name = f"{record.topic}-{record.partition}-{record.offset}.json"
        self.lake.write_json(dlq_file(DLQ_STAGE, error.reason, name), {
            "topic": record.topic, "partition": record.partition, "offset": record.offset,
            "timestamp": record.timestamp, "key": _text(record.key), "value": _text(record.value),
            "reason": error.reason, "error": str(error),
        })
        self.stats.dead_lettered += 1

    def _encode(self, record: Any) -> Entry:
        table = self.topics.get(record.topic)
        if table is None:
            raise UnknownTableError(f"topic {record.topic!r} is not mapped to a table")
        if record.value is None:
            raise ValidationError("message has no value (a Kafka tombstone is not a change event)")
        version = self.producer.version(table)
        return self.producer.encode(table, event_from_line(version.spec, record.value))

    def run_once(self, timeout_ms: int = 1000) -> int:
        """One poll: forward, dead-letter, then commit; returns how many messages were settled."""
        polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=self.max_records)
        if not polled:
            return 0
        entries: list[Entry] = []
        rejected: list[tuple[Any, HybridIngestError]] = []
        commits: dict[TopicPartition, OffsetAndMetadata] = {}
        firsts: dict[TopicPartition, int] = {}
        for tp, records in polled.items():
            for record in records:
                self.stats.polled += 1
                firsts.setdefault(tp, record.offset)
                try:
                    entries.append(self._encode(record))
                except (ValidationError, UnknownTableError) as exc:
                    rejected.append((record, exc))
                commits[tp] = OffsetAndMetadata(record.offset + 1, "", getattr(record, "leader_epoch", -1))
        try:
            self.producer.records.put(entries)
        except SpoolFullError:
            self.stats.spool_full += 1
            for tp, offset in firsts.items():
                self.consumer.seek(tp, offset)
            log.warning("producer spool full; rewound %d partition(s) and backing off", len(firsts))
            if self.sleep is not None:
                self.sleep(self.full_backoff)
            return 0
        for record, error in rejected:
            self._dead_letter(record, error)
        self.stats.forwarded += len(entries)
        self.consumer.commit(offsets=commits)
        self.stats.commits += 1
        return len(entries) + len(rejected)

    def run(self, should_stop: Callable[[], bool], timeout_ms: int = 1000) -> BridgeStats:
        while not should_stop():
            self.run_once(timeout_ms)
        return self.stats
