"""Kafka bridge: forward on-prem Kafka topics of JSON change events through the producer.

At-least-once, never lossy: a partition's offset is committed only after every
message below it is either in the producer's durable spool (from which it
reaches Kinesis even across a crash) or, when it is not a valid event, in
``dlq/kafka-bridge/<reason>/`` with its coordinates and bytes. Anything that
goes wrong between the spool and the commit (a crash, a commit refused because
the group rebalanced) re-delivers those messages from Kafka: duplicates, which
the merge drops by ``seq``.

One bad message never stops the bridge: whatever its decoding raises (also a
``RecursionError`` from a value of 200,000 nested ``[``) dead-letters that
message alone. Failures that are not about one message (the schema registry,
the spool's disk, an authorization error from the broker) stop the bridge
before the commit, so the messages come back on restart.

If the spool is full, the bridge seeks its partitions back to the first
unforwarded offset and backs off, so nothing is skipped.

The consumer is a ``kafka.KafkaConsumer`` created with ``enable_auto_commit=False``
and subscribed through ``subscribe()`` here, so the bridge sees rebalances.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

from kafka import ConsumerRebalanceListener
from kafka.errors import CommitFailedError, KafkaError, RebalanceInProgressError
from kafka.structs import OffsetAndMetadata, TopicPartition

from hybrid_ingest.errors import HybridIngestError, SpoolFullError, UnknownTableError, ValidationError
from hybrid_ingest.lake import Lake
from hybrid_ingest.layout import dlq_file
from hybrid_ingest.metrics import Metrics
from producers.events import encode_line
from producers.producer import ChangeEventProducer
from producers.spool import Entry

log = logging.getLogger(__name__)

DLQ_STAGE = "kafka-bridge"
UNDECODABLE = "undecodable"  # the reason of a message whose decoding raised something unforeseen


class Consumer(Protocol):
    """The part of ``kafka.KafkaConsumer`` the bridge needs."""

    def subscribe(self, topics: Sequence[str], *, listener: ConsumerRebalanceListener) -> None: ...

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> Mapping[TopicPartition, Sequence[Any]]: ...

    def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata] | None = None) -> None: ...

    def seek(self, partition: TopicPartition, offset: int) -> None: ...

    def assignment(self) -> Collection[TopicPartition]: ...

    def position(self, partition: TopicPartition) -> int | None: ...

    def highwater(self, partition: TopicPartition) -> int | None: ...


@dataclass
class BridgeStats:
    polled: int = 0
    forwarded: int = 0
    dead_lettered: int = 0
    commits: int = 0
    commit_failures: int = 0
    spool_full: int = 0
    assignments: int = 0

    def snapshot(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


METRIC_NAMES = {"polled": "Messages", "forwarded": "Forwarded", "dead_lettered": "DeadLetters",
                "commits": "Commits", "commit_failures": "CommitFailures", "spool_full": "SpoolFull",
                "assignments": "Assignments"}


def dead_letter(record: Any, reason: str, error: str) -> dict[str, Any]:
    """The dead-letter document: the message's coordinates and exact bytes, with why it was refused."""

    def b64(value: bytes | None) -> str | None:
        return None if value is None else base64.b64encode(value).decode()

    return {
        "topic": record.topic, "partition": record.partition, "offset": record.offset,
        "timestamp": record.timestamp, "key_base64": b64(record.key), "data_base64": b64(record.value),
        "headers": [[name, b64(value)] for name, value in (getattr(record, "headers", None) or [])],
        "reason": reason, "error": error,
    }


class Refused(Exception):
    """One message was refused for what it holds: the dead-letter reason and error text."""

    def __init__(self, reason: str, error: str) -> None:
        super().__init__(error)
        self.reason = reason
        self.error = error


def refusal(exc: Exception) -> tuple[str, str]:
    """(reason, error) for whatever decoding one message raised."""
    if isinstance(exc, HybridIngestError):
        return exc.reason, str(exc)
    return UNDECODABLE, f"{type(exc).__name__}: {exc}"


