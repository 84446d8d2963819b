"""Merge benchmark: our DuckDB and Spark engines beside delta-rs MERGE and a plain rewrite, same data, one run.

Data: an ``orders`` table (the demo schema) partitioned by month over 24 months,
and changes of 70% updates, 20% inserts, 10% deletes, one per key. Figures:

* DuckDB engine: the full ``run_merge`` (listing, manifests, the Iceberg commit,
  watermark commit, retention, run history: our extra work included; the commit's
  own time is printed as ``commit_s``) of the changes into the
  big table and into a table of ``--small-rows`` rows (cost follows the changes),
  against delta-rs MERGE of the same changes into the same table and a plain DuckDB
  rewrite (anti-join, union, partitioned COPY) of the same data;
* changes touching 1 of 24 partitions against the full merge, and the same few-partition
  changes into the big table against the small one (the ratio should stay near 1);
* with ``--spark``: our Spark engine against a plain PySpark rewrite (read,
  anti-join, union, partitioned write) of the same data, in the scenario of
  ``--spark-rows`` rows (default: the big table; an extra scenario if it is neither size).

Wall seconds are what the figures compare (``--repeat N``: the best of N runs); CPU seconds of this process are printed beside
them (DuckDB's and delta-rs's threads count, the Spark JVM's do not). ``run()`` returns the
figures for ``bench/run_all.py``.

Run: ``python bench/bench_merge.py [--rows 10000000 --changes 1000000 --spark] [--json OUT]``.
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

from glue_jobs.merge import MergeContext, run_merge
from hybrid_ingest import iceberg, layout
from hybrid_ingest.aws import Clients
from hybrid_ingest.bootstrap import init
from hybrid_ingest.config import Names, Settings
from hybrid_ingest.lake import Lake
from hybrid_ingest.local.stack import start_server
from hybrid_ingest.manifest import Manifest, PartEntry, write_manifest
from hybrid_ingest.position import SEQUENCE_DIGITS, SUB_DIGITS
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

    def ctx(self, spark: Any = None, plan: str = "auto") -> MergeContext:
        return MergeContext(self.clients, self.lake, self.registry, self.store, spark=spark, plan=plan)

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
                lpad(CAST(_seq AS VARCHAR), {SEQUENCE_DIGITS}, '0') || '_' || repeat('0', {SUB_DIGITS}) AS _kpos,
                TIMESTAMPTZ '2026-01-01 00:00:00+00' AS _arrival, CAST(1 AS INTEGER) AS _schema_version, {cols}
            FROM ({src})) TO '{self.lake.path(raw_rel)}' (FORMAT parquet)""")
        plain = self.root / f"changes-{name}.parquet"
        self.con.execute(f"COPY ({src}) TO '{plain}' (FORMAT parquet)")
        self.raw_rel = raw_rel
        return plain

    def table(self) -> Any:
        loaded = iceberg.load(iceberg.catalog(self.clients, self.lake), iceberg.identifier(self.clients, "orders"))
        assert loaded is not None
        return loaded

    def snapshot(self) -> dict[str, Any]:
        current = self.table().current_snapshot()
        return {"snapshot_id": current.snapshot_id if current else None, "watermark": self.store.watermark("orders")}

    def restore(self, snap: dict[str, Any]) -> None:
        """Put the table back to the snapshot (the Iceberg table's current snapshot, and the watermark)."""
        self.table().manage_snapshots().set_current_snapshot(snap["snapshot_id"]).commit()
        current = self.store.watermark("orders")
        wm = snap["watermark"]
        self.store.commit_watermark(type(wm)(wm.table, dict(wm.shards), wm.extracts, 0, wm.newest_op_ts, wm.last_run),
                                    current.version)

    def merge_timed(self, engine: str, spark: Any = None, plan: str = "auto") -> tuple[float, float, dict[str, Any]]:
        started, cpu = time.perf_counter(), time.process_time()
        result = run_merge(self.ctx(spark, plan), "orders", engine=engine)
        return time.perf_counter() - started, time.process_time() - cpu, result.stats

    def curated_files(self, snap: dict[str, Any]) -> dict[str, list[str]]:
        """Month (``YYYY-MM``) -> the local paths of the snapshot's data files."""
        out: dict[str, list[str]] = {}
        for f in iceberg.snapshot_files(self.table(), self.spec, snap["snapshot_id"]):
            out.setdefault(iceberg.human(self.spec, f.partition), []).append(
                self.lake.path(iceberg.lake_rel(self.lake, f.uri)))
        return out


