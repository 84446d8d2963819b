"""One merge run of one table: the engine-independent part around the kernel.

Order of a run (``_run``), and why a crash anywhere is safe:

1. Take the table's merge lease (``merge#<table>``): runs of one table are serial.
2. Open the Iceberg table (created on the first run) and a transaction based on
   its current snapshot: the run's fence (``glue_jobs.commit``).
3. Repair the watermark if the last run died between its commit and its
   watermark write: the snapshot summary says what that run merged.
4. Read the raw files above the watermark and the verified, not yet merged
   extracts; size the run and choose the engine and plan. The extract guard
   (``glue_jobs.guard``) holds back any extract with duplicate keys or numbers
   that would wipe or freeze the table, recording it under ``dlq/merge/``; the
   run goes on with the rest.
5. The kernel writes the affected partitions' new data files (and the next
   tombstones) under the table's folder. Nothing is visible yet.
   (crash point ``after_write``: the files are named by no snapshot; retention
   removes them once older than its window.)
6. Commit one Iceberg snapshot: the affected partitions' files replaced,
   atomically, its summary recording the run (positions, extracts, floor,
   tombstones, schema version). It fails cleanly if the table moved since step 2.
   (crash point ``after_commit``: the watermark has not moved; the next run
   repairs it from this snapshot's summary in step 3, merging nothing twice.)
7. Commit the watermark with a conditional write (version compare-and-set).
8. Expire snapshots and remove unreferenced files past the retention window,
   record the run's statistics in the run history and emit them as metrics.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from glue_jobs import commit, guard, inputs, retention
from glue_jobs import engine as engines
from glue_jobs.kernel_model import FileGroup, KernelJob, KernelResult, Partition
from glue_jobs.merge_sql import MergeParams
from glue_jobs.sizing import InputEstimate, plan_table
from hybrid_ingest import iceberg, quarantine
from hybrid_ingest.aws import Clients
from hybrid_ingest.errors import HybridIngestError, MergeError
from hybrid_ingest.lake import Lake
from hybrid_ingest.metrics import Metrics
from hybrid_ingest.position import Position
from hybrid_ingest.registry import Registry, SchemaVersion
from hybrid_ingest.state import StateStore, Watermark
from hybrid_ingest.tables import TableSpec

LOGGER = logging.getLogger("glue_jobs.merge")
Hook = Callable[[str], None]
CRASH_POINTS = ("after_write", "after_commit")
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
    engine: str
    engine_reason: str
    snapshot_id: int | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    status: str = "SUCCEEDED"


def run_merge(ctx: MergeContext, table: str, engine: str = "auto", run_id: str | None = None,
              hook: Hook | None = None, now: dt.datetime | None = None) -> RunResult:
    """Merge everything pending for ``table``; ``hook(point)`` is called at each crash point (tests)."""
    run_id = run_id or uuid.uuid4().hex[:12]
    started = time.monotonic()
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    settings = ctx.store.settings()
    lease = ctx.store.acquire(f"merge#{table}", owner=run_id, ttl_seconds=float(settings["lock_lease_seconds"]))
    result = RunResult(table, run_id, engine, "")
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


@dataclass
class _Pending:
    """What this run merges, decided before any engine work."""

    latest: SchemaVersion
    watermark: Watermark
    inputs: inputs.MergeInputs
    job: KernelJob | None  # None: nothing to merge


def _run(ctx: MergeContext, table: str, engine: str, settings: dict[str, Any], result: RunResult,
         hook: Hook, now: dt.datetime) -> None:
    latest = ctx.registry.latest(table)
    run = _open(ctx, latest, settings)
    watermark = _repair_watermark(ctx, table, run.state, ctx.store.watermark(table))
    pending = _plan(ctx, run, latest, watermark, settings, result, now)
    kernel = _write(ctx, pending, result, settings, hook)
    merged = _merged(ctx.lake, run, pending, kernel, result) if pending.job is not None else None
    if merged is not None:
        started = time.monotonic()
        result.snapshot_id = _commit(ctx, run, pending, merged, kernel)
        result.stats["commit_s"] = round(time.monotonic() - started, 3)
    hook("after_commit")
    _advance_watermark(ctx, pending, merged)
    _retain(ctx, run, latest, settings, result, now)
    _report(result, pending, kernel)


def _open(ctx: MergeContext, latest: SchemaVersion, settings: dict[str, Any]) -> commit.OpenRun:
    """The table (created on its first run) and this run's transaction, fenced on the snapshot read now."""
    cat = iceberg.catalog(ctx.clients, ctx.lake, commit=True)
    table = commit.open_table(cat, iceberg.identifier(ctx.clients, latest.spec.table), latest.spec, ctx.lake,
                              str(settings["parquet_compression"]))
    return commit.open_run(table, latest.spec)


