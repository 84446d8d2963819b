"""End-to-end freshness on the local stack: produce -> live view, and produce -> curated after one workflow run.

    .venv/bin/python bench/bench_freshness.py [--events 10] [--flush-seconds 1] [--json OUT]

Everything is the real path, in one process: moto's server on loopback (Kinesis,
DynamoDB, Glue catalog, Step Functions running its Glue jobs as subprocesses), the
``ChangeEventProducer`` with its spool and background sender, the shard consumer
(``streaming_consumer.runtime.Worker``, as ``hybrid-ingest consume`` starts it, with a
short flush time) in a background thread, and ``orders_live`` queried through
``hybrid_ingest.query.local.LocalQuery`` (what ``hybrid-ingest query`` runs) until the event is
there. Then one workflow execution (``workflow.start_and_wait``, as ``batch run``) and
the curated table queried until every event is in it.

A warm-up round (one event, consumed and merged) runs first: the live view needs the
curated table to exist, and the first merge pays the one-off costs (catalog tables,
imports in the job subprocess) that a running service has paid long before.
Target: produce -> live view <= 10 s. Prints figures; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import json
import logging
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hybrid_ingest import workflow
from hybrid_ingest.aws import Clients
from hybrid_ingest.bootstrap import init
from hybrid_ingest.config import Settings
from hybrid_ingest.errors import HybridIngestError
from hybrid_ingest.lake import Lake
from hybrid_ingest.local.stack import start_server
from hybrid_ingest.metrics import Metrics
from hybrid_ingest.query.local import LocalQuery
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore
from producers.producer import ChangeEventProducer, ProducerConfig
from streaming_consumer.runtime import ConsumerConfig, FlushPolicy, Worker

REPO = Path(__file__).resolve().parent.parent
TABLE = "orders"
KEY_BASE = 7_000_000


def order_event(order_id: int, seq: int) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    return {"op": "c", "seq": seq, "ts": now, "row": {
        "order_id": order_id, "customer_id": order_id % 977, "order_date": now.date(), "status": "open",
        "total_amount": decimal.Decimal("12.50"), "currency": "EUR", "item_count": 1, "weight_kg": None,
        "discount_rate": 0.0, "placed_at": now, "external_ref": str(uuid.UUID(int=order_id)), "notes": None}}


def wait_until(check: Callable[[], bool], timeout: float, poll: float, what: str) -> float:
    """Seconds (perf_counter) at which ``check`` first held; raises if it never did within ``timeout``."""
    deadline = time.perf_counter() + timeout
    while True:
        if check():
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise HybridIngestError(f"{what}: not visible after {timeout:.0f} s")
        time.sleep(poll)


def count_keys(query: LocalQuery, relation: str, keys: list[int]) -> int:
    result = query.run(f"SELECT count(*) FROM {relation} WHERE order_id IN ({', '.join(map(str, keys))})")
    return int(result.rows[0][0])


class Stack:
    """The local service in this process: server, resources, deployed workflow, consumer thread."""

    def __init__(self, root: Path, flush_seconds: float) -> None:
        self.server, endpoint = start_server()
        self.settings = Settings(home=root, lake_uri=(root / "lake").as_uri(), endpoint_url=endpoint)
        self.clients = Clients(self.settings)
        self.lake = Lake.from_uri(self.settings.lake_uri)
        init(self.clients, self.lake, [REPO / "schemas"])
        workflow.deploy(self.clients)
        names = self.settings.names
        self.registry = Registry(self.clients.dynamodb, names.registry_table)
        self.store = StateStore(self.clients.dynamodb, names.state_table, names.runs_table)
        config = ConsumerConfig(stream=names.stream, flush=FlushPolicy(max_seconds=flush_seconds),
                                idle_sleep_seconds=0.2)
        self.worker = Worker(self.clients.kinesis, self.store, self.lake, self.registry.by_fingerprint, config,
                             Metrics(names.metrics_namespace, sink=None, cloudwatch=self.clients.cloudwatch))
        self.stop = threading.Event()
        self.failure: list[BaseException] = []
        self.thread = threading.Thread(target=self._consume, name="bench-consumer", daemon=True)
        self.producer = ChangeEventProducer.open(self.clients.kinesis, names.stream, self.registry.latest,
                                                 root / "spool", ProducerConfig(durability="write"))
        self.thread.start()

    def _consume(self) -> None:
        try:
            self.worker.run(stop=self.stop)
        except BaseException as exc:  # surfaced by check(): a dead consumer must fail the bench, not hang it
            self.failure.append(exc)
            raise

    def check(self) -> None:
        if self.failure:
            raise HybridIngestError(f"the consumer thread stopped: {self.failure[0]!r}") from self.failure[0]

    def query(self) -> LocalQuery:
        """A fresh LocalQuery: it reads each table's current Iceberg snapshot once, the first time a statement names it."""
        return LocalQuery(self.clients, self.lake, self.registry, self.store)

    def batch_run(self) -> workflow.ExecutionResult:
        result = workflow.start_and_wait(self.clients, timeout=600, tables=self.registry.tables())
        if not result.succeeded:
            raise HybridIngestError(f"workflow {result.name} {result.status}: {result.error} {result.cause}")
        return result

    def close(self) -> None:
        self.producer.close(timeout=30)
        self.stop.set()
        self.thread.join(timeout=60)
        self.server.stop()