def delta_merge(bench: Bench, snap: dict[str, Any], changes: Path, workdir: Path) -> tuple[float, float, float]:
    """(setup s, MERGE s, MERGE CPU s): the same table as a Delta table partitioned by month, MERGE of the changes."""
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
    started, cpu = time.perf_counter(), time.process_time()
    (DeltaTable(str(path)).merge(source, predicate="t.order_id = s.order_id", source_alias="s", target_alias="t")
     .when_matched_delete(predicate="s._op = 'd'")
     .when_matched_update_all(predicate="s._op <> 'd'", except_cols=["_op"])
     .when_not_matched_insert_all(predicate="s._op <> 'd'", except_cols=["_op"])
     .execute())
    return setup, time.perf_counter() - started, time.process_time() - cpu


def duckdb_rewrite(bench: Bench, snap: dict[str, Any], changes: Path, out: Path, memory: str) -> tuple[float, float]:
    """(wall s, CPU s) of the textbook DuckDB rewrite: every partition read, changed keys dropped, upserts added.

    Same input files and output layout (Parquet per month) as our engine, none of its
    bookkeeping (seq comparison, tombstones, manifests, catalog, watermark): the floor
    for a DuckDB merge of these changes.
    """
    files = [f for group in bench.curated_files(snap).values() for f in group]
    shutil.rmtree(out, ignore_errors=True)
    con = duckdb.connect(config={"memory_limit": memory})
    con.execute("SET TimeZone = 'UTC'")
    started, cpu = time.perf_counter(), time.process_time()
    con.execute(f"""COPY (
            SELECT t.*, strftime(t.order_date, '%Y-%m') AS order_date_month
            FROM read_parquet({files!r}, hive_partitioning = false) t ANTI JOIN read_parquet('{changes}') c USING (order_id)
            UNION ALL BY NAME
            SELECT * EXCLUDE (_op), now() AS _op_ts, now() AS _merged_at,
                   strftime(order_date, '%Y-%m') AS order_date_month
            FROM read_parquet('{changes}') WHERE _op <> 'd'
        ) TO '{out}' (FORMAT parquet, PARTITION_BY (order_date_month))""")
    elapsed = time.perf_counter() - started, time.process_time() - cpu
    con.close()
    return elapsed


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


def measure(label: str, fn: Callable[[], tuple[float, float, dict[str, Any]]]) -> tuple[float, float]:
    seconds, cpu, stats = fn()
    keys = ("rows_in", "upserts", "deletes", "partitions_rewritten", "bytes_written", "commit_s")
    print(f"  {label:<46} {seconds:7.2f} s  cpu {cpu:6.2f} s   " + ", ".join(f"{k}={stats.get(k)}" for k in keys),
          flush=True)
    return seconds, cpu


def peer(label: str, seconds: float, cpu: float | None = None, note: str = "") -> None:
    cpu_text = f"cpu {cpu:6.2f} s" if cpu is not None else "cpu   (JVM)"
    print(f"  {label:<46} {seconds:7.2f} s  {cpu_text}   {note}", flush=True)


def best(runs: list[tuple[float, float]]) -> tuple[float, float]:
    """Fastest wall time of repeated runs and the least CPU time: the machine is shared, noise only adds."""
    return min(r[0] for r in runs), min(r[1] for r in runs)


