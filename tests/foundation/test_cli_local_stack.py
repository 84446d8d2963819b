"""The CLI as a new user runs it: local up, init, schema evolutions, local down (real subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, SCHEMAS


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT_URL", "HYBRID_INGEST"))}
    env["HYBRID_INGEST_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "hybrid_ingest.cli", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120, check=False)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    yield home
    run(home, "local", "down")


def test_local_stack_lifecycle_and_schema_evolution(home: Path, tmp_path: Path) -> None:
    up = run(home, "local", "up")
    assert up.returncode == 0, up.stderr
    record = json.loads((home / "stack.json").read_text())
    assert record["endpoint"].startswith("http://127.0.0.1:")
    again = run(home, "local", "up")
    assert again.returncode == 0
    assert json.loads((home / "stack.json").read_text())["pid"] == record["pid"]

    first = run(home, "init")
    assert first.returncode == 0, first.stderr
    assert "created kinesis stream hybrid-ingest-changes" in first.stdout
    assert "registered orders v1" in first.stdout
    second = run(home, "init")
    assert second.returncode == 0, second.stderr
    assert "created" not in second.stdout
    assert "unchanged orders v1" in second.stdout

    evolved = tmp_path / "evolved"
    evolved.mkdir()
    for name in ("orders.avsc", "orders.table.json", "customers.avsc", "customers.table.json"):
        (evolved / name).write_text((SCHEMAS / name).read_text())
    orders = json.loads((evolved / "orders.avsc").read_text())
    orders["fields"].append({"name": "channel", "type": "string", "default": "web"})
    (evolved / "orders.avsc").write_text(json.dumps(orders))
    ok = run(home, "schemas", "register", str(evolved / "orders.avsc"))
    assert ok.returncode == 0, ok.stderr
    assert "registered orders v2" in ok.stdout

    customers = json.loads((evolved / "customers.avsc").read_text())
    customers["fields"].append({"name": "segment", "type": "string"})
    (evolved / "customers.avsc").write_text(json.dumps(customers))
    refused = run(home, "schemas", "register", str(evolved / "customers.avsc"))
    assert refused.returncode == 1
    assert "segment" in refused.stderr
    assert "BACKWARD" in refused.stderr

    down = run(home, "local", "down")
    assert down.returncode == 0
    assert "stopped" in down.stdout
    assert not (home / "stack.json").exists()
    assert "not running" in run(home, "local", "down").stdout


def test_commands_need_a_stack(home: Path) -> None:
    result = run(home, "init")
    assert result.returncode == 1
    assert "local up" in result.stderr
