"""bench/RESULTS.md: the page ``run_all.py`` writes from one run's steps, with a verdict per target.

Kept apart from the runner so the page can be re-rendered from a recorded run
(``run_all.py --render-only``) after changing only how it reads.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from run_all import Sizes, Step

REPO = Path(__file__).resolve().parent.parent

def version_of(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def java_version() -> str:
    try:
        proc = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return "not found"
    return (proc.stderr or proc.stdout).splitlines()[0] if (proc.stderr or proc.stdout) else "unknown"


def machine() -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
                 platform.processor() or "unknown")
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    total_kb = next((int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal")), 0)
    return {"cpus (nproc)": str(os.cpu_count()), "cpu model": model, "memory": f"{total_kb / 1024 / 1024:.1f} GiB",
            "kernel": platform.release(), "python": platform.python_version(), "java": java_version()}


@dataclass
class Row:
    figure: str
    measured: str
    target: str
    verdict: str


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def merge_rows(m: Step, sizes: Sizes) -> list[Row]:
    """The merge benchmark's rows: the DuckDB engine against its peers, the Spark pair at each size measured."""
    rows: list[Row] = []
    s = m.figures["summary"]
    big, small = m.figures[str(sizes.merge_rows)], m.figures[str(sizes.merge_small_rows)]
    label = f"{big['changes']:,} changes into {sizes.merge_rows:,} rows"
    cpu_ratio = big["duckdb_full_cpu"] / big["delta_cpu"]
    rows.append(Row(f"DuckDB engine full merge / delta-rs MERGE ({label}; best of {big.get('repeat', 1)})",
                    f"{s['duckdb_vs_delta']:.2f} wall ({big['duckdb_full']:.1f} s vs {big['delta']:.1f} s); "
                    f"CPU {cpu_ratio:.2f} ({big['duckdb_full_cpu']:.1f} s vs {big['delta_cpu']:.1f} s)",
                    "<= 0.75", verdict(s["duckdb_vs_delta"] <= 0.75)))
    rows.append(Row(f"DuckDB engine / plain DuckDB rewrite ({label})",
                    f"{s['duckdb_vs_rewrite']:.2f} ({big['duckdb_full']:.1f} s vs {big['duckdb_rewrite']:.1f} s)",
                    "(reference)", "n/a"))
    rows.append(Row(f"DuckDB engine / delta-rs MERGE ({small['changes']:,} changes into "
                    f"{sizes.merge_small_rows:,} rows)",
                    f"{s['duckdb_vs_delta_small']:.2f} ({small['duckdb_full']:.2f} s vs {small['delta']:.2f} s; "
                    f"CPU {s['duckdb_vs_delta_small_cpu']:.2f}; load {small.get('duckdb_full_load', 0):.1f})",
                    "<= 1.0", verdict(s["duckdb_vs_delta_small"] <= 1.0)))
    for pair in s.get("spark", []):
        sp = m.figures[str(pair["rows"])]
        rows.append(Row(f"Spark engine / plain PySpark rewrite ({sp['changes']:,} changes into "
                        f"{pair['rows']:,} rows; best of {sp.get('spark_repeat', 1)} each, alternating)",
                        f"{pair['ratio']:.2f} ({sp['spark_full']:.2f} s vs {sp['spark_plain']:.2f} s; load "
                        f"{sp.get('spark_full_load', 0):.1f}; CPU ratio {pair['cpu_ratio']:.2f}; our first, cold "
                        f"run {sp.get('spark_full_first', sp['spark_full']):.1f} s)",
                        "<= 1.15" if pair["rows"] <= 1_000_000 else "(measured)",
                        verdict(pair["ratio"] <= 1.15) if pair["rows"] <= 1_000_000 else "n/a"))
    if not s.get("spark"):
        rows.append(Row("Spark engine / plain PySpark rewrite", "not measured in this run", "<= 1.15", "n/a"))
    if "spark_scaling" in s:
        sc = s["spark_scaling"]
        rows.append(Row(f"Spark, {sc['from_rows']:,} -> {sc['to_rows']:,} rows: time grows by",
                        f"our engine x{sc['engine']:.2f}, plain PySpark x{sc['plain']:.2f}", "(reference)", "n/a"))
    rows.append(Row(f"few partitions (1 of 24 months, {max(1, big['changes'] // 24):,} changes): "
                    f"{sizes.merge_rows:,} vs {sizes.merge_small_rows:,} rows",
                    f"{s['big_vs_small_few_partitions']:.2f} ({big['duckdb_one']:.1f} s vs "
                    f"{small['duckdb_one']:.1f} s)", f"(reference: the touched partition holds {sizes.merge_rows / sizes.merge_small_rows:g}x the rows)",
                    "n/a"))
    rows.append(Row(f"1 of 24 partitions / all 24 ({sizes.merge_rows:,} rows)", f"{s['one_vs_full']:.3f}",
                    "(reference: cost follows the partitions touched)", "n/a"))
    rows.append(Row(f"full merge: {sizes.merge_rows:,} vs {sizes.merge_small_rows:,} rows",
                    f"{s['big_vs_small_full']:.2f} ({big['duckdb_full']:.1f} s vs {small['duckdb_full']:.1f} s)",
                    "(reference)", "n/a"))
    return rows


