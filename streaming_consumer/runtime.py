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

A shard ends when GetRecords says so (``streaming_consumer.reader``); the worker then
marks it finished and its children become readable once every parent is finished.
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
from typing import TYPE_CHECKING

from hybrid_ingest.errors import ConditionFailedError, LeaseHeldError, ShardsUnreadableError
from hybrid_ingest.lake import Lake
from hybrid_ingest.metrics import Metrics
from hybrid_ingest.state import StateStore
from hybrid_ingest.state_leases import Lease
from hybrid_ingest.state_table import Clock
from streaming_consumer.core import Resolver
from streaming_consumer.reader import FlushEvent, ShardReader
from streaming_consumer.shards import (
    ShardInfo,
    fair_share,
    list_shards,
    readable,
    with_discovered,
)

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

LOG = logging.getLogger(__name__)
METRIC_UNITS = {"Records": "Count", "Bytes": "Bytes", "Batches": "Count", "DeadLetters": "Count",
                "MillisBehindLatest": "Milliseconds"}


@dataclass(frozen=True)
class FlushPolicy:
    """Flush a shard's buffer when any limit is reached (or at shutdown, or when the shard is idle)."""

    # The buffer holds wire bytes (KPL aggregates); a flush decodes it a slice at a time (core.SLICE_EVENTS)
    # into Arrow, so these bound a shard's memory: its buffered bytes plus their Arrow columns.
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
