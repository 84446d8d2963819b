"""``demo``: the whole path end to end on the local stack, checked against a simulated source."""

from __future__ import annotations

import shutil
import sys

import click
from click.testing import CliRunner

from hybrid_ingest.cli.context import AppContext
from hybrid_ingest.demo.run import print_summary, run_demo
from hybrid_ingest.errors import HybridIngestError


class StageFailed(HybridIngestError):
    reason = "demo-stage"


@click.command("demo")
@click.option("--customers", default=300, show_default=True, help="customers in the simulated source")
@click.option("--orders", default=1500, show_default=True, help="orders in the simulated source")
@click.pass_obj
def demo(app: AppContext, customers: int, orders: int) -> None:
    """Reset the local stack in $HYBRID_INGEST_HOME, run every stage on generated data, check the result."""
    from hybrid_ingest.cli import cli  # the group that holds this command
    from hybrid_ingest.local import stack  # moto: imported by the commands that run it, not by every command

    home = app.settings.home
    click.echo(f"hybrid-ingest demo in {home} (resets the local stack and lake there)")
    stack.down(app.settings)
    for folder in ("lake", "spool", "demo"):
        shutil.rmtree(home / folder, ignore_errors=True)
    workdir = home / "demo"
    workdir.mkdir(parents=True)
    runner = CliRunner()

    def run(args: list[str]) -> str:
        result = runner.invoke(cli, args, catch_exceptions=True)
        if result.exit_code != 0:
            detail = result.output.strip() or repr(result.exception)
            raise StageFailed(f"`hybrid-ingest {' '.join(args[:3])}` exited {result.exit_code}: {detail}")
        return result.stdout

    try:
        report = run_demo(run, workdir, customers=customers, orders=orders)
    except HybridIngestError as exc:
        click.secho(f"demo failed: {exc}", fg="red", err=True)
        sys.exit(1)
    print_summary(report)
    click.echo(f"\nThe local stack keeps running: try `HYBRID_INGEST_HOME={home} hybrid-ingest query "
               "\"SELECT * FROM orders LIMIT 5\"`, then `hybrid-ingest local down`.")
    if report.problems:
        sys.exit(1)


COMMANDS = [demo]
