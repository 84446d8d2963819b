"""The PostgreSQL source: events/s from the slot to the spool beside the bare producer, and commit -> live view.

    .venv/bin/python bench/bench_postgres.py [--events 100000] [--lag-samples 10] [--json OUT]

A throwaway PostgreSQL 15 (initdb in a temporary folder, loopback, the test
fixtures' server) and the local stack (moto's server on loopback) in this process.

* Throughput: ``--events`` inserts of an ``orders``-like table, committed in
  transactions of ``--txn-rows`` rows, wait in the slot; then the source runs
  ``--until-idle`` from the slot into the spool (decode, collapse, encode, spool
  append with fsync, confirmation) with the producer's sender off, so the
  figure is the source's, not moto's. The bare producer takes the very same
  events (built from the same rows) through ``ChangeEventProducer.send_many``
  into a spool in batches of the same size, sender off too. Both wall and
  CPU time of this process are given (the walsender decoding on the server side
  runs in its own process, on the other core). Target: source >= 0.5 x bare.
* Lag: with the source streaming, the producer's sender on, and the shard
  consumer running (flush time 1 s) in background threads, one row at a time is
  committed in PostgreSQL and ``<table>_live`` queried every 0.1 s until it is
  there. Target: p50 <= 5 s.

Prints figures; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extras

from glue_jobs.merge import MergeContext, run_merge
from hybrid_ingest.bootstrap import init
from hybrid_ingest.cli.context import AppContext
from hybrid_ingest.config import Settings
from hybrid_ingest.local.stack import start_server
from hybrid_ingest.query.local import LocalQuery
from producers.postgres.catalog import TableRef
from producers.postgres.source import PostgresSource, SourceConfig
from producers.producer import ChangeEventProducer, ProducerConfig, RecordProducer
from streaming_consumer.runtime import ConsumerConfig, FlushPolicy, Worker

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.sources.pgserver import PostgresServer  # noqa: E402  (the tests' throwaway server, not a package)

TABLE = "pg_orders"
DDL = f"""CREATE TABLE {TABLE} (
    order_id bigint PRIMARY KEY, customer_id bigint NOT NULL, order_date date NOT NULL, status text NOT NULL,
    total_amount numeric(12,2) NOT NULL, currency text NOT NULL, item_count integer NOT NULL, weight_kg real,
    discount_rate double precision NOT NULL, placed_at timestamptz NOT NULL, external_ref uuid NOT NULL,
    notes text)"""
BASE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def rows(start: int, n: int) -> list[tuple[Any, ...]]:
    return [(i, i % 977, dt.date(2026, 1 + i % 12, 1), ("open", "paid", "shipped")[i % 3],
             decimal.Decimal(f"{i % 10_000}.25"), "EUR", i % 9, None if i % 4 else 1.5, 0.05,
             BASE + dt.timedelta(seconds=i), str(uuid.UUID(int=i)), None if i % 3 else f"note {i}")
            for i in range(start, start + n)]


COLUMNS = ("order_id", "customer_id", "order_date", "status", "total_amount", "currency", "item_count", "weight_kg",
           "discount_rate", "placed_at", "external_ref", "notes")


def cpu() -> float:
    return time.process_time()


class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.pg = PostgresServer(root)
        self.pg.start()
        self.dsn = self.pg.create_database("bench")
        self.server, endpoint = start_server()
        self.settings = Settings(home=root / "home", lake_uri=(root / "lake").as_uri(), endpoint_url=endpoint)
        app = AppContext(self.settings)
        self.clients, self.lake = app.clients, app.lake
        init(self.clients, self.lake, [REPO / "schemas"])
        self.registry, self.store = app.registry, app.store

    def execute(self, sql: str, values: list[tuple[Any, ...]] | None = None) -> None:
        con = psycopg2.connect(self.dsn)
        with con, con.cursor() as cur:
            if values is None:
                cur.execute(sql)
            else:
                psycopg2.extras.execute_values(cur, sql, values, page_size=len(values))
        con.close()

    def records(self, name: str, background: bool) -> RecordProducer:
        return RecordProducer.open(self.clients.kinesis, self.settings.names.stream, self.root / name,
                                   ProducerConfig(linger=0.05), background=background)

    def source(self, slot: str, producer: RecordProducer, batch_events: int) -> PostgresSource:
        config = SourceConfig(self.dsn, slot, (TableRef("public", TABLE, TABLE),), batch_events=batch_events)
        return PostgresSource(config, self.registry, self.store, self.lake, producer, self.root / f"work-{slot}")

    def close(self) -> None:
        self.server.stop()
        self.pg.stop()


def throughput(bench: Bench, events: int, txn_rows: int, batch_events: int) -> dict[str, Any]:
    bench.execute(DDL)
    setup = bench.records("spool-setup", background=False)
    bench.source("bench_tp", setup, batch_events).run(until_idle=True)  # first start: slot and empty snapshot
    setup.close(timeout=0)
    for start in range(0, events, txn_rows):
        bench.execute(f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES %s",
                      rows(start, min(txn_rows, events - start)))
    records = bench.records("spool-source", background=False)
    source = bench.source("bench_tp", records, batch_events)
    wall, used = time.perf_counter(), cpu()
    stats = source.run(until_idle=True)
    source_wall, source_cpu = time.perf_counter() - wall, cpu() - used
    assert stats.events == events, f"the source captured {stats.events} of {events} events"
    records.close(timeout=0)

    version = bench.registry.latest(TABLE)
    changes = [{"op": "c", "seq": i + 1, "ts": BASE, "row": dict(zip(COLUMNS, r, strict=True))}
               for i, r in enumerate(rows(0, events))]
    bare = ChangeEventProducer(bench.records("spool-bare", background=False), lambda _t: version)
    wall, used = time.perf_counter(), cpu()
    for start in range(0, events, batch_events):
        bare.send_many(TABLE, changes[start:start + batch_events])
    bare_wall, bare_cpu = time.perf_counter() - wall, cpu() - used
    bare.records.close(timeout=0)
    figures = {
        "events": events, "txn_rows": txn_rows, "batch_events": batch_events,
        "source_per_s": events / source_wall, "source_per_cpu_s": events / source_cpu,
        "bare_per_s": events / bare_wall, "bare_per_cpu_s": events / bare_cpu,
    }
    figures["ratio"] = figures["source_per_s"] / figures["bare_per_s"]
    figures["ratio_cpu"] = figures["source_per_cpu_s"] / figures["bare_per_cpu_s"]
    print(f"source postgres -> spool: {figures['source_per_s']:,.0f} events/s wall, "
          f"{figures['source_per_cpu_s']:,.0f} per CPU-s ({events:,} inserts, {txn_rows} per transaction)")
    print(f"bare producer send_many -> spool: {figures['bare_per_s']:,.0f} events/s wall, "
          f"{figures['bare_per_cpu_s']:,.0f} per CPU-s")
    print(f"ratio source / bare producer: {figures['ratio']:.2f} wall, {figures['ratio_cpu']:.2f} CPU "
          "(target >= 0.5)")
    return figures


def lag(bench: Bench, samples: int, poll: float, gap: float) -> dict[str, Any]:
    slot, stop, failures = "bench_lag", threading.Event(), []
    bench.execute(f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES %s", rows(10_000_000, 100))
    records = bench.records("spool-lag", background=True)
    source = bench.source(slot, records, 5_000)
    consumer = Worker(bench.clients.kinesis, bench.store, bench.lake, bench.registry.by_fingerprint,
                      ConsumerConfig(stream=bench.settings.names.stream, flush=FlushPolicy(max_seconds=1.0),
                                     idle_sleep_seconds=0.2))

    def background(target: Any, **kwargs: Any) -> threading.Thread:
        def run() -> None:
            try:
                target(stop=stop, **kwargs)
            except BaseException as exc:
                failures.append(exc)
                raise
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    threads = [background(source.run), background(consumer.run)]
    try:
        deadline = time.monotonic() + 120
        while not list(bench.lake.files(f"raw/{TABLE}", ".parquet")) and not failures:
            if time.monotonic() > deadline:
                raise RuntimeError("no raw file before the warm-up merge")
            time.sleep(poll)
        run_merge(MergeContext(bench.clients, bench.lake, bench.registry, bench.store), TABLE, engine="duckdb")
        seen: list[float] = []
        for i in range(samples):
            key = 20_000_000 + i
            bench.execute(f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES %s", rows(key, 1))
            committed = time.perf_counter()
            while True:
                if failures:
                    raise RuntimeError(f"a background thread stopped: {failures[0]!r}")
                query = LocalQuery(bench.clients, bench.lake, bench.registry, bench.store)
                found = query.run(f"SELECT count(*) FROM {TABLE}_live WHERE order_id = {key}").rows[0][0]
                if found:
                    break
                if time.perf_counter() - committed > 60:
                    raise RuntimeError(f"row {key} not in {TABLE}_live after 60 s")
                time.sleep(poll)
            seen.append(time.perf_counter() - committed)
            print(f"  row {i + 1:>3}: commit -> {TABLE}_live {seen[-1]:5.2f} s", flush=True)
            time.sleep(gap)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        records.close(timeout=30)
    figures = {"samples": samples, "lag_p50_s": statistics.median(seen), "lag_max_s": max(seen),
               "lag_min_s": min(seen), "consumer_flush_s": 1.0}
    print(f"commit in PostgreSQL -> visible in {TABLE}_live: p50 {figures['lag_p50_s']:.2f} s, max "
          f"{figures['lag_max_s']:.2f} s over {samples} rows (target p50 <= 5 s; consumer flush 1 s)")
    return figures


def run(events: int, txn_rows: int, batch_events: int, samples: int, workdir: Path | None) -> dict[str, Any]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="bench-postgres-", dir=workdir) as tmp:
        os.chmod(tmp, 0o755)  # the server's own user (when run as root) reaches its folder below
        bench = Bench(Path(tmp))
        try:
            figures = throughput(bench, events, txn_rows, batch_events)
            figures.update(lag(bench, samples, poll=0.1, gap=0.5))
            figures["load_average"] = os.getloadavg()
            return figures
        finally:
            bench.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--txn-rows", type=int, default=100, help="inserts per PostgreSQL transaction")
    parser.add_argument("--batch-events", type=int, default=5_000, help="events per spool append (both sides)")
    parser.add_argument("--lag-samples", type=int, default=10)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here as JSON")
    args = parser.parse_args()
    figures = run(args.events, args.txn_rows, args.batch_events, args.lag_samples, args.workdir)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
