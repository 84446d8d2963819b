"""Peak memory of the producer and the consumer over a burst of events, each in its own process.

    .venv/bin/python bench/bench_memory.py [--events 100000 200000] [--json OUT]

For each burst size, on moto's server (started here, on loopback) with a fresh stream:
a producer process sends the burst through ``ChangeEventProducer`` (spool, background
sender, KPL aggregation, PutRecords) and exits once Kinesis has it all; then a
consumer process runs the shard consumer until every shard is caught up and flushed
(``hybrid-ingest consume --until-idle``), writing the raw Parquet files. Each child
reports its peak resident set (``VmHWM`` of /proc/self/status) and its resident set
after imports and set-up, before the burst (the baseline), so the figure that matters,
peak minus baseline, is the burst's own memory. Bounded means: twice the events, about
the same peak (the producer sends in rounds of bounded size; the consumer flushes a
shard after ``FlushPolicy`` records or bytes, so its peak grows with the burst until a
shard's buffer reaches ``--flush-bytes``, and stays there). A buffer can also not be
smaller than one GetRecords response: real Kinesis returns at most 10 MB per call (and
a shard serves 2 MB/s), moto returns a shard's whole backlog at once; so to see the
plateau at these burst sizes run with a small ``--flush-bytes`` and ``--get-records-limit``
(Kinesis records per call, each a KPL aggregate of up to ~1 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TABLE = "orders"
CHUNK = 1_000


def status_mb(field: str) -> float:
    """A memory line of /proc/self/status (kB) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def child_settings(home: Path, endpoint: str, prefix: str) -> Any:
    from hybrid_ingest.config import Names, Settings

    return Settings(home=home, lake_uri=(home / "lake").as_uri(), endpoint_url=endpoint, names=Names(prefix))


def child_producer(home: Path, endpoint: str, prefix: str, events: int) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_producer import events as make_events

    from hybrid_ingest.aws import Clients
    from hybrid_ingest.registry import Registry
    from producers.producer import ChangeEventProducer, ProducerConfig

    settings = child_settings(home, endpoint, prefix)
    clients = Clients(settings)
    registry = Registry(clients.dynamodb, settings.names.registry_table)
    producer = ChangeEventProducer.open(clients.kinesis, settings.names.stream, registry.latest, home / "spool",
                                        ProducerConfig())
    producer.version(TABLE)
    baseline = status_mb("VmRSS")
    started = time.perf_counter()
    for first in range(0, events, CHUNK):
        # events are made a chunk at a time, as an application hands them over: the burst is not held twice
        chunk = make_events(min(CHUNK, events - first))
        for offset, event in enumerate(chunk):
            event["seq"] = first + offset
            event["row"]["order_id"] = first + offset
        producer.send_many(TABLE, chunk)
    if not producer.close(timeout=600):
        raise SystemExit(f"producer: {producer.records.spool.pending_count} events still spooled after 600 s")
    stats = producer.records.stats
    return {"events": events, "seconds": time.perf_counter() - started, "baseline_mb": baseline,
            "peak_mb": status_mb("VmHWM"), "kinesis_records": stats.records, "calls": stats.calls}


def child_consumer(home: Path, endpoint: str, prefix: str, events: int, flush_bytes: int | None,
                   get_records_limit: int | None) -> dict[str, Any]:
    from hybrid_ingest.aws import Clients
    from hybrid_ingest.lake import Lake
    from hybrid_ingest.registry import Registry
    from hybrid_ingest.state import StateStore
    from streaming_consumer.runtime import ConsumerConfig, FlushPolicy, Worker

    settings = child_settings(home, endpoint, prefix)
    names = settings.names
    clients = Clients(settings)
    lake = Lake.from_uri(settings.lake_uri)
    registry = Registry(clients.dynamodb, names.registry_table)
    store = StateStore(clients.dynamodb, names.state_table, names.runs_table)
    policy = FlushPolicy() if flush_bytes is None else FlushPolicy(max_bytes=flush_bytes)
    worker = Worker(clients.kinesis, store, lake, registry.by_fingerprint,
                    ConsumerConfig(stream=names.stream, flush=policy, idle_sleep_seconds=0.2,
                                   get_records_limit=get_records_limit or ConsumerConfig.get_records_limit))
    registry.latest(TABLE)
    baseline = status_mb("VmRSS")
    started = time.perf_counter()
    worker.run(until_idle=True)
    written = sum(s.records for s in worker.stats.values())
    if written != events:
        raise SystemExit(f"consumer: {written} of {events} events read")
    return {"events": events, "seconds": time.perf_counter() - started, "baseline_mb": baseline,
            "peak_mb": status_mb("VmHWM"), "files": sum(s.files for s in worker.stats.values()),
            "flush": {"max_records": worker.config.flush.max_records, "max_bytes": worker.config.flush.max_bytes,
                      "get_records_limit": worker.config.get_records_limit}}


