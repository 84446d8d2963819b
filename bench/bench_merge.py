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
  anti-join, union, partitioned write) of the same data, in the scenario of each of
  ``--spark-rows`` table sizes (default: the big table; an extra scenario for a size
  that is neither), and how each side scales between the sizes.

Wall seconds are what the figures compare (``--repeat N``: the best of N runs of each side,
alternating); CPU seconds are printed beside them: this process's (DuckDB's and delta-rs's
threads count) plus, for Spark, the JVM's. Each figure carries the 1-minute load average at
the start of its best run: the machine is shared. ``run()`` returns the figures for
``bench/run_all.py``; ``bench/profile_merge.py`` profiles one merge of either engine.

Run: ``python bench/bench_merge.py [--rows 10000000 --changes 1000000 --spark] [--json OUT]``.
It prints figures; it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from merge_fixture import MONTHS, Bench, Clock, Timed

from hybrid_ingest.local.stack import start_server


def delta_merge(bench: Bench, snap: dict[str, Any], changes: Path, workdir: Path) -> tuple[float, Timed]:
    """(setup s, the MERGE timed): the same table as a Delta table partitioned by month, MERGE of the changes."""
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
    clock = Clock()
    (DeltaTable(str(path)).merge(source, predicate="t.order_id = s.order_id", source_alias="s", target_alias="t")
     .when_matched_delete(predicate="s._op = 'd'")
     .when_matched_update_all(predicate="s._op <> 'd'", except_cols=["_op"])
     .when_not_matched_insert_all(predicate="s._op <> 'd'", except_cols=["_op"])
     .execute())
    return setup, clock.stop()


def duckdb_rewrite(bench: Bench, snap: dict[str, Any], changes: Path, out: Path, memory: str) -> Timed:
    """The textbook DuckDB rewrite, timed: every partition read, changed keys dropped, upserts added.

    Same input files and output layout (Parquet per month) as our engine, none of its
    bookkeeping (seq comparison, tombstones, manifests, catalog, watermark): the floor
    for a DuckDB merge of these changes.
    """
    files = [f for group in bench.curated_files(snap).values() for f in group]
    shutil.rmtree(out, ignore_errors=True)
    con = duckdb.connect(config={"memory_limit": memory})
    con.execute("SET TimeZone = 'UTC'")
    clock = Clock()
    con.execute(f"""COPY (
            SELECT t.*, strftime(t.order_date, '%Y-%m') AS order_date_month
            FROM read_parquet({files!r}, hive_partitioning = false) t ANTI JOIN read_parquet('{changes}') c USING (order_id)
            UNION ALL BY NAME
            SELECT * EXCLUDE (_op), now() AS _op_ts, now() AS _merged_at,
                   strftime(order_date, '%Y-%m') AS order_date_month
            FROM read_parquet('{changes}') WHERE _op <> 'd'
        ) TO '{out}' (FORMAT parquet, PARTITION_BY (order_date_month))""")
    timed = clock.stop()
    con.close()
    return timed


def plain_spark_rewrite(spark: Any, bench: Bench, snap: dict[str, Any], changes: Path, out: Path) -> Timed:
    """The textbook PySpark rewrite, timed: read table, drop changed keys, add upserts, write partitioned."""
    from pyspark.sql import functions as F

    clock = Clock(spark)
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
    return clock.stop()


def report(label: str, timed: Timed, note: str = "") -> Timed:
    keys = ("rows_in", "upserts", "deletes", "partitions_rewritten", "bytes_written", "commit_s", "kernel_plan")
    found = ", ".join(f"{k}={timed.stats.get(k)}" for k in keys if k in timed.stats)
    print(f"  {label:<46} {timed.wall:7.2f} s  cpu {timed.cpu:6.2f} s  load {timed.load:4.1f}   {found}{note}",
          flush=True)
    return timed


def best(runs: Sequence[Timed], figures: dict[str, Any], name: str) -> None:
    """The fastest wall time of repeated runs (with its load) and the least CPU time: noise only adds."""
    fastest = min(runs, key=lambda t: t.wall)
    figures[name], figures[f"{name}_load"] = fastest.wall, fastest.load
    figures[f"{name}_cpu"] = min(t.cpu for t in runs)


