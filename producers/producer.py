"""ChangeEventProducer: validate, encode, spool, and ship change events to Kinesis in the background.

``send()`` does only local work: validation against the table's registered
schema, Avro single-object encoding, and an append to the durable spool. A
background sender thread reads the spool in order, aggregates per shard and
delivers (``producers.kinesis``); the spool's sent cursor moves only after
Kinesis accepted a whole round. So an application never waits on AWS, an outage
only grows the spool (up to its limit, where ``send`` raises ``SpoolFullError``),
and a restarted producer drains what the last one left before anything newer.

Flushing: the sender starts a round when the unsent events reach ``flush_count``
or ``flush_bytes``, when the oldest has waited ``linger`` seconds, or when
``flush()``/``close()`` ask for it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from hybrid_ingest.errors import HybridIngestError, ValidationError
from hybrid_ingest.registry import SchemaVersion
from hybrid_ingest.send_checks import check_event
from hybrid_ingest.tables import validate_event
from producers.kinesis import DeliveryStats, KinesisDelivery, check_record_size
from producers.routing import partition_key
from producers.schemas import cached_lookup
from producers.spool import DEFAULT_MAX_BYTES, DEFAULT_SEGMENT_BYTES, Durability, Entry, Spool

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

log = logging.getLogger(__name__)

SCHEMA_CACHE = "schemas"


@dataclass(frozen=True)
class ProducerConfig:
    flush_count: int = 5_000
    flush_bytes: int = 2 * 1024 * 1024
    linger: float = 0.2
    round_max_count: int = 100_000
    round_max_bytes: int = 16 * 1024 * 1024
    spool_max_bytes: int = DEFAULT_MAX_BYTES
    spool_segment_bytes: int = DEFAULT_SEGMENT_BYTES
    durability: Durability = "fsync"


class RecordProducer:
    """Bytes-level producer: (partition key, record) pairs through the spool to the stream."""

    def __init__(self, spool: Spool, delivery: KinesisDelivery, config: ProducerConfig | None = None,
                 background: bool = True) -> None:
        self.spool = spool
        self.delivery = delivery
        self.config = config or ProducerConfig()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._abandon = False
        self._flush_waiters = 0
        self._first_pending_at: float | None = -math.inf if spool.pending_count else None
        self._failure: BaseException | None = None
        self._closed = False
        delivery.sleep = self._stop.wait
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="hybrid-ingest-sender", daemon=True)
            self._thread.start()

    @classmethod
    def open(cls, kinesis: KinesisClient, stream: str, spool_dir: Path, config: ProducerConfig | None = None,
             background: bool = True) -> RecordProducer:
        config = config or ProducerConfig()
        spool = Spool(spool_dir, config.spool_max_bytes, config.spool_segment_bytes, config.durability)
        return cls(spool, KinesisDelivery(kinesis, stream), config, background)

    # -- accepting ---------------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise HybridIngestError(f"the producer's sender stopped: {self._failure!r}") from self._failure
        if self._closed:
            raise HybridIngestError("the producer is closed")

    def put(self, entries: list[Entry]) -> None:
        """Accept entries durably (the spool), then wake the sender if a flush threshold is reached."""
        self._check_usable()
        self.spool.append(entries)
        with self._cond:
            if self._first_pending_at is None:
                self._first_pending_at = time.monotonic()
            if self._ready():
                self._cond.notify_all()

    # -- sending -----------------------------------------------------------------------------------

    def _ready(self) -> bool:
        if not self.spool.pending_count:
            return False
        c = self.config
        if self._flush_waiters or self._stop.is_set() or self.spool.pending_count >= c.flush_count:
            return True
        if self.spool.pending_bytes >= c.flush_bytes:
            return True
        return self._first_pending_at is not None and time.monotonic() - self._first_pending_at >= c.linger

    def _should_abandon(self) -> bool:
        return self._abandon

    def drain_round(self) -> bool:
        """Send one round read from the spool; True once it is accepted and the cursor moved."""
        batch = self.spool.read(self.spool.sent, self.config.round_max_bytes, self.config.round_max_count)
        if batch.entries and not self.delivery.deliver(batch.entries, self._should_abandon):
            return False
        if batch.end != self.spool.sent:
            self.spool.commit(batch)
        with self._cond:
            self._first_pending_at = -math.inf if self.spool.pending_count else None
            self._cond.notify_all()
        return True

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._ready():
                        if self._stop.is_set():
                            return
                        wait = self.config.linger
                        if self._first_pending_at is not None:
                            wait = max(0.001, self._first_pending_at + self.config.linger - time.monotonic())
                        self._cond.wait(timeout=wait)
                if not self.drain_round():
                    return
        except BaseException as exc:  # surfaced to the caller by send()/flush(); the spool keeps the data
            log.exception("producer sender stopped")
            with self._cond:
                self._failure = exc
                self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything accepted so far is in Kinesis; False on timeout (it stays spooled)."""
        self._check_usable()
        if self._thread is None:
            while self.spool.pending_count:
                if not self.drain_round():
                    return False
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        target = self.spool.end()
        with self._cond:
            self._flush_waiters += 1
            self._cond.notify_all()
            try:
                while self.spool.sent < target and self._failure is None:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(timeout=remaining)
            finally:
                self._flush_waiters -= 1
        self._check_usable()
        return True

    def close(self, timeout: float | None = 30.0) -> bool:
        """Flush (up to ``timeout``), stop the sender, close the spool; False if events remain spooled."""
        if self._closed:
            return self.spool.pending_count == 0
        flushed = False
        try:
            flushed = self.flush(timeout)
        finally:
            self._abandon = True
            with self._cond:
                self._stop.set()
                self._cond.notify_all()
            if self._thread is not None:
                self._thread.join()
            self._closed = True
            self.spool.close()
        return flushed

    @property
    def stats(self) -> DeliveryStats:
        return self.delivery.stats


