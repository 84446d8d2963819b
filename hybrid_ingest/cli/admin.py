"""``init`` and ``schemas register``: resources and the schema registry."""

from __future__ import annotations

from pathlib import Path

import click

from hybrid_ingest import bootstrap, workflow
from hybrid_ingest.cli.context import AppContext
from hybrid_ingest.tables import load_specs

DEFAULT_SCHEMAS = Path("schemas")


@click.command("init")
@click.option("--schemas", "schemas_dir", type=click.Path(path_type=Path), default=DEFAULT_SCHEMAS,
              show_default=True, help="folder of <table>.avsc + <table>.table.json")
@click.pass_obj
def init(app: AppContext, schemas_dir: Path) -> None:
    """Create stream, tables, catalog databases and lake folders; register every table; idempotent."""
    report = bootstrap.init(app.clients, app.lake, [schemas_dir] if schemas_dir.exists() else [],
                            create_resources=app.settings.is_local)
    for line in report.created:
        click.echo(f"created {line}")
    for reg in report.registered:
        state = "registered" if reg.created else "unchanged"
        click.echo(f"{state} {reg.version.table} v{reg.version.version} fingerprint {reg.version.fingerprint.hex()}")
    if app.settings.is_local:
        deployment = workflow.deploy(app.clients)
        click.echo(f"workflow {deployment.state_machine_arn} (map concurrency {deployment.values.map_concurrency})")
    click.echo(f"lake at {app.lake.uri()}")


@click.group("schemas")
def schemas_group() -> None:
    """Manage table schemas in the registry."""


@schemas_group.command("register")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.pass_obj
def register(app: AppContext, paths: tuple[Path, ...]) -> None:
    """Register or evolve tables (.avsc + .table.json); refuses incompatible changes (exit 1)."""
    for spec in load_specs(list(paths)):
        reg = app.registry.register(spec)
        state = "registered" if reg.created else "unchanged"
        click.echo(f"{state} {spec.table} v{reg.version.version} ({spec.compatibility}) "
                   f"fingerprint {reg.version.fingerprint.hex()}")


COMMANDS = [init, schemas_group]