def run(events: int = 10, flush_seconds: float = 1.0, poll: float = 0.1, gap: float = 0.5,
        workdir: Path | None = None) -> dict[str, Any]:
    """Warm up, then ``events`` single events produce -> live view, then one workflow run -> curated."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="bench-freshness-", dir=workdir) as tmp:
        stack = Stack(Path(tmp), flush_seconds)
        try:
            return measure(stack, events, poll, gap)
        finally:
            stack.close()


def measure(stack: Stack, events: int, poll: float, gap: float) -> dict[str, Any]:
    warm = time.perf_counter()
    stack.producer.send(TABLE, order_event(KEY_BASE, 1))
    stack.check()
    # the curated table exists only after a first merge; until then the warm-up event is awaited in raw/
    wait_until(lambda: bool(list(stack.lake.files(f"raw/{TABLE}", ".parquet"))), 120, poll, "warm-up event in raw/")
    stack.batch_run()
    query = stack.query()
    wait_until(lambda: count_keys(query, TABLE, [KEY_BASE]) == 1, 60, poll, "warm-up event in curated")
    print(f"warm-up (first event through consumer and first workflow run): {time.perf_counter() - warm:.1f} s",
          flush=True)

    live: list[float] = []
    produced: dict[int, float] = {}
    for i in range(1, events + 1):
        key = KEY_BASE + i
        started = time.perf_counter()
        stack.producer.send(TABLE, order_event(key, 1 + i))
        produced[key] = started

        def visible(k: int = key) -> bool:
            stack.check()
            return count_keys(query, f"{TABLE}_live", [k]) == 1

        seen = wait_until(visible, 60, poll, f"event {key} in {TABLE}_live")
        live.append(seen - started)
        print(f"  event {i:>3}: produce -> {TABLE}_live {live[-1]:5.2f} s", flush=True)
        time.sleep(gap)

    run_started = time.perf_counter()
    result = stack.batch_run()
    run_ended = time.perf_counter()
    query = stack.query()
    keys = sorted(produced)
    curated_at = wait_until(lambda: count_keys(query, TABLE, keys) == len(keys), 60, poll, "events in curated")
    to_curated = [curated_at - t for t in produced.values()]
    figures: dict[str, Any] = {
        "events": events, "flush_seconds": stack.worker.config.flush.max_seconds,
        "live_p50_s": statistics.median(live), "live_max_s": max(live), "live_min_s": min(live),
        "workflow_run_s": run_ended - run_started, "workflow": result.name,
        "curated_after_run_s": curated_at - run_started,
        "produce_to_curated_min_s": min(to_curated), "produce_to_curated_max_s": max(to_curated),
    }
    print(f"produce -> {TABLE}_live over {events} events: p50 {figures['live_p50_s']:.2f} s, "
          f"max {figures['live_max_s']:.2f} s (target <= 10 s; consumer flush time {figures['flush_seconds']:g} s)")
    print(f"one workflow run ({result.name}): {figures['workflow_run_s']:.1f} s; produce -> curated "
          f"{figures['produce_to_curated_min_s']:.1f}-{figures['produce_to_curated_max_s']:.1f} s "
          "(the latest event to the oldest, run started right after the last one was live)")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10)
    parser.add_argument("--flush-seconds", type=float, default=1.0, help="the consumer's flush time")
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between live-view queries")
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between one visible event and the next")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here as JSON")
    args = parser.parse_args()
    figures = run(args.events, args.flush_seconds, args.poll, args.gap, args.workdir)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
