"""``consume``: the shard consumer (stream -> raw)."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click

from hybrid_ingest.cli.context import AppContext
from hybrid_ingest.metrics import Metrics
from streaming_consumer.runtime import ConsumerConfig, FlushPolicy, Worker

POSITIVE = click.FloatRange(min=0, min_open=True)


@click.command("consume")
@click.option("--until-idle", is_flag=True, help="exit once every shard is caught up and flushed")
@click.option("--flush-records", type=click.IntRange(min=1), default=FlushPolicy.max_records, show_default=True,
              help="flush a shard after this many Kinesis records")
@click.option("--flush-bytes", type=click.IntRange(min=1), default=FlushPolicy.max_bytes, show_default=True,
              help="flush a shard after this many bytes")
@click.option("--flush-seconds", type=POSITIVE, default=FlushPolicy.max_seconds, show_default=True,
              help="flush a shard at least this often while records arrive")
@click.option("--lease-seconds", type=POSITIVE, default=ConsumerConfig.lease_seconds, show_default=True,
              help="shard lease time to live; a dead worker's shards are taken over after it")
@click.option("--takeover-deadline", type=click.FloatRange(min=0), default=ConsumerConfig.unreadable_deadline_seconds,
              show_default=True,
              help="with --until-idle: exit 1 if shards stay held this long by workers not seen alive "
                   "(a crashed worker's shards are taken over once its leases expire)")
@click.pass_obj
def consume(app: AppContext, until_idle: bool, flush_records: int, flush_bytes: int, flush_seconds: float,
            lease_seconds: float, takeover_deadline: float) -> None:
    """Run the stream consumer: every shard to raw/, checkpointed; Ctrl-C flushes and stops."""
    names = app.settings.names
    config = ConsumerConfig(
        stream=names.stream, flush=FlushPolicy(flush_records, flush_bytes, flush_seconds),
        lease_seconds=lease_seconds, idle_sleep_seconds=0.2 if until_idle else 1.0,
        unreadable_deadline_seconds=takeover_deadline,
    )
    metrics = Metrics(names.metrics_namespace, cloudwatch=app.clients.cloudwatch)
    worker = Worker(app.clients.kinesis, app.store, app.lake, app.registry.by_fingerprint, config, metrics)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        click.echo(f"signal {signum}: flushing and checkpointing before exit", err=True)
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker.run(until_idle=until_idle, stop=stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        report(worker, names.stream)


def report(worker: Worker, stream: str) -> None:
    """What this run read, per shard (also when it ends in an error: what it did is durable)."""
    if not worker.stats:
        click.echo(f"no shard left to read in stream {stream} for worker {worker.worker_id}")
    for shard_id, stats in sorted(worker.stats.items()):
        click.echo(f"{shard_id}: {stats.records} records in {stats.batches} batches, "
                   f"{stats.files} files, {stats.dead} to dlq, lag {stats.lag_ms} ms")


COMMANDS = [consume]
