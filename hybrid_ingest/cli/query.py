"""``query``: Athena (Trino) SQL over the curated tables (DuckDB over the catalog's files locally)."""

from __future__ import annotations

import click

from hybrid_ingest.cli.context import AppContext


@click.command("query")
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "jsonl"]), default="table", show_default=True)
@click.pass_obj
def query(app: AppContext, sql: str, fmt: str) -> None:
    """Run SQL; unqualified table names resolve to the curated database; <table>_live adds unmerged changes."""
    from glue_jobs.query import LocalQuery, athena_query, render

    names = app.settings.names
    if app.settings.endpoint_url is None:
        result = athena_query(app.clients.client("athena"), sql, names.curated_database, names.athena_workgroup)
    else:
        local = LocalQuery(app.clients, app.lake, app.registry, app.store)
        try:
            result = local.run(sql)
        finally:
            local.close()
    click.echo(render(result, fmt), nl=False)


COMMANDS = [query]
