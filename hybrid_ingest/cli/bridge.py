"""``bridge kafka``: forward Kafka topics of JSON change events to the stream (DESIGN.md "Command line")."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import click
from kafka.errors import KafkaError

from hybrid_ingest.cli.context import AppContext
from hybrid_ingest.errors import ConfigError, HybridIngestError, SourceError, UnknownTableError
from hybrid_ingest.layout import safe
from hybrid_ingest.logs import quieted
from hybrid_ingest.metrics import Metrics
from producers.kafka_bridge import DLQ_STAGE, KafkaBridge
from producers.kafka_client import (
    SASL_MECHANISMS,
    SASL_PASSWORD_ENV,
    SECURITY_PROTOCOLS,
    SSL_PASSWORD_ENV,
    KafkaSettings,
    check_topics,
    open_consumer,
    parse_options,
    parse_topics,
    read_secret,
)
from producers.producer import ChangeEventProducer, ProducerConfig

FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group("bridge")
def bridge_group() -> None:
    """Forward other sources of change events to the stream."""


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT ask the bridge to finish its batch, commit and leave; handlers restored after."""

    def request_stop(signum: int, frame: FrameType | None) -> None:
        click.echo(f"signal {signum}: finishing the current batch, committing and stopping", err=True)
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def settings_from(options: dict[str, Any]) -> KafkaSettings:
    """The consumer settings of the command's options; usage errors (exit 2) for what does not fit."""
    try:
        return KafkaSettings(
            bootstrap_servers=tuple(s.strip() for s in options["bootstrap_servers"].split(",") if s.strip()),
            group=options["group"], security_protocol=options["security_protocol"],
            ssl_cafile=options["ssl_cafile"], ssl_certfile=options["ssl_certfile"],
            ssl_keyfile=options["ssl_keyfile"],
            ssl_password=read_secret(os.environ, SSL_PASSWORD_ENV, options["ssl_password_file"]),
            sasl_mechanism=options["sasl_mechanism"], sasl_username=options["sasl_username"],
            sasl_password=read_secret(os.environ, SASL_PASSWORD_ENV, options["sasl_password_file"]),
            auto_offset_reset=options["start"], options=parse_options(options["consumer_options"]),
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc


@bridge_group.command("kafka")
@click.option("--bootstrap-servers", required=True, metavar="HOST:PORT[,HOST:PORT...]")
@click.option("--group", required=True, help="Kafka consumer group id (bridges in one group share the partitions)")
@click.option("--topic", "topic_pairs", multiple=True, required=True, metavar="TOPIC=TABLE",
              help="forward TOPIC's messages as change events of TABLE (repeatable)")
@click.option("--until-idle", is_flag=True, help="exit once every assigned partition is caught up")
@click.option("--idle-seconds", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="with --until-idle: how long caught-up partitions must stay quiet")
@click.option("--security-protocol", type=click.Choice(SECURITY_PROTOCOLS), default="PLAINTEXT",
              show_default=True)
@click.option("--ssl-cafile", type=FILE, help="CA bundle to verify the brokers")
@click.option("--ssl-certfile", type=FILE, help="client certificate (mutual TLS)")
@click.option("--ssl-keyfile", type=FILE, help=f"client key; its password from ${SSL_PASSWORD_ENV} or --ssl-password-file")
@click.option("--ssl-password-file", type=FILE, help="file whose first line is the client key's password")
@click.option("--sasl-mechanism", type=click.Choice(SASL_MECHANISMS))
@click.option("--sasl-username")
@click.option("--sasl-password-file", type=FILE,
              help=f"file whose first line is the SASL password [default: ${SASL_PASSWORD_ENV}]")
@click.option("--from", "start", type=click.Choice(["earliest", "latest"]), default="earliest", show_default=True,
              help="where a group without committed offsets starts")
@click.option("--consumer-option", "consumer_options", multiple=True, metavar="KEY=VALUE",
              help="other kafka-python consumer setting, e.g. session_timeout_ms=10000 (repeatable)")
@click.option("--spool", "spool_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="producer spool folder, one per bridge process [default: $HYBRID_INGEST_HOME/spool/kafka-<group>]")
@click.option("--max-records", type=click.IntRange(min=1), default=1000, show_default=True,
              help="messages per poll (one spool write and one commit each)")
@click.option("--drain-timeout", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="seconds to wait for Kinesis at exit before leaving events in the spool")
@click.pass_obj
def kafka(app: AppContext, /, **options: Any) -> None:
    """Forward Kafka topics of JSON change events (the `produce` line format) to the stream.

    A message's offset is committed once it is in the spool (or, if it is not a
    valid event, in dlq/kafka-bridge/); SIGTERM or Ctrl-C finishes the current
    batch, commits and exits 0.
    """
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("producers").setLevel(logging.INFO)
    try:
        topics = parse_topics(options["topic_pairs"])
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    settings = settings_from(options)
    try:
        config = settings.consumer_config(options["max_records"])
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    names = app.settings.names
    spool_dir = options["spool_dir"] or app.settings.home / "spool" / f"kafka-{safe(settings.group)}"
    producer = ChangeEventProducer.open(app.clients.kinesis, names.stream, app.registry.latest, spool_dir,
                                        ProducerConfig())
    consumer: Any = None
    stop = threading.Event()
    try:
        for topic, table in topics.items():
            try:
                producer.version(table)
            except UnknownTableError as exc:
                raise UnknownTableError(f"topic {topic!r}: {exc}") from exc
        with quieted("kafka", logging.CRITICAL):  # a refused start is our one line, not the client's retries
            consumer = open_consumer(config)
            check_topics(consumer, topics)
        bridge = KafkaBridge(consumer, producer, topics, app.lake, max_records=options["max_records"])
        bridge.subscribe()
        metrics = Metrics(names.metrics_namespace, cloudwatch=app.clients.cloudwatch)
        with stop_on_signals(stop):
            outcome = bridge.run(stop, until_idle=options["until_idle"], idle_seconds=options["idle_seconds"],
                                 metrics=metrics, dimensions={"KafkaGroup": settings.group})
    except KafkaError as exc:
        raise SourceError(f"Kafka at {','.join(settings.bootstrap_servers)}: {exc}") from exc
    finally:
        if consumer is not None:
            consumer.close(autocommit=False)
        drained = producer.close(options["drain_timeout"])
    report(bridge, outcome, drained, producer, spool_dir, options["until_idle"])


def report(bridge: KafkaBridge, outcome: str, drained: bool, producer: ChangeEventProducer, spool_dir: Path,
           until_idle: bool) -> None:
    s = bridge.stats
    click.echo(f"kafka bridge {'caught up' if outcome == 'idle' else 'stopped'}: {s.polled} message(s), "
               f"{s.forwarded} forwarded, {s.dead_lettered} dead-lettered (dlq/{DLQ_STAGE}/), {s.commits} commit(s), "
               f"{s.commit_failures} refused commit(s), {s.assignments} assignment(s)")
    if drained:
        return
    left = (f"{producer.records.spool.pending_count} event(s) are kept in the spool {spool_dir}: Kinesis did not "
            "accept them in time; their offsets are committed and the next bridge on this spool sends them first")
    if until_idle:
        raise HybridIngestError(left)
    click.echo(left, err=True)


COMMANDS = [bridge_group]
