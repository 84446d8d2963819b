"""The top-level CLI loads each command's module only when the command runs: its table must stay complete."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import hybrid_ingest.cli as cli_package
from hybrid_ingest.cli import COMMAND_MODULES


def test_every_command_of_every_cli_module_is_in_the_table() -> None:
    found: dict[str, str] = {}
    for info in pkgutil.iter_modules(cli_package.__path__):
        if info.name == "__main__":
            continue
        module = importlib.import_module(f"hybrid_ingest.cli.{info.name}")
        for command in getattr(module, "COMMANDS", []):
            found[command.name] = info.name
    assert found == COMMAND_MODULES


def test_running_produce_does_not_import_the_other_commands_heavy_libraries() -> None:
    code = ("import sys; from hybrid_ingest.cli import cli; import click; "
            "cli.get_command(click.Context(cli), 'produce'); "
            "print(sorted(m for m in ('pyiceberg', 'kafka', 'moto', 'duckdb') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