def duckdb_pair(bench: Bench, snap: dict[str, Any], plain: Path, root: Path, changes: int, memory: str,
                repeat: int) -> dict[str, Any]:
    """Our DuckDB engine, delta-rs MERGE and the plain DuckDB rewrite in turns, ``repeat`` times each."""
    engine_runs, delta_runs, rewrite_runs = [], [], []
    for attempt in range(repeat):
        if attempt:
            bench.restore(snap)
        engine_runs.append(report(f"duckdb engine: {changes:,} changes", bench.merge_timed("duckdb")))
        setup, timed = delta_merge(bench, snap, plain, root)
        delta_runs.append(report("delta-rs MERGE (same changes)", timed, f"(delta table setup {setup:.1f} s)"))
        rewrite_runs.append(report("plain DuckDB rewrite (same changes)",
                                   duckdb_rewrite(bench, snap, plain, root / "plain-duckdb", memory)))
        shutil.rmtree(root / "plain-duckdb", ignore_errors=True)
    figures: dict[str, Any] = {"repeat": repeat}
    best(engine_runs, figures, "duckdb_full")
    best(delta_runs, figures, "delta")
    best(rewrite_runs, figures, "duckdb_rewrite")
    return figures


def spark_pair(spark: Any, bench: Bench, snap: dict[str, Any], plain: Path, root: Path, repeat: int
               ) -> dict[str, Any]:
    """Our Spark engine and the plain PySpark rewrite in turns, ``repeat`` times each (at least twice).

    Each side first runs ``warm`` times untimed: the first jobs of a session pay class loading, the JIT
    and the files' first read, and each query shape is compiled and JIT-compiled on its own first runs
    (our engine has more shapes than the plain rewrite, so one shared warm-up would favour the latter).
    """
    warm = 2
    bench.restore(snap)
    cold = [report("spark engine, cold (warm-up, not compared)", bench.merge_timed("spark", spark))]
    for _ in range(warm):
        report("plain PySpark rewrite, warm-up (not compared)",
               plain_spark_rewrite(spark, bench, snap, plain, root / "plain-spark"))
    for _ in range(warm - 1):
        bench.restore(snap)
        cold.append(report("spark engine, warm-up (not compared)", bench.merge_timed("spark", spark)))
    engine_runs, plain_runs = [], []
    for _ in range(max(2, repeat)):
        bench.restore(snap)
        engine_runs.append(report("spark engine: same changes", bench.merge_timed("spark", spark)))
        plain_runs.append(report("plain PySpark rewrite (same changes)",
                                 plain_spark_rewrite(spark, bench, snap, plain, root / "plain-spark")))
    figures: dict[str, Any] = {"spark_full_first": cold[0].wall, "spark_repeat": len(engine_runs),
                               "spark_warm": warm, "spark_plan": engine_runs[0].stats.get("kernel_plan")}
    best(engine_runs, figures, "spark_full")
    best(plain_runs, figures, "spark_plain")
    return figures


def scenario(root: Path, endpoint: str, rows: int, changes: int, spark: Any, memory: str,
             peers: bool = True, repeat: int = 1) -> dict[str, Any]:
    """Figures (seconds) for one table size; ``peers`` False measures only the Spark pair."""
    bench = Bench(root, endpoint, f"bench-{rows}", memory)
    t0 = time.perf_counter()
    bench.load_base(rows)
    print(f"table of {rows:,} rows loaded in {time.perf_counter() - t0:.1f} s (setup)", flush=True)
    snap = bench.snapshot()
    figures: dict[str, Any] = {"rows": rows, "changes": changes}
    plain = bench.write_changes(changes, min(rows, 1_000_000), 10, one_month=False, name="all")
    if peers:
        figures.update(duckdb_pair(bench, snap, plain, root, changes, memory, repeat))
    if spark is not None:
        figures.update(spark_pair(spark, bench, snap, plain, root, repeat))
    if peers:
        bench.restore(snap)
        Path(bench.lake.path(bench.raw_rel)).unlink()
        few = max(1, changes // 24)
        bench.write_changes(few, min(rows, 1_000_000), 10, one_month=True, name="one")
        one = report(f"duckdb engine: {few:,} changes in 1 of 24 months", bench.merge_timed("duckdb"))
        figures.update(duckdb_one=one.wall, duckdb_one_cpu=one.cpu, duckdb_one_load=one.load)
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
        spark_rows: Sequence[int] = (), workdir: Path | None = None, duckdb_memory: str = "8GB",
        spark_memory: str = "6g", repeat: int = 1) -> dict[str, Any]:
    """Every scenario, then the ratios; keys are the table sizes plus ``summary``."""
    problem = size_problem(small_rows, changes)
    if problem:
        raise ValueError(problem)
    spark_sizes = sorted(set(spark_rows or [rows])) if spark else []
    server, endpoint = start_server()
    session = spark_session(spark_memory) if spark else None
    results: dict[str, Any] = {}
    sizes = list(dict.fromkeys([rows, small_rows, *spark_sizes]))  # each table size once
    try:
        for size in sizes:
            root = Path(tempfile.mkdtemp(prefix="bench-merge-", dir=workdir))
            size_changes = min(changes, int(1.25 * min(size, 1_000_000)))
            print(f"\n== {size_changes:,} changes (70% updates, 20% inserts, 10% deletes) into {size:,} rows, "
                  f"{MONTHS} monthly partitions ==", flush=True)
            try:
                results[str(size)] = scenario(root, endpoint, size, size_changes,
                                              session if size in spark_sizes else None, duckdb_memory,
                                              peers=size in (rows, small_rows), repeat=repeat)
            finally:
                shutil.rmtree(root, ignore_errors=True)  # a 10M-row table is gigabytes: never leave it behind
    finally:
        server.stop()
        if session is not None:
            session.stop()
    results["summary"] = summarise(results, rows, small_rows, spark_sizes)
    return results


