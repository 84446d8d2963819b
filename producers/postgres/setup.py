"""First start of a source (publication, slot, registration, snapshot) and its retirement.

First start, each step recorded before it is taken (``producers.postgres.record``):

1. read every listed table from the catalog and refuse what cannot be captured,
   before anything is created;
2. create the publication (named like the slot) for exactly those tables, with
   ``publish_via_partition_root`` so a partitioned table's changes come under
   its own name;
3. create the slot with ``CREATE_REPLICATION_SLOT ... LOGICAL pgoutput
   EXPORT_SNAPSHOT`` on a replication connection: its consistent point ``C`` and
   a snapshot that sees exactly the transactions committed before ``C``;
4. in one ``REPEATABLE READ`` transaction on that snapshot: read each table's
   catalog again (the schema as of the snapshot), register its spec, and land
   its rows as a ``full`` extract at ``as_of_seq = C - 1`` (``lsn.snapshot_seq``)
   through ``producers.bulk``, the path of ``bulk push``;
5. record ``streaming``: from now on the slot is the source of truth.

The replication connection that created the slot stays open and idle until the
snapshot is read: the exported snapshot lives only that long.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from hybrid_ingest.errors import SourceError, SpecError, UnknownTableError
from hybrid_ingest.lake import Lake
from hybrid_ingest.registry import Registry
from hybrid_ingest.sqltext import ident
from hybrid_ingest.state import StateStore
from producers.bulk import land_batches
from producers.postgres import record as records
from producers.postgres.catalog import TableRef, read_table, table_spec
from producers.postgres.connect import connect, connect_replication, scalar
from producers.postgres.lsn import parse_lsn, snapshot_seq
from producers.postgres.record import SourceRecord
from producers.postgres.snapshot import read_batches

log = logging.getLogger(__name__)

SLOT_EXISTS = "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s AND database = current_database()"
ANY_SLOT = "SELECT database FROM pg_replication_slots WHERE slot_name = %s"
PUBLICATION_EXISTS = "SELECT 1 FROM pg_publication WHERE pubname = %s"


@dataclass
class SetupContext:
    dsn: str
    slot: str
    tables: list[TableRef]
    registry: Registry
    store: StateStore
    lake: Lake
    stop: threading.Event = field(default_factory=threading.Event)


class SnapshotStopped(Exception):
    """A stop was asked for while the snapshot was being landed: the next start redoes it."""


@dataclass(frozen=True)
class LandedTable:
    table: str
    rows: int
    extract_id: str


def identity(cur: Any) -> tuple[str, str]:
    """(system identifier, database): which database a record belongs to."""
    cur.execute("SELECT system_identifier::text, current_database() FROM pg_control_system()")
    system_id, database = cur.fetchone()
    return str(system_id), str(database)


def _relation_list(tables: list[TableRef]) -> str:
    return ", ".join(f"{ident(t.schema, 'postgres')}.{ident(t.name, 'postgres')}" for t in tables)


def drop_slot(cur: Any, slot: str) -> None:
    active = scalar(cur, SLOT_EXISTS, (slot,))
    if active is not None:
        raise SourceError(f"replication slot {slot!r} is in use by server process {active}: stop the source "
                          "using it first")
    cur.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE slot_name = %s AND database = current_database()", (slot,))


def _claim(cur: Any, ctx: SetupContext, found: SourceRecord | None) -> SourceRecord:
    """The record of this setup attempt, written before anything is created; refuses what is not ours."""
    system_id, database = identity(cur)
    if found is None:
        if scalar(cur, ANY_SLOT, (ctx.slot,)) is not None:
            raise SourceError(f"replication slot {ctx.slot!r} exists but no source recorded creating it: choose "
                              f"another --slot, or drop it (SELECT pg_drop_replication_slot('{ctx.slot}'))")
        if scalar(cur, PUBLICATION_EXISTS, (ctx.slot,)) is not None:
            raise SourceError(f"publication {ctx.slot!r} exists but no source recorded creating it: choose "
                              f"another --slot, or drop it (DROP PUBLICATION {ident(ctx.slot, 'postgres')})")
        claimed = SourceRecord(ctx.slot, ctx.slot, system_id, database, list(ctx.tables))
    else:
        claimed = found
        claimed.tables, claimed.phase, claimed.consistent_lsn, claimed.extracts = list(ctx.tables), "setup", "", {}
    records.save(ctx.store, claimed)
    return claimed


def set_up(ctx: SetupContext, found: SourceRecord | None) -> tuple[SourceRecord, list[LandedTable]]:
    """Run (or redo) the first start; returns the record in phase ``streaming`` and what was landed."""
    plain = connect(ctx.dsn)
    try:
        with plain.cursor() as cur:
            for ref in ctx.tables:
                read_table(cur, ref)
            record = _claim(cur, ctx, found)
            drop_slot(cur, ctx.slot)
            relations = _relation_list(ctx.tables)
            publication = ident(record.publication, "postgres")
            if scalar(cur, PUBLICATION_EXISTS, (record.publication,)) is None:
                cur.execute(f"CREATE PUBLICATION {publication} FOR TABLE {relations} "
                            "WITH (publish_via_partition_root = true)")
            else:
                cur.execute(f"ALTER PUBLICATION {publication} SET TABLE {relations}")
    finally:
        plain.close()
    replication = connect_replication(ctx.dsn)
    try:
        with replication.cursor() as cur:
            cur.execute(f"CREATE_REPLICATION_SLOT {ident(ctx.slot, 'postgres')} LOGICAL pgoutput EXPORT_SNAPSHOT")
            created = cur.fetchone()
            if created is None:
                raise SourceError(f"CREATE_REPLICATION_SLOT {ctx.slot!r} returned nothing")
            _, consistent_point, snapshot_name, _ = created
        record.phase, record.consistent_lsn = "snapshot", str(consistent_point)
        records.save(ctx.store, record)
        landed = _land_snapshot(ctx, str(snapshot_name), snapshot_seq(parse_lsn(record.consistent_lsn)))
    finally:
        replication.close()
    record.phase, record.as_of_seq = "streaming", snapshot_seq(record.consistent_point)
    record.extracts = {t.table: t.extract_id for t in landed}
    records.save(ctx.store, record)
    return record, landed


def _land_snapshot(ctx: SetupContext, snapshot_name: str, as_of_seq: int) -> list[LandedTable]:
    snapshot = connect(ctx.dsn, autocommit=False)
    landed = []
    try:
        snapshot.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with snapshot.cursor() as cur:
            cur.execute("SET TRANSACTION SNAPSHOT %s", (snapshot_name,))
            sources = [read_table(cur, ref) for ref in ctx.tables]
        for source in sources:
            try:
                existing = ctx.registry.latest(source.ref.table).spec
            except UnknownTableError:
                existing = None
            try:
                spec = table_spec(source, existing)
            except SpecError as exc:
                raise SourceError(f"lake table {source.ref.table!r} is already registered with a spec that does not "
                                  f"fit {source.ref.qualified} ({exc}); map it to another name: --table "
                                  f"{source.ref.qualified}=<name>") from None
            version = ctx.registry.register(spec).version
            manifest = land_batches(ctx.lake, version, _unless_stopped(ctx.stop, read_batches(snapshot, source, version)),
                                    as_of_seq, "full")
            log.info("landed %s rows of %s as %s", manifest.rows, source.ref.qualified, manifest.extract_id)
            landed.append(LandedTable(source.ref.table, manifest.rows, manifest.extract_id))
        snapshot.rollback()
    finally:
        snapshot.close()
    return landed


def _unless_stopped(stop: threading.Event, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The batches, until a stop is asked for (the extract's parts written so far are then removed)."""
    for batch in batches:
        if stop.is_set():
            raise SnapshotStopped
        yield batch


def retire(dsn: str, slot: str, store: StateStore) -> SourceRecord:
    """Drop the slot (which otherwise keeps WAL forever) and the publication, then forget the source."""
    found = records.load(store, slot)
    if found is None:
        raise SourceError(f"no source is recorded for slot {slot!r}: nothing retired")
    plain = connect(dsn)
    try:
        with plain.cursor() as cur:
            if identity(cur) != (found.system_id, found.database):
                raise SourceError(f"slot {slot!r} was set up in database {found.database!r} of another server "
                                  "(system identifier differs); connect to that one to retire it")
            drop_slot(cur, slot)
            cur.execute(f"DROP PUBLICATION IF EXISTS {ident(found.publication, 'postgres')}")
    finally:
        plain.close()
    store.delete_source(found.name)
    return found
