"""``batch run`` and ``status``: the Step Functions workflow and its outcome."""

from __future__ import annotations

import click

from hybrid_ingest.cli.context import AppContext
from hybrid_ingest.errors import NotBuiltError


@click.group("batch")
def batch_group() -> None:
    """The batch (compact + merge) workflow."""


@batch_group.command("run")
@click.option("--engine", type=click.Choice(["auto", "spark", "duckdb"]), default="auto", show_default=True)
@click.pass_obj
def run(app: AppContext, engine: str) -> None:
    """Run the batch workflow once and wait for it; exit 1 if it failed."""
    raise NotBuiltError("batch run is not built yet (issue: workflow)")


@click.command("status")
@click.pass_obj
def status(app: AppContext) -> None:
    """Per table: stream lag, last merge, watermark, freshness, dead-letter count."""
    raise NotBuiltError("status is not built yet (issue: workflow)")


COMMANDS = [batch_group, status]
