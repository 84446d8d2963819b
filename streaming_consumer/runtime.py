"""The shard consumer: the local default runtime, also fit for an ECS task or a long-running Lambda.

One ``Worker`` reads every shard it holds a lease on, round-robin on one thread (Kinesis
allows five GetRecords calls a second per shard, so one thread keeps up with many shards
and the CPU goes to decoding). Several workers split a stream through leases in the
state table: each announces itself with a worker lease, takes free or expired shard
leases up to its fair share, and hands back shards above its share after flushing them,
so a newcomer gets work without stealing and a dead worker's shards are taken over once
its leases expire.

Exactly-once into raw rests on three rules: raw files have deterministic names and are
written atomically; the checkpoint moves only after the batch's files are durable; and a
restart re-reads from the checkpoint's Kinesis record (AT_SEQUENCE_NUMBER) and skips the
user records at or below the checkpointed (sequence, sub-sequence) position. A crash
between write and checkpoint therefore re-writes an overlapping file, which the merge
deduplicates on (``_shard``, ``_kpos``); nothing is lost.

A shard ends the way AWS documents it: GetRecords returns its last records (possibly
none) with ``NextShardIterator: null`` and the children in ``ChildShards``. The reader
then stops polling, flushes what it took, checkpoints the shard as finished, and the
children (from ``ChildShards`` as well as ListShards) become readable once every parent
is finished. ``EndingSequenceNumber`` alone never finishes a shard; it is read only by
the fallback for moto, which never ends a closed shard (``shards.drained_without_end_signal``).
The lifecycle is tested against moto and against kinesis-mock (tests/consumer/).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from hybrid_ingest.errors import ConditionFailedError, LeaseHeldError, ShardsUnreadableError
from hybrid_ingest.lake import Lake
from hybrid_ingest.metrics import Metrics
from hybrid_ingest.position import Position
from hybrid_ingest.state import Clock, Lease, StateStore
from streaming_consumer.core import KinesisRecord, Resolver, build_batch
from streaming_consumer.shards import (
    ShardInfo,
    drained_without_end_signal,
    fair_share,
    list_shards,
    readable,
    shard_from_child,
    with_discovered,
)
from streaming_consumer.sink import write_batch

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

LOG = logging.getLogger(__name__)
METRIC_UNITS = {"Records": "Count", "Bytes": "Bytes", "Batches": "Count", "DeadLetters": "Count",
                "MillisBehindLatest": "Milliseconds"}


@dataclass(frozen=True)
class FlushPolicy:
    """Flush a shard's buffer when any limit is reached (or at shutdown, or when the shard is idle)."""

    # Decoded events take ~10x their wire size: these keep a shard's buffer near 100 MB at most.
    max_records: int = 50_000
    max_bytes: int = 8 * 1024 * 1024
    max_seconds: float = 30.0


@dataclass(frozen=True)
class ConsumerConfig:
    stream: str
    flush: FlushPolicy = field(default_factory=FlushPolicy)
    lease_seconds: float = 20.0
    # Kinesis's own maximum number of records per GetRecords call.
    get_records_limit: int = 10_000
    # AWS caps a GetRecords response at 10 MB; moto does not, so the reader sizes each call's
    # Limit to this many bytes itself, which bounds memory to max_bytes plus one response.
    max_response_bytes: int = 10 * 1024 * 1024
    idle_sleep_seconds: float = 1.0
    flush_when_idle: bool = True
    # ListShards and the lease scan are not needed every round; a finished or lost shard forces one
    rebalance_seconds: float = 10.0
    # until-idle only: how long shards may stay out of reach (held by a worker not seen alive) before failing
    unreadable_deadline_seconds: float = 60.0


@dataclass
class ShardStats:
    records: int = 0
    kinesis_records: int = 0
    bytes: int = 0
    batches: int = 0
    files: int = 0
    dead: int = 0
    lag_ms: int = 0


@dataclass(frozen=True)
class FlushEvent:
    """One flush, in the order it happened (what the summary and the tests look at)."""

    shard: str
    first: Position | None
    last: Position
    rows: int
    dead: int
    files: tuple[str, ...]
    finished: bool


