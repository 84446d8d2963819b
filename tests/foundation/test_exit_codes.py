"""Exit codes as a shell sees them: the installed ``hybrid-ingest`` script in a subprocess (DESIGN.md "Command line").

0 success, 1 a refused input or a failed run, 2 a usage error; every failure is
one line on stderr that says what and where, never a traceback. ``CliRunner``
and the in-process ``cli`` fixture cannot show this: click hands the exit code
of ``ctx.exit(n)`` back to ``main()`` instead of exiting, so only the real
process tells whether the shell sees it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from hybrid_ingest import layout, workflow
from hybrid_ingest.aws import Clients
from hybrid_ingest.lake import Lake
from tests.conftest import REPO, SCHEMAS

SCRIPT = Path(sys.executable).with_name("hybrid-ingest")


def clean_env(home: Path) -> dict[str, str]:
    """The caller's environment without any endpoint, lake or home of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT_URL", "HYBRID_INGEST"))}
    env["HYBRID_INGEST_HOME"] = str(home)
    return env


def stack_env(clients: Clients) -> dict[str, str]:
    s = clients.settings
    env = clean_env(s.home)
    env.update({"AWS_ENDPOINT_URL": str(s.endpoint_url), "HYBRID_INGEST_LAKE_URI": s.lake_uri,
                "AWS_REGION": s.region})
    return env


def shell(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=600, check=False)


def assert_fails(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """Exit ``code``, and stderr is one line naming the problem, with no traceback."""
    assert proc.returncode == code, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{proc.stderr}"
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_the_console_script_is_installed() -> None:
    assert SCRIPT.is_file(), f"{SCRIPT} is missing: install the package (pip install -e .)"
    ok = shell(clean_env(REPO), "--version")
    assert ok.returncode == 0, ok.stderr


def test_failed_batch_run_exits_1(initialized: Clients, lake: Lake) -> None:
    """The merge job of customers really fails (a Parquet file in raw/ that is no raw file): the shell sees it."""
    workflow.deploy(initialized)
    lake.write_parquet(f"{layout.RAW}/customers/ingest_date=2026-11-21/ingest_hour=10/"
                       "shardId-000000000000-1_0-2_0.parquet", pa.table({"x": [1, 2]}))
    proc = shell(stack_env(initialized), "batch", "run", "--engine", "duckdb")
    assert [line.split()[:3] for line in proc.stdout.splitlines() if line.startswith("customers ")] == [
        ["customers", "duckdb", "FAILED"]], proc.stdout
    assert_fails(proc, 1, "error:", "customers")


def test_bad_produce_line_exits_1(initialized: Clients, tmp_path: Path) -> None:
    path = tmp_path / "changes.jsonl"
    good = json.dumps({"op": "d", "seq": 1, "row": {"customer_id": 1}})
    path.write_text(good + "\n" + json.dumps({"op": "u", "seq": 2, "row": {"customer_id": "seven"}}) + "\n")
    proc = shell(stack_env(initialized), "produce", "customers", "--input", str(path))
    assert_fails(proc, 1, str(path), "line 2", "row.customer_id", "nothing was sent")


def test_incompatible_schema_registration_exits_1(initialized: Clients, tmp_path: Path) -> None:
    for name in ("customers.avsc", "customers.table.json"):
        shutil.copy(SCHEMAS / name, tmp_path / name)
    schema = json.loads((tmp_path / "customers.avsc").read_text())
    schema["fields"].append({"name": "loyalty", "type": "long"})  # no default: old rows unreadable
    (tmp_path / "customers.avsc").write_text(json.dumps(schema))
    proc = shell(stack_env(initialized), "schemas", "register", str(tmp_path / "customers.avsc"))
    assert_fails(proc, 1, "customers", "BACKWARD", "loyalty")


def test_invalid_avro_file_exits_1(initialized: Clients, tmp_path: Path) -> None:
    (tmp_path / "things.table.json").write_text(json.dumps({"table": "things", "primary_key": ["id"]}))
    (tmp_path / "things.avsc").write_text(json.dumps(
        {"type": "record", "name": "things", "fields": [{"name": "id", "type": "lng"}]}))
    proc = shell(stack_env(initialized), "schemas", "register", str(tmp_path / "things.avsc"))
    assert_fails(proc, 1, "things.avsc", "lng")


@pytest.mark.parametrize("sql", ["SELECT 'unterminated", "SELEC 1"])
def test_bad_sql_exits_1(initialized: Clients, sql: str) -> None:
    proc = shell(stack_env(initialized), "query", sql)
    assert_fails(proc, 1, "SQL")


def test_no_local_stack_exits_1(tmp_path: Path) -> None:
    proc = shell(clean_env(tmp_path / "home"), "status")
    assert_fails(proc, 1, "local up")


def test_unreachable_local_stack_exits_1(tmp_path: Path) -> None:
    """A stack was recorded but is gone (machine rebooted, process killed)."""
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    home = tmp_path / "home"
    home.mkdir()
    (home / "stack.json").write_text(json.dumps({"endpoint": f"http://127.0.0.1:{port}", "pid": 0}))
    proc = shell(clean_env(home), "status")
    assert_fails(proc, 1, f"127.0.0.1:{port}", "local up")


def test_stack_without_init_exits_1(clients: Clients) -> None:
    """The stack runs but ``init`` never did: the tables are missing."""
    proc = shell(stack_env(clients), "status")
    assert_fails(proc, 1, "init")


@pytest.mark.parametrize("args", [
    ["no-such-command"], ["batch", "run", "--engine", "nope"], ["produce"],
    ["consume", "--flush-records", "-5"], ["consume", "--flush-bytes", "0"], ["consume", "--flush-seconds", "0"],
    ["consume", "--lease-seconds", "-1"], ["consume", "--takeover-deadline", "-1"],
])
def test_usage_error_exits_2(args: list[str], tmp_path: Path) -> None:
    proc = shell(clean_env(tmp_path), *args)
    assert_fails(proc, 2, "--help")
