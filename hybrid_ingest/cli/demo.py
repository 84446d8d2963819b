"""``demo``: the whole path end to end on the local stack."""

from __future__ import annotations

import click

from hybrid_ingest.cli.context import AppContext
from hybrid_ingest.errors import NotBuiltError


@click.command("demo")
@click.pass_obj
def demo(app: AppContext) -> None:
    """local up, init, generated events and a bulk extract through the whole path, then queries."""
    raise NotBuiltError("demo is not built yet (issue: end to end)")


COMMANDS = [demo]