def _repair_watermark(ctx: MergeContext, table: str, state: iceberg.MergeState | None,
                      watermark: Watermark) -> Watermark:
    """Bring the watermark up to the last merge snapshot if a run died between its commit and its watermark.

    The snapshot summary holds the cumulative positions and the extracts that
    run merged, so after this the run reads exactly what no snapshot holds yet.
    """
    if state is None:
        if watermark.last_run is not None:
            raise MergeError(
                f"the watermark of {table!r} records merged data but the curated table has none: "
                "delete the watermark item too, to rebuild the table by replay from raw (README, Operations)")
        return watermark
    if state.run_id == watermark.last_run:
        return watermark
    LOGGER.warning("watermark of %s behind snapshot %s (run %s): repaired from its summary",
                   table, state.snapshot_id, state.run_id)
    newest = max([t for t in (state.newest_op_ts, watermark.newest_op_ts) if t is not None], default=None)
    repaired = Watermark(table, dict(state.positions), watermark.extracts | set(state.extracts), watermark.version,
                         newest, state.run_id)
    return ctx.store.commit_watermark(repaired, watermark.version)


def _plan(ctx: MergeContext, run: commit.OpenRun, latest: SchemaVersion, watermark: Watermark,
          settings: dict[str, Any], result: RunResult, now: dt.datetime) -> _Pending:
    """Inputs, engine, plan and the kernel job (with a staged schema evolution when the registry moved)."""
    spec = latest.spec
    pending = inputs.gather(ctx.lake, spec.table, watermark, verify=True, now=now)
    partitions = live_partitions(ctx.lake, run)
    table_bytes = sum(f.bytes for f in run.files)
    table_rows = sum(f.rows for f in run.files)
    state = run.state
    rewrite_all = bool(partitions) and (state.schema_version if state else 0) != latest.version
    has_work = bool(pending.raw or pending.extracts or rewrite_all)
    estimate = InputEstimate(spec.table, pending.raw_bytes, pending.raw_files, pending.extract_bytes,
                             len(pending.extracts), table_bytes if has_work else 0, table_bytes)
    plan = plan_table(estimate, settings, None if result.engine == "auto" else result.engine)
    result.engine, result.engine_reason = plan["engine"], plan["reason"]
    if not has_work:
        return _Pending(latest, watermark, pending, None)
    stored_floor = state.floor if state else -1
    tomb_rels = commit.tombstone_rels(run.table, ctx.lake, state)
    tomb_facts = [inputs.file_facts(ctx.lake, rel) for rel in tomb_rels]
    if pending.extracts:
        facts = guard.table_facts(ctx.lake, run, pending, partitions, tomb_facts, stored_floor, table_rows)
        _screen(ctx, spec, pending, facts, settings, result, now)
        if not (pending.raw or pending.extracts or rewrite_all):
            return _Pending(latest, watermark, pending, None)
    if state is None or state.schema_version != latest.version:
        commit.evolve(run, spec)  # staged in the run's transaction: the files carry the evolved field IDs
    full = [x for x in pending.extracts if x.mode == "full" and x.as_of_seq > stored_floor]
    top = max(full, key=lambda x: x.rank) if full else None
    bytes_per_row = table_bytes / table_rows if table_rows else DEFAULT_BYTES_PER_ROW
    target = int(settings["target_file_bytes"])
    job = KernelJob(
        spec=spec, raw=tuple(pending.raw), extracts=tuple(pending.extracts), current=tuple(partitions),
        tombstones=next(iter(inputs.group_by_schema(tomb_facts)), None),
        params=MergeParams(
            watermark={s: str(p) for s, p in watermark.shards.items()},
            floor=max([stored_floor] + [x.as_of_seq for x in full]), full_rank=top.rank if top else -1,
            merged_at=now, tombstone_cutoff=now - dt.timedelta(hours=float(settings["tombstone_retention_hours"]))),
        rewrite_all=rewrite_all, run_id=result.run_id, field_ids=run.field_ids,
        rows_per_file=max(1, min(int(settings["max_rows_per_file"]), int(target / max(bytes_per_row, 1.0)))),
        compression=str(settings["parquet_compression"]),
        one_pass=_one_pass(ctx.plan, result.engine, pending, table_rows, rewrite_all,
                           float(settings["one_pass_change_fraction"])),
        positions=pending.positions,
    )
    return _Pending(latest, watermark, pending, job)


