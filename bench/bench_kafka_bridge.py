"""Kafka bridge throughput: events/s from a Kafka topic into the producer's spool, beside the bare producer.

Prints figures only (no assertions). Run:
``python bench/bench_kafka_bridge.py [--events N] [--runs R] [--json OUT]``; ``run()`` returns the
figures for ``bench/run_all.py``.

* bare producer: what ``hybrid-ingest produce`` does before the network, on the same JSON lines:
  parse + validate + Avro-encode every line (``encode_lines``), then append to the spool in chunks of
  10,000 (fsync policy).
* bridge: ``KafkaBridge`` with its default batch (1000 messages a poll) reading the same lines from a
  3-partition topic on a local Tansu broker (loopback), into a spool of the same policy, committing
  each batch. Timed from the group assignment to the last message settled, so the group join (~5 s on
  Tansu) is left out; the CPU figure is this process's (the client's IO thread included, the broker not).

Neither sends to Kinesis: both stop at the spool, where ``send`` and the bridge's commit consider an
event safe. Target: the bridge at >= 0.5 of the bare producer.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
from kafka import KafkaConsumer

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the broker launcher is the tests' own (tests/producers/tansu.py)

from bench_producer import events, orders_version  # noqa: E402

from hybrid_ingest.convert import to_json_value  # noqa: E402
from hybrid_ingest.lake import Lake  # noqa: E402
from hybrid_ingest.registry import SchemaVersion  # noqa: E402
from producers.events import encode_lines  # noqa: E402
from producers.kafka_bridge import KafkaBridge  # noqa: E402
from producers.kinesis import KinesisDelivery  # noqa: E402
from producers.producer import ChangeEventProducer, RecordProducer  # noqa: E402
from producers.spool import Spool  # noqa: E402
from tests.producers.tansu import GROUP_TIMEOUTS, Broker, fresh_group, running_broker  # noqa: E402

TOPIC = "bench.orders"
PARTITIONS = 3
PUT_CHUNK = 10_000  # hybrid_ingest.cli.produce's chunk


def json_lines(n: int) -> list[tuple[int, bytes]]:
    """(order_id, JSON line) in the ``produce`` format."""
    out = []
    for e in events(n):
        doc = {"op": e["op"], "seq": e["seq"], "ts": to_json_value(e["ts"]),
               "row": {k: to_json_value(v) for k, v in e["row"].items()}}
        out.append((e["row"]["order_id"], json.dumps(doc).encode()))
    return out


def offline_producer(spool_dir: Path) -> RecordProducer:
    """A producer whose sender never runs: events stop in the spool, nothing is sent anywhere."""
    kinesis = boto3.client("kinesis", region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
                           aws_access_key_id="bench", aws_secret_access_key="bench")
    return RecordProducer(Spool(spool_dir), KinesisDelivery(kinesis, "bench"), background=False)


def bare_once(version: SchemaVersion, lines: list[bytes], tmp: Path) -> tuple[float, float]:
    producer = offline_producer(tmp / f"bare-{time.monotonic_ns()}")
    wall, cpu = time.perf_counter(), time.process_time()
    entries, _errors, bad = encode_lines(version, lines)
    for start in range(0, len(entries), PUT_CHUNK):
        producer.put(entries[start:start + PUT_CHUNK])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert bad == 0
    assert producer.spool.pending_count == len(lines)
    producer.spool.close()
    return wall, cpu


def bridge_once(broker: Broker, version: SchemaVersion, n: int, tmp: Path) -> tuple[float, float]:
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=fresh_group(), enable_auto_commit=False,
                             auto_offset_reset="earliest", max_poll_records=1000, **GROUP_TIMEOUTS)
    records = offline_producer(tmp / f"bridge-{time.monotonic_ns()}")
    producer = ChangeEventProducer(records, lambda _table: version)
    bridge = KafkaBridge(consumer, producer, {TOPIC: "orders"}, Lake.from_uri((tmp / "lake").as_uri()))
    started: list[tuple[float, float]] = []
    assigned = bridge.assigned

    def timing(partitions: Any) -> None:
        started.append((time.perf_counter(), time.process_time()))
        assigned(partitions)

    bridge.assigned = timing  # type: ignore[method-assign]
    bridge.subscribe()
    deadline = time.monotonic() + 600
    while bridge.stats.polled < n:
        bridge.run_once(timeout_ms=500)
        assert time.monotonic() < deadline, f"bridge stalled at {bridge.stats}"
    wall, cpu = time.perf_counter() - started[0][0], time.process_time() - started[0][1]
    consumer.close(autocommit=False)
    assert records.spool.pending_count == n
    assert bridge.stats.forwarded == n
    records.spool.close()
    return wall, cpu


def run(n_events: int = 50_000, runs: int = 2) -> dict[str, Any]:
    version = orders_version()
    keyed = json_lines(n_events)
    lines = [line for _, line in keyed]
    with tempfile.TemporaryDirectory(prefix="bench-kafka-") as tmp_name:
        tmp = Path(tmp_name)
        with running_broker(tmp) as broker:
            broker.create_topic(TOPIC, PARTITIONS)
            published = time.perf_counter()
            broker.publish(TOPIC, ((order_id % PARTITIONS, line) for order_id, line in keyed))
            published = time.perf_counter() - published
            bare = [bare_once(version, lines, tmp) for _ in range(runs)]
            bridged = [bridge_once(broker, version, n_events, tmp) for _ in range(runs)]
    bare_wall, bare_cpu = min(w for w, _ in bare), min(c for _, c in bare)
    bridge_wall, bridge_cpu = min(w for w, _ in bridged), min(c for _, c in bridged)
    figures = {
        "events": n_events, "runs": runs, "avg_json_bytes": sum(map(len, lines)) / n_events,
        "bare_per_s": n_events / bare_wall, "bare_cpu_per_s": n_events / bare_cpu,
        "bridge_per_s": n_events / bridge_wall, "bridge_cpu_per_s": n_events / bridge_cpu,
        "ratio": bare_wall / bridge_wall, "cpu_ratio": bare_cpu / bridge_cpu,
        "publish_per_s": n_events / published,
    }
    print(f"events: {n_events:,} orders change events as JSON lines (avg {figures['avg_json_bytes']:.0f} bytes), "
          f"best of {runs}; published to Tansu at {figures['publish_per_s']:,.0f} events/s (not timed below)")
    print(f"bare producer (encode_lines + spool, fsync): {figures['bare_per_s']:>9,.0f} events/s wall, "
          f"{figures['bare_cpu_per_s']:>9,.0f} events/CPU-s")
    print(f"kafka bridge (topic -> spool, fsync)        : {figures['bridge_per_s']:>9,.0f} events/s wall, "
          f"{figures['bridge_cpu_per_s']:>9,.0f} events/CPU-s")
    print(f"bridge / bare producer: {figures['ratio']:.2f} wall, {figures['cpu_ratio']:.2f} CPU (target >= 0.5)")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here as JSON")
    args = parser.parse_args()
    figures = run(args.events, args.runs)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
