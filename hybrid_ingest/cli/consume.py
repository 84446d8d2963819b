"""``consume``: the shard consumer (stream -> raw)."""

from __future__ import annotations

import click

from hybrid_ingest.cli.context import AppContext
from hybrid_ingest.errors import NotBuiltError


@click.command("consume")
@click.option("--until-idle", is_flag=True, help="exit once every shard is caught up and flushed")
@click.pass_obj
def consume(app: AppContext, until_idle: bool) -> None:
    """Run the stream consumer."""
    raise NotBuiltError("consume is not built yet (issue: streaming consumer)")


COMMANDS = [consume]