def scenario(root: Path, endpoint: str, rows: int, changes: int, spark: Any, memory: str,
             peers: bool = True, repeat: int = 1) -> dict[str, float]:
    """Figures (seconds) for one table size; ``peers`` False measures only the Spark pair.

    ``repeat`` runs the DuckDB engine, delta-rs and the DuckDB rewrite that many times each
    (the table put back in between) and keeps the best: the headline comparison.
    """
    bench = Bench(root, endpoint, f"bench-{rows}", memory)
    t0 = time.perf_counter()
    bench.load_base(rows)
    print(f"table of {rows:,} rows loaded in {time.perf_counter() - t0:.1f} s (setup)", flush=True)
    snap = bench.snapshot()
    figures: dict[str, float] = {"rows": rows, "changes": changes}
    plain = bench.write_changes(changes, min(rows, 1_000_000), 10, one_month=False, name="all")
    if peers:
        engine_runs, delta_runs, rewrite_runs = [], [], []
        for attempt in range(repeat):
            if attempt:
                bench.restore(snap)
            engine_runs.append(measure(f"duckdb engine: {changes:,} changes", lambda: bench.merge_timed("duckdb")))
            setup, wall, cpu = delta_merge(bench, snap, plain, root)
            delta_runs.append((wall, cpu))
            peer("delta-rs MERGE (same changes)", wall, cpu, f"(delta table setup {setup:.1f} s)")
            rewrite_runs.append(duckdb_rewrite(bench, snap, plain, root / "plain-duckdb", memory))
            peer("plain DuckDB rewrite (same changes)", *rewrite_runs[-1])
            shutil.rmtree(root / "plain-duckdb", ignore_errors=True)
        figures["duckdb_full"], figures["duckdb_full_cpu"] = best(engine_runs)
        figures["delta"], figures["delta_cpu"] = best(delta_runs)
        figures["duckdb_rewrite"], figures["duckdb_rewrite_cpu"] = best(rewrite_runs)
        figures["repeat"] = repeat
    if spark is not None:
        # the first Spark job of a session pays JVM warm-up (class loading, JIT): an untimed run takes it;
        # then each side runs ``repeat`` times, alternating, and the best of each is compared
        cold = plain_spark_rewrite(spark, bench, snap, plain, root / "plain-spark")
        peer("plain PySpark rewrite, cold (warm-up, not compared)", cold)
        engine_walls, plain_walls = [], []
        for _ in range(max(2, repeat)):
            bench.restore(snap)
            engine_walls.append(measure("spark engine: same changes", lambda: bench.merge_timed("spark", spark))[0])
            plain_walls.append(plain_spark_rewrite(spark, bench, snap, plain, root / "plain-spark"))
            peer("plain PySpark rewrite (same changes)", plain_walls[-1])
        figures["spark_full"], figures["spark_full_first"] = min(engine_walls), engine_walls[0]
        figures["spark_plain"] = min(plain_walls)
        figures["spark_repeat"] = len(engine_walls)
    if peers:
        bench.restore(snap)
        Path(bench.lake.path(bench.raw_rel)).unlink()
        few = max(1, changes // 24)
        bench.write_changes(few, min(rows, 1_000_000), 10, one_month=True, name="one")
        figures["duckdb_one"], figures["duckdb_one_cpu"] = measure(
            f"duckdb engine: {few:,} changes in 1 of 24 months", lambda: bench.merge_timed("duckdb"))
    return figures


def spark_session(memory: str) -> Any:
    from pyspark.sql import SparkSession

    return (SparkSession.builder.master("local[2]").config("spark.sql.shuffle.partitions", "8")
            .config("spark.driver.memory", memory).config("spark.ui.enabled", "false")
            .config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
            .config("spark.ui.showConsoleProgress", "false").getOrCreate())


def size_problem(small_rows: int, changes: int) -> str | None:
    if 0.8 * changes > min(small_rows, 1_000_000):
        return "updates and deletes need distinct existing keys: --changes must be <= 1.25 x --small-rows"
    return None


def run(rows: int = 10_000_000, small_rows: int = 1_000_000, changes: int = 1_000_000, spark: bool = False,
        spark_rows: int | None = None, workdir: Path | None = None, duckdb_memory: str = "8GB",
        spark_memory: str = "6g", repeat: int = 1) -> dict[str, Any]:
    """Every scenario, then the ratios; keys are the table sizes plus ``summary``."""
    problem = size_problem(small_rows, changes)
    if problem:
        raise ValueError(problem)
    spark_rows = spark_rows or rows
    server, endpoint = start_server()
    session = spark_session(spark_memory) if spark else None
    results: dict[str, Any] = {}
    sizes = list(dict.fromkeys([rows, small_rows, spark_rows if spark else rows]))  # each table size once
    try:
        for size in sizes:
            root = Path(tempfile.mkdtemp(prefix="bench-merge-", dir=workdir))
            size_changes = min(changes, int(1.25 * min(size, 1_000_000)))
            print(f"\n== {size_changes:,} changes (70% updates, 20% inserts, 10% deletes) into {size:,} rows, "
                  f"{MONTHS} monthly partitions ==", flush=True)
            try:
                results[str(size)] = scenario(root, endpoint, size, size_changes,
                                              session if size == spark_rows else None, duckdb_memory,
                                              peers=size in (rows, small_rows), repeat=repeat)
            finally:
                shutil.rmtree(root, ignore_errors=True)  # a 10M-row table is gigabytes: never leave it behind
    finally:
        server.stop()
        if session is not None:
            session.stop()
    big, small = results[str(rows)], results[str(small_rows)]
    summary: dict[str, Any] = {
        "duckdb_vs_delta": big["duckdb_full"] / big["delta"],
        "duckdb_vs_delta_small": small["duckdb_full"] / small["delta"],
        "duckdb_vs_rewrite": big["duckdb_full"] / big["duckdb_rewrite"],
        "big_vs_small_full": big["duckdb_full"] / small["duckdb_full"],
        "big_vs_small_few_partitions": big["duckdb_one"] / small["duckdb_one"],
        "one_vs_full": big["duckdb_one"] / big["duckdb_full"],
    }
    if spark:
        sp = results[str(spark_rows)]
        summary.update(spark_vs_plain=sp["spark_full"] / sp["spark_plain"], spark_rows=spark_rows,
                       spark_changes=sp["changes"])
    results["summary"] = summary
    print("\n== summary ==")
    print(f"duckdb engine / delta-rs MERGE, {rows:,} rows: {summary['duckdb_vs_delta']:.2f}")
    print(f"duckdb engine / delta-rs MERGE, {small_rows:,} rows: {summary['duckdb_vs_delta_small']:.2f}")
    print(f"duckdb engine / plain DuckDB rewrite, {rows:,} rows: {summary['duckdb_vs_rewrite']:.2f}")
    print(f"duckdb engine, {rows:,} vs {small_rows:,} rows: {big['duckdb_full']:.2f} s vs "
          f"{small['duckdb_full']:.2f} s")
    print(f"few partitions, {rows:,} vs {small_rows:,} rows: {big['duckdb_one']:.2f} s vs {small['duckdb_one']:.2f} s "
          f"= {summary['big_vs_small_few_partitions']:.2f}")
    print(f"1 of 24 partitions / full merge: {summary['one_vs_full']:.3f}")
    if spark:
        print(f"spark engine / plain PySpark rewrite, {spark_rows:,} rows: {summary['spark_vs_plain']:.2f}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--small-rows", type=int, default=1_000_000)
    parser.add_argument("--changes", type=int, default=1_000_000)
    parser.add_argument("--spark", action="store_true", help="also measure the Spark engine and plain PySpark")
    parser.add_argument("--spark-rows", type=int, default=None, help="table size of the Spark pair [default: --rows]")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--duckdb-memory", default="8GB", help="duckdb_memory_limit job setting for the runs")
    parser.add_argument("--spark-memory", default="6g", help="spark.driver.memory of the local session")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each DuckDB/delta-rs merge; the best counts")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here as JSON")
    args = parser.parse_args()
    problem = size_problem(args.small_rows, args.changes)
    if problem:
        parser.error(problem)
    results = run(args.rows, args.small_rows, args.changes, args.spark, args.spark_rows, args.workdir,
                  args.duckdb_memory, args.spark_memory, args.repeat)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
