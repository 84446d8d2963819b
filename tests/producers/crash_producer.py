"""Run as a child process by test_crash: produce events forever, printing each accepted count, until killed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, cast

from hybrid_ingest.aws import Clients
from hybrid_ingest.config import Settings
from hybrid_ingest.registry import Registry
from producers import ChangeEventProducer, ProducerConfig, RecordProducer
from producers.kinesis import KinesisDelivery
from producers.spool import Spool
from tests.producers.helpers import FlakyKinesis, interleaved_events


def main(endpoint: str, spool_dir: str, durability: str) -> None:
    settings = Settings(home=Path(spool_dir), lake_uri=Path(spool_dir).as_uri(), endpoint_url=endpoint)
    clients = Clients(settings)
    registry = Registry(clients.dynamodb, settings.names.registry_table)
    flaky = FlakyKinesis(clients.kinesis, entry_failure_rate=0.3, call_failure_rate=0.1, seed=11)
    delivery = KinesisDelivery(cast(Any, flaky), settings.names.stream, base_delay=0.01, max_delay=0.05)
    spool = Spool(Path(spool_dir), durability="fsync" if durability == "fsync" else "write")
    producer = ChangeEventProducer(RecordProducer(spool, delivery, ProducerConfig(flush_count=40, linger=0.005,
                                                                                  round_max_count=60)),
                                   registry.latest)
    events = interleaved_events(keys=50, per_key=200, seed=5)
    accepted = 0
    for start in range(0, len(events), 10):
        accepted += producer.send_many("orders", events[start:start + 10])
        print(accepted, flush=True)
    producer.close()
    print("done", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
