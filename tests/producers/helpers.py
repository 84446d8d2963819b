"""Test helpers: generated events, reading the stream back, and a flaky Kinesis proxy."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import random
import uuid
from typing import Any

from aws_kinesis_agg.deaggregator import iter_deaggregate_records
from botocore.exceptions import ClientError, EndpointConnectionError

from hybrid_ingest.convert import to_json_value
from hybrid_ingest.registry import Registry
from hybrid_ingest.wire import split_header

UTC = dt.UTC


def order_event(order_id: int, seq: int, op: str = "u", status: str = "open") -> dict[str, Any]:
    if op == "d":
        return {"op": "d", "seq": seq, "ts": None, "row": {"order_id": order_id}}
    return {
        "op": op, "seq": seq, "ts": dt.datetime(2026, 1, 1, 12, tzinfo=UTC) + dt.timedelta(seconds=seq),
        "row": {
            "order_id": order_id, "customer_id": order_id % 17, "order_date": dt.date(2026, 1 + order_id % 12, 3),
            "status": status, "total_amount": decimal.Decimal("19.99"), "currency": "EUR", "item_count": 2,
            "weight_kg": None, "discount_rate": 0.05, "placed_at": dt.datetime(2026, 1, 2, tzinfo=UTC),
            "external_ref": str(uuid.UUID(int=order_id)), "notes": None,
        },
    }


def interleaved_events(keys: int, per_key: int, seed: int = 7) -> list[dict[str, Any]]:
    """Events for ``keys`` orders, ``per_key`` each, seq increasing per key, keys interleaved randomly."""
    rng = random.Random(seed)
    remaining = {k: 0 for k in range(keys)}
    out = []
    seq = 0
    while remaining:
        key = rng.choice(list(remaining))
        seq += 1
        out.append(order_event(key, seq, op="c" if remaining[key] == 0 else "u", status=f"s{remaining[key]}"))
        remaining[key] += 1
        if remaining[key] == per_key:
            del remaining[key]
    return out


def event_json(event: dict[str, Any]) -> bytes:
    """An event as one line of the ``produce`` format (also a Kafka message value for the bridge)."""
    return json.dumps({"op": event["op"], "seq": event["seq"], "ts": to_json_value(event["ts"]),
                       "row": {k: to_json_value(v) for k, v in event["row"].items()}}).encode()


def seqs_per_key(shards: dict[str, list[dict[str, Any]]]) -> dict[int, list[int]]:
    """Each order's seqs in the order the stream holds them (shards are read whole, one after another)."""
    got: dict[int, list[int]] = {}
    for events in shards.values():
        for e in events:
            if e["_pk"].startswith("orders|"):
                got.setdefault(e["row"]["order_id"], []).append(e["seq"])
    return got


def read_stream(kinesis: Any, stream: str, registry: Registry) -> dict[str, list[dict[str, Any]]]:
    """Every user record of every shard, deaggregated and decoded by fingerprint, per shard in order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        sid = shard["ShardId"]
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=sid,
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        events: list[dict[str, Any]] = []
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=1000)
            for user in iter_deaggregate_records(page["Records"], data_format="Boto3"):
                data = base64.b64decode(user["kinesis"]["data"])
                fp, _ = split_header(data)
                events.append(registry.by_fingerprint(fp).codec.decode(data)
                              | {"_pk": user["kinesis"]["partitionKey"]})
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
        out[sid] = events
    return out


class FlakyKinesis:
    """A proxy over a real (moto) Kinesis client that refuses some PutRecords entries or whole calls.

    Refused entries are NOT forwarded to the server, so the stream holds exactly what
    the producer was told was accepted, like a real partial failure.
    """

    def __init__(self, real: Any, entry_failure_rate: float = 0.3, call_failure_rate: float = 0.1,
                 seed: int = 1, outage_calls: int = 0) -> None:
        self.real = real
        self.rng = random.Random(seed)
        self.entry_failure_rate = entry_failure_rate
        self.call_failure_rate = call_failure_rate
        self.outage_calls = outage_calls
        self.calls = 0
        self.refused_entries = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.outage_calls:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1/")
        if self.rng.random() < self.call_failure_rate:
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException",
                                         "Message": "Rate exceeded"}}, "PutRecords")
        refused = [self.rng.random() < self.entry_failure_rate for _ in Records]
        forward = [r for r, bad in zip(Records, refused, strict=True) if not bad]
        results = iter(self.real.put_records(StreamName=StreamName, Records=forward)["Records"] if forward else [])
        out = []
        for bad in refused:
            if bad:
                self.refused_entries += 1
                out.append({"ErrorCode": "ProvisionedThroughputExceededException",
                            "ErrorMessage": "Rate exceeded for shard"})
            else:
                out.append(next(results))
        return {"FailedRecordCount": sum(refused), "Records": out}
