"""The README's first command, end to end on a small source: every stage runs and the check passes."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

from hybrid_ingest.demo.run import compare
from hybrid_ingest.demo.source import simulate
from tests.conftest import REPO


def test_demo_runs_every_stage_and_matches_the_source(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT_URL", "HYBRID_INGEST"))}
    env["HYBRID_INGEST_HOME"] = str(tmp_path / "home")
    command = [sys.executable, "-m", "hybrid_ingest.cli"]
    try:
        result = subprocess.run([*command, "demo", "--customers", "40", "--orders", "120"], capture_output=True,
                                text=True, env=env, cwd=REPO, timeout=900, check=False)
    finally:
        subprocess.run([*command, "local", "down"], env=env, cwd=REPO, timeout=60, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Curated tables and live view equal the source tables." in result.stdout
    for stage in ("produce change events", "consume the stream", "batch workflow", "live view", "Spark engine",
                  "time travel"):
        assert stage in result.stdout
    assert "+20 not merged yet" in result.stdout


def test_the_demo_check_catches_a_wrong_table() -> None:
    scenario = simulate(customers=10, orders=20)
    orders = scenario.source.tables["orders"]
    rows = [dict(r) for r in orders.values()]
    assert compare("orders", orders, rows) == []
    rows[0]["status"] = "tampered"
    missing = rows[1:]
    assert any("differ" in p for p in compare("orders", orders, rows))
    assert any("missing" in p for p in compare("orders", orders, missing))
    assert any("duplicated" in p for p in compare("orders", orders, [*rows, rows[0]]))


def test_the_simulated_source_ends_at_the_requested_time() -> None:
    end = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
    scenario = simulate(customers=10, orders=20, end=end)
    assert scenario.source.clock == end
    assert scenario.events == simulate(customers=10, orders=20, end=end).events