def _screen(ctx: MergeContext, spec: TableSpec, pending: inputs.MergeInputs, facts: guard.TableFacts,
            settings: dict[str, Any], result: RunResult, now: dt.datetime) -> None:
    """The extract guard on the run's engine: held extracts get their record under dlq/merge/ and leave the run."""
    started = time.monotonic()
    engine = result.engine
    with engines.opened(engine, _spark(ctx) if engine == "spark" else None,
                        str(settings["duckdb_memory_limit"])) as opened:
        screened = guard.screen(opened, ctx.lake, spec, pending.extracts, facts, guard.Limits.from_settings(settings),
                                ctx.store.releases(spec.table))
    result.stats["guard_s"] = round(time.monotonic() - started, 3)
    for held in screened.held:
        quarantine.hold(ctx.lake, spec.table, held.extract.extract_id, held.error, now, held.figures)
        LOGGER.warning("extract %s/%s held (%s): %s", spec.table, held.extract.extract_id, held.error.reason,
                       held.error)
    pending.extracts = screened.admitted
    pending.extract_bytes = sum(x.files.bytes for x in screened.admitted)
    pending.held = [{"extract_id": h.extract.extract_id, "reason": h.error.reason} for h in screened.held]
    pending.overridden = screened.overridden


def live_partitions(lake: Lake, run: commit.OpenRun) -> list[Partition]:
    """The snapshot's partitions and their files, from its manifests (no listing, no footer read)."""
    schema = iceberg.arrow_schema(run.table.schema())
    out = []
    for value, files in commit.partition_files(run).items():
        out.append(Partition(value, FileGroup(tuple(iceberg.lake_rel(lake, f.uri) for f in files), schema,
                                              sum(f.bytes for f in files), sum(f.rows for f in files))))
    return out


def _write(ctx: MergeContext, pending: _Pending, result: RunResult, settings: dict[str, Any],
           hook: Hook) -> KernelResult:
    """The kernel's work: new files for the affected partitions, none of them visible yet."""
    kernel = _run_kernel(ctx, pending.job, result.engine, settings) if pending.job is not None else KernelResult()
    try:
        hook("after_write")
    except Exception:
        commit.discard(ctx.lake, kernel.files())
        raise
    return kernel


def _merged(lake: Lake, run: commit.OpenRun, pending: _Pending, kernel: KernelResult,
            result: RunResult) -> iceberg.MergeState:
    """What the table holds after this run: the snapshot summary's record, and the next watermark's content."""
    watermark, state = pending.watermark, run.state
    positions = dict(watermark.shards)
    for shard, text in kernel.positions.items():
        position = Position.parse(text)
        if shard not in positions or positions[shard] < position:
            positions[shard] = position
    times = [t for t in (kernel.newest_op_ts.timestamp() if kernel.newest_op_ts else None,
                         watermark.newest_op_ts) if t is not None]
    tombstones = (commit.relative_tombstones(run.table, lake, kernel.tombstones)
                  if kernel.tombstones is not None else (state.tombstones if state else ()))
    floor = pending.job.params.floor if pending.job is not None else (state.floor if state else -1)
    return iceberg.MergeState(
        snapshot_id=0, run_id=result.run_id, positions=positions,
        extracts=tuple(x.extract_id for x in pending.inputs.extracts), floor=floor, tombstones=tombstones,
        schema_version=pending.latest.version, newest_op_ts=max(times, default=None))


def _commit(ctx: MergeContext, run: commit.OpenRun, pending: _Pending, merged: iceberg.MergeState,
            kernel: KernelResult) -> int:
    """One snapshot: the affected partitions replaced, the run recorded in its summary (fenced)."""
    return commit.commit(run, ctx.lake, pending.latest.spec, kernel, merged)


def _advance_watermark(ctx: MergeContext, pending: _Pending, merged: iceberg.MergeState | None) -> None:
    """The conditional watermark write right after the commit; a run that committed nothing re-asserts the
    watermark it read, which still fences it against a concurrent run."""
    watermark = pending.watermark
    if merged is None:
        ctx.store.commit_watermark(watermark, watermark.version)
        return
    ctx.store.commit_watermark(Watermark(
        watermark.table, dict(merged.positions), watermark.extracts | set(merged.extracts), watermark.version,
        merged.newest_op_ts, merged.run_id), watermark.version)


