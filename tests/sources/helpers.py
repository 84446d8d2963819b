"""Running the PostgreSQL source in process, the rest of the path after it, and the comparison with the database."""

from __future__ import annotations

import datetime as dt
import decimal
import os
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2

from glue_jobs.merge import MergeContext, run_merge
from hybrid_ingest.aws import Clients
from hybrid_ingest.lake import Lake
from hybrid_ingest.query.local import LocalQuery
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore
from producers.postgres.catalog import TableRef, parse_table_ref
from producers.postgres.source import PostgresSource, SourceConfig, SourceStats
from producers.producer import ProducerConfig, RecordProducer
from streaming_consumer.runtime import ConsumerConfig, FlushPolicy, Worker

FAST = ProducerConfig(flush_count=2_000, linger=0.05)


def execute(dsn: str, *statements: str, params: Sequence[Any] = ()) -> None:
    """Run statements in one autocommit session (``BEGIN``/``COMMIT`` may be among them)."""
    con = psycopg2.connect(dsn)
    con.autocommit = True
    with con.cursor() as cur:
        for sql in statements:
            cur.execute(sql, params or None)
    con.close()


def fetch(dsn: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    con = psycopg2.connect(dsn)
    try:
        with con.cursor() as cur:
            cur.execute(sql, params or None)
            return list(cur.fetchall())
    finally:
        con.close()


@dataclass
class Env:
    """The local stack of a test and where the source keeps its spool and work files."""

    clients: Clients
    lake: Lake
    registry: Registry
    store: StateStore
    tmp: Path

    def source(self, dsn: str, slot: str, tables: Sequence[str], **config: Any) -> PostgresSource:
        refs = tuple(parse_table_ref(t) for t in tables)
        producer = RecordProducer.open(self.clients.kinesis, self.clients.settings.names.stream,
                                       self.tmp / f"spool-{slot}", FAST)
        return PostgresSource(SourceConfig(dsn, slot, refs, **config), self.registry, self.store, self.lake,
                              producer, self.tmp / f"work-{slot}")

    def capture(self, dsn: str, slot: str, tables: Sequence[str], stop: threading.Event | None = None,
                **config: Any) -> SourceStats:
        """One source run until idle (or ``stop``), its events delivered to the stream."""
        source = self.source(dsn, slot, tables, **config)
        try:
            return source.run(until_idle=stop is None, stop=stop)
        finally:
            assert source.producer.close(60), "the stream did not take the source's events"

    def consume(self) -> None:
        config = ConsumerConfig(stream=self.clients.settings.names.stream, flush=FlushPolicy(),
                                lease_seconds=10, idle_sleep_seconds=0, rebalance_seconds=0)
        Worker(self.clients.kinesis, self.store, self.lake, self.registry.by_fingerprint, config).run(until_idle=True)

    def merge(self, *tables: str) -> None:
        ctx = MergeContext(clients=self.clients, lake=self.lake, registry=self.registry, store=self.store)
        for table in tables:
            run_merge(ctx, table, engine="duckdb")

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        result = LocalQuery(self.clients, self.lake, self.registry, self.store).run(sql)
        return result.columns, result.rows


def _real(value: float) -> float:
    """A ``real`` as the 4-byte float the lake stores."""
    return float(struct.unpack("f", struct.pack("f", value))[0])


def same_value(source: Any, lake: Any, pg_type: str) -> bool:
    """The database's value and the curated one, compared under the documented mapping, types included."""
    if source is None or lake is None:
        return source is None and lake is None
    if pg_type == "real":
        return isinstance(lake, float) and _real(source) == lake
    if isinstance(source, decimal.Decimal):
        return (isinstance(lake, decimal.Decimal) and lake == source
                and lake.as_tuple().exponent == source.as_tuple().exponent)
    if isinstance(source, dt.datetime):
        as_utc = source if source.tzinfo else source.replace(tzinfo=dt.UTC)
        return isinstance(lake, dt.datetime) and lake.tzinfo is not None and lake == as_utc
    if isinstance(source, memoryview):
        return isinstance(lake, bytes) and lake == source.tobytes()
    return type(lake) is type(source) and lake == source


def assert_tables_equal(dsn: str, ref_text: str, env: Env) -> int:
    """Every row and column of the source table equals the curated table's; returns the row count."""
    ref: TableRef = parse_table_ref(ref_text)
    columns = fetch(dsn, "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                         "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                         "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
                         "ORDER BY a.attnum", (ref.schema, ref.name))
    key = [r[0] for r in fetch(dsn, "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                                    "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
                                    (f'"{ref.schema}"."{ref.name}"',))]
    select = ", ".join(f'"{n}"::text' if t in ("json", "jsonb") else f'"{n}"' for n, t in columns)
    source = fetch(dsn, f'SELECT {select} FROM "{ref.schema}"."{ref.name}"')
    names, lake = env.query(f'SELECT {", ".join(chr(34) + n + chr(34) for n, _ in columns)} FROM {ref.table}')
    assert names == [n for n, _ in columns]
    positions = [names.index(k) for k in key]

    def by_key(rows: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
        return {tuple(r[p] for p in positions): r for r in rows}

    want, got = by_key(source), by_key(lake)
    assert len(want) == len(source), "duplicate keys in the database"
    assert len(got) == len(lake), f"{ref.table}: duplicate keys in the curated table"
    missing, extra = sorted(set(want) - set(got), key=repr), sorted(set(got) - set(want), key=repr)
    assert not missing, f"{ref.table}: keys missing {missing[:5]}"
    assert not extra, f"{ref.table}: unexpected keys {extra[:5]}"
    for k, row in want.items():
        for (name, pg_type), a, b in zip(columns, row, got[k], strict=True):
            assert same_value(a, b, pg_type), f"{ref.table} key {k} column {name} ({pg_type}): db {a!r}, lake {b!r}"
    return len(want)


CLI = str(Path(sys.executable).with_name("hybrid-ingest"))


def wait_for(what: str, check: Callable[[], Any], process: subprocess.Popen[str], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the source exited ({process.returncode}) while waiting for {what}: "
                                 f"{process.communicate()}")
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def cli_env(clients: Clients) -> dict[str, str]:
    settings = clients.settings
    return os.environ | {"HYBRID_INGEST_HOME": str(settings.home), "HYBRID_INGEST_LAKE_URI": settings.lake_uri,
                         "AWS_ENDPOINT_URL": settings.endpoint_url or ""}


def start_source(env: Env, dsn: str, slot: str, tables: Sequence[str], *extra: str) -> subprocess.Popen[str]:
    """The installed console script, as a user runs it."""
    args = [CLI, "source", "postgres", "--dsn", dsn, "--slot", slot, *(a for t in tables for a in ("--table", t)),
            *extra]
    return subprocess.Popen(args, env=cli_env(env.clients), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
