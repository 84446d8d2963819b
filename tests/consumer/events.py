"""Change events and Kinesis records for the consumer tests, built the way producers build them."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from aws_kinesis_agg.aggregator import RecordAggregator

from hybrid_ingest.lake import Lake
from hybrid_ingest.registry import SchemaVersion
from streaming_consumer.core import KinesisRecord
from streaming_consumer.shards import hash_key, list_shards

EPOCH = dt.datetime(2026, 11, 21, 10, 0, tzinfo=dt.UTC)


def customer_event(key: int, seq: int, op: str = "c") -> dict[str, Any]:
    if op == "d":
        return {"op": "d", "seq": seq, "ts": EPOCH, "row": {"customer_id": key}}
    return {
        "op": op, "seq": seq, "ts": EPOCH + dt.timedelta(seconds=seq),
        "row": {
            "customer_id": key, "email": f"c{key}@example.com", "full_name": f"Customer {key}",
            "country": "FR", "tier": "gold", "credit_limit": decimal.Decimal("1000.50"), "is_active": True,
            "signup_date": dt.date(2024, 1, 1), "updated_at": EPOCH, "phone": None,
        },
    }


def order_event(key: int, seq: int) -> dict[str, Any]:
    return {
        "op": "c", "seq": seq, "ts": EPOCH,
        "row": {
            "order_id": key, "customer_id": key % 7, "order_date": dt.date(2026, 11, 1 + key % 28),
            "status": "new", "total_amount": decimal.Decimal("12.34"), "currency": "EUR", "item_count": 2,
            "weight_kg": 1.5, "discount_rate": 0.1, "placed_at": EPOCH,
            "external_ref": uuid.UUID(int=key), "notes": None,
        },
    }


def partition_key(table: str, key: int) -> str:
    return f"{table}|{key}"


def aggregate(items: Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Pack (partition key, user record) pairs with the KPL format, as producers do."""
    aggregator = RecordAggregator()
    out: list[tuple[str, bytes]] = []
    for key, data in items:
        full = aggregator.add_user_record(key, data)
        if full is not None:
            out.append(_packed(full))
    if aggregator.get_num_user_records():
        out.append(_packed(aggregator.clear_and_get()))
    return out


def _packed(agg: Any) -> tuple[str, bytes]:
    key, _explicit_hash_key, data = agg.get_contents()
    return key, data


def encode(version: SchemaVersion, events: Iterable[dict[str, Any]]) -> list[bytes]:
    return [version.codec.encode(e) for e in events]


def kinesis_records(payloads: list[bytes], keys: list[str] | None = None, start: int = 1) -> list[KinesisRecord]:
    """Records as GetRecords would return them on one shard (sequence numbers from ``start``)."""
    return [
        KinesisRecord(data, str(start + i), keys[i] if keys else f"k{i}", EPOCH + dt.timedelta(seconds=i))
        for i, data in enumerate(payloads)
    ]


def put_aggregated(kinesis: Any, stream: str, items: list[tuple[str, bytes]], aggregated: bool = True) -> None:
    """Put user records the way the producers do: KPL-aggregated per shard, 500 Kinesis records a call."""
    shards = [s for s in list_shards(kinesis, stream) if not s.closed]
    groups: dict[str, list[tuple[str, bytes]]] = {s.shard_id: [] for s in shards}
    start_key = {s.shard_id: str(s.hash_range[0]) for s in shards}
    for key, data in items:
        hashed = hash_key(key)
        owner = next(s.shard_id for s in shards if s.hash_range[0] <= hashed <= s.hash_range[1])
        groups[owner].append((key, data))
    entries: list[dict[str, Any]] = []
    for shard_id, group in groups.items():
        packed = aggregate(group) if aggregated else group
        entries += [{"PartitionKey": key, "Data": data, "ExplicitHashKey": start_key[shard_id]}
                    for key, data in packed]
    for start in range(0, len(entries), 500):
        response = kinesis.put_records(StreamName=stream, Records=entries[start:start + 500])
        assert response["FailedRecordCount"] == 0


def read_raw(lake: Lake, table: str) -> pa.Table:
    files = lake.files(f"raw/{table}", ".parquet")
    tables = [pq.read_table(f.path, filesystem=lake.fs) for f in files]
    return pa.concat_tables(tables, promote_options="default") if tables else pa.table({})


def read_dlq(lake: Lake) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for info in lake.files("dlq", ".jsonl"):
        out += [json.loads(line) for line in lake.read_bytes(lake.rel(info.path)).decode().splitlines()]
    return out
