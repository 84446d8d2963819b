"""Workers, clocks, streams and what-the-merge-sees views shared by the consumer tests."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from hybrid_ingest import rawformat
from hybrid_ingest.aws import Clients
from hybrid_ingest.lake import Lake
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore
from streaming_consumer.runtime import ConsumerConfig, FlushPolicy, Worker
from tests.consumer.events import customer_event, put_aggregated, read_raw


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def config(stream: str, **flush: Any) -> ConsumerConfig:
    return ConsumerConfig(stream=stream, flush=FlushPolicy(**flush), lease_seconds=10, idle_sleep_seconds=0,
                          rebalance_seconds=0)


def make_store(clients: Clients, clock: FakeClock, cls: type[StateStore] = StateStore) -> StateStore:
    names = clients.settings.names
    return cls(clients.dynamodb, names.state_table, names.runs_table, clock=clock)


def worker(clients: Clients, lake: Lake, registry: Registry, cfg: ConsumerConfig, clock: FakeClock,
           store_cls: type[StateStore] = StateStore, name: str | None = None) -> Worker:
    return Worker(clients.kinesis, make_store(clients, clock, store_cls), lake, registry.by_fingerprint, cfg,
                  worker_id=name, clock=clock)


def produce_customers(clients: Clients, registry: Registry, stream: str, keys: range, seq: int = 1,
                      aggregated: bool = True) -> list[tuple[int, int]]:
    version = registry.latest("customers")
    items = [(f"customers|{k}", version.codec.encode(customer_event(k, seq))) for k in keys]
    put_aggregated(clients.kinesis, stream, items, aggregated)
    return [(k, seq) for k in keys]


def merged_view(lake: Lake) -> Counter[tuple[int, int]]:
    """What the merge would see: raw rows deduplicated on (_shard, _kpos), counted per (key, seq)."""
    raw = read_raw(lake, "customers").to_pylist()
    unique = {(r[rawformat.SHARD], r[rawformat.KPOS]): (r["customer_id"], r[rawformat.SEQ]) for r in raw}
    return Counter(unique.values())


def wait_active(clients: Clients, stream: str, timeout: float = 30.0) -> None:
    """Kinesis (and kinesis-mock) create and reshard asynchronously; moto is ACTIVE at once."""
    deadline = time.monotonic() + timeout
    while True:
        summary = clients.kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
        if summary["StreamStatus"] == "ACTIVE":
            return
        assert time.monotonic() < deadline, f"stream {stream} still {summary['StreamStatus']} after {timeout} s"
        time.sleep(0.05)


def make_stream(clients: Clients, name: str, shards: int) -> str:
    clients.kinesis.create_stream(StreamName=name, ShardCount=shards)
    wait_active(clients, name)
    return name
