"""Kinesis unreachable: send() keeps accepting without waiting; the spool drains in order once it is back."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any, cast

import pytest
from botocore.exceptions import EndpointConnectionError

from hybrid_ingest.aws import Clients
from hybrid_ingest.errors import UnknownTableError
from hybrid_ingest.registry import Registry, SchemaVersion
from producers import ChangeEventProducer, ProducerConfig, RecordProducer
from producers.kinesis import KinesisDelivery
from producers.schemas import cached_lookup
from producers.spool import Spool
from tests.producers.helpers import FlakyKinesis, interleaved_events, order_event, read_stream


def test_outage_spools_then_restart_drains_before_newer_events(initialized: Clients, registry: Registry,
                                                               tmp_path: Path) -> None:
    stream = initialized.settings.names.stream
    down = FlakyKinesis(initialized.kinesis, entry_failure_rate=0, call_failure_rate=0, outage_calls=10**9)
    delivery = KinesisDelivery(cast(Any, down), stream, base_delay=0.005, max_delay=0.02)
    producer = ChangeEventProducer(RecordProducer(Spool(tmp_path / "spool"), delivery,
                                                  ProducerConfig(flush_count=20, linger=0.01)), registry.latest)
    events = interleaved_events(keys=10, per_key=30, seed=8)
    old, new = events[:200], events[200:]
    for e in old:
        producer.send("orders", e)
    # every send() returned while the stream stayed unreachable: each event waits in the spool, none was sent
    assert producer.records.spool.pending_count == len(old)
    assert not producer.close(timeout=0.3)
    assert down.calls > 1
    assert delivery.stats.failures_by_code.get("EndpointConnectionError", 0) == down.calls
    assert read_stream(initialized.kinesis, stream, registry) == {
        "shardId-000000000000": [], "shardId-000000000001": []}

    back = ChangeEventProducer.open(initialized.kinesis, stream, registry.latest, tmp_path / "spool",
                                    ProducerConfig(linger=0.01))
    assert back.records.spool.pending_count == len(old)
    back.send_many("orders", new)
    assert back.close(timeout=30)
    got: dict[int, list[int]] = defaultdict(list)
    for evs in read_stream(initialized.kinesis, stream, registry).values():
        for e in evs:
            got[e["row"]["order_id"]].append(e["seq"])
    want: dict[int, list[int]] = defaultdict(list)
    for e in events:
        want[e["row"]["order_id"]].append(e["seq"])
    assert got == want


def test_linger_sends_without_an_explicit_flush(initialized: Clients, registry: Registry, tmp_path: Path) -> None:
    stream = initialized.settings.names.stream
    producer = ChangeEventProducer.open(initialized.kinesis, stream, registry.latest, tmp_path / "spool",
                                        ProducerConfig(flush_count=10**6, linger=0.05))
    producer.send("orders", order_event(1, 1, op="c"))
    deadline = time.monotonic() + 10
    while producer.records.spool.pending_count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert producer.records.spool.pending_count == 0
    shards = read_stream(initialized.kinesis, stream, registry)
    assert [e["seq"] for evs in shards.values() for e in evs] == [1]
    assert producer.close()


def test_schema_lookup_falls_back_to_the_local_copy(registry: Registry, tmp_path: Path) -> None:
    reachable = True

    def flaky_latest(table: str) -> SchemaVersion:
        if not reachable:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1/")
        return registry.latest(table)

    latest = cached_lookup(flaky_latest, tmp_path / "schemas")
    online = latest("orders")
    reachable = False
    offline = latest("orders")
    assert offline.fingerprint == online.fingerprint
    assert offline.codec.encode(order_event(1, 1)) == online.codec.encode(order_event(1, 1))
    with pytest.raises(EndpointConnectionError):
        latest("customers")  # never looked up while online: no copy to fall back on
    reachable = True
    with pytest.raises(UnknownTableError):
        latest("nope")
