"""``produce`` and ``bulk push``: the on-prem side of the service."""

from __future__ import annotations

from pathlib import Path

import click

from hybrid_ingest.cli.context import AppContext
from hybrid_ingest.errors import NotBuiltError


@click.command("produce")
@click.argument("table")
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, path_type=Path))
@click.pass_obj
def produce(app: AppContext, table: str, input_path: Path) -> None:
    """Publish change events (one JSON object a line) to the stream."""
    raise NotBuiltError("produce is not built yet (issue: producers)")


@click.group("bulk")
def bulk_group() -> None:
    """Bulk extracts."""


@bulk_group.command("push")
@click.argument("table")
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--as-of-seq", required=True, type=int)
@click.option("--mode", type=click.Choice(["full", "incremental"]), required=True)
@click.pass_obj
def bulk_push(app: AppContext, table: str, input_path: Path, as_of_seq: int, mode: str) -> None:
    """Land a bulk extract (Parquet or CSV with a header) with its manifest, as DataSync would."""
    raise NotBuiltError("bulk push is not built yet (issue: producers)")


COMMANDS = [produce, bulk_group]