def summarise(results: dict[str, Any], rows: int, small_rows: int, spark_sizes: Sequence[int]) -> dict[str, Any]:
    """The ratios (wall, and CPU beside it) the targets are about, printed and returned."""
    big, small = results[str(rows)], results[str(small_rows)]
    summary: dict[str, Any] = {
        "duckdb_vs_delta": big["duckdb_full"] / big["delta"],
        "duckdb_vs_delta_cpu": big["duckdb_full_cpu"] / big["delta_cpu"],
        "duckdb_vs_delta_small": small["duckdb_full"] / small["delta"],
        "duckdb_vs_delta_small_cpu": small["duckdb_full_cpu"] / small["delta_cpu"],
        "duckdb_vs_rewrite": big["duckdb_full"] / big["duckdb_rewrite"],
        "big_vs_small_full": big["duckdb_full"] / small["duckdb_full"],
        "big_vs_small_few_partitions": big["duckdb_one"] / small["duckdb_one"],
        "one_vs_full": big["duckdb_one"] / big["duckdb_full"],
        "spark": [{"rows": n, "changes": results[str(n)]["changes"],
                   "ratio": results[str(n)]["spark_full"] / results[str(n)]["spark_plain"],
                   "cpu_ratio": results[str(n)]["spark_full_cpu"] / results[str(n)]["spark_plain_cpu"]}
                  for n in spark_sizes],
    }
    print("\n== summary (wall ratio; CPU ratio) ==")
    print(f"duckdb engine / delta-rs MERGE, {rows:,} rows: {summary['duckdb_vs_delta']:.2f}; "
          f"{summary['duckdb_vs_delta_cpu']:.2f}")
    print(f"duckdb engine / delta-rs MERGE, {small_rows:,} rows: {summary['duckdb_vs_delta_small']:.2f}; "
          f"{summary['duckdb_vs_delta_small_cpu']:.2f}")
    print(f"duckdb engine / plain DuckDB rewrite, {rows:,} rows: {summary['duckdb_vs_rewrite']:.2f}")
    print(f"duckdb engine, {rows:,} vs {small_rows:,} rows: {big['duckdb_full']:.2f} s vs "
          f"{small['duckdb_full']:.2f} s")
    print(f"few partitions, {rows:,} vs {small_rows:,} rows: {big['duckdb_one']:.2f} s vs {small['duckdb_one']:.2f} s "
          f"= {summary['big_vs_small_few_partitions']:.2f}")
    print(f"1 of 24 partitions / full merge: {summary['one_vs_full']:.3f}")
    for pair in summary["spark"]:
        print(f"spark engine / plain PySpark rewrite, {pair['rows']:,} rows: {pair['ratio']:.2f}; "
              f"{pair['cpu_ratio']:.2f}")
    if len(spark_sizes) > 1:
        low, high = results[str(spark_sizes[0])], results[str(spark_sizes[-1])]
        summary["spark_scaling"] = {"from_rows": spark_sizes[0], "to_rows": spark_sizes[-1],
                                    "engine": high["spark_full"] / low["spark_full"],
                                    "plain": high["spark_plain"] / low["spark_plain"]}
        scaling = summary["spark_scaling"]
        print(f"spark, {spark_sizes[0]:,} -> {spark_sizes[-1]:,} rows: our engine x{scaling['engine']:.2f} "
              f"({low['spark_full']:.1f} -> {high['spark_full']:.1f} s), plain PySpark x{scaling['plain']:.2f} "
              f"({low['spark_plain']:.1f} -> {high['spark_plain']:.1f} s)")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--small-rows", type=int, default=1_000_000)
    parser.add_argument("--changes", type=int, default=1_000_000)
    parser.add_argument("--spark", action="store_true", help="also measure the Spark engine and plain PySpark")
    parser.add_argument("--spark-rows", type=int, nargs="+", default=[],
                        help="table sizes of the Spark pair [default: --rows]")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--duckdb-memory", default="8GB", help="duckdb_memory_limit job setting for the runs")
    parser.add_argument("--spark-memory", default="6g", help="spark.driver.memory of the local session")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each side of a pair, alternating; the best counts")
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