def figure_rows(by_name: dict[str, Step], sizes: Sizes) -> list[Row]:
    rows: list[Row] = []

    def missing(step: str, figure: str, target: str) -> None:
        s = by_name.get(step)
        why = "not run" if s is None else f"ERROR (exit {s.returncode})"
        rows.append(Row(figure, why, target, "ERROR" if s is not None else "n/a"))

    throughputs = (("producer", "producer encode+aggregate / bare fastavro encode", "core_per_s", 0.6),
                   ("consumer", "consumer deaggregate+decode+Parquet / bare fastavro decode", "consumer_per_s", 0.5))
    for step, figure, ours, floor in throughputs:
        t = by_name.get(step)
        if t and t.figures:
            f = t.figures
            rows.append(Row(figure, f"{f['ratio']:.2f} ({f[ours]:,.0f} vs {f['bare_per_s']:,.0f} events/CPU-s)",
                            f">= {floor}", verdict(f["ratio"] >= floor)))
        else:
            missing(step, figure, f">= {floor}")
    rows += cli_rows(by_name.get("cli"))
    m = by_name.get("merge")
    if m and m.figures:
        rows += merge_rows(m, sizes)
    else:
        missing("merge", "merge figures", "see issue")
    fr = by_name.get("freshness")
    if fr and fr.figures:
        f = fr.figures
        rows.append(Row(f"produce -> visible in orders_live ({f['events']} events, consumer flush "
                        f"{f['flush_seconds']:g} s)", f"p50 {f['live_p50_s']:.2f} s, max {f['live_max_s']:.2f} s",
                        "<= 10 s", verdict(f["live_max_s"] <= 10)))
        rows.append(Row("produce -> curated table after one workflow run",
                        f"{f['produce_to_curated_min_s']:.1f}-{f['produce_to_curated_max_s']:.1f} s "
                        f"(the run itself {f['workflow_run_s']:.1f} s)", "(reference)", "n/a"))
    else:
        missing("freshness", "produce -> live view", "<= 10 s")
    kb = by_name.get("kafka_bridge")
    if kb and kb.figures:
        f = kb.figures
        rows.append(Row(f"Kafka topic -> spool through the bridge / bare producer on the same events "
                        f"({f['events']:,} JSON events, local Tansu broker)",
                        f"{f['ratio']:.2f} wall ({f['bridge_per_s']:,.0f} vs {f['bare_per_s']:,.0f} events/s); "
                        f"CPU {f['cpu_ratio']:.2f}", ">= 0.5", verdict(f["ratio"] >= 0.5)))
    else:
        missing("kafka_bridge", "Kafka bridge / bare producer", ">= 0.5")
    pg = by_name.get("postgres")
    if pg and pg.figures:
        f = pg.figures
        rows.append(Row(f"source postgres -> spool / bare producer -> spool ({f['events']:,} inserts, "
                        f"{f['txn_rows']} per transaction)",
                        f"{f['ratio']:.2f} wall ({f['source_per_s']:,.0f} vs {f['bare_per_s']:,.0f} events/s); "
                        f"CPU {f['ratio_cpu']:.2f}", ">= 0.5", verdict(f["ratio"] >= 0.5)))
        rows.append(Row(f"commit in PostgreSQL -> visible in <table>_live ({f['samples']} rows, consumer flush "
                        f"{f['consumer_flush_s']:g} s)", f"p50 {f['lag_p50_s']:.2f} s, max {f['lag_max_s']:.2f} s",
                        "p50 <= 5 s", verdict(f["lag_p50_s"] <= 5)))
    else:
        missing("postgres", "source postgres figures", ">= 0.5; p50 <= 5 s")
    small = (f"consumer flush at {sizes.memory_small_flush_bytes / 1e6:g} MB per shard, "
             f"{sizes.memory_small_get_records} Kinesis records per GetRecords")
    for name, what in (("memory", "default consumer policy"), ("memory_small_flush", small)):
        mem = by_name.get(name)
        if not (mem and mem.figures):
            missing(name, f"peak RSS ({what})", "bounded")
            continue
        sizes_run = sorted(int(k) for k in mem.figures if k.isdigit())
        for role in ("producer", "consumer"):
            if name == "memory_small_flush" and role == "producer":
                continue  # the producer does not depend on the consumer's flush policy: measured above
            peaks = [mem.figures[str(n)][role]["peak_mb"] for n in sizes_run]
            growth = peaks[-1] / peaks[0] if len(peaks) > 1 else None
            measured = ", ".join(f"{n:,} events: {p:.0f} MB" for n, p in zip(sizes_run, peaks, strict=True))
            rows.append(Row(f"peak RSS, {role} ({what})", measured + (f"; x{growth:.2f}" if growth else ""),
                            "bounded: about the same peak for twice the events (x <= 1.2)",
                            verdict(None if growth is None else growth <= 1.2)))
    return rows


