"""``hybrid-ingest``: the one entry point (DESIGN.md "Command line").

Each command group lives in its own module; this module only assembles them and
turns ``HybridIngestError`` into a one-line message and its exit code.
"""

from __future__ import annotations

import sys

import click

from hybrid_ingest.cli import admin, batch, bridge, consume, demo, local, produce, query, source
from hybrid_ingest.cli.context import AppContext
from hybrid_ingest.config import Settings
from hybrid_ingest.errors import HybridIngestError


@click.group()
@click.version_option(package_name="hybrid-ingest")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Streaming-plus-batch ingest into curated Parquet tables (local stack or AWS)."""
    ctx.obj = AppContext(Settings.from_env())


for module in (local, admin, produce, bridge, source, consume, batch, query, demo):
    for command in module.COMMANDS:
        cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="hybrid-ingest", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except HybridIngestError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
