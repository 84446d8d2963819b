"""``local up`` / ``local down``: the background moto stack."""

from __future__ import annotations

import click

from hybrid_ingest.cli.context import AppContext


@click.group("local")
def local_group() -> None:
    """Start or stop the local stack (moto's server on loopback)."""


@local_group.command("up")
@click.pass_obj
def up(app: AppContext) -> None:
    """Start the local stack in the background; idempotent."""
    from hybrid_ingest.local import stack  # moto: imported by the commands that run it, not by every command

    record = stack.up(app.settings)
    click.echo(f"local stack running at {record['endpoint']} (pid {record['pid']}); home {app.settings.home}")


@local_group.command("down")
@click.pass_obj
def down(app: AppContext) -> None:
    """Stop the local stack; idempotent. The lake folder is kept."""
    from hybrid_ingest.local import stack

    stopped = stack.down(app.settings)
    click.echo("local stack stopped" if stopped else "local stack was not running")


COMMANDS = [local_group]