def cli_rows(cli: Step | None) -> list[Row]:
    """The two commands users run, through the CLI, beside the bare libraries on the same events (issue #19)."""
    figure_p = "hybrid-ingest produce (JSON lines -> accepted by Kinesis) / bare json.loads + fastavro encode"
    figure_c = "hybrid-ingest consume --until-idle / bare fastavro decode + Arrow + Parquet write"
    if not (cli and cli.figures):
        why = "not run" if cli is None else f"ERROR (exit {cli.returncode})"
        return [Row(figure_p, why, ">= 0.6", "n/a" if cli is None else "ERROR"),
                Row(figure_c, why, ">= 0.6", "n/a" if cli is None else "ERROR")]
    f = cli.figures
    n, what = f["events"], f"{f['events']:,} {f['table']} events, whole commands, best of {f['runs']}"
    p, c = f["produce"], f["consume"]
    return [
        Row(f"{figure_p} ({what})",
            f"{f['produce_cpu_ratio']:.2f} CPU ({n / p['cpu_s']:,.0f} vs {n / f['bare_produce']['cpu_s']:,.0f} "
            f"events/CPU-s); wall {f['produce_ratio']:.2f} ({n / p['wall_s']:,.0f} vs "
            f"{n / f['bare_produce']['wall_s']:,.0f} events/s; start-up {f['produce_startup']['wall_s']:.2f} s)",
            ">= 0.6", verdict(f["produce_cpu_ratio"] >= 0.6)),
        Row(f"{figure_c} ({what})",
            f"{f['consume_cpu_ratio']:.2f} CPU ({n / c['cpu_s']:,.0f} vs {n / f['bare_consume']['cpu_s']:,.0f} "
            f"events/CPU-s); wall {f['consume_ratio']:.2f}, {f['consume_ratio_without_moto']:.2f} without moto; "
            f"moto {c['moto_cpu_s']:.2f} CPU-s = {f['consume_moto_share']:.0%} of the wall",
            ">= 0.6", verdict(f["consume_cpu_ratio"] >= 0.6)),
    ]


