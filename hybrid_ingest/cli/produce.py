"""``produce`` and ``bulk push``: the on-prem side of the service."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hybrid_ingest import quarantine
from hybrid_ingest.cli.context import AppContext
from hybrid_ingest.errors import HybridIngestError, ValidationError
from hybrid_ingest.layout import landing_dir
from hybrid_ingest.manifest import Mode
from producers.events import encode_lines
from producers.producer import ProducerConfig, RecordProducer

PUT_CHUNK = 10_000
PROGRESS_MIN_BYTES = 16 * 1024 * 1024


def default_spool(app: AppContext) -> Path:
    return app.settings.home / "spool" / app.settings.names.stream


@click.command("produce")
@click.argument("table")
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--spool", "spool_dir", type=click.Path(path_type=Path), default=None,
              help="producer spool folder [default: $HYBRID_INGEST_HOME/spool/<stream>]")
@click.option("--timeout", type=float, default=120.0, show_default=True,
              help="seconds to wait for Kinesis before leaving the events in the spool (exit 1)")
@click.pass_obj
def produce(app: AppContext, table: str, input_path: Path, spool_dir: Path | None, timeout: float) -> None:
    """Publish change events (one JSON object a line) to the stream; a bad line sends nothing."""
    version = app.registry.latest(table)
    with input_path.open("rb") as f:
        entries, errors, bad = encode_lines(version, f)
    if bad:  # one line per bad line shown; the last one also says what happened to the file
        for line in errors[:-1]:
            click.echo(f"error: {input_path}: {line}", err=True)
        more = f" ({bad - len(errors)} more bad line(s) not shown)" if bad > len(errors) else ""
        raise ValidationError(f"{input_path}: {errors[-1]}{more}; {bad} bad line(s), nothing was sent")
    spool_dir = spool_dir or default_spool(app)
    stream = app.settings.names.stream
    producer = RecordProducer.open(app.clients.kinesis, stream, spool_dir, ProducerConfig())
    leftover = producer.spool.pending_count
    try:
        for start in range(0, len(entries), PUT_CHUNK):
            producer.put(entries[start:start + PUT_CHUNK])
    finally:
        sent = producer.close(timeout)
    stats = producer.stats
    if leftover:
        click.echo(f"drained {leftover} event(s) left in the spool by an earlier run")
    if not sent:
        raise HybridIngestError(
            f"{producer.spool.pending_count} event(s) are kept in the spool {spool_dir}: Kinesis did not accept "
            f"them within {timeout:g}s ({stats.last_error}); the next `produce` sends them first"
        )
    click.echo(f"sent {len(entries)} event(s) of {table} to {stream} "
               f"({stats.records} Kinesis record(s) in {stats.calls} PutRecords call(s), "
               f"{stats.entry_failures + stats.call_failures} retried failure(s))")


@click.group("bulk")
def bulk_group() -> None:
    """Bulk extracts."""


@bulk_group.command("push")
@click.argument("table")
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--as-of-seq", required=True, type=int,
              help="the source's seq the extract is as of (0 to 2^63-1; refused otherwise, exit 1)")
@click.option("--mode", type=click.Choice(["full", "incremental"]), required=True)
@click.option("--allow-mass-delete", is_flag=True,
              help="a full extract meant to delete most of the table (or far ahead of its seqs): "
                   "the merge takes it instead of holding it")
@click.pass_obj
def bulk_push(app: AppContext, table: str, input_path: Path, as_of_seq: int, mode: str,
              allow_mass_delete: bool) -> None:
    """Land a bulk extract (Parquet or CSV with a header) with its manifest, as DataSync would."""
    from producers.bulk import open_source, push_extract  # pyarrow's CSV and compute: not for `produce`

    version = app.registry.latest(table)
    source = open_source(input_path)
    kind: Mode = "full" if mode == "full" else "incremental"
    if input_path.stat().st_size >= PROGRESS_MIN_BYTES:
        unit = "rows" if source.kind == "parquet" else "bytes"
        with click.progressbar(length=source.total, label=f"landing {table} ({unit})", file=sys.stderr) as bar:
            manifest = push_extract(app.lake, version, input_path, as_of_seq, kind, progress=bar.update,
                                    allow_mass_delete=allow_mass_delete)
    else:
        manifest = push_extract(app.lake, version, input_path, as_of_seq, kind, allow_mass_delete=allow_mass_delete)
    click.echo(f"landed {table} extract {manifest.extract_id}: {manifest.rows} row(s) in "
               f"{len(manifest.parts)} part(s), mode {manifest.mode}, as_of_seq {manifest.as_of_seq}"
               f"{', allow_mass_delete' if manifest.allow_mass_delete else ''}, "
               f"schema v{manifest.schema_version} at {app.lake.uri(landing_dir(table, manifest.extract_id))}")


@bulk_group.command("release")
@click.argument("table")
@click.argument("extract_id")
@click.option("--allow-mass-delete", is_flag=True,
              help="let the extract delete what it would delete (and be as far ahead as it is)")
@click.pass_obj
def bulk_release(app: AppContext, table: str, extract_id: str, allow_mass_delete: bool) -> None:
    """Release an extract the merge holds (`status` lists them): the next run merges it, or judges it again."""
    app.registry.latest(table)  # an unknown table is refused here, not as "not held"
    entry = quarantine.release(app.lake, app.store, table, extract_id, allow_mass_delete)
    click.echo(f"released {table} extract {extract_id} (held as {entry.reason}: {entry.error})")
    if allow_mass_delete:
        click.echo("with allow_mass_delete: the next batch run merges it, deleting what it would delete")
    else:
        click.echo("without an override: the next batch run checks it again")


COMMANDS = [produce, bulk_group]
