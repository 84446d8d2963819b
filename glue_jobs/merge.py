"""One merge run of one table: the engine-independent part around the kernel.

Order of a run, and why a crash anywhere is safe:

1. Take the table's merge lease (``merge#<table>``): runs of one table are serial.
2. Clean up what a crashed run left: staging folders, and version folders newer
   than the table's committed version that no partition points at (never live).
3. Read the watermark, the catalog's live partitions, the raw files above the
   watermark and the verified, not yet merged extracts; choose the engine.
4. The kernel writes complete new version folders for the affected partitions
   and, if tombstones changed, a new tombstone version. Nothing is visible yet.
   (crash point ``after_write``: the next run deletes these folders in step 2.)
5. Record what the switch retires (old versions), then switch the catalog:
   partitions first, then the table (schema, tombstones, floor, version).
   (crash point ``after_switch``: the watermark is not moved, so the next run
   re-reads the same changes; applying them again is a no-op because a change
   must be strictly newer than the stored row or tombstone to apply.)
6. Commit the watermark with a conditional write (version compare-and-set).
7. Delete retired versions older than the retention window, record the run's
   statistics in the run history and emit them as metrics.

Old versions are deleted only ``version_retention_hours`` after they were
replaced, so queries that planned against them keep their files.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from glue_jobs import catalog, inputs
from glue_jobs.kernel import KernelJob, KernelResult
from glue_jobs.merge_sql import UNPARTITIONED, MergeParams
from glue_jobs.sizing import InputEstimate, plan_table
from hybrid_ingest import layout
from hybrid_ingest.aws import Clients
from hybrid_ingest.errors import HybridIngestError, MergeError
from hybrid_ingest.lake import Lake
from hybrid_ingest.metrics import Metrics
from hybrid_ingest.position import Position
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore, Watermark

LOGGER = logging.getLogger("glue_jobs.merge")
Hook = Callable[[str], None]
CRASH_POINTS = ("after_write", "after_switch")
RETIRED = f"{layout.CURATED}/_retired"
DEFAULT_BYTES_PER_ROW = 64


@dataclass
class MergeContext:
    """The adapters a run uses, passed in (the Glue entry script and the tests build them)."""

    clients: Clients
    lake: Lake
    registry: Registry
    store: StateStore
    spark: Any = None
    metrics: Metrics | None = None
    spark_factory: Callable[[], Any] | None = None  # builds a session only when a run picks Spark
    plan: str = "auto"  # the kernel plan: auto (by one_pass_change_fraction), one_pass or keys_first

    @property
    def database(self) -> str:
        return self.clients.settings.names.curated_database


@dataclass
class RunResult:
    table: str
    run_id: str
    version: str
    engine: str
    engine_reason: str
    stats: dict[str, Any] = field(default_factory=dict)
    status: str = "SUCCEEDED"


def version_id(now: dt.datetime, run_id: str) -> str:
    """Version folder names sort by creation time, which is what cleanup compares."""
    return f"{now.astimezone(dt.UTC):%Y%m%dT%H%M%S%f}Z-{layout.safe(run_id)}"


def _version_of(rel: str) -> str:
    return rel.rstrip("/").rsplit("/", 1)[-1].removeprefix(layout.VERSION_PREFIX)


def run_merge(ctx: MergeContext, table: str, engine: str = "auto", run_id: str | None = None,
              hook: Hook | None = None, now: dt.datetime | None = None) -> RunResult:
    """Merge everything pending for ``table``; ``hook(point)`` is called at each crash point (tests)."""
    run_id = run_id or uuid.uuid4().hex[:12]
    started = time.monotonic()
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    settings = ctx.store.settings()
    lease = ctx.store.acquire(f"merge#{table}", owner=run_id, ttl_seconds=float(settings["lock_lease_seconds"]))
    result = RunResult(table, run_id, version_id(now, run_id), engine, "")
    try:
        _run(ctx, table, engine, settings, result, hook or (lambda _point: None), now)
    except Exception as exc:
        result.status = "FAILED"
        result.stats["duration_s"] = round(time.monotonic() - started, 3)
        _record(ctx, result, now, error=f"{type(exc).__name__}: {exc}")
        if isinstance(exc, HybridIngestError):
            raise
        raise MergeError(f"merge of {table!r} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        ctx.store.release(lease)
    result.stats["duration_s"] = round(time.monotonic() - started, 3)
    _record(ctx, result, now)
    return result


def _run(ctx: MergeContext, table: str, engine: str, settings: dict[str, Any], result: RunResult,
         hook: Hook, now: dt.datetime) -> None:
    lake, glue = ctx.lake, ctx.clients.glue
    latest = ctx.registry.latest(table)
    spec = latest.spec
    state = catalog.ensure_table(glue, lake, ctx.database, spec)
    remove_leftovers(lake, spec.table, state)
    watermark = ctx.store.watermark(table)
    pending = inputs.gather(lake, table, watermark, verify=True, now=now)
    partitions, table_bytes, table_rows = inputs.live_partitions(lake, state.partitions)
    rewrite_all = bool(partitions) and state.param_int(catalog.PARAM_SCHEMA_VERSION, 0) != latest.version
    estimate = InputEstimate(table, pending.raw_bytes, pending.raw_files, pending.extract_bytes,
                             len(pending.extracts), table_bytes if (pending.raw or pending.extracts
                                                                    or rewrite_all) else 0, table_bytes)
    plan = plan_table(estimate, settings, None if engine == "auto" else engine)
    result.engine, result.engine_reason = plan["engine"], plan["reason"]
    tomb_rel = state.parameters.get(catalog.PARAM_TOMBSTONES) or None
    tombstones = None
    if tomb_rel:
        tomb_facts = [inputs.file_facts(lake, lake.rel(i.path)) for i in lake.files(tomb_rel, ".parquet")]
        tombstones = next(iter(inputs.group_by_schema(tomb_facts)), None)
    stored_floor = state.param_int(catalog.PARAM_FLOOR, -1)
    full = [x for x in pending.extracts if x.mode == "full" and x.as_of_seq > stored_floor]
    top = max(full, key=lambda x: x.rank) if full else None
    floor = max([stored_floor] + [x.as_of_seq for x in full])
    cutoff = now - dt.timedelta(hours=float(settings["tombstone_retention_hours"]))
    bytes_per_row = table_bytes / table_rows if table_rows else DEFAULT_BYTES_PER_ROW
    target = int(settings["target_file_bytes"])
    one_pass = _one_pass(ctx.plan, result.engine, pending, table_rows, rewrite_all,
                         float(settings["one_pass_change_fraction"]))
    job = KernelJob(
        spec=spec, raw=tuple(pending.raw), extracts=tuple(pending.extracts), current=tuple(partitions),
        tombstones=tombstones,
        params=MergeParams(
            watermark={s: str(p) for s, p in watermark.shards.items()},
            floor=floor, full_rank=top.rank if top else -1, merged_at=now, tombstone_cutoff=cutoff),
        rewrite_all=rewrite_all, version=result.version,
        rows_per_file=max(1, min(int(settings["max_rows_per_file"]), int(target / max(bytes_per_row, 1.0)))),
        compression=str(settings["parquet_compression"]), one_pass=one_pass,
        positions=pending.positions,
    )
    has_work = bool(pending.raw or pending.extracts or rewrite_all)
    kernel = _run_kernel(ctx, job, result.engine, settings) if has_work else KernelResult()
    hook("after_write")
    new_locations = {value: layout.curated_version_dir(spec.table, spec.partition,
                                                       value if spec.partition else None, result.version)
                     for value in kernel.written}
    emptied = [v for v in kernel.affected if v not in kernel.written]
    new_tomb = layout.tombstone_dir(spec.table, result.version) if kernel.tombstones is not None else tomb_rel
    retired = [state.partitions[v] for v in list(new_locations) + emptied if v in state.partitions]
    if kernel.tombstones is not None and tomb_rel:
        retired.append(tomb_rel)
    if retired:
        lake.write_json(f"{RETIRED}/{layout.safe(spec.table)}/{result.version}.json",
                        {"version": result.version, "at": now.isoformat(), "paths": retired})
    if spec.partition is not None:
        catalog.switch_partitions(glue, lake, ctx.database, spec, state, new_locations, emptied)
    location = layout.curated_table_dir(spec.table)
    if spec.partition is None:
        location = new_locations.get(UNPARTITIONED, state.location or location)
        if UNPARTITIONED in emptied:  # every row deleted: point at an empty version folder
            location = layout.curated_version_dir(spec.table, None, None, result.version)
            lake.ensure_dir(location)
    committed_version = result.version if (new_locations or emptied or kernel.tombstones is not None) \
        else state.parameters.get(catalog.PARAM_VERSION, "")
    catalog.update_table(glue, lake, ctx.database, spec, location, {
        catalog.PARAM_SCHEMA_VERSION: str(latest.version),
        catalog.PARAM_VERSION: committed_version,
        catalog.PARAM_TOMBSTONES: new_tomb or "",
        catalog.PARAM_FLOOR: str(floor),
    })
    hook("after_switch")
    shards = dict(watermark.shards)
    for shard, kpos in kernel.positions.items():
        position = Position.parse(kpos)
        if shard not in shards or shards[shard] < position:
            shards[shard] = position
    newest = kernel.newest_op_ts.timestamp() if kernel.newest_op_ts else None
    if watermark.newest_op_ts is not None:
        newest = max(newest or watermark.newest_op_ts, watermark.newest_op_ts)
    ctx.store.commit_watermark(Watermark(
        table, shards, watermark.extracts | {x.extract_id for x in pending.extracts}, watermark.version,
        newest, result.run_id), watermark.version)
    try:  # the run is committed: a failed cleanup is retried by the next run, not a failed merge
        deleted = delete_retired(lake, spec.table, catalog.read_table(glue, lake, ctx.database, table), now,
                                 float(settings["version_retention_hours"]))
    except (OSError, ClientError) as exc:
        LOGGER.warning("cleanup of retired versions of %s failed, next run retries: %s", table, exc)
        result.stats["cleanup_error"] = str(exc)
        deleted = 0
    result.stats.update(kernel.stats)
    result.stats.update({
        "rows_in": kernel.stats.get("raw_rows", 0) + kernel.stats.get("extract_rows", 0),
        "stale_dropped": (kernel.stats.get("raw_rows", 0) + kernel.stats.get("extract_rows", 0)
                          - kernel.stats.get("upserts", 0)
                          - (kernel.stats.get("deletes", 0) - kernel.stats.get("full_extract_deletes", 0))),
        "partitions_rewritten": len(new_locations), "partitions_removed": len(emptied),
        "bytes_written": sum(b for files in kernel.written.values() for _, b in files),
        "files_written": sum(len(files) for files in kernel.written.values()),
        "raw_files": pending.raw_files, "raw_bytes": pending.raw_bytes,
        "extracts": [x.extract_id for x in pending.extracts], "extracts_rejected": pending.rejected,
        "versions_deleted": deleted, "schema_version": latest.version, "rewrite_all": rewrite_all,
        "kernel_plan": "one_pass" if one_pass else "keys_first",
    })


def _one_pass(plan: str, engine: str, pending: inputs.MergeInputs, table_rows: int, rewrite_all: bool,
              fraction: float) -> bool:
    """The kernel plan (``kernel.py``): one pass for a Spark run that rewrites most partitions anyway.

    That is every run that rewrites all rows, and every run whose changes are at
    least ``fraction`` of the table's rows. DuckDB stays with keys first: its hash
    joins make that plan the cheaper one at every ratio measured (bench/README.md).
    """
    if plan not in ("auto", "one_pass", "keys_first"):
        raise MergeError(f"unknown kernel plan {plan!r} (auto, one_pass or keys_first)")
    if plan != "auto":
        return plan == "one_pass"
    changes = sum(g.rows for g in pending.raw) + sum(x.files.rows for x in pending.extracts)
    return engine == "spark" and (rewrite_all or changes >= fraction * table_rows)


def _run_kernel(ctx: MergeContext, job: KernelJob, engine: str, settings: dict[str, Any]) -> KernelResult:
    if engine == "spark":
        if ctx.spark is None and ctx.spark_factory is not None:
            ctx.spark = ctx.spark_factory()
        if ctx.spark is None:
            raise MergeError("engine spark needs a Spark session (run as the Glue job, or pass one)")
        from glue_jobs.kernel_spark import merge_spark

        return merge_spark(ctx.spark, ctx.lake, job)
    from glue_jobs.kernel_duckdb import merge_duckdb

    return merge_duckdb(ctx.lake, job, memory_limit=str(settings["duckdb_memory_limit"]))


def _version_dirs(lake: Lake, table: str) -> list[str]:
    """Every version folder of a table's data and tombstones (relative paths)."""
    base = layout.curated_table_dir(table)
    found: list[str] = []
    for name in lake.dirs(base):
        if name.startswith(layout.VERSION_PREFIX):
            found.append(f"{base}/{name}")
        elif "=" in name and not name.startswith((".", "_")):
            found.extend(f"{base}/{name}/{v}" for v in lake.dirs(f"{base}/{name}")
                         if v.startswith(layout.VERSION_PREFIX))
    tomb_base = layout.tombstone_dir(table, "x").rsplit("/", 1)[0]
    found.extend(f"{tomb_base}/{v}" for v in lake.dirs(tomb_base) if v.startswith(layout.VERSION_PREFIX))
    return found