def notes(by_name: dict[str, Step], sizes: Sizes, quick: bool) -> list[str]:
    out: list[str] = []
    if quick:
        out.append("This is a `--quick` run: small sizes, so fixed costs (catalog, DynamoDB on moto, job "
                   "start-up) weigh far more than at the issue's sizes. Do not read targets off it.")
    m = by_name.get("merge")
    if m and m.figures and "summary" in m.figures:
        s = m.figures["summary"]
        measured = [pair["rows"] for pair in s.get("spark", [])]
        if measured and sizes.merge_rows not in measured:
            out.append(f"The Spark pair was measured at {', '.join(f'{n:,}' for n in measured)} rows, not "
                       f"{sizes.merge_rows:,} (`--spark-rows` to change it): `local[2]` on 2 shared cores, and the "
                       "run was kept to a size that fits its time budget. The DuckDB figures are at the full size. "
                       "Each side of the Spark pair first runs twice untimed (the JVM warm-up and its own query "
                       "shapes compiled); then our engine and the plain rewrite run in turns and the best of each "
                       "is compared (our engine's cold first run beside it).")
    mem = by_name.get("memory")
    if mem and mem.figures.get("summary", {}).get("consumer_growth", 0) > 1.2:
        flush = mem.figures[str(max(sizes.memory_events))]["consumer"]["flush"]
        out.append("The consumer's peak grows with the burst at the default flush policy: a shard's buffer "
                   f"is flushed at {flush['max_records']:,} Kinesis records or {flush['max_bytes'] / 2**20:.0f} MiB, "
                   "and with KPL aggregation one Kinesis record holds thousands of events, so the byte limit is "
                   "the one that binds; until a burst fills it, the buffered wire bytes (and moto's whole-backlog "
                   "GetRecords responses: real Kinesis returns at most 10 MB) grow with the burst. A flush decodes "
                   "its buffer in slices (`streaming_consumer.core.SLICE_EVENTS`), so the decoded events no "
                   "longer do; the run with a small flush size and GetRecords limit shows the plateau.")
    return out


def render(steps: list[Step], profiles: list[Step], sizes: Sizes, quick: bool, spark: bool,
           started: dt.datetime, load_start: tuple[float, float, float], argv: list[str]) -> str:
    by_name = {s.name: s for s in steps}
    load_end = os.getloadavg()
    lines = ["# Benchmark results", "",
             f"Generated by `python bench/run_all.py{' ' + ' '.join(argv) if argv else ''}` on "
             f"{started:%Y-%m-%d %H:%M} UTC ({'quick' if quick else 'full'} mode"
             f"{', Spark included' if spark else ', no Spark'}). Every ratio below was measured in this one run. "
             "Throughputs are per CPU-second of one core (best of "
             f"{sizes.runs}); merge and freshness figures are wall seconds, with the load average beside them "
             "because other work shared the machine.", "",
             "## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in machine().items()]
    lines += [f"| load average at start / end | {fmt_load(load_start)} / {fmt_load(load_end)} |", "",
              "## Versions", "", "| package | version |", "|---|---|"]
    for package in ("pyarrow", "duckdb", "pyspark", "deltalake", "fastavro", "aws-kinesis-agg", "moto", "boto3",
                    "pyinstrument"):
        lines.append(f"| {package} | {version_of(package)} |")
    lines += ["", "## Figures", "", "| figure | measured | target | result |", "|---|---|---|---|"]
    lines += [f"| {r.figure} | {r.measured} | {r.target} | {r.verdict} |" for r in figure_rows(by_name, sizes)]
    found = notes(by_name, sizes, quick)
    if found:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in found]
    lines += ["", "## Steps", "", "| step | exit | wall s | CPU s (children) | load before | load after |",
              "|---|---|---|---|---|---|"]
    for s in steps + profiles:
        lines.append(f"| {s.name} | {s.returncode} | {s.wall_s:.1f} | {s.cpu_s:.1f} | {fmt_load(s.load_before)} "
                     f"| {fmt_load(s.load_after)} |")
    if profiles:
        lines += ["", "## Profiles", "",
                  "pyinstrument profiles of the CPU-bound cores (wall-clock samples of one pass over "
                  f"{sizes.profile_events:,} events) and of the two commands through the CLI ({sizes.cli_events:,} "
                  "events, the main thread: `produce`'s sender thread shows as its wait in `close`); the files "
                  "are in `bench/profiles/`, the ones from before issue #19's changes in `bench/profiles/before/`. "
                  "`[self]` of `wire.py` is time inside fastavro's compiled reader/writer."]
        for prof in profiles:
            path = REPO / prof.argv[-1]
            if prof.ok and path.exists():
                lines += ["", f"### {prof.name}", "", "```", profile_tree(path.read_text()), "```"]
    lines += ["", "## Output of each step", ""]
    for s in steps:
        lines += [f"### {s.name}", "", f"`{' '.join(s.argv)}`", "", "```", s.output or "(no output)", "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def profile_tree(text: str, limit: int = 40) -> str:
    """The call tree of a pyinstrument text profile without its banner."""
    lines = text.splitlines()
    start = next((i + 1 for i, line in enumerate(lines) if line.startswith("Profile at")), 0)
    return "\n".join([line for line in lines[start:] if line.strip()][:limit])


def fmt_load(load: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)
