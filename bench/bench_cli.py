"""The ingest paths as users run them: ``hybrid-ingest produce`` and ``consume --until-idle`` through the CLI.

    .venv/bin/python bench/bench_cli.py [--events 300000] [--runs 3] [--json OUT]
    .venv/bin/python bench/bench_cli.py --events 50000 --profile-command produce --profile bench/profiles/cli_produce.txt

Each run starts from nothing on its own stack names (``HYBRID_INGEST_PREFIX``) on one
moto server (``hybrid-ingest local up``, a process of its own): ``init``, then the timed
``produce`` of a file of JSON lines, then the timed ``consume --until-idle`` of exactly those
events into raw Parquet. The commands are child processes timed whole (start-up and
imports included: what a user waits for); their CPU time is the child's own, and moto's
CPU time over the same interval is read from its process (``/proc/<pid>/stat``), so its
share is reported apart.

The table has five fields of Avro's primitive types (``bench5``), and its lines carry no
``ts``, so the baselines do exactly what the bare libraries do on the same lines:

* produce baseline: ``json.loads`` + ``fastavro.schemaless_writer`` of every line;
* consume baseline: ``fastavro.schemaless_reader`` of every event's body (the bytes the
  CLI put on the stream) + one Arrow table of the envelope and row columns + a zstd
  Parquet write.

Targets (issue #19): both commands >= 0.6 of their baseline. The figures are best of
``--runs``; the machine is shared, so the CPU-time ratio (the steadier one) is printed
beside the wall ratio, and the load average beside each. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "hybrid_ingest.cli"]
TABLE = "bench5"
SCHEMA: dict[str, Any] = {"type": "record", "name": TABLE, "fields": [
    {"name": "id", "type": "long"},
    {"name": "account", "type": "long"},
    {"name": "status", "type": "string"},
    {"name": "amount", "type": "double"},
    {"name": "active", "type": "boolean"},
]}
SPEC: dict[str, Any] = {"table": TABLE, "primary_key": ["id"], "partition": None, "compatibility": "BACKWARD"}
STATUSES = ("open", "paid", "shipped", "cancelled")


def json_lines(n: int) -> list[bytes]:
    """``n`` updates of ``n // 2`` keys, as ``produce`` reads them (no ``ts``: the envelope's default, null)."""
    return [json.dumps({"op": "u", "seq": i, "row": {
        "id": i % max(1, n // 2), "account": i % 977, "status": STATUSES[i % 4], "amount": (i % 10_000) * 0.25,
        "active": i % 3 == 0}}).encode() for i in range(n)]


@dataclass
class Timing:
    wall_s: float
    cpu_s: float
    moto_cpu_s: float = 0.0
    load: float = 0.0


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Stack:
    """One moto server for the whole bench (``local up``), and the CLI run against it."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {**os.environ, "HYBRID_INGEST_HOME": str(home), "PYTHONUNBUFFERED": "1"}
        self.env.pop("AWS_ENDPOINT_URL", None)
        self.cli("local", "up")
        self.pid: int | None = int(json.loads((home / "stack.json").read_text())["pid"])

    def cli(self, *args: str, prefix: str | None = None, cwd: Path = REPO, runner: list[str] | None = None
            ) -> Timing:
        env = {**self.env, **({"HYBRID_INGEST_PREFIX": prefix} if prefix else {})}
        moto, cpu, started = self.moto_cpu(), children_cpu(), time.perf_counter()
        proc = subprocess.run([*(runner or CLI), *args], cwd=cwd, env=env, capture_output=True, text=True,
                              check=False)
        timing = Timing(time.perf_counter() - started, children_cpu() - cpu, self.moto_cpu() - moto,
                        os.getloadavg()[0])
        if proc.returncode != 0:
            raise SystemExit(f"hybrid-ingest {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
        return timing

    def moto_cpu(self) -> float:
        pid = getattr(self, "pid", None)
        return process_cpu(pid) if pid and Path(f"/proc/{pid}").exists() else 0.0

    def down(self) -> None:
        self.cli("local", "down")
        self.pid = None


def best(timings: list[Timing]) -> Timing:
    return min(timings, key=lambda t: t.cpu_s)


def best_of(runs: int, fn: Callable[[], object]) -> Timing:
    timings = []
    for _ in range(runs):
        cpu, started = time.process_time(), time.perf_counter()
        fn()
        timings.append(Timing(time.perf_counter() - started, time.process_time() - cpu, load=os.getloadavg()[0]))
    return Timing(min(t.wall_s for t in timings), min(t.cpu_s for t in timings), load=timings[-1].load)


def bare_produce(lines: list[bytes], parsed: Any) -> None:
    for line in lines:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, json.loads(line))
        buf.getvalue()


def bare_consume(bodies: list[bytes], parsed: Any, out: Path) -> None:
    events: list[dict[str, Any]] = [fastavro.schemaless_reader(io.BytesIO(body), parsed, None)  # type: ignore[misc]
                                    for body in bodies]
    rows = [e["row"] for e in events]
    columns: dict[str, list[Any]] = {"_op": [e["op"] for e in events], "_seq": [e["seq"] for e in events],
                                     "_op_ts": [e["ts"] for e in events]}
    for f in SCHEMA["fields"]:
        columns[f["name"]] = [r[f["name"]] for r in rows]
    table = pa.table({**columns, "_op_ts": pa.array(columns["_op_ts"], pa.timestamp("us", tz="UTC"))})
    pq.write_table(table, out, compression="zstd")


def envelope_bodies(lines: list[bytes]) -> tuple[Any, list[bytes]]:
    """The parsed envelope schema and each line's Avro body, as the CLI puts them on the stream."""
    from hybrid_ingest.registry import SchemaVersion
    from hybrid_ingest.tables import envelope_schema, spec_from_documents
    from hybrid_ingest.wire import HEADER_SIZE, fingerprint
    from producers.events import encode_lines

    spec = spec_from_documents(SPEC, SCHEMA)
    version = SchemaVersion(spec, 1, fingerprint(envelope_schema(spec)), envelope=envelope_schema(spec))
    entries, _, bad = encode_lines(version, lines)
    assert not bad
    return version.codec.parsed, [data[HEADER_SIZE:] for _, data in entries]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def workspace(work: Path, lines: list[bytes]) -> Path:
    """The bench table's schema folder and its events as JSON lines in ``work``; returns the events file."""
    (work / "schemas").mkdir()
    (work / "schemas" / f"{TABLE}.avsc").write_text(json.dumps(SCHEMA))
    (work / "schemas" / f"{TABLE}.table.json").write_text(json.dumps(SPEC))
    data = work / "events.jsonl"
    data.write_bytes(b"\n".join(lines) + b"\n")
    return data


def run(n_events: int = 300_000, runs: int = 3) -> dict[str, Any]:
    lines = json_lines(n_events)
    parsed, bodies = envelope_bodies(lines)
    figures: dict[str, Any] = {"events": n_events, "runs": runs, "table": TABLE, "load_start": load()}
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        work = Path(tmp)
        data = workspace(work, lines)
        one = work / "one.jsonl"
        one.write_bytes(lines[0] + b"\n")
        print(f"{n_events:,} {TABLE} events ({data.stat().st_size / 1e6:.1f} MB of JSON lines), best of {runs}; "
              f"load {load()}", flush=True)

        bare_p = best_of(runs, lambda: bare_produce(lines, parsed))
        bare_c = best_of(runs, lambda: bare_consume(bodies, parsed, work / "bare.parquet"))
        stack = Stack(work / "home")
        try:
            produced: list[Timing] = []
            consumed: list[Timing] = []
            startup: list[Timing] = []
            for run_no in range(runs):
                prefix = f"bcli{run_no}"
                stack.cli("init", "--schemas", str(work / "schemas"), prefix=prefix)
                startup.append(stack.cli("produce", TABLE, "--input", str(one), prefix=prefix))
                produced.append(stack.cli("produce", TABLE, "--input", str(data), prefix=prefix))
                consumed.append(stack.cli("consume", "--until-idle", prefix=prefix))
                print(f"  run {run_no + 1}: produce {produced[-1].wall_s:.2f} s wall / {produced[-1].cpu_s:.2f} s "
                      f"CPU (moto {produced[-1].moto_cpu_s:.2f} s); consume {consumed[-1].wall_s:.2f} s wall / "
                      f"{consumed[-1].cpu_s:.2f} s CPU (moto {consumed[-1].moto_cpu_s:.2f} s); load {load()}",
                      flush=True)
        finally:
            stack.down()
    p, c, s = best(produced), best(consumed), best(startup)
    figures.update({
        "bare_produce": asdict(bare_p), "produce": asdict(p), "produce_startup": asdict(s),
        "bare_consume": asdict(bare_c), "consume": asdict(c),
        "produce_ratio": bare_p.wall_s / p.wall_s, "produce_cpu_ratio": bare_p.cpu_s / p.cpu_s,
        "consume_ratio": bare_c.wall_s / c.wall_s, "consume_cpu_ratio": bare_c.cpu_s / c.cpu_s,
        "consume_ratio_without_moto": bare_c.wall_s / max(c.wall_s - c.moto_cpu_s, 1e-9),
        "consume_moto_share": c.moto_cpu_s / c.wall_s, "produce_moto_share": p.moto_cpu_s / p.wall_s,
        "load_end": load(),
    })
    n = n_events
    print(f"produce baseline (json.loads + fastavro encode) {n / bare_p.wall_s:>9,.0f} events/s wall, "
          f"{n / bare_p.cpu_s:>9,.0f} per CPU-s")
    print(f"hybrid-ingest produce (whole command)          {n / p.wall_s:>9,.0f} events/s wall, "
          f"{n / p.cpu_s:>9,.0f} per CPU-s; start-up (one line) {s.wall_s:.2f} s wall; moto "
          f"{p.moto_cpu_s:.2f} s CPU ({figures['produce_moto_share']:.0%} of the wall)")
    print(f"  produce / baseline: {figures['produce_ratio']:.2f} wall, {figures['produce_cpu_ratio']:.2f} CPU "
          f"(target >= 0.6)")
    print(f"consume baseline (decode + Arrow + Parquet)    {n / bare_c.wall_s:>9,.0f} events/s wall, "
          f"{n / bare_c.cpu_s:>9,.0f} per CPU-s")
    print(f"hybrid-ingest consume --until-idle             {n / c.wall_s:>9,.0f} events/s wall, "
          f"{n / c.cpu_s:>9,.0f} per CPU-s; moto {c.moto_cpu_s:.2f} s CPU "
          f"({figures['consume_moto_share']:.0%} of the wall)")
    print(f"  consume / baseline: {figures['consume_ratio']:.2f} wall, {figures['consume_cpu_ratio']:.2f} CPU, "
          f"{figures['consume_ratio_without_moto']:.2f} wall without moto's CPU (target >= 0.6); "
          f"load {figures['load_end']}")
    return figures


def profile(n_events: int, command: str, out: Path) -> None:
    """pyinstrument's text profile of one whole ``produce`` or ``consume --until-idle`` (its main thread)."""
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        work = Path(tmp)
        data = workspace(work, json_lines(n_events))
        out.parent.mkdir(parents=True, exist_ok=True)
        runner = [sys.executable, "-m", "pyinstrument", "--renderer", "text", "--outfile", str(out.resolve()), "-m",
                  "hybrid_ingest.cli"]
        stack = Stack(work / "home")
        try:
            stack.cli("init", "--schemas", str(work / "schemas"), prefix="bcliprof")
            produce = ("produce", TABLE, "--input", str(data))
            stack.cli(*produce, prefix="bcliprof", runner=runner if command == "produce" else None)
            if command == "consume":
                stack.cli("consume", "--until-idle", prefix="bcliprof", runner=runner)
        finally:
            stack.down()
    print(f"profile of hybrid-ingest {command} over {n_events:,} {TABLE} events written to {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile-command", choices=["produce", "consume"], default="produce")
    parser.add_argument("--profile", type=Path, default=None,
                        help="write a pyinstrument profile of --profile-command here instead")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here as JSON")
    args = parser.parse_args()
    if args.profile:
        profile(args.events, args.profile_command, args.profile)
        return
    figures = run(args.events, args.runs)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
