"""Consumer throughput on one core beside bare fastavro decoding of the same records.

    .venv/bin/python bench/bench_consumer.py [--events 200000] [--table orders] [--repeat 3] [--json OUT]
    .venv/bin/python bench/bench_consumer.py --profile bench/profiles/consumer.txt

The consumer figure covers what one shard's micro-batch costs: KPL deaggregation (MD5
check + protobuf), fingerprint lookup, Avro decoding, validation, routing into Arrow
columns and an atomic zstd Parquet write to a local lake. The baseline is a plain loop of
``fastavro.schemaless_reader`` over the same user records' bodies. The target is a
consumer at >= 50% of the baseline. Prints figures; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import io
import json
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
from aws_kinesis_agg.aggregator import RecordAggregator

from hybrid_ingest.lake import Lake
from hybrid_ingest.registry import SchemaVersion
from hybrid_ingest.tables import envelope_schema, load_spec
from hybrid_ingest.wire import HEADER_SIZE, fingerprint
from streaming_consumer.core import KinesisRecord, build_batch
from streaming_consumer.sink import write_batch

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
EPOCH = dt.datetime(2026, 11, 21, 10, tzinfo=dt.UTC)


def event(table: str, key: int) -> dict[str, Any]:
    if table == "orders":
        row: dict[str, Any] = {
            "order_id": key, "customer_id": key % 1000, "order_date": dt.date(2026, 1 + key % 12, 1 + key % 28),
            "status": "shipped", "total_amount": decimal.Decimal(key % 100000) / 100, "currency": "EUR",
            "item_count": key % 9, "weight_kg": 1.25, "discount_rate": 0.05,
            "placed_at": EPOCH, "external_ref": uuid.UUID(int=key), "notes": None,
        }
    else:
        row = {
            "customer_id": key, "email": f"c{key}@example.com", "full_name": f"Customer {key}", "country": "FR",
            "tier": "gold", "credit_limit": decimal.Decimal("1000.50"), "is_active": True,
            "signup_date": dt.date(2024, 1, 1), "updated_at": EPOCH, "phone": None,
        }
    return {"op": "u", "seq": key, "ts": EPOCH, "row": row}


def kinesis_records(table: str, version: SchemaVersion, count: int) -> tuple[list[KinesisRecord], list[bytes]]:
    payloads = [version.codec.encode(event(table, k)) for k in range(count)]
    aggregator = RecordAggregator()
    packed: list[bytes] = []
    for k, payload in enumerate(payloads):
        full = aggregator.add_user_record(f"{table}|{k}", payload)
        if full is not None:
            packed.append(full.get_contents()[2])
    if aggregator.get_num_user_records():
        packed.append(aggregator.clear_and_get().get_contents()[2])
    records = [KinesisRecord(data, str(i + 1), f"{table}|{i}", EPOCH) for i, data in enumerate(packed)]
    return records, payloads


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    timings = []
    for _ in range(repeat):
        # CPU time of this process: the figure per core, and less at the mercy of other load
        start = time.process_time()
        fn()
        timings.append(time.process_time() - start)
    return min(timings)


def table_version(table: str) -> SchemaVersion:
    spec = load_spec(SCHEMAS / f"{table}.avsc")
    return SchemaVersion(spec, 1, fingerprint(envelope_schema(spec)))


def run(events: int = 200_000, table: str = "orders", repeat: int = 3) -> dict[str, Any]:
    """The figures (events per CPU-second) and the ratio to bare fastavro; prints them as it goes."""
    version = table_version(table)
    records, payloads = kinesis_records(table, version, events)
    parsed = version.codec.parsed

    def bare() -> None:
        for payload in payloads:
            fastavro.schemaless_reader(io.BytesIO(payload[HEADER_SIZE:]), parsed, None)

    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake.from_uri(Path(tmp).as_uri())
        written: list[int] = []

        def consumer() -> None:
            result = build_batch("shardId-000000000000", records, lambda fp: version)
            written.append(write_batch(lake, result).rows)

        t_bare = best_of(repeat, bare)
        t_core = best_of(repeat, lambda: build_batch("shardId-000000000000", records, lambda fp: version))
        t_consumer = best_of(repeat, consumer)
        if written[-1] != events:
            raise RuntimeError(f"{written[-1]} of {events} events written: the consumer lost events")
        size = sum(f.size for f in lake.files("raw", ".parquet"))

    n = events
    figures: dict[str, Any] = {
        "events": n, "table": table, "kinesis_records": len(records), "bare_per_s": n / t_bare,
        "core_per_s": n / t_core, "consumer_per_s": n / t_consumer, "core_ratio": t_bare / t_core,
        "ratio": t_bare / t_consumer, "parquet_mb": size / 1e6,
    }
    print(f"table {table}: {n} events in {len(records)} KPL aggregates, one core, best of {repeat} by CPU time")
    print(f"  bare fastavro decode            {n / t_bare:>10,.0f} events/s")
    print(f"  consumer core (no write)        {n / t_core:>10,.0f} events/s  ({t_bare / t_core:.0%} of bare)")
    print(f"  consumer + Parquet write        {n / t_consumer:>10,.0f} events/s  ({t_bare / t_consumer:.0%} of bare)"
          f"  file {size / 1e6:.1f} MB")
    print(f"  target: consumer >= 50% of bare -> {'met' if t_bare / t_consumer >= 0.5 else 'NOT met'}")
    return figures


def profile(events: int, table: str, out: Path) -> None:
    """pyinstrument's text profile of one deaggregate+decode+Parquet pass (the consumer's CPU-bound core)."""
    from pyinstrument import Profiler

    version = table_version(table)
    records, _ = kinesis_records(table, version, events)
    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake.from_uri(Path(tmp).as_uri())
        profiler = Profiler(interval=0.0005)
        profiler.start()
        write_batch(lake, build_batch("shardId-000000000000", records, lambda fp: version))
        profiler.stop()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
    print(f"profile of deaggregate+decode+Parquet over {events:,} {table} events written to {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--table", choices=["orders", "customers"], default="orders")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here as JSON")
    parser.add_argument("--profile", type=Path, default=None, help="write a pyinstrument profile here instead")
    args = parser.parse_args()
    if args.profile:
        profile(args.events, args.table, args.profile)
        return
    figures = run(args.events, args.table, args.repeat)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
