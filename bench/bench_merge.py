"""Merge benchmark: our DuckDB and Spark engines beside delta-rs MERGE and a plain rewrite, same data, one run.

Data: an ``orders`` table (the demo schema) partitioned by month over 24 months,
and changes of 70% updates, 20% inserts, 10% deletes, one per key. Figures:

* DuckDB engine: the full ``run_merge`` (listing, manifests, catalog switch,
  watermark commit, run history: our extra work included) of the changes into the
  big table and into a table of ``--small-rows`` rows (cost follows the changes),
  against delta-rs MERGE of the same changes into the same table;
* changes touching 1 of 24 partitions against the full merge (the ratio);
* with ``--spark``: our Spark engine against a plain PySpark rewrite (read,
  anti-join, union, partitioned write) of the same data.

Run: ``python bench/bench_merge.py [--rows 10000000 --changes 1000000 --spark]``.
It prints figures; it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from glue_jobs import catalog
from glue_jobs.merge import MergeContext, run_merge
from hybrid_ingest import layout
from hybrid_ingest.aws import Clients
from hybrid_ingest.bootstrap import init
from hybrid_ingest.config import Names, Settings
from hybrid_ingest.lake import Lake
from hybrid_ingest.local.stack import start_server
from hybrid_ingest.manifest import Manifest, PartEntry, write_manifest
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore

REPO = Path(__file__).resolve().parent.parent
MONTHS = 24
SHARD = "shardId-000000000000"


def rows_sql(n: int, key_offset: int = 0, month_expr: str = "(i % 24)", seq_expr: str = "1") -> str:
    """Rows of the orders schema; ``i`` is the row number, keys are ``key_offset + i``."""
    return f"""
        SELECT CAST({key_offset} + i AS BIGINT) AS order_id, CAST(i % 50000 AS BIGINT) AS customer_id,
               CAST(DATE '2024-01-01' + INTERVAL ({month_expr}) MONTH + INTERVAL (i % 28) DAY AS DATE) AS order_date,
               CASE i % 3 WHEN 0 THEN 'new' WHEN 1 THEN 'paid' ELSE 'shipped' END AS status,
               CAST((i % 100000) / 100.0 AS DECIMAL(12,2)) AS total_amount, 'EUR' AS currency,
               CAST(1 + i % 9 AS INTEGER) AS item_count, CAST(i % 40 / 4.0 AS FLOAT) AS weight_kg,
               (i % 10) / 100.0 AS discount_rate,
               TIMESTAMPTZ '2024-01-01 00:00:00+00' + INTERVAL (i % 1000000) SECOND AS placed_at,
               'ref-' || CAST(i AS VARCHAR) AS external_ref,
               CASE WHEN i % 5 = 0 THEN NULL ELSE 'note' END AS notes,
               CAST({seq_expr} AS BIGINT) AS _seq, i AS _i
        FROM range({n}) t(i)"""


def changes_sql(n: int, key_space: int, base_seq: int, one_month: bool) -> str:
    """1 change per key: 70% updates and 10% deletes of existing keys, 20% inserts of new keys."""
    month = "0" if one_month else "(i * 7 % 24)"  # keys i * 24 live in month 0: they stay there
    upd, dele = int(n * 0.7), int(n * 0.1)
    stride = max(1, key_space // (upd + dele)) if not one_month else 24
    return f"""
        SELECT * EXCLUDE (_seq, order_id, _i),
               CASE WHEN _i < {upd + dele} THEN CAST(_i * {stride} AS BIGINT) % {key_space}
                    ELSE CAST({key_space} * 10 + _i AS BIGINT) END AS order_id,
               CASE WHEN _i < {upd} THEN 'u' WHEN _i < {upd + dele} THEN 'd' ELSE 'c' END AS _op,
               CAST({base_seq} + _i AS BIGINT) AS _seq
        FROM ({rows_sql(n, 0, month)}) r"""


class Bench:
    def __init__(self, root: Path, endpoint: str, prefix: str, memory: str) -> None:
        self.root = root
        self.settings = Settings(home=root, lake_uri=(root / "lake").as_uri(), endpoint_url=endpoint,
                                 names=Names(prefix))
        self.clients = Clients(self.settings)
        self.lake = Lake.from_uri(self.settings.lake_uri)
        init(self.clients, self.lake, [REPO / "schemas"])
        names = self.settings.names
        self.registry = Registry(self.clients.dynamodb, names.registry_table)
        self.store = StateStore(self.clients.dynamodb, names.state_table, names.runs_table)
        self.store.put_settings({"tombstone_retention_hours": 10_000, "version_retention_hours": 10_000,
                                 "duckdb_memory_limit": memory})
        self.spec = self.registry.latest("orders").spec
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")

    def ctx(self, spark: Any = None) -> MergeContext:
        return MergeContext(self.clients, self.lake, self.registry, self.store, spark=spark)

    def load_base(self, rows: int) -> None:
        """The initial table: a full extract merged by our DuckDB engine (setup, not measured)."""
        extract_id = "1-20240101T000000Z-base"
        rel = f"{layout.landing_dir('orders', extract_id)}/part-00000.parquet"
        Path(self.lake.path(rel)).parent.mkdir(parents=True, exist_ok=True)
        self.con.execute(f"COPY (SELECT * EXCLUDE (_seq, _i) FROM ({rows_sql(rows)})) TO '{self.lake.path(rel)}' "
                         "(FORMAT parquet, COMPRESSION snappy)")
        data = Path(self.lake.path(rel)).read_bytes()
        version = self.registry.latest("orders")
        write_manifest(self.lake, Manifest("orders", extract_id, "full", 1, rows, version.version,
                                           version.fingerprint.hex(),
                                           (PartEntry("part-00000.parquet", rows, len(data),
                                                      hashlib.sha256(data).hexdigest()),),
                                           dt.datetime.now(dt.UTC).isoformat()))
        run_merge(self.ctx(), "orders", engine="duckdb", run_id="base")

    def write_changes(self, n: int, key_space: int, base_seq: int, one_month: bool, name: str) -> Path:
        """The changes as one raw file (the consumer's format); returns a plain copy for the peers."""
        src = changes_sql(n, key_space, base_seq, one_month)
        cols = ", ".join(self.spec.field_names)
        raw_rel = f"{layout.raw_table_dir('orders')}/ingest_date=2026-01-01/ingest_hour=00/{SHARD}-{name}.parquet"
        Path(self.lake.path(raw_rel)).parent.mkdir(parents=True, exist_ok=True)
        self.con.execute(f"""COPY (SELECT _op, _seq, TIMESTAMPTZ '2026-01-01 00:00:00+00' AS _op_ts,
                '{SHARD}' AS _shard, CAST(_seq AS VARCHAR) AS _kseq, CAST(0 AS BIGINT) AS _ksub,
                lpad(CAST(_seq AS VARCHAR), 64, '0') || ':0000000000' AS _kpos,
                TIMESTAMPTZ '2026-01-01 00:00:00+00' AS _arrival, CAST(1 AS INTEGER) AS _schema_version, {cols}
            FROM ({src})) TO '{self.lake.path(raw_rel)}' (FORMAT parquet)""")
        plain = self.root / f"changes-{name}.parquet"
        self.con.execute(f"COPY ({src}) TO '{plain}' (FORMAT parquet)")
        self.raw_rel = raw_rel
        return plain

    def snapshot(self) -> dict[str, Any]:
        state = catalog.read_table(self.clients.glue, self.lake, self.clients.settings.names.curated_database, "orders")
        return {"state": state, "watermark": self.store.watermark("orders")}

    def restore(self, snap: dict[str, Any]) -> None:
        """Put the table back to the snapshot (catalog pointers, parameters, watermark)."""
        db = self.clients.settings.names.curated_database
        now = catalog.read_table(self.clients.glue, self.lake, db, "orders")
        base: catalog.CatalogTable = snap["state"]
        catalog.switch_partitions(self.clients.glue, self.lake, db, self.spec, now, base.partitions,
                                  [v for v in now.partitions if v not in base.partitions])
        catalog.update_table(self.clients.glue, self.lake, db, self.spec, layout.curated_table_dir("orders"),
                             base.parameters)
        current = self.store.watermark("orders")
        wm = snap["watermark"]
        self.store.commit_watermark(type(wm)(wm.table, dict(wm.shards), wm.extracts, 0, wm.newest_op_ts, wm.last_run),
                                    current.version)

    def merge_timed(self, engine: str, spark: Any = None) -> tuple[float, dict[str, Any]]:
        started = time.perf_counter()
        result = run_merge(self.ctx(spark), "orders", engine=engine)
        return time.perf_counter() - started, result.stats

    def curated_files(self, snap: dict[str, Any]) -> dict[str, list[str]]:
        state: catalog.CatalogTable = snap["state"]
        return {v: [i.path for i in self.lake.files(rel, ".parquet")] for v, rel in state.partitions.items()}


def delta_merge(bench: Bench, snap: dict[str, Any], changes: Path, workdir: Path) -> tuple[float, float]:
    """(setup s, MERGE s): the same table as a Delta table partitioned by month, MERGE of the same changes."""
    from deltalake import DeltaTable, write_deltalake

    t0 = time.perf_counter()
    path = workdir / "delta"
    shutil.rmtree(path, ignore_errors=True)
    for value, files in sorted(bench.curated_files(snap).items()):
        table = pq.read_table(files, partitioning=None)
        table = table.append_column("order_date_month", pa.array([value] * table.num_rows, pa.string()))
        write_deltalake(str(path), table, partition_by=["order_date_month"], mode="append")
    setup = time.perf_counter() - t0
    source = pq.read_table(changes)
    source = source.append_column("order_date_month", pc.strftime(source["order_date"], "%Y-%m"))
    stamp = pa.array([dt.datetime.now(dt.UTC)] * source.num_rows, pa.timestamp("us", tz="UTC"))
    source = source.append_column("_op_ts", stamp).append_column("_merged_at", stamp)
    started = time.perf_counter()
    (DeltaTable(str(path)).merge(source, predicate="t.order_id = s.order_id", source_alias="s", target_alias="t")
     .when_matched_delete(predicate="s._op = 'd'")
     .when_matched_update_all(predicate="s._op <> 'd'", except_cols=["_op"])
     .when_not_matched_insert_all(predicate="s._op <> 'd'", except_cols=["_op"])
     .execute())
    return setup, time.perf_counter() - started


def plain_spark_rewrite(spark: Any, bench: Bench, snap: dict[str, Any], changes: Path, out: Path) -> float:
    """The textbook PySpark rewrite: read table, drop changed keys, add upserts, write partitioned."""
    from pyspark.sql import functions as F

    started = time.perf_counter()
    frames = [spark.read.parquet(*[f"file://{p}" for p in files]).withColumn("order_date_month", F.lit(v))
              for v, files in bench.curated_files(snap).items()]
    table = frames[0]
    for frame in frames[1:]:
        table = table.unionByName(frame)
    chg = spark.read.parquet(f"file://{changes}")
    kept = table.join(chg.select("order_id"), "order_id", "left_anti")
    upserts = (chg.where("_op <> 'd'").drop("_op")
               .withColumn("_op_ts", F.current_timestamp()).withColumn("_merged_at", F.current_timestamp())
               .withColumn("order_date_month", F.date_format("order_date", "yyyy-MM")))
    result = kept.unionByName(upserts.select(*kept.columns))
    result.repartition("order_date_month").write.mode("overwrite").partitionBy("order_date_month").parquet(
        f"file://{out}")
    return time.perf_counter() - started


def measure(label: str, fn: Callable[[], tuple[float, dict[str, Any]]]) -> float:
    seconds, stats = fn()
    keys = ("rows_in", "upserts", "deletes", "partitions_rewritten", "bytes_written")
    print(f"  {label:<46} {seconds:7.2f} s   " + ", ".join(f"{k}={stats.get(k)}" for k in keys), flush=True)
    return seconds


def scenario(root: Path, endpoint: str, rows: int, changes: int, spark: Any, memory: str) -> dict[str, float]:
    bench = Bench(root, endpoint, f"bench-{rows}", memory)
    t0 = time.perf_counter()
    bench.load_base(rows)
    print(f"table of {rows:,} rows loaded in {time.perf_counter() - t0:.1f} s (setup)", flush=True)
    snap = bench.snapshot()
    figures: dict[str, float] = {}
    plain = bench.write_changes(changes, min(rows, 1_000_000), 10, one_month=False, name="all")
    figures["duckdb_full"] = measure(f"duckdb engine: {changes:,} changes", lambda: bench.merge_timed("duckdb"))
    setup, figures["delta"] = delta_merge(bench, snap, plain, root)
    print(f"  {'delta-rs MERGE (same changes)':<46} {figures['delta']:7.2f} s   (delta table setup {setup:.1f} s)")
    if spark is not None:
        bench.restore(snap)
        figures["spark_full"] = measure("spark engine: same changes", lambda: bench.merge_timed("spark", spark))
        figures["spark_plain"] = plain_spark_rewrite(spark, bench, snap, plain, root / "plain-spark")
        print(f"  {'plain PySpark rewrite (same changes)':<46} {figures['spark_plain']:7.2f} s")
    bench.restore(snap)
    Path(bench.lake.path(bench.raw_rel)).unlink()
    bench.write_changes(max(1, changes // 24), min(rows, 1_000_000), 10, one_month=True, name="one")
    figures["duckdb_one"] = measure(f"duckdb engine: {max(1, changes // 24):,} changes in 1 of 24 months",
                                    lambda: bench.merge_timed("duckdb"))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--small-rows", type=int, default=1_000_000)
    parser.add_argument("--changes", type=int, default=1_000_000)
    parser.add_argument("--spark", action="store_true", help="also measure the Spark engine and plain PySpark")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--duckdb-memory", default="8GB", help="duckdb_memory_limit job setting for the runs")
    args = parser.parse_args()
    if 0.8 * args.changes > min(args.small_rows, 1_000_000):
        parser.error("updates and deletes need distinct existing keys: --changes must be <= 1.25 x --small-rows")
    server, endpoint = start_server()
    spark = None
    if args.spark:
        from pyspark.sql import SparkSession

        spark = (SparkSession.builder.master("local[2]").config("spark.sql.shuffle.partitions", "8")
                 .config("spark.driver.memory", "6g").config("spark.ui.enabled", "false")
                 .config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
                 .getOrCreate())
    results: dict[str, dict[str, float]] = {}
    try:
        for rows in (args.rows, args.small_rows):
            root = Path(tempfile.mkdtemp(prefix="bench-merge-", dir=args.workdir))
            print(f"\n== {args.changes:,} changes (70% updates, 20% inserts, 10% deletes) into {rows:,} rows, "
                  f"{MONTHS} monthly partitions ==", flush=True)
            results[str(rows)] = scenario(root, endpoint, rows, args.changes, spark if rows == args.rows else None,
                                          args.duckdb_memory)
            shutil.rmtree(root, ignore_errors=True)
    finally:
        server.stop()
        if spark is not None:
            spark.stop()
    big, small = results[str(args.rows)], results[str(args.small_rows)]
    print("\n== summary ==")
    print(f"duckdb engine / delta-rs MERGE, {args.rows:,} rows: {big['duckdb_full'] / big['delta']:.2f}")
    print(f"duckdb engine / delta-rs MERGE, {args.small_rows:,} rows: {small['duckdb_full'] / small['delta']:.2f}")
    print(f"duckdb engine, {args.rows:,} vs {args.small_rows:,} rows: {big['duckdb_full']:.2f} s vs "
          f"{small['duckdb_full']:.2f} s")
    print(f"1 of 24 partitions / full merge: {big['duckdb_one'] / big['duckdb_full']:.3f}")
    if "spark_full" in big:
        print(f"spark engine / plain PySpark rewrite: {big['spark_full'] / big['spark_plain']:.2f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