def remove_leftovers(lake: Lake, table: str, state: catalog.CatalogTable) -> list[str]:
    """Delete staging folders and never-live versions of crashed runs (runs are serial under the lease)."""
    base = layout.curated_table_dir(table)
    removed = [f"{base}/{name}" for name in lake.dirs(base) if name.startswith(".staging-")]
    committed = state.parameters.get(catalog.PARAM_VERSION, "")
    live = set(state.partitions.values()) | {state.parameters.get(catalog.PARAM_TOMBSTONES, "")}
    removed += [d for d in _version_dirs(lake, table) if d not in live and _version_of(d) > committed]
    for rel in removed:
        lake.delete_dir(rel)
    return removed


def delete_retired(lake: Lake, table: str, state: catalog.CatalogTable, now: dt.datetime,
                   retention_hours: float) -> int:
    """Delete versions retired longer ago than the retention window, unless live again."""
    folder = f"{RETIRED}/{layout.safe(table)}"
    live = set(state.partitions.values()) | {state.parameters.get(catalog.PARAM_TOMBSTONES, "")}
    deleted = 0
    for info in lake.files(folder, ".json", recursive=False):
        record = lake.read_json(lake.rel(info.path))
        if dt.datetime.fromisoformat(record["at"]) > now - dt.timedelta(hours=retention_hours):
            continue
        for rel in record["paths"]:
            if rel not in live and lake.exists(rel):
                lake.delete_dir(rel)
                deleted += 1
        lake.delete_file(lake.rel(info.path))
    return deleted


def _record(ctx: MergeContext, result: RunResult, started: dt.datetime, error: str | None = None) -> None:
    record: dict[str, Any] = {**result.stats, "table": result.table, "run_id": result.run_id,
                              "version": result.version, "engine": result.engine,
                              "engine_reason": result.engine_reason, "status": result.status,
                              "started_at": started.isoformat()}
    if error:
        record["error"] = error
    ctx.store.record_run(result.table, result.run_id, started.isoformat(), record)
    if ctx.metrics is not None:
        figures = {k: float(v) for k, v in result.stats.items()
                   if isinstance(v, int | float) and not isinstance(v, bool)}
        figures["failed"] = 0.0 if result.status == "SUCCEEDED" else 1.0
        ctx.metrics.emit(figures, {"Table": result.table, "Stage": "merge"},
                         unit={"duration_s": "Seconds", "bytes_written": "Bytes", "raw_bytes": "Bytes"})
    LOGGER.info("merge %s %s: %s", result.table, result.status, record)

