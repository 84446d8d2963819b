"""``batch run`` and ``status``: the Step Functions workflow and its outcome."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from typing import Any

import click

from hybrid_ingest import workflow
from hybrid_ingest.cli.context import AppContext

DEFAULT_TIMEOUT_S = 3600.0


def aligned(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain left-aligned columns: readable in a terminal and greppable in CI logs."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = [headers, *rows]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def short(text: str, width: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


@click.group("batch")
def batch_group() -> None:
    """The batch (compact + merge) workflow."""


@batch_group.command("run")
@click.option("--engine", type=click.Choice(["auto", "spark", "duckdb"]), default="auto", show_default=True)
@click.option("--timeout", "timeout_s", type=float, default=DEFAULT_TIMEOUT_S, show_default=True,
              help="seconds to wait for the execution to end")
@click.pass_obj
def run(app: AppContext, engine: str, timeout_s: float) -> None:
    """Run the batch workflow once and wait for it; exit 1 if it failed."""
    tables = app.registry.tables()
    started = time.monotonic()
    result = workflow.start_and_wait(app.clients, engine_override=engine, timeout=timeout_s, tables=tables)
    elapsed = time.monotonic() - started
    if result.already_running:
        holder = (result.output or {}).get("holder", "another run")
        click.echo(f"execution {result.name}: another batch run holds the lock ({holder}); nothing done")
        return
    click.echo(f"execution {result.name} {result.status} in {elapsed:.1f}s")
    if result.tables:
        rows = [[t["table"], str(t.get("engine", "")), str(t.get("status", "")),
                 short(workflow.job_error(str(t.get("cause") or t.get("error") or "")))] for t in result.tables]
        click.echo(aligned(["table", "engine", "outcome", "error"], rows))
        for t in result.tables:
            for held in t.get("extracts_held") or []:
                click.echo(f"held: {t['table']} extract {held.get('extract_id')} ({held.get('reason')}): "
                           "not merged; `hybrid-ingest status` says why")
    if not result.succeeded:
        click.echo(f"error: {result.error}: {short(result.cause or '', 500)}", err=True)
        raise click.exceptions.Exit(1)


def source_row(name: str, doc: dict[str, Any]) -> list[str]:
    """A change-data source's line: how far its slot is confirmed, and how far behind the server it is."""
    progress = doc.get("progress") or {}
    updated = dt.datetime.fromtimestamp(float(doc["updated"]), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lag = f"{progress.get('lag_bytes', 0)} B, {duration(progress.get('lag_seconds'))}"
    return [name, str(doc.get("phase", "?")), progress.get("confirmed_lsn") or "-", progress.get("server_lsn") or "-",
            lag, str(progress.get("events", 0)), updated]


@click.command("status")
@click.pass_obj
def status(app: AppContext) -> None:
    """Per table: stream lag, last merge, watermark, freshness, dead-letter count."""
    from hybrid_ingest import iceberg  # pyiceberg: imported where tables are read, not by every command

    names = app.settings.names
    report = workflow.collect_status(app.store, app.registry.tables(), app.lake, names.stream,
                                     snapshot=iceberg.current_snapshots(app.clients, app.lake))
    rows: list[list[str]] = []
    for t in report.tables:
        run_ = t.last_run or {}
        when = str(run_.get("finished_at") or run_.get("started_at") or "-")
        mark = ", ".join(f"{s}@{p}" for s, p in t.shards.items()) or "-"
        snap = "-" if t.snapshot_id is None else f"{t.snapshot_id} ({duration(t.snapshot_age_s)} ago)"
        rows.append([t.table, when, t.outcome, snap, f"v{t.version}", mark, str(t.extracts), str(t.held),
                     duration(t.freshness_s), short(t.error, 80)])
    click.echo(aligned(["table", "last run", "outcome", "snapshot", "version", "watermark (shard@position)",
                        "extracts", "held", "freshness", "error"], rows))

    click.echo("")
    held_extracts(report)

    click.echo("")
    wf = report.workflow_run
    if wf is None:
        click.echo("workflow: never run")
    else:
        line = f"workflow: last run {wf.get('run_id', '?')} {wf.get('status', '?')} at {wf.get('started_at', '?')}"
        if wf.get("status") == "FAILED":
            line += f": {short(str(wf.get('cause') or wf.get('error') or ''), 200)}"
        click.echo(line)
    click.echo(f"run lock: {'held by ' + report.lock_holder if report.lock_holder else 'free'}")

    click.echo("")
    shard_rows = []
    for shard, stats in sorted(report.shards.items()):
        lag = stats.get("lag_ms")
        updated = stats.get("updated")
        seen = dt.datetime.fromtimestamp(float(updated), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if updated else "-"
        shard_rows.append([shard, str(stats.get("checkpoint", "-")),
                           duration(lag / 1000) if isinstance(lag, int | float) else "-",
                           str(stats.get("owner", "-")), seen, "yes" if stats.get("finished") else "no"])
    if shard_rows:
        click.echo(aligned(["shard", "checkpoint", "lag", "owner", "updated", "closed+done"], shard_rows))
    else:
        click.echo("stream: no shard consumed yet")

    click.echo("")
    sources = app.store.sources()
    if sources:
        click.echo(aligned(["source", "phase", "confirmed LSN", "server LSN", "lag", "events", "updated"],
                           [source_row(name, doc) for name, doc in sorted(sources.items())]))
    else:
        click.echo("sources: none")

    click.echo("")
    if report.dlq:
        click.echo(aligned(["dlq stage", "reason", "files"],
                           [[stage, reason, str(n)] for (stage, reason), n in sorted(report.dlq.items())]))
    else:
        click.echo("dlq: empty")


def held_extracts(report: workflow.StatusReport) -> None:
    """Extracts the merge holds, with why, and released ones the next run will read again."""
    if report.held:
        click.echo("held extracts (see why; then: hybrid-ingest bulk release TABLE EXTRACT [--allow-mass-delete])")
        click.echo(aligned(["table", "extract", "held as", "since", "why"],
                           [[h.table, h.extract_id, h.reason, h.at[:19], short(h.error, 160)] for h in report.held]))
    else:
        click.echo("held extracts: none")
    for table, extract_id, doc in report.released:
        override = " with allow_mass_delete" if doc.get("allow_mass_delete") else ""
        click.echo(f"released{override} by {doc.get('released_by', '?')} at {str(doc.get('released_at', '?'))[:19]}:"
                   f" {table} {extract_id} (the next run reads it again)")


COMMANDS = [batch_group, status]
