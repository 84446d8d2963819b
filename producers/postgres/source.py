"""``source postgres``: a PostgreSQL database's committed changes through the producer's spool.

After the first start (``setup``), changes are read from the slot with
psycopg2's logical replication and the ``pgoutput`` plugin, decoded
(``pgoutput``), collapsed per key per transaction (``changes``), and appended to
the producer's durable spool, which ships them to the stream like ``produce``.

Acknowledgement: the server is told a position is flushed (the standby status
update's flush LSN) only after every event of every transaction up to it is in
the spool (the spool's fsync, not Kinesis acceptance). Committed transactions
are appended in batches (``batch_events``, ``batch_seconds``, or whenever the
stream pauses) to share the fsync. psycopg2 additionally moves the flush
position to a keepalive's WAL end when everything received was confirmed; the
walsender sends there the position it has decoded up to, which never passes the
commit of a transaction it has not finished sending, so that too only confirms
what is spooled. A restart reads from the slot's confirmed position: nothing is
lost, a transaction spooled but not yet confirmed comes again (a duplicate the
merge ignores by seq).
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2

from hybrid_ingest.errors import HybridIngestError, SourceError
from hybrid_ingest.lake import Lake
from hybrid_ingest.metrics import Metrics
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore
from producers.postgres import pgoutput
from producers.postgres import record as records
from producers.postgres.catalog import TableRef
from producers.postgres.changes import ChangeCollector, CommittedTxn
from producers.postgres.connect import connect, connect_replication, one_line, scalar
from producers.postgres.lsn import format_lsn, parse_lsn
from producers.postgres.record import SourceRecord
from producers.postgres.resolver import Resolver
from producers.postgres.setup import LandedTable, SetupContext, SnapshotStopped, identity, set_up
from producers.postgres.truncate import land_truncated
from producers.postgres.txn import TxnBuffer
from producers.producer import RecordProducer
from producers.spool import Entry

log = logging.getLogger(__name__)

SLOT_POSITION = ("SELECT confirmed_flush_lsn::text, pg_current_wal_lsn()::text FROM pg_replication_slots "
                 "WHERE slot_name = %s")


@dataclass(frozen=True)
class SourceConfig:
    dsn: str
    slot: str
    tables: tuple[TableRef, ...]
    batch_events: int = 5_000
    batch_seconds: float = 0.2
    progress_seconds: float = 5.0
    status_interval: int = 1
    idle_poll_seconds: float = 0.2
    max_txn_keys: int = 200_000


@dataclass
class SourceStats:
    landed: list[LandedTable] = field(default_factory=list)
    transactions: int = 0
    events: int = 0
    truncates: int = 0
    spilled: int = 0          # transactions too big to collapse in memory
    snapshot_stopped: bool = False
    confirmed_lsn: int = 0
    resumed_from: str = ""


@dataclass
class _Pending:
    """Committed transactions not yet spooled, and the position to confirm once they are."""

    entries: list[Entry] = field(default_factory=list)
    end_lsn: int = 0
    transactions: int = 0


class PostgresSource:
    """One source on one slot; ``run`` sets up on first start, then streams until stopped or idle."""

    def __init__(self, config: SourceConfig, registry: Registry, store: StateStore, lake: Lake,
                 producer: RecordProducer, work_dir: Path, metrics: Metrics | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.registry = registry
        self.store = store
        self.lake = lake
        self.producer = producer
        self.work_dir = work_dir
        self.metrics = metrics
        self.clock = clock
        self.stats = SourceStats()
        self._pending = _Pending()
        self._acked = 0
        self._last_batch = time.monotonic()
        self._samples: deque[tuple[float, int]] = deque(maxlen=10_000)
        self._reported = (0, 0)

    # -- entry -------------------------------------------------------------------------------------

    def run(self, until_idle: bool = False, stop: threading.Event | None = None) -> SourceStats:
        stop = stop or threading.Event()
        try:
            record = self._start(stop)
            if not stop.is_set():
                self._stream(record, until_idle, stop)
        except SnapshotStopped:
            log.warning("slot %s: stopped while landing the snapshot; the next start redoes it", self.config.slot)
            self.stats.snapshot_stopped = True
        except psycopg2.Error as exc:
            raise SourceError(f"postgres (slot {self.config.slot!r}): {one_line(exc)}") from None
        return self.stats

    def _start(self, stop: threading.Event) -> SourceRecord:
        found = records.load(self.store, self.config.slot)
        if found is not None:
            plain = connect(self.config.dsn)
            try:
                with plain.cursor() as cur:
                    here = identity(cur)
            finally:
                plain.close()
            if here != (found.system_id, found.database):
                raise SourceError(f"slot {self.config.slot!r} belongs to database {found.database!r} of another "
                                  "server (system identifier differs); use another --slot for this database")
        if found is not None and found.phase == "streaming":
            if found.tables != list(self.config.tables):
                listed = ", ".join(f"{t.qualified}={t.table}" for t in found.tables)
                raise SourceError(f"slot {self.config.slot!r} captures {listed}; to change the table list, retire "
                                  "it (--retire) and start again (a new snapshot)")
            return found
        if found is not None:
            log.warning("slot %s: redoing the first start, interrupted in phase %s", found.slot, found.phase)
        context = SetupContext(self.config.dsn, self.config.slot, list(self.config.tables), self.registry,
                               self.store, self.lake, stop)
        record, self.stats.landed = set_up(context, found)
        return record

    # -- streaming -------------------------------------------------------------------------------

    def _stream(self, record: SourceRecord, until_idle: bool, stop: threading.Event) -> None:
        plain = connect(self.config.dsn)
        replication = connect_replication(self.config.dsn)
        buffer = TxnBuffer(self.work_dir, self.config.max_txn_keys)
        try:
            with plain.cursor() as pcur, replication.cursor() as cur:
                resolver = Resolver(record.tables, self.registry, pcur)
                collector = ChangeCollector(resolver, buffer)
                cur.start_replication(slot_name=record.slot, decode=False, status_interval=self.config.status_interval,
                                      options={"proto_version": "1", "publication_names": record.publication})
                confirmed = scalar(pcur, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
                                   "WHERE slot_name = %s", (record.slot,))
                self.stats.resumed_from = str(confirmed)
                self._acked = parse_lsn(str(confirmed))
                target = parse_lsn(scalar(pcur, "SELECT pg_current_wal_lsn()::text")) if until_idle else None
                self._loop(record, cur, pcur, collector, target, stop)
                self._confirm_at_exit(cur, collector)
                self._report(record, pcur, cur, collector)
        finally:
            buffer.clear()
            replication.close()
            plain.close()

    def _loop(self, record: SourceRecord, cur: Any, pcur: Any, collector: ChangeCollector, target: int | None,
              stop: threading.Event) -> None:
        next_report = time.monotonic() + self.config.progress_seconds
        next_poke = 0.0
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_report:  # also under a steady stream, which never leaves the stream idle
                self._report(record, pcur, cur, collector)
                next_report = now + self.config.progress_seconds
            message = cur.read_message()
            if message is not None:
                txn = collector.feed(pgoutput.decode(message.payload))
                if txn is not None:
                    self._committed(txn, collector)
                if (len(self._pending.entries) >= self.config.batch_events
                        or now - self._last_batch >= self.config.batch_seconds):
                    self._flush(cur)
                continue
            self._flush(cur)
            if target is not None and not collector.in_transaction:
                if cur.wal_end >= target:
                    return
                if now >= next_poke:  # ask for a keepalive: it carries how far the server has decoded
                    cur.send_feedback(reply=True)
                    next_poke = now + self.config.idle_poll_seconds
            select.select([cur], [], [], min(self.config.idle_poll_seconds, self.config.status_interval))

    def _confirm_at_exit(self, cur: Any, collector: ChangeCollector) -> None:
        """Spool and confirm what is committed; forget an open transaction (the slot sends it again)."""
        self._flush(cur)
        if not collector.in_transaction:  # all received is spooled: confirm as far as the server decoded
            self._acked = max(self._acked, cur.wal_end)
        cur.send_feedback(flush_lsn=self._acked, force=True)
        collector.abandon()

    def _committed(self, txn: CommittedTxn, collector: ChangeCollector) -> None:
        """Move a committed transaction's events to the pending batch (landing any truncate as an extract)."""
        truncated: dict[str, list[bytes]] = {table: [] for table in txn.truncated}
        self.stats.spilled += collector.buffer.spilled
        for table, entry in collector.buffer.entries():
            if table in truncated:
                truncated[table].append(entry[1])
                continue
            self._pending.entries.append(entry)
            if len(self._pending.entries) >= self.config.batch_events:
                self._spool()  # a big transaction: spool it in parts, confirm it only whole
        collector.buffer.clear()
        for table, data in truncated.items():
            land_truncated(self.lake, self.registry, txn.truncated[table].version.table, data, txn.seq)
            self.stats.truncates += 1
        self._pending.end_lsn = txn.end_lsn
        self._pending.transactions += 1

    def _spool(self) -> None:
        if self._pending.entries:
            self.producer.put(self._pending.entries)
            self.stats.events += len(self._pending.entries)
            self._pending.entries = []

    def _flush(self, cur: Any) -> None:
        """Spool what is pending, then confirm its position to the server (sent at the status interval)."""
        self._spool()
        self._last_batch = time.monotonic()
        if self._pending.end_lsn > self._acked:
            self._acked = self._pending.end_lsn
            cur.send_feedback(flush_lsn=self._acked)
        self.stats.transactions += self._pending.transactions
        self._pending.transactions = 0

    # -- progress --------------------------------------------------------------------------------

    def _lag_seconds(self, server: int, reached: int) -> float:
        """How old the newest server position sampled that the source has reached is (0 when caught up).

        Each report samples the server's WAL position; a sample counts as reached once everything
        up to it is spooled. The resolution is the report interval.
        """
        now = self.clock()
        self._samples.append((now, server))
        if reached >= server:
            self._samples.clear()
            self._samples.append((now, server))
            return 0.0
        while len(self._samples) > 1 and self._samples[1][1] <= reached:
            self._samples.popleft()
        return round(now - self._samples[0][0], 3)

    def _report(self, record: SourceRecord, pcur: Any, cur: Any, collector: ChangeCollector) -> None:
        """Record position and lag (state store, ``status``) and emit metrics."""
        pcur.execute(SLOT_POSITION, (record.slot,))
        confirmed_text, server_text = pcur.fetchone()
        # the slot's position, or what this source sent it a moment ago if the server has not applied it yet
        confirmed, server = max(parse_lsn(confirmed_text), self._acked), parse_lsn(server_text)
        reached = max(self._acked, 0 if collector.in_transaction or self._pending.entries else cur.wal_end)
        lag_seconds = self._lag_seconds(server, reached)
        self.stats.confirmed_lsn = confirmed
        progress = records.Progress(format_lsn(confirmed), format_lsn(server), max(0, server - confirmed),
                                    lag_seconds, self.stats.transactions, self.stats.events)
        record.progress = progress
        try:
            records.save(self.store, record)
        except HybridIngestError as exc:
            raise SourceError(f"slot {record.slot!r}: {exc} (is another source running on it?)") from exc
        if self.metrics is not None:
            done_txns, done_events = self._reported
            self.metrics.emit(
                {"Transactions": self.stats.transactions - done_txns, "Changes": self.stats.events - done_events,
                 "LagBytes": progress.lag_bytes, "LagSeconds": lag_seconds},
                {"Source": "postgres", "Slot": record.slot},
                {"Transactions": "Count", "Changes": "Count", "LagBytes": "Bytes", "LagSeconds": "Seconds"})
            self._reported = (self.stats.transactions, self.stats.events)