def encode_event(version: SchemaVersion, event: dict[str, Any]) -> Entry:
    """Validate and encode one event: (partition key, single-object Avro bytes of ``version``).

    The codec's own error names no field: when it refuses, ``check_event`` finds which one.
    """
    validate_event(version.spec, event)
    version.row_checks(event["row"])
    try:
        data = version.codec.encode(event)
    except ValidationError:
        check_event(version.spec, event)
        raise
    key = partition_key(version.spec, event["row"])
    check_record_size(key, data)
    return key, data


class ChangeEventProducer:
    """Change events of registered tables in, Avro single-object records through a RecordProducer out."""

    def __init__(self, records: RecordProducer, schemas: Callable[[str], SchemaVersion]) -> None:
        self.records = records
        self._schemas = schemas
        self._versions: dict[str, SchemaVersion] = {}

    @classmethod
    def open(cls, kinesis: KinesisClient, stream: str, schemas: Callable[[str], SchemaVersion],
             spool_dir: Path, config: ProducerConfig | None = None, background: bool = True
             ) -> ChangeEventProducer:
        """A producer on ``spool_dir``; schema lookups are copied under it for use while AWS is unreachable."""
        return cls(RecordProducer.open(kinesis, stream, spool_dir, config, background),
                   cached_lookup(schemas, spool_dir / SCHEMA_CACHE))

    def version(self, table: str) -> SchemaVersion:
        """The table's latest schema version, looked up once per producer (a registry round trip)."""
        found = self._versions.get(table)
        if found is None:
            found = self._versions[table] = self._schemas(table)
        return found

    def encode(self, table: str, event: dict[str, Any]) -> Entry:
        return encode_event(self.version(table), event)

    def send(self, table: str, event: dict[str, Any]) -> None:
        """Accept one event durably; raises ValidationError/RecordTooLargeError/SpoolFullError, never drops."""
        self.records.put([self.encode(table, event)])

    def send_many(self, table: str, events: Iterable[dict[str, Any]]) -> int:
        """Accept events all-or-nothing with one spool write (and one fsync); returns how many."""
        entries = []
        for index, event in enumerate(events):
            try:
                entries.append(self.encode(table, event))
            except ValidationError as exc:
                raise type(exc)(f"event {index}: {exc}") from exc
        self.records.put(entries)
        return len(entries)

    def flush(self, timeout: float | None = None) -> bool:
        return self.records.flush(timeout)

    def close(self, timeout: float | None = 30.0) -> bool:
        return self.records.close(timeout)

    def __enter__(self) -> ChangeEventProducer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