class _Rebalances(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python ships no type hints
    """Tells the bridge when the group takes partitions away or hands them out."""

    def __init__(self, bridge: KafkaBridge) -> None:
        self.bridge = bridge

    def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        self.bridge.revoked(revoked)

    def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        self.bridge.assigned(assigned)


class KafkaBridge:
    """Polls a consumer, forwards events of mapped topics, commits what is safe."""

    def __init__(self, consumer: Consumer, producer: ChangeEventProducer, topics: Mapping[str, str],
                 lake: Lake, *, max_records: int = 1000, full_backoff: float = 1.0,
                 sleep: Callable[[float], Any] | None = time.sleep) -> None:
        self.consumer = consumer
        self.producer = producer
        self.topics = dict(topics)
        self.lake = lake
        self.max_records = max_records
        self.full_backoff = full_backoff
        self.sleep = sleep
        self.stats = BridgeStats()
        self._lock = threading.Lock()  # rebalance callbacks may run on the consumer's IO thread
        self._joined = False
        self._owned: set[TopicPartition] = set()
        self._pending: dict[TopicPartition, OffsetAndMetadata] = {}

    # -- group membership ------------------------------------------------------------------------------

    def subscribe(self, topics: Sequence[str] | None = None) -> None:
        """Join the group for ``topics`` (default: every mapped topic), watching its rebalances."""
        self.consumer.subscribe(list(topics or self.topics), listener=_Rebalances(self))

    def revoked(self, partitions: Collection[TopicPartition]) -> None:
        with self._lock:
            self._joined = False
            self._owned.difference_update(partitions)
            for tp in partitions:  # their next owner starts from the group's committed offset
                self._pending.pop(tp, None)
        if partitions:
            log.info("partitions revoked: %s", _names(partitions))

    def assigned(self, partitions: Collection[TopicPartition]) -> None:
        with self._lock:
            self._joined = True
            self._owned = set(partitions)
            self.stats.assignments += 1
        log.info("partitions assigned: %s", _names(partitions) or "none")

    # -- one poll --------------------------------------------------------------------------------------

    def _encode(self, record: Any) -> Entry:
        """The message as a spool entry; raises ``Refused`` when the message itself is bad."""
        table = self.topics.get(record.topic)
        if table is None:
            raise Refused(UnknownTableError.reason, f"topic {record.topic!r} is not mapped to a table")
        version = self.producer.version(table)  # outside the per-message catch: a registry outage is not bad input
        try:
            if record.value is None:
                raise ValidationError("message has no value (a Kafka tombstone is not a change event)")
            return encode_line(version, record.value)
        except Exception as exc:  # whatever this one message's bytes raise: dead-letter it, go on
            raise Refused(*refusal(exc)) from exc

    def run_once(self, timeout_ms: int = 1000) -> int:
        """One poll: forward, dead-letter, then commit; returns how many messages were settled."""
        polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=self.max_records)
        if not polled:
            return 0
        entries: list[Entry] = []
        rejected: list[dict[str, Any]] = []
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        firsts: dict[TopicPartition, int] = {}
        for tp, records in polled.items():
            for record in records:
                firsts.setdefault(tp, record.offset)
                try:
                    entries.append(self._encode(record))
                except Refused as exc:
                    rejected.append(dead_letter(record, exc.reason, exc.error))
                offsets[tp] = OffsetAndMetadata(record.offset + 1, "", getattr(record, "leader_epoch", -1))
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
        for letter in rejected:
            name = f"{letter['topic']}-{letter['partition']}-{letter['offset']}.json"
            self.lake.write_json(dlq_file(DLQ_STAGE, letter["reason"], name), letter)
            log.warning("dead-lettered %s[%d]@%d (%s): %s", letter["topic"], letter["partition"],
                        letter["offset"], letter["reason"], letter["error"][:200])
        self.stats.polled += len(entries) + len(rejected)
        self.stats.forwarded += len(entries)
        self.stats.dead_lettered += len(rejected)
        self.commit(offsets)
        return len(entries) + len(rejected)

    def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> bool:
        """Commit settled offsets (with any a retriable failure left behind); False if Kafka refused.

        A commit refused because the group rebalanced is not an error of the bridge:
        the next poll rejoins, and the partitions' next owner (maybe this bridge)
        starts from the last committed offset, so the messages since then are
        forwarded again; the spool already holds them, so this only duplicates.
        """
        with self._lock:
            for tp, meta in offsets.items():
                if tp not in self._pending or self._pending[tp].offset < meta.offset:
                    self._pending[tp] = meta
            pending = dict(self._pending)
        if not pending:
            return True
        try:
            self.consumer.commit(offsets=pending)
        except (CommitFailedError, RebalanceInProgressError) as exc:
            self.stats.commit_failures += 1
            with self._lock:
                self._pending.clear()
            log.warning("offset commit refused because the group rebalanced (%s); rejoining: messages since the "
                        "last commit will be re-delivered (duplicates, which the merge ignores)", exc)
            return False
        except KafkaError as exc:
            if not getattr(exc, "retriable", False):
                raise
            self.stats.commit_failures += 1
            log.warning("offset commit failed (%s); retrying with the next commit", exc)
            return False
        with self._lock:
            for tp, meta in pending.items():
                if tp in self._pending and self._pending[tp].offset <= meta.offset:
                    del self._pending[tp]
        self.stats.commits += 1
        return True

    # -- the loop --------------------------------------------------------------------------------------

    def caught_up(self) -> bool:
        """Joined, and every owned partition's position at the high watermark its last fetch reported.

        The high watermark comes with every fetch response, the same data the
        messages come from; ``end_offsets()`` is a separate request that some
        brokers (Tansu) answer too low, so it is not used.
        """
        with self._lock:
            if not self._joined:
                return False
            owned = list(self._owned)
        for tp in owned:
            end = self.consumer.highwater(tp)
            if end is None:
                return False
            position = self.consumer.position(tp)
            if position is None or position < end:
                return False
        return True

    def lag(self) -> int:
        """Messages behind the high watermarks of the owned partitions (those whose watermark is known)."""
        with self._lock:
            owned = list(self._owned)
        behind = 0
        for tp in owned:
            end, position = self.consumer.highwater(tp), self.consumer.position(tp)
            if end is not None and position is not None:
                behind += max(0, end - position)
        return behind

    def run(self, stop: threading.Event, *, until_idle: bool = False, idle_seconds: float = 2.0,
            timeout_ms: int = 500, metrics: Metrics | None = None, dimensions: Mapping[str, str] | None = None,
            metrics_every: float = 10.0, clock: Callable[[], float] = time.monotonic) -> str:
        """Poll until ``stop`` is set ("stopped") or, with ``until_idle``, until idle ("idle").

        Idle means caught up (see ``caught_up``) with nothing polled for
        ``idle_seconds``: a quiet period on top of the watermark, so a broker
        whose offsets lag behind its data still gets read to the end.
        """
        emitted = BridgeStats()
        last_emit = quiet_since = clock()
        outcome = "stopped"
        while not stop.is_set():
            settled = self.run_once(timeout_ms)
            now = clock()
            if metrics is not None and now - last_emit >= metrics_every:
                emitted, last_emit = self.emit(metrics, dimensions or {}, emitted), now
            if not until_idle:
                continue
            if settled or not self.caught_up():
                quiet_since = now
            elif now - quiet_since >= idle_seconds:
                outcome = "idle"
                break
        if metrics is not None:
            self.emit(metrics, dimensions or {}, emitted)
        return outcome

    def emit(self, metrics: Metrics, dimensions: Mapping[str, str], since: BridgeStats) -> BridgeStats:
        """Publish the counts since ``since`` and the current lag; returns the new baseline."""
        now = BridgeStats(**self.stats.snapshot())
        figures: dict[str, float] = {METRIC_NAMES[name]: value - getattr(since, name)
                                     for name, value in now.snapshot().items()}
        figures["RecordsBehind"] = self.lag()
        metrics.emit(figures, dict(dimensions), "Count")
        return now


def _names(partitions: Collection[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(partitions))