def spawn(role: str, home: Path, endpoint: str, prefix: str, events: int, consumer_args: list[str]) -> dict[str, Any]:
    out = home / f"{role}.json"
    extra = consumer_args if role == "consumer" else []
    subprocess.run([sys.executable, __file__, "--child", role, "--home", str(home), "--endpoint", endpoint,
                    "--prefix", prefix, "--events", str(events), "--json", str(out), *extra], check=True, cwd=REPO)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def run(sizes: tuple[int, ...] = (100_000, 200_000), workdir: Path | None = None,
        flush_bytes: int | None = None, get_records_limit: int | None = None) -> dict[str, Any]:
    """Producer then consumer peak RSS per burst size; each size on its own stream and tables.

    ``flush_bytes`` and ``get_records_limit`` replace the consumer's defaults (per shard).
    """
    consumer_args = (["--flush-bytes", str(flush_bytes)] if flush_bytes else []) + (
        ["--get-records-limit", str(get_records_limit)] if get_records_limit else [])
    from hybrid_ingest.aws import Clients
    from hybrid_ingest.bootstrap import init
    from hybrid_ingest.lake import Lake
    from hybrid_ingest.local.stack import start_server

    server, endpoint = start_server()
    results: dict[str, Any] = {}
    try:
        for size in sizes:
            with tempfile.TemporaryDirectory(prefix="bench-memory-", dir=workdir) as tmp:
                home, prefix = Path(tmp), f"benchmem{size}"
                settings = child_settings(home, endpoint, prefix)
                init(Clients(settings), Lake.from_uri(settings.lake_uri), [REPO / "schemas"])
                producer = spawn("producer", home, endpoint, prefix, size, [])
                consumer = spawn("consumer", home, endpoint, prefix, size, consumer_args)
            results[str(size)] = {"producer": producer, "consumer": consumer}
            for role, r in (("producer", producer), ("consumer", consumer)):
                print(f"{size:>9,} events  {role:<8}  peak RSS {r['peak_mb']:7.1f} MB  (after set-up "
                      f"{r['baseline_mb']:6.1f} MB, burst +{r['peak_mb'] - r['baseline_mb']:6.1f} MB)  "
                      f"{r['seconds']:6.1f} s", flush=True)
    finally:
        server.stop()
    if len(sizes) > 1:
        lo, hi = results[str(min(sizes))], results[str(max(sizes))]
        results["summary"] = {f"{role}_growth": hi[role]["peak_mb"] / lo[role]["peak_mb"]
                              for role in ("producer", "consumer")}
        print(f"peak RSS at {max(sizes):,} / at {min(sizes):,} events: producer "
              f"{results['summary']['producer_growth']:.2f}, consumer {results['summary']['consumer_growth']:.2f}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[100_000, 200_000])
    parser.add_argument("--flush-bytes", type=int, default=None,
                        help="the consumer's per-shard flush size [default: FlushPolicy.max_bytes]")
    parser.add_argument("--get-records-limit", type=int, default=None,
                        help="the consumer's Kinesis records per GetRecords [default: ConsumerConfig's]")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here as JSON")
    parser.add_argument("--child", choices=["producer", "consumer"], help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        os.environ.setdefault("AWS_ENDPOINT_URL", args.endpoint)
        if args.child == "producer":
            figures = child_producer(args.home, args.endpoint, args.prefix, args.events[0])
        else:
            figures = child_consumer(args.home, args.endpoint, args.prefix, args.events[0], args.flush_bytes,
                                     args.get_records_limit)
    else:
        figures = run(tuple(args.events), args.workdir, args.flush_bytes, args.get_records_limit)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
