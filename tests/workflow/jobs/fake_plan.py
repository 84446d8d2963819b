"""Stand-in plan job for workflow tests: the real lock and plan item, a fixed per-table sizing.

``FAKE_PLAN_FAIL=1`` makes sizing raise (after the lock was taken) to test that path. Each planned
table leaves ``fake-planned/<table>`` in the lake, so a test's job can wait for the plan.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from glue_jobs.plan_job import Planner, main
from hybrid_ingest.aws import Clients
from hybrid_ingest.lake import Lake
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore


def fixed_planner(_clients: Clients, lake: Lake, store: StateStore, registry: Registry) -> Planner:
    def plan(table: str, settings: dict[str, Any], override: str | None) -> dict[str, Any]:
        if os.environ.get("FAKE_PLAN_FAIL"):
            raise RuntimeError(f"sizing exploded on {table}")
        lake.write_bytes(f"fake-planned/{table}", b"")
        return {"table": table, "engine": override or "duckdb", "reason": "fixed", "worker_type": "G.1X",
                "workers": 2, "execution_class": "STANDARD"}

    return plan


if __name__ == "__main__":
    sys.exit(main(make_planner=fixed_planner))
