"""``query``: Athena (Trino) SQL over the curated tables."""

from __future__ import annotations

import click

from hybrid_ingest.cli.context import AppContext
from hybrid_ingest.errors import NotBuiltError


@click.command("query")
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "jsonl"]), default="table", show_default=True)
@click.pass_obj
def query(app: AppContext, sql: str, fmt: str) -> None:
    """Run SQL; unqualified table names resolve to the curated database."""
    raise NotBuiltError("query is not built yet (issue: merge)")


COMMANDS = [query]
