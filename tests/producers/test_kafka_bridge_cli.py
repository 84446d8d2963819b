"""``hybrid-ingest bridge kafka`` on a real broker (Tansu): round trip to curated, SIGKILL, rebalance, refusals.

Where the test is about the process (a kill, a signal, an exit code) the bridge
runs as the installed console script in a subprocess; the round trip runs it in
process. Every test has its own broker, topics and consumer group.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from glue_jobs.merge import MergeContext, run_merge
from hybrid_ingest.aws import Clients
from hybrid_ingest.lake import Lake
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore
from tests.conftest import Runner
from tests.producers.helpers import event_json, interleaved_events, order_event, read_stream, seqs_per_key
from tests.producers.tansu import GROUP_TIMEOUTS, Broker, fresh_group

SCRIPT = str(Path(sys.executable).parent / "hybrid-ingest")
TOPIC = "erp.orders"
PARTITIONS = 3
FAST_GROUP = [arg for key, value in GROUP_TIMEOUTS.items() for arg in ("--consumer-option", f"{key}={value}")]


def bridge_args(broker: Broker, group: str, *extra: str, topics: tuple[str, ...] = (f"{TOPIC}=orders",)) -> list[str]:
    return ["bridge", "kafka", "--bootstrap-servers", broker.bootstrap, "--group", group,
            *(arg for pair in topics for arg in ("--topic", pair)), *FAST_GROUP, *extra]


def history(keys: int, per_key: int, seed: int) -> list[dict[str, Any]]:
    """Inserts and updates per key (seq increasing per key), then a delete of every fifth key."""
    events = interleaved_events(keys, per_key, seed)
    last = max(e["seq"] for e in events)
    return events + [order_event(k, last + 1 + k, op="d") for k in range(0, keys, 5)]


def keyed(events: list[dict[str, Any]]) -> list[tuple[int, bytes | None]]:
    return [(e["row"]["order_id"] % PARTITIONS, event_json(e)) for e in events]


def expected_rows(events: list[dict[str, Any]]) -> list[tuple[int, str, int]]:
    """The source table after ``events``: (order_id, status, seq of the winning change), deletes removed."""
    last: dict[int, dict[str, Any]] = {}
    for e in events:
        key = e["row"]["order_id"]
        if key not in last or last[key]["seq"] < e["seq"]:
            last[key] = e
    return sorted((k, e["row"]["status"], e["seq"]) for k, e in last.items() if e["op"] != "d")


def expected_seqs(events: list[dict[str, Any]]) -> dict[int, list[int]]:
    want: dict[int, list[int]] = {}
    for e in events:
        want.setdefault(e["row"]["order_id"], []).append(e["seq"])
    return want


def check_stream(events: list[dict[str, Any]], initialized: Clients, registry: Registry) -> int:
    """Every event in the stream in order per key, duplicates allowed only as re-sends; returns the duplicates."""
    got = seqs_per_key(read_stream(initialized.kinesis, initialized.settings.names.stream, registry))
    want = expected_seqs(events)
    assert set(got) == set(want)
    for key, seqs in want.items():
        assert list(dict.fromkeys(got[key])) == seqs, f"key {key}: lost or reordered"
    return sum(map(len, got.values())) - len(events)


def merged_orders(cli: Runner, initialized: Clients, lake: Lake, registry: Registry, store: StateStore,
                  tables: tuple[str, ...] = ("orders",)) -> list[tuple[int, str, int]]:
    """Consume the stream, merge with the DuckDB engine, and query the curated orders table."""
    code, _, err = cli("consume", "--until-idle")
    assert code == 0, err
    for table in tables:
        run_merge(MergeContext(clients=initialized, lake=lake, registry=registry, store=store), table,
                  engine="duckdb")
    code, out, err = cli("query", "SELECT order_id, status, _seq FROM orders ORDER BY order_id", "--format", "jsonl")
    assert code == 0, err
    return [(r["order_id"], r["status"], r["_seq"]) for r in map(json.loads, out.splitlines())]


def test_round_trip_to_curated_with_a_poison_message(
        broker: Broker, cli: Runner, initialized: Clients, lake: Lake, registry: Registry,
        store: StateStore) -> None:
    broker.create_topic(TOPIC, PARTITIONS)
    broker.create_topic("erp.customers", 1)
    events = history(keys=30, per_key=6, seed=21)
    customer = {"customer_id": 7, "email": "c7@x.org", "full_name": "N 7", "country": "FR", "tier": "gold",
                "credit_limit": "100.25", "is_active": True, "signup_date": "2024-05-01",
                "updated_at": "2026-11-21T10:00:00Z", "phone": None}
    broker.publish(TOPIC, [*keyed(events[:50]), (1, b"[" * 200_000), *keyed(events[50:])])
    broker.publish("erp.customers", [(0, json.dumps({"op": "c", "seq": 3, "row": customer}).encode())])
    group = fresh_group()

    code, out, err = cli(*bridge_args(broker, group, "--until-idle",
                                      topics=(f"{TOPIC}=orders", "erp.customers=customers")))

    assert code == 0, err
    assert f"{len(events) + 2} message(s), {len(events) + 1} forwarded, 1 dead-lettered" in out
    assert check_stream(events, initialized, registry) == 0
    dead = [json.loads(Path(f.path).read_text()) for f in lake.files("dlq/kafka-bridge")]
    assert [(d["topic"], d["partition"], d["reason"]) for d in dead] == [(TOPIC, 1, "invalid-row")]
    assert dead[0]["offset"] == sum(1 for e in events[:50] if e["row"]["order_id"] % PARTITIONS == 1)
    ends = {p: sum(1 for e in events if e["row"]["order_id"] % PARTITIONS == p) + (p == 1)
            for p in range(PARTITIONS)}
    assert broker.committed(group, TOPIC, PARTITIONS) == ends
    assert merged_orders(cli, initialized, lake, registry, store, ("orders", "customers")) == expected_rows(events)
    code, out, _ = cli("query", "SELECT customer_id, _seq FROM customers", "--format", "csv")
    assert out.strip().splitlines()[-1] == "7,3"


@dataclass
class Bridge:
    """One bridge process, its output going to files so a test can wait for a line."""

    process: subprocess.Popen[bytes]
    out: Path
    err: Path

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stderr():
            assert self.process.poll() is None, f"the bridge exited early:\n{self.stderr()}"
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.stderr()}"
            time.sleep(0.1)

    def stop(self, sig: int, timeout: float = 60.0) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


@pytest.fixture
def spawn(initialized: Clients, tmp_path: Path) -> Iterator[Any]:
    """Start bridges as the installed console script; any still running at the end are killed."""
    s = initialized.settings
    env = os.environ | {"HYBRID_INGEST_HOME": str(s.home), "HYBRID_INGEST_LAKE_URI": s.lake_uri,
                        "AWS_ENDPOINT_URL": s.endpoint_url or ""}
    started: list[Bridge] = []

    def start(args: list[str], name: str) -> Bridge:
        out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        with out.open("wb") as o, err.open("wb") as e:
            process = subprocess.Popen([SCRIPT, *args], stdout=o, stderr=e, stdin=subprocess.DEVNULL, env=env)
        started.append(Bridge(process, out, err))
        return started[-1]

    yield start
    for bridge in started:
        if bridge.process.poll() is None:
            bridge.process.kill()
            bridge.process.wait()


class Publisher:
    """Publishes events in small paced batches from a thread, so bridges are mid-stream; ``finish`` sends the rest."""

    def __init__(self, broker: Broker, events: list[dict[str, Any]], batch: int, pause: float) -> None:
        self.sent = 0
        self.hurry = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(broker, events, batch, pause), daemon=True)
        self.thread.start()

    def _run(self, broker: Broker, events: list[dict[str, Any]], batch: int, pause: float) -> None:
        for start in range(0, len(events), batch):
            broker.publish(TOPIC, keyed(events[start:start + batch]))
            self.sent = min(len(events), start + batch)
            self.hurry.wait(pause)

    def finish(self) -> None:
        self.hurry.set()
        self.thread.join(timeout=120)
        assert not self.thread.is_alive()


def wait_committed(broker: Broker, group: str, at_least: int, timeout: float = 90.0) -> dict[int, int]:
    deadline = time.monotonic() + timeout
    while True:
        committed = broker.committed(group, TOPIC, PARTITIONS)
        if sum(committed.values()) >= at_least:
            return committed
        assert time.monotonic() < deadline, f"only {committed} committed"
        time.sleep(0.2)


@pytest.mark.parametrize("kills", [1, pytest.param(4, marks=pytest.mark.slow)])
def test_sigkill_mid_stream_and_restart_lose_nothing(
        broker: Broker, spawn: Any, cli: Runner, initialized: Clients, lake: Lake, registry: Registry,
        store: StateStore, tmp_path: Path, kills: int) -> None:
    broker.create_topic(TOPIC, PARTITIONS)
    events = history(keys=60, per_key=30 if kills == 1 else 40, seed=5)
    group, spool = fresh_group(), str(tmp_path / "spool")
    # a killed member holds its partitions until its session times out (10 s): restarts take ~20 s each
    publisher = Publisher(broker, events, batch=20, pause=0.1 if kills == 1 else 0.8)
    for kill in range(kills):
        killed = spawn(bridge_args(broker, group, "--spool", spool, "--max-records", "50"), f"killed-{kill}")
        before = sum(broker.committed(group, TOPIC, PARTITIONS).values())
        wait_committed(broker, group, at_least=before + 200)
        assert killed.stop(signal.SIGKILL) == -signal.SIGKILL
        assert publisher.sent < len(events), "the bridge was not killed mid-stream"
    publisher.finish()

    last = spawn(bridge_args(broker, group, "--spool", spool, "--until-idle"), "last")
    assert last.process.wait(timeout=120) == 0, last.stderr()

    check_stream(events, initialized, registry)
    assert broker.committed(group, TOPIC, PARTITIONS) == {
        p: sum(1 for e in events if e["row"]["order_id"] % PARTITIONS == p) for p in range(PARTITIONS)}
    assert merged_orders(cli, initialized, lake, registry, store) == expected_rows(events)


def test_two_bridges_in_one_group_share_and_hand_over_partitions(
        broker: Broker, spawn: Any, initialized: Clients, registry: Registry, tmp_path: Path) -> None:
    broker.create_topic(TOPIC, PARTITIONS)
    events = history(keys=60, per_key=40, seed=9)
    group = fresh_group()
    publisher = Publisher(broker, events, batch=20, pause=0.25)
    a = spawn(bridge_args(broker, group, "--spool", str(tmp_path / "spool-a"), "--max-records", "50"), "a")
    wait_committed(broker, group, at_least=100)
    b = spawn(bridge_args(broker, group, "--spool", str(tmp_path / "spool-b"), "--max-records", "50"), "b")
    b.wait_for(f"partitions assigned: {TOPIC}[")  # the group rebalanced: b owns some partitions
    assert publisher.sent < len(events), "the rebalance happened after the stream ended"
    assert a.stop(signal.SIGTERM) == 0, a.stderr()  # a leaves: b takes over a's partitions
    assert "kafka bridge stopped:" in a.out.read_text()
    publisher.finish()
    ends = {p: sum(1 for e in events if e["row"]["order_id"] % PARTITIONS == p) for p in range(PARTITIONS)}
    wait_committed(broker, group, at_least=len(events), timeout=120)
    assert b.stop(signal.SIGTERM) == 0, b.stderr()

    assert broker.committed(group, TOPIC, PARTITIONS) == ends
    check_stream(events, initialized, registry)
    handed = [line for line in b.stderr().splitlines() if "partitions assigned:" in line]
    assert len(handed) >= 2, "b never got a's partitions"
    assert all(f"{TOPIC}[{p}]" in handed[-1] for p in range(PARTITIONS))


def test_refusals_exit_with_one_line(broker: Broker, spawn: Any, initialized: Clients, tmp_path: Path) -> None:
    broker.create_topic(TOPIC, 1)

    def run(*args: str) -> tuple[int, str]:
        process = spawn(list(args), f"refusal-{time.monotonic_ns()}")
        code = process.process.wait(timeout=60)
        return code, process.stderr()

    code, err = run(*bridge_args(broker, fresh_group(), topics=("erp.orders",)))
    assert (code, err.strip().splitlines()) == (2, ["error: --topic expects TOPIC=TABLE, got 'erp.orders' "
                                                    "(see 'hybrid-ingest bridge kafka --help')"])
    code, err = run(*bridge_args(broker, fresh_group(), topics=(f"{TOPIC}=nope",)))
    assert code == 1
    assert err.strip().splitlines() == ["error: topic 'erp.orders': table 'nope' is not registered "
                                        "(run `hybrid-ingest schemas register`)"]
    code, err = run(*bridge_args(broker, fresh_group(), topics=("erp.missing=orders",)))
    assert (code, err.strip()) == (1, "error: topic(s) erp.missing do not exist in the Kafka cluster")
    code, err = run(*bridge_args(broker, fresh_group(), "--security-protocol", "SASL_SSL",
                                 "--sasl-mechanism", "PLAIN", "--sasl-username", "u"))
    assert code == 2
    assert "needs --sasl-username and a password ($HYBRID_INGEST_KAFKA_SASL_PASSWORD" in err
    code, err = run("bridge", "kafka", "--bootstrap-servers", "127.0.0.1:1", "--group", "g", "--topic",
                    f"{TOPIC}=orders", "--consumer-option", "bootstrap_timeout_ms=1000")
    assert code == 1
    assert err.strip().splitlines() == [
        "error: cannot connect to Kafka at 127.0.0.1:1: KafkaTimeoutError: Unable to bootstrap from ['127.0.0.1:1']"]
