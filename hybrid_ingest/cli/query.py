"""``query``: one read-only Athena (Trino) statement over the curated tables (DuckDB over their files locally)."""

from __future__ import annotations

import click

from hybrid_ingest.cli.context import AppContext


@click.command("query")
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "jsonl"]), default="table", show_default=True)
@click.pass_obj
def query(app: AppContext, sql: str, fmt: str) -> None:
    """Run one read statement (SELECT, WITH, VALUES); unqualified table names resolve to the curated database;
    FOR VERSION/TIMESTAMP AS OF, "<table>$snapshots" and "<table>$history" as on Athena; <table>_live adds
    unmerged changes (locally)."""
    from hybrid_ingest.query.render import render
    from hybrid_ingest.query.statement import parse

    statement = parse(sql)  # refused here, before any client, catalog or engine is touched
    names = app.settings.names
    if app.settings.endpoint_url is None:
        from hybrid_ingest.query.athena import athena_query

        result = athena_query(app.clients.client("athena"), statement.sql, names.curated_database,
                              names.athena_workgroup)
    else:
        from hybrid_ingest.query.local import LocalQuery

        result = LocalQuery(app.clients, app.lake, app.registry, app.store).run(statement)
    click.echo(render(result, fmt), nl=False)


COMMANDS = [query]