def _retain(ctx: MergeContext, run: commit.OpenRun, latest: SchemaVersion, settings: dict[str, Any],
            result: RunResult, now: dt.datetime) -> None:
    """Snapshot expiry and unreferenced files; the run is committed, so a failure here is only logged."""
    try:
        table = run.table.refresh()
        expired, deleted = retention.retain(table, ctx.lake, latest.spec.table, now,
                                            float(settings["version_retention_hours"]))
    except Exception as exc:  # whatever it was (I/O, Glue, pyiceberg), the committed run stands
        LOGGER.warning("retention of %s failed, the next run retries: %s", latest.spec.table, exc)
        result.stats["cleanup_error"] = str(exc)
        expired = deleted = 0
    result.stats.update({"snapshots_expired": expired, "files_deleted": deleted})


def _report(result: RunResult, pending: _Pending, kernel: KernelResult) -> None:
    stats = kernel.stats
    rows_in = stats.get("raw_rows", 0) + stats.get("extract_rows", 0)
    job = pending.job
    result.stats.update(stats)
    result.stats.update({
        "rows_in": rows_in,
        "stale_dropped": (rows_in - stats.get("upserts", 0)
                          - (stats.get("deletes", 0) - stats.get("full_extract_deletes", 0))),
        "partitions_rewritten": len(kernel.written),
        "partitions_removed": len([v for v in kernel.affected if v not in kernel.written]),
        "bytes_written": sum(f.bytes for files in kernel.written.values() for f in files),
        "files_written": sum(len(files) for files in kernel.written.values()),
        "raw_files": pending.inputs.raw_files, "raw_bytes": pending.inputs.raw_bytes,
        "extracts": [x.extract_id for x in pending.inputs.extracts], "extracts_rejected": pending.inputs.rejected,
        "extracts_held": pending.inputs.held, "extracts_overridden": pending.inputs.overridden,
        "schema_version": pending.latest.version, "rewrite_all": bool(job and job.rewrite_all),
        "kernel_plan": "one_pass" if job is not None and job.one_pass else "keys_first",
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


def _spark(ctx: MergeContext) -> Any:
    """The run's Spark session, built only when a run picks Spark."""
    if ctx.spark is None and ctx.spark_factory is not None:
        ctx.spark = ctx.spark_factory()
    if ctx.spark is None:
        raise MergeError("engine spark needs a Spark session (run as the Glue job, or pass one)")
    return ctx.spark


def _run_kernel(ctx: MergeContext, job: KernelJob, engine: str, settings: dict[str, Any]) -> KernelResult:
    if engine == "spark":
        from glue_jobs.kernel_spark import merge_spark

        return merge_spark(_spark(ctx), ctx.lake, job, int(settings["spark_broadcast_rows"]))
    from glue_jobs.kernel_duckdb import merge_duckdb

    return merge_duckdb(ctx.lake, job, memory_limit=str(settings["duckdb_memory_limit"]))


def _record(ctx: MergeContext, result: RunResult, started: dt.datetime, error: str | None = None) -> None:
    record: dict[str, Any] = {**result.stats, "table": result.table, "run_id": result.run_id,
                              "snapshot_id": result.snapshot_id, "engine": result.engine,
                              "engine_reason": result.engine_reason, "status": result.status,
                              "started_at": started.isoformat()}
    if error:
        record["error"] = error
    ctx.store.record_run(result.table, result.run_id, started.isoformat(), record)
    if ctx.metrics is not None:
        figures = {k: float(v) for k, v in result.stats.items()
                   if isinstance(v, int | float) and not isinstance(v, bool)}
        figures["failed"] = 0.0 if result.status == "SUCCEEDED" else 1.0
        # the dead-letter alarm's metric: extracts this run dead-lettered or held
        figures["DlqRecords"] = float(len(result.stats.get("extracts_rejected", []))
                                      + len(result.stats.get("extracts_held", [])))
        ctx.metrics.emit(figures, {"Table": result.table, "Stage": "merge"},
                         unit={"duration_s": "Seconds", "bytes_written": "Bytes", "raw_bytes": "Bytes"})
    LOGGER.info("merge %s %s: %s", result.table, result.status, record)

