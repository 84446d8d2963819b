"""Engine and capacity for one table's run, from an estimate of its input (issue 9, part 3).

The estimate reads only listings, manifests and Parquet footers, and the
table's size from its current Iceberg snapshot's summary (totals Iceberg keeps
from the manifests). Its
``affected_bytes`` is an upper bound: which partitions incoming keys touch is only
known after the kernel's key scan, so any pending input counts the whole table.
That errs toward Spark for a small change into a huge table, which costs money,
never correctness; ``spark_threshold_bytes`` in the job settings moves the line.

Capacity (StartJobRun overrides): a DuckDB run uses the driver only, so the
smallest Glue Spark job (G.1X, 2 workers, the minimum Glue allows); a Spark run
gets about one G.1X worker per 4 GiB of input (G.2X above 64 GiB, capped at 100).
Runs whose only input is bulk extracts are the nightly loads nobody waits for:
they go to the FLEX execution class (spare capacity, cheaper, may start later).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from glue_jobs import inputs
from hybrid_ingest import iceberg
from hybrid_ingest.aws import Clients
from hybrid_ingest.errors import MergeError
from hybrid_ingest.lake import Lake
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore

GIB = 1024**3
BYTES_PER_WORKER = 4 * GIB
G2X_ABOVE = 64 * GIB
MAX_WORKERS = 100
ENGINES = ("duckdb", "spark")


@dataclass(frozen=True)
class InputEstimate:
    table: str
    raw_bytes: int
    raw_files: int
    extract_bytes: int
    extracts: int
    affected_bytes: int
    table_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.raw_bytes + self.extract_bytes + self.affected_bytes


def estimate_inputs(lake: Lake, store: StateStore, registry: Registry, table: str,
                    table_bytes: Callable[[str], int]) -> InputEstimate:
    """What a merge of ``table`` would read now (manifests are read, not verified).

    ``table_bytes(table)``: the curated table's data size (``snapshot_bytes``).
    """
    spec = registry.latest(table).spec
    pending = inputs.gather(lake, table, store.watermark(table), verify=False)
    size = table_bytes(spec.table)
    affected = size if (pending.raw_files or pending.extracts) else 0
    return InputEstimate(table, pending.raw_bytes, pending.raw_files, pending.extract_bytes,
                         len(pending.extracts), affected, size)


def snapshot_bytes(clients: Clients, lake: Lake) -> Callable[[str], int]:
    """A table's data bytes from its current snapshot's summary (0 before its first run)."""
    cat = iceberg.catalog(clients, lake)

    def size(table: str) -> int:
        loaded = iceberg.load(cat, iceberg.identifier(clients, table))
        snapshot = loaded.current_snapshot() if loaded is not None else None
        if snapshot is None:
            return 0
        return int(iceberg.summary_of(snapshot).get("total-files-size") or 0)

    return size


def plan_table(estimate: InputEstimate, settings: dict[str, Any], override: str | None) -> dict[str, Any]:
    """The engine, why, and the StartJobRun capacity for one table's run (JSON-able)."""
    total = estimate.total_bytes
    threshold = int(settings["spark_threshold_bytes"])
    configured = str(settings.get("engine", "auto"))
    if override not in (None, "", "auto"):
        if override not in ENGINES:
            raise MergeError(f"unknown engine {override!r} (auto, duckdb or spark)")
        engine, reason = str(override), f"engine {override} requested for this run"
    elif configured in ENGINES:
        engine, reason = configured, f"engine {configured} set in the job settings"
    elif total >= threshold:
        engine, reason = "spark", f"estimated input {total} B >= spark_threshold_bytes {threshold} B"
    else:
        engine, reason = "duckdb", f"estimated input {total} B < spark_threshold_bytes {threshold} B"
    if engine == "duckdb":
        worker_type, workers = "G.1X", 2
    else:
        worker_type = "G.2X" if total > G2X_ABOVE else "G.1X"
        workers = min(MAX_WORKERS, max(3, 1 + math.ceil(total / BYTES_PER_WORKER)))
    nightly = estimate.raw_files == 0 and estimate.extracts > 0
    return {
        "table": estimate.table, "engine": engine, "reason": reason, "worker_type": worker_type,
        "workers": workers, "execution_class": "FLEX" if nightly else "STANDARD",
        "estimate": {"raw_bytes": estimate.raw_bytes, "raw_files": estimate.raw_files,
                     "extract_bytes": estimate.extract_bytes, "extracts": estimate.extracts,
                     "affected_bytes": estimate.affected_bytes, "table_bytes": estimate.table_bytes},
    }
