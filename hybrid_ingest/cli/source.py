"""``source postgres``: change-data capture from a PostgreSQL database into the stream."""

from __future__ import annotations

import re
import signal
import threading
from pathlib import Path
from types import FrameType

import click

from hybrid_ingest.cli.context import AppContext
from hybrid_ingest.errors import HybridIngestError
from hybrid_ingest.metrics import Metrics

SLOT_NAME = re.compile(r"[a-z0-9_]{1,63}")


def _slot(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not SLOT_NAME.fullmatch(value):
        raise click.BadParameter(f"{value!r}: a slot name is 1-63 of a-z, 0-9 and _")
    return value


def _tables(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[object, ...]:
    from producers.postgres.catalog import parse_table_ref

    refs = []
    for value in values:
        try:
            refs.append(parse_table_ref(value))
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    targets = [r.table for r in refs]
    repeated = sorted({t for t in targets if targets.count(t) > 1})
    if repeated:
        raise click.BadParameter(f"lake table(s) {repeated} named more than once")
    return tuple(refs)


@click.group("source")
def source_group() -> None:
    """Change-data capture from on-prem databases."""


@source_group.command("postgres")
@click.option("--dsn", required=True, help="libpq connection string of the database (a user with REPLICATION)")
@click.option("--slot", required=True, callback=_slot, help="replication slot name; also names the publication")
@click.option("--table", "tables", multiple=True, callback=_tables, metavar="SCHEMA.TABLE[=TABLE]",
              help="a table to capture (repeat); =TABLE names the lake table [default: the table's name]")
@click.option("--until-idle", is_flag=True, help="exit once caught up with the server's current WAL position")
@click.option("--spool", "spool_dir", type=click.Path(path_type=Path), default=None,
              help="producer spool folder [default: $HYBRID_INGEST_HOME/spool/postgres-<slot>]")
@click.option("--timeout", type=float, default=120.0, show_default=True,
              help="seconds to wait at exit for Kinesis before leaving events in the spool (exit 1)")
@click.option("--retire", is_flag=True, help="drop the slot and publication, forget the source's progress, exit")
@click.pass_obj
def postgres(app: AppContext, dsn: str, slot: str, tables: tuple[object, ...], until_idle: bool,
             spool_dir: Path | None, timeout: float, retire: bool) -> None:
    """Capture a database's committed changes: a snapshot on first start, then its logical replication stream."""
    from producers.postgres.catalog import TableRef
    from producers.postgres.setup import retire as retire_source
    from producers.postgres.source import PostgresSource, SourceConfig
    from producers.producer import ProducerConfig, RecordProducer

    if retire:
        gone = retire_source(dsn, slot, app.store)
        click.echo(f"retired slot {slot}: dropped the slot and publication {gone.publication} of database "
                   f"{gone.database}; the lake tables keep what was captured")
        return
    if not tables:
        raise click.UsageError("at least one --table is needed")
    refs = tuple(t for t in tables if isinstance(t, TableRef))
    names = app.settings.names
    spool_dir = spool_dir or app.settings.home / "spool" / f"postgres-{slot}"
    producer = RecordProducer.open(app.clients.kinesis, names.stream, spool_dir, ProducerConfig())
    leftover = producer.spool.pending_count
    source = PostgresSource(SourceConfig(dsn, slot, refs), app.registry, app.store, app.lake, producer,
                            app.settings.home / "sources" / f"postgres-{slot}",
                            Metrics(names.metrics_namespace, cloudwatch=app.clients.cloudwatch))
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        click.echo(f"signal {signum}: spooling what is committed, confirming it, then stopping", err=True)
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stats = source.run(until_idle=until_idle, stop=stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sent = producer.close(timeout)
    if leftover:
        click.echo(f"drained {leftover} event(s) left in the spool by an earlier run")
    if stats.snapshot_stopped:
        click.echo(f"slot {slot}: stopped while landing the snapshot; the next start takes a new one")
    for landed in stats.landed:
        click.echo(f"snapshot: landed {landed.rows} row(s) of {landed.table} as full extract {landed.extract_id}")
    click.echo(f"slot {slot}: {stats.transactions} transaction(s), {stats.events} event(s), {stats.truncates} "
               f"truncate(s) captured since {stats.resumed_from or 'the snapshot'}")
    if not sent:
        raise HybridIngestError(
            f"{producer.spool.pending_count} event(s) are kept in the spool {spool_dir}: Kinesis did not accept "
            f"them within {timeout:g}s ({producer.stats.last_error}); the next start sends them first")


COMMANDS = [source_group]
