"""``hybrid-ingest``: the one entry point (DESIGN.md "Command line").

Each command group lives in its own module; this module only assembles them and
turns ``HybridIngestError`` into a one-line message and its exit code.
"""

from __future__ import annotations

import importlib
import sys

import click
from botocore.exceptions import BotoCoreError, ClientError

from hybrid_ingest.aws import describe_failure
from hybrid_ingest.cli.context import AppContext
from hybrid_ingest.config import Settings
from hybrid_ingest.errors import HybridIngestError

# command -> its module in hybrid_ingest/cli (whose COMMANDS it is in). A command's module is imported
# when it runs: all of them together cost ~0.45 s of CPU at every start (pyiceberg, kafka, moto).
COMMAND_MODULES = {
    "local": "local", "init": "admin", "schemas": "admin", "produce": "produce", "bulk": "produce",
    "bridge": "bridge", "source": "source", "consume": "consume", "batch": "batch", "status": "batch",
    "query": "query", "demo": "demo",
}


class LazyGroup(click.Group):
    """The top-level group: commands are added from their module the first time they are looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMAND_MODULES) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(cmd_name)
        if module is not None and cmd_name not in self.commands:
            for command in importlib.import_module(f"hybrid_ingest.cli.{module}").COMMANDS:
                self.add_command(command)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup)
@click.version_option(package_name="hybrid-ingest")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Streaming-plus-batch ingest into curated Parquet tables (local stack or AWS)."""
    ctx.obj = AppContext(Settings.from_env())


def one_line(text: str) -> str:
    """A message as one line: the contract promises one line per refusal (DuckDB and sqlglot add newlines)."""
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> None:
    try:
        # standalone_mode=False: click returns the code of ``ctx.exit(n)`` / ``Exit(n)`` instead of exiting
        code = cli.main(args=argv, prog_name="hybrid-ingest", standalone_mode=False)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        click.echo(f"error: {one_line(exc.format_message())}{hint}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {one_line(exc.format_message())}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except HybridIngestError as exc:
        click.echo(f"error: {one_line(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except (BotoCoreError, ClientError) as exc:
        click.echo(f"error: {one_line(describe_failure(exc))}", err=True)
        sys.exit(1)
    except OSError as exc:  # a file the user named, a full disk: their world, not our bug
        click.echo(f"error: {one_line(str(exc))}", err=True)
        sys.exit(1)
    if isinstance(code, int) and code:
        sys.exit(code)