class ShardReader:
    """One leased shard: its iterator, its unflushed buffer and where it is checkpointed."""

    def __init__(self, worker: Worker, info: ShardInfo, lease: Lease) -> None:
        self.worker = worker
        self.info = info
        self.lease = lease
        self.checkpoint = worker.store.checkpoint(worker.config.stream, info.shard_id)
        self.buffer: list[KinesisRecord] = []
        self.buffered_bytes = 0
        self.buffer_started: float | None = None
        self.last_read: str | None = None
        self.caught_up = False
        self.ended = False  # GetRecords said so (null NextShardIterator): nothing more to read
        self.finished = False  # the finish is checkpointed: children may start
        self.lag_ms = 0
        self.record_bytes: float | None = None  # running mean size of a Kinesis record on this shard
        self.iterator: str | None = self._new_iterator()

    @property
    def shard_id(self) -> str:
        return self.info.shard_id

    def _new_iterator(self) -> str:
        kinesis = self.worker.kinesis
        args: dict[str, Any] = {"StreamName": self.worker.config.stream, "ShardId": self.shard_id}
        if self.last_read is not None:
            args.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=self.last_read)
        elif self.checkpoint is not None and self.checkpoint.sequence > 0:
            # AT, not AFTER: the checkpoint may sit inside a KPL aggregate whose later sub-records are not done
            args.update(ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=str(self.checkpoint.sequence))
        else:
            args.update(ShardIteratorType="TRIM_HORIZON")
        return kinesis.get_shard_iterator(**args)["ShardIterator"]

    def limit(self) -> int:
        """Records to ask for so a response stays near ``max_response_bytes``.

        Before any record was seen, assume the largest (1 MiB aggregated records).
        """
        config = self.worker.config
        mean = self.record_bytes if self.record_bytes is not None else float(1024 * 1024)
        return max(1, min(config.get_records_limit, int(config.max_response_bytes / max(mean, 1.0))))

    def poll(self) -> int:
        """One GetRecords call; returns how many Kinesis records it added to the buffer."""
        if self.ended or self.iterator is None:
            return 0
        try:
            response = self.worker.kinesis.get_records(ShardIterator=self.iterator, Limit=self.limit())
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ExpiredIteratorException":
                raise
            self.iterator = self._new_iterator()
            return 0
        records = response.get("Records", [])
        self.lag_ms = int(response.get("MillisBehindLatest", 0))
        self.iterator = response.get("NextShardIterator")
        response_bytes = 0
        for r in records:
            self.buffer.append(KinesisRecord(r["Data"], r["SequenceNumber"], r["PartitionKey"],
                                             r["ApproximateArrivalTimestamp"]))
            response_bytes += len(r["Data"])
        self.buffered_bytes += response_bytes
        if records:
            mean = response_bytes / len(records)
            self.record_bytes = mean if self.record_bytes is None else 0.5 * (self.record_bytes + mean)
            self.last_read = records[-1]["SequenceNumber"]
            if self.buffer_started is None:
                self.buffer_started = self.worker.clock()
        if self.iterator is None:
            # the shard is closed and these were its last records: take them, then finish
            self.ended = True
            self.worker.discover(shard_from_child(doc) for doc in response.get("ChildShards", []))
        self.caught_up = self.ended or (not records and self.lag_ms == 0)
        return len(records)

    def due(self) -> bool:
        policy = self.worker.config.flush
        if not self.buffer:
            return False
        if len(self.buffer) >= policy.max_records or self.buffered_bytes >= policy.max_bytes:
            return True
        started = self.buffer_started if self.buffer_started is not None else self.worker.clock()
        if self.worker.clock() - started >= policy.max_seconds:
            return True
        if self.read_to_end():
            return True  # nothing more will come: finish the shard now
        return self.caught_up and self.worker.config.flush_when_idle

    def read_to_end(self) -> bool:
        """Everything the shard will ever hold is read (the buffer may still have to be flushed)."""
        if self.ended:
            return True
        read_through = max(int(self.last_read) if self.last_read is not None else -1,
                           self.checkpoint.sequence if self.checkpoint is not None else -1)
        return drained_without_end_signal(self.info, None if read_through < 0 else read_through, self.caught_up)

    def at_end(self) -> bool:
        """Read to its end and everything read is checkpointed: the shard can be marked finished."""
        return not self.buffer and self.read_to_end()

    def flush(self) -> FlushEvent | None:
        """Write the buffer to raw, then move the checkpoint; ConditionFailedError if the lease was lost."""
        if not self.buffer:
            return None
        worker = self.worker
        result = build_batch(self.shard_id, self.buffer, worker.resolve, after=self.checkpoint)
        written = write_batch(worker.lake, result)
        assert result.last is not None  # a non-empty buffer always has a last position
        finished = self.read_to_end()  # the whole buffer goes out now: its end is the shard's
        if self.checkpoint is None or self.checkpoint < result.last:
            worker.store.set_checkpoint(worker.config.stream, self.shard_id, result.last, lease=self.lease,
                                        finished=finished)
            self.checkpoint = result.last
            self.finished = finished
        self.buffer = []
        self.buffered_bytes = 0
        self.buffer_started = None
        if not written.raw_files and not written.dlq_files:
            return None  # only records a restart re-read and skipped: nothing to report
        first = min((b.first for b in result.raw), default=None)
        event = FlushEvent(self.shard_id, first, result.last, written.rows, written.dead,
                           tuple(written.raw_files + written.dlq_files), finished)
        worker.record_flush(self, event, result.user_records, result.kinesis_records, result.bytes)
        return event


