"""Where one merge spends its time: a pyinstrument profile of ``run_merge`` and the time of each engine statement.

    .venv/bin/python bench/profile_merge.py --engine duckdb --out bench/profiles/merge_duckdb.txt
    .venv/bin/python bench/profile_merge.py --engine spark --out bench/profiles/merge_spark.txt

The fixture is ``bench_merge.py``'s (``merge_fixture``): 1M changes (70% updates,
20% inserts, 10% deletes) into a 1M-row ``orders`` table by default. A Spark run
is profiled after one untimed run on the same table (the session's warm-up).
pyinstrument samples this process's Python stack; the engines' own threads
(DuckDB's, the Spark JVM) show as the Python call waiting on them, so each
statement the kernel hands its engine is also timed by name (wall and the CPU of
this process and the JVM). It prints and writes figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench_merge import spark_session
from merge_fixture import Bench, Clock, Timed

from glue_jobs.kernel_duckdb import DuckDBEngine
from glue_jobs.kernel_spark import SparkEngine
from hybrid_ingest.local.stack import start_server

TIMED_CALLS = ("define", "observe", "write", "write_partitions", "fetch")


@contextmanager
def statement_times(engine_class: type, spark: Any, out: list[tuple[str, Timed]]) -> Iterator[None]:
    """Time every call of the engine methods the kernel drives, labelled with the relation's name (calls the
    engine makes of its own methods are inside their caller's time)."""
    saved = {name: getattr(engine_class, name) for name in TIMED_CALLS}
    depth = [0]

    def timed(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            clock = Clock(spark)
            depth[0] += 1
            try:
                result = method(self, *args, **kwargs)
            finally:
                depth[0] -= 1
            if depth[0] == 0:
                label = args[0] if name in ("define", "observe") else (args[2] if name == "write" else "")
                out.append((f"{name} {label}".strip(), clock.stop()))
            return result
        return call

    for name, method in saved.items():
        setattr(engine_class, name, timed(name, method))
    try:
        yield
    finally:
        for name, method in saved.items():
            setattr(engine_class, name, method)


def profile(engine: str, rows: int, changes: int, plan: str, out: Path, spark_memory: str,
            settings: dict[str, Any]) -> None:
    from pyinstrument import Profiler

    server, endpoint = start_server()
    spark = spark_session(spark_memory) if engine == "spark" else None
    try:
        with tempfile.TemporaryDirectory(prefix="profile-merge-") as tmp:
            bench = Bench(Path(tmp), endpoint, f"profile-{rows}", "8GB")
            bench.store.put_settings(settings)
            bench.load_base(rows)
            snap = bench.snapshot()
            bench.write_changes(changes, min(rows, 1_000_000), 10, one_month=False, name="all")
            if spark is not None:
                bench.merge_timed("spark", spark, plan)  # warm-up: class loading, JIT, the files' first read
                bench.restore(snap)
            engine_class: type = SparkEngine if engine == "spark" else DuckDBEngine
            statements: list[tuple[str, Timed]] = []
            profiler = Profiler(interval=0.001)
            with statement_times(engine_class, spark, statements):
                profiler.start()
                run = bench.merge_timed(engine, spark, plan)
                profiler.stop()
    finally:
        server.stop()
        if spark is not None:
            spark.stop()
    lines = [f"{engine} engine, run_merge of {changes:,} changes into {rows:,} rows "
             f"(plan {run.stats.get('kernel_plan')}): {run.wall:.2f} s wall, {run.cpu:.2f} s CPU"
             f"{' (this process + the JVM)' if spark is not None else ''}, 1-minute load {run.load:.1f}, "
             f"commit {run.stats.get('commit_s')} s, profiled {time.strftime('%Y-%m-%d %H:%M')}", "",
             "engine statements in order (wall s, CPU s):"]
    lines += [f"  {t.wall:7.3f} {t.cpu:7.3f}  {label}" for label, t in statements]
    lines += [f"  {sum(t.wall for _, t in statements):7.3f} {sum(t.cpu for _, t in statements):7.3f}  (sum)", "",
              profiler.output_text(unicode=False, color=False, show_all=False)]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines[:len(statements) + 5]))
    print(f"profile written to {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["duckdb", "spark"], default="duckdb")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--changes", type=int, default=1_000_000)
    parser.add_argument("--plan", choices=["auto", "keys_first", "one_pass"], default="auto")
    parser.add_argument("--spark-memory", default="6g")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=JSON",
                        help="a job setting for the run, e.g. spark_broadcast_rows=0 (repeatable)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    settings = {name: json.loads(value) for name, _, value in (s.partition("=") for s in args.setting)}
    profile(args.engine, args.rows, args.changes, args.plan, args.out, args.spark_memory, settings)


if __name__ == "__main__":
    main()
