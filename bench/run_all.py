"""Run every benchmark, profile the hot paths, and write bench/RESULTS.md from this one run.

    .venv/bin/python bench/run_all.py            # the issue's sizes (10M-row merge: many minutes)
    .venv/bin/python bench/run_all.py --quick    # small sizes, a few minutes, no Spark unless --spark

Each benchmark runs in its own process (``bench/bench_*.py ... --json``), so one that
fails is reported as such and the others still run, and the memory of one (Spark, a
10M-row table) never weighs on the next. Figures are ratios measured in the same run;
throughputs are per CPU-second (the machine is shared, CPU time is the steadier
figure), merges and freshness are wall seconds, and the load average is recorded
beside every step. Nothing here asserts a speed: the page says PASS or MISS per target.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from results_page import render

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


@dataclass(frozen=True)
class Sizes:
    producer_events: int
    consumer_events: int
    runs: int
    merge_rows: int
    merge_small_rows: int
    merge_changes: int
    merge_repeat: int
    spark_rows: tuple[int, ...] | None
    freshness_events: int
    memory_events: tuple[int, ...]
    memory_small_flush_bytes: int
    memory_small_get_records: int
    profile_events: int
    kafka_events: int = 50_000
    postgres_events: int = 100_000
    cli_events: int = 300_000  # produce and consume through the CLI (bench_cli.py), and their profiles


FULL = Sizes(producer_events=100_000, consumer_events=200_000, runs=3, merge_rows=10_000_000,
             merge_small_rows=1_000_000, merge_changes=1_000_000, merge_repeat=3, spark_rows=(1_000_000, 10_000_000), freshness_events=10,
             memory_events=(100_000, 200_000), memory_small_flush_bytes=2_000_000, memory_small_get_records=2,
             profile_events=50_000)
QUICK = Sizes(producer_events=20_000, consumer_events=20_000, runs=2, merge_rows=200_000, merge_small_rows=100_000,
              merge_changes=50_000, merge_repeat=1, spark_rows=None, freshness_events=3, memory_events=(20_000, 40_000),
              memory_small_flush_bytes=500_000, memory_small_get_records=1, profile_events=20_000,
              kafka_events=10_000, postgres_events=20_000, cli_events=50_000)


@dataclass
class Step:
    name: str
    argv: list[str]
    figures: dict[str, Any] = field(default_factory=dict)
    returncode: int | None = None
    wall_s: float = 0.0
    cpu_s: float = 0.0
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    output: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def load_step(doc: dict[str, Any]) -> Step:
    return Step(**{**doc, "load_before": tuple(doc["load_before"]), "load_after": tuple(doc["load_after"])})


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_step(step: Step, out_json: Path | None) -> Step:
    """Run one benchmark process, echo its output live, keep it for the page."""
    argv = [sys.executable, *step.argv] + (["--json", str(out_json)] if out_json else [])
    print(f"\n### {step.name}: {' '.join(step.argv)}", flush=True)
    step.load_before = os.getloadavg()
    cpu, started = children_cpu(), time.perf_counter()
    lines: list[str] = []
    with subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            lines.append(line.rstrip("\n"))
    step.returncode = proc.returncode
    step.wall_s, step.cpu_s = time.perf_counter() - started, children_cpu() - cpu
    step.load_after = os.getloadavg()
    step.output = "\n".join(line for line in lines if keep_line(line))
    if out_json is not None and out_json.exists() and step.ok:
        step.figures = json.loads(out_json.read_text())
    return step


def keep_line(line: str) -> bool:
    """Drop the JVM's and Spark's log chatter from the page; the figures are printed by the benches."""
    noise = ("WARN ", "INFO ", "Setting default log level", "To adjust logging level", "SLF4J", "Using Spark's")
    return bool(line.strip()) and not any(n in line for n in noise) and not line.startswith("{")


def steps_for(sizes: Sizes, spark: bool, only: set[str] | None) -> list[Step]:
    memory_args = ["--events", *map(str, sizes.memory_events)]
    merge = ["bench/bench_merge.py", "--rows", str(sizes.merge_rows), "--small-rows", str(sizes.merge_small_rows),
             "--changes", str(sizes.merge_changes), "--repeat", str(sizes.merge_repeat)]
    if spark:
        merge += ["--spark"] + (["--spark-rows", *map(str, sizes.spark_rows)] if sizes.spark_rows else [])
    steps = [
        Step("producer", ["bench/bench_producer.py", "--events", str(sizes.producer_events), "--runs",
                          str(sizes.runs)]),
        Step("consumer", ["bench/bench_consumer.py", "--events", str(sizes.consumer_events), "--repeat",
                          str(sizes.runs)]),
        Step("cli", ["bench/bench_cli.py", "--events", str(sizes.cli_events), "--runs", str(sizes.runs)]),
        Step("merge", merge),
        Step("freshness", ["bench/bench_freshness.py", "--events", str(sizes.freshness_events)]),
        Step("kafka_bridge", ["bench/bench_kafka_bridge.py", "--events", str(sizes.kafka_events), "--runs",
                              str(min(sizes.runs, 2))]),
        Step("memory", ["bench/bench_memory.py", *memory_args]),
        Step("memory_small_flush", ["bench/bench_memory.py", *memory_args, "--flush-bytes",
                                    str(sizes.memory_small_flush_bytes), "--get-records-limit",
                                    str(sizes.memory_small_get_records)]),
        Step("postgres", ["bench/bench_postgres.py", "--events", str(sizes.postgres_events), "--lag-samples", "10"]),
    ]
    return [s for s in steps if only is None or s.name in only]


def profile_steps(sizes: Sizes, out_dir: Path, spark: bool) -> list[Step]:
    n = str(sizes.profile_events)
    merge = ["--rows", str(sizes.merge_small_rows), "--changes", str(sizes.merge_changes)]
    return [Step("profile producer", ["bench/bench_producer.py", "--events", n, "--profile",
                                      str(out_dir / "producer.txt")]),
            Step("profile consumer", ["bench/bench_consumer.py", "--events", n, "--profile",
                                      str(out_dir / "consumer.txt")]),
            *(Step(f"profile cli {command}", ["bench/bench_cli.py", "--events", str(sizes.cli_events),
                                              "--profile-command", command, "--profile",
                                              str(out_dir / f"cli_{command}.txt")])
              for command in ("produce", "consume")),
            *(Step(f"profile merge {engine}", ["bench/profile_merge.py", "--engine", engine, *merge, "--out",
                                               str(out_dir / f"merge_{engine}.txt")])
              for engine in ("duckdb", "spark") if engine == "duckdb" or spark)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    parser.add_argument("--spark", action=argparse.BooleanOptionalAction, default=None,
                        help="measure the Spark engine pair [default: on in full mode, off with --quick]")
    parser.add_argument("--spark-rows", type=int, nargs="+", default=None,
                        help="table sizes of the Spark pair (several: how each side scales)")
    parser.add_argument("--only", nargs="+", default=None,
                        choices=["producer", "consumer", "cli", "merge", "freshness", "kafka_bridge", "postgres",
                                 "memory", "memory_small_flush"])
    parser.add_argument("--no-profile", action="store_true", help="skip the pyinstrument profiles")
    parser.add_argument("--out", type=Path, default=BENCH / "RESULTS.md")
    parser.add_argument("--record", type=Path, default=BENCH / "out" / "run_all.json",
                        help="every step's figures and output, kept so the page can be re-rendered")
    parser.add_argument("--render-only", action="store_true",
                        help="write the page again from --record (after changing the page, not the figures)")
    args = parser.parse_args()
    if args.render_only:
        record = json.loads(args.record.read_text())
        steps, profiles = [load_step(d) for d in record["steps"]], [load_step(d) for d in record["profiles"]]
        sizes = Sizes(**{**record["sizes"], "memory_events": tuple(record["sizes"]["memory_events"])})
        page = render(steps, profiles, sizes, record["quick"], record["spark"],
                      dt.datetime.fromisoformat(record["started"]), tuple(record["load_start"]),
                      record["argv"])
        args.out.write_text(page)
        print(f"wrote {args.out} from {args.record}")
        return
    sizes = QUICK if args.quick else FULL
    if args.spark_rows:
        sizes = Sizes(**{**sizes.__dict__, "spark_rows": tuple(args.spark_rows)})
    spark = (not args.quick) if args.spark is None else args.spark
    started, load_start = dt.datetime.now(dt.UTC), os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-run-all-") as tmp:
        steps = [run_step(s, Path(tmp) / f"{s.name}.json")
                 for s in steps_for(sizes, spark, set(args.only) if args.only else None)]
        profiles = [] if args.no_profile else [run_step(s, None) for s in profile_steps(sizes, BENCH / "profiles", spark)]
    args.record.parent.mkdir(parents=True, exist_ok=True)
    args.record.write_text(json.dumps({
        "started": started.isoformat(), "load_start": load_start, "quick": args.quick, "spark": spark,
        "sizes": asdict(sizes), "argv": sys.argv[1:], "steps": [asdict(s) for s in steps],
        "profiles": [asdict(s) for s in profiles]}, indent=1))
    page = render(steps, profiles, sizes, args.quick, spark, started, load_start, sys.argv[1:])
    args.out.write_text(page)
    print(f"\nwrote {args.out} ({sum(s.ok for s in steps + profiles)}/{len(steps + profiles)} steps succeeded)")
    if not all(s.ok for s in steps + profiles):
        sys.exit(1)


if __name__ == "__main__":
    main()