class Worker:
    """Leases shards, reads them, flushes and checkpoints; ``step`` is one round, ``run`` loops."""

    def __init__(self, kinesis: KinesisClient, store: StateStore, lake: Lake, resolve: Resolver,
                 config: ConsumerConfig, metrics: Metrics | None = None, worker_id: str | None = None,
                 clock: Clock = time.time) -> None:
        self.kinesis = kinesis
        self.store = store
        self.lake = lake
        self.resolve = resolve
        self.config = config
        self.metrics = metrics
        self.worker_id = worker_id or f"worker-{uuid.uuid4()}"
        self.clock = clock
        self.readers: dict[str, ShardReader] = {}
        self.stats: dict[str, ShardStats] = {}
        self.flushes: list[FlushEvent] = []
        self.history: list[tuple[str, str]] = []  # ("take" | "flush" | "finish" | "release" | "lost", shard)
        self.shards: list[ShardInfo] = []
        self.pending: list[ShardInfo] = []
        self.discovered: dict[str, ShardInfo] = {}  # children named by GetRecords' ChildShards
        self._presence: Lease | None = None
        self._rebalanced_at: float | None = None
        self._leases_seen: dict[str, Lease] = {}  # shard -> another holder's lease as first seen

    # -- naming ------------------------------------------------------------------------------------

    def shard_lease_name(self, shard_id: str) -> str:
        return f"shard#{self.config.stream}#{shard_id}"

    def presence_prefix(self) -> str:
        return f"worker#{self.config.stream}#"

    # -- leases ------------------------------------------------------------------------------------

    def _keep_presence(self) -> None:
        """Take or renew this worker's presence lease (others count live workers by these)."""
        if self._presence is None or self._presence.expires - self.clock() < self.config.lease_seconds / 2:
            self._presence = self.store.acquire(f"{self.presence_prefix()}{self.worker_id}", self.worker_id,
                                                self.config.lease_seconds)

    def _alive_workers(self) -> int:
        now = self.clock()
        alive = [lease for lease in self.store.leases(self.presence_prefix()) if lease.expires >= now]
        return max(len(alive), 1)

    def discover(self, children: Iterable[ShardInfo]) -> None:
        """Children a closed shard's last GetRecords named: readable even before ListShards shows them."""
        for child in children:
            self.discovered.setdefault(child.shard_id, child)
        self._rebalanced_at = None

    def rebalance(self) -> None:
        """Refresh the shard list, drop finished shards, shed shards above our share, take free ones."""
        self.shards = with_discovered(list_shards(self.kinesis, self.config.stream), self.discovered)
        finished = self.store.finished_shards(self.config.stream)
        candidates = readable(self.shards, finished)
        self.pending = candidates
        for shard_id in [s for s in self.readers if s in finished]:
            self._drop(shard_id, release=True)
        share = fair_share(len(candidates), self._alive_workers())
        if len(self.readers) > share:
            for shard_id in sorted(self.readers)[share:]:
                self._hand_back(shard_id)
        if len(self.readers) >= share:
            return
        now = self.clock()
        held = {lease.name: lease for lease in self.store.leases(f"shard#{self.config.stream}#")}
        for info in candidates:
            if len(self.readers) >= share:
                break
            if info.shard_id in self.readers:
                continue
            current = held.get(self.shard_lease_name(info.shard_id))
            if current is not None and current.expires >= now and current.owner != self.worker_id:
                continue
            try:
                lease = self.store.acquire(self.shard_lease_name(info.shard_id), self.worker_id,
                                           self.config.lease_seconds)
            except LeaseHeldError:
                continue
            self.readers[info.shard_id] = ShardReader(self, info, lease)
            self.history.append(("take", info.shard_id))
            self.stats.setdefault(info.shard_id, ShardStats())
            LOG.info("%s took shard %s (token %d)", self.worker_id, info.shard_id, lease.token)

    def _renew(self, reader: ShardReader) -> bool:
        if reader.lease.expires - self.clock() >= self.config.lease_seconds / 2:
            return True
        try:
            reader.lease = self.store.renew(reader.lease, self.config.lease_seconds)
        except LeaseHeldError:
            LOG.warning("%s lost the lease of %s; dropping its unflushed buffer", self.worker_id, reader.shard_id)
            self._drop(reader.shard_id, release=False)
            return False
        return True

    def _hand_back(self, shard_id: str) -> None:
        reader = self.readers[shard_id]
        try:
            reader.flush()
        except ConditionFailedError:
            self._drop(shard_id, release=False)
            return
        self._drop(shard_id, release=True)

    def _drop(self, shard_id: str, release: bool) -> None:
        reader = self.readers.pop(shard_id)
        self._rebalanced_at = None  # the shard set changed: look again next round
        self.history.append(("release" if release else "lost", shard_id))
        if release:
            self.store.release(reader.lease)

    # -- the loop ------------------------------------------------------------------------------------

    def step(self) -> int:
        """One round over the held shards; returns how many Kinesis records were read."""
        self._keep_presence()
        now = self.clock()
        if self._rebalanced_at is None or now - self._rebalanced_at >= self.config.rebalance_seconds:
            self.rebalance()
            self._rebalanced_at = now
        read = 0
        for shard_id in sorted(self.readers):
            reader = self.readers[shard_id]
            if not self._renew(reader):
                continue
            read += reader.poll()
            try:
                if reader.due():
                    reader.flush()
                if reader.at_end():
                    if not reader.finished:  # its last flush did not already say so
                        self.store.finish_shard(self.config.stream, shard_id, lease=reader.lease)
                    self.history.append(("finish", shard_id))
                    self._drop(shard_id, release=True)
            except ConditionFailedError:
                LOG.warning("%s: checkpoint of %s refused (lease taken over); dropping it", self.worker_id, shard_id)
                self._drop(shard_id, release=False)
        return read

    def idle(self) -> bool:
        """Caught up: every held shard read to the tip and flushed, every other readable shard in live hands."""
        return not self._busy() and not self.unreadable()

    def _busy(self) -> bool:
        return any(not r.caught_up or r.buffer for r in self.readers.values())

    def unreadable(self) -> list[tuple[str, Lease | None]]:
        """Readable shards this worker does not hold and no live worker is seen holding, with their lease.

        A holder is live once its lease was seen renewed (workers renew at half the lease
        time); a dead worker's lease is not renewed, so its shards stay here until the
        lease expires and this worker takes them over.
        """
        waiting: list[tuple[str, Lease | None]] = []
        now = self.clock()
        for info in self.pending:
            if info.shard_id in self.readers:
                continue
            lease = self.store.lease(self.shard_lease_name(info.shard_id))
            if lease is None or lease.owner == self.worker_id or lease.expires < now:
                waiting.append((info.shard_id, lease))
                continue
            first = self._leases_seen.setdefault(info.shard_id, lease)
            if (first.owner, first.token) != (lease.owner, lease.token):
                self._leases_seen[info.shard_id] = lease  # a new holder: wait for it to renew as well
            elif lease.expires > first.expires:
                continue  # renewed since first seen: a live worker reads it
            waiting.append((info.shard_id, lease))
        return waiting

    def run(self, until_idle: bool = False, stop: threading.Event | None = None) -> None:
        """Loop until ``stop`` is set (or, with ``until_idle``, until caught up); always flush and let go.

        With ``until_idle``, shards held by workers not seen alive are waited for (a crashed
        worker's leases expire, then this worker takes them over); if some are still out of
        reach ``config.unreadable_deadline_seconds`` after they were first found so, the run
        ends with ``ShardsUnreadableError`` naming them and their holders.
        """
        stop = stop or threading.Event()
        blocked_since: float | None = None
        try:
            while not stop.is_set():
                read = self.step()
                if until_idle and not self._busy():
                    waiting = self.unreadable()
                    if not waiting:
                        break
                    blocked_since = self._check_deadline(waiting, blocked_since)
                    self._rebalanced_at = None  # take each one over as soon as its lease expires
                else:
                    blocked_since = None
                if read == 0:
                    stop.wait(self.config.idle_sleep_seconds)
        finally:
            self.shutdown()

    def _check_deadline(self, waiting: list[tuple[str, Lease | None]], blocked_since: float | None) -> float:
        """Wall time since caught up with shards still out of reach; raise once past the deadline."""
        started = time.monotonic() if blocked_since is None else blocked_since
        if time.monotonic() - started < self.config.unreadable_deadline_seconds:
            return started
        held = ", ".join(
            f"{shard} (free, not taken)" if lease is None or lease.expires < self.clock()
            else f"{shard} (held by {lease.owner} until {_utc(lease.expires)})"
            for shard, lease in waiting
        )
        raise ShardsUnreadableError(
            f"stream {self.config.stream}: {len(waiting)} shard(s) still unreadable after "
            f"{self.config.unreadable_deadline_seconds:g} s: {held}"
        )

    def shutdown(self) -> None:
        """Flush and checkpoint every held shard, then release the leases so others take over at once."""
        for shard_id in sorted(self.readers):
            self._hand_back(shard_id)
        if self._presence is not None:
            self.store.release(self._presence)
            self._presence = None

    # -- bookkeeping ---------------------------------------------------------------------------------

    def record_flush(self, reader: ShardReader, event: FlushEvent, user_records: int, kinesis_records: int,
                     size: int) -> None:
        stats = self.stats.setdefault(reader.shard_id, ShardStats())
        stats.records += user_records
        stats.kinesis_records += kinesis_records
        stats.bytes += size
        stats.batches += 1
        stats.files += len(event.files)
        stats.dead += event.dead
        stats.lag_ms = reader.lag_ms
        self.flushes.append(event)
        self.history.append(("flush", reader.shard_id))
        self.store.put_consumer_stats(
            self.config.stream, reader.shard_id, lag_ms=reader.lag_ms, owner=self.worker_id,
            increments={"records": user_records, "bytes": size, "batches": 1, "files": len(event.files),
                        "dlq": event.dead},
        )
        if self.metrics is not None:
            self.metrics.emit(
                {"Records": user_records, "Bytes": size, "Batches": 1, "DeadLetters": event.dead,
                 "MillisBehindLatest": reader.lag_ms},
                {"Stream": self.config.stream, "Shard": reader.shard_id}, METRIC_UNITS,
            )


def _utc(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
