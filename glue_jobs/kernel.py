"""The kernel driver: (current partition rows, tombstones, incoming changes) -> new data files.

``run_kernel`` drives any ``engine.Engine`` through the same statements from
``merge_sql``, in one of two plans with the same result:

* keys first (the default): the decisions from the stored rows' keys only, then
  only the affected partitions are read in full and rewritten. Cheap when the
  changes touch few partitions.
* one pass (``KernelJob.one_pass``): every stored row is read whole into the
  decision pass, which then yields every partition's new rows and the next
  tombstones in the same scan; only the affected partitions are kept. When
  most partitions change anyway this saves reading them twice and a join (on
  Spark, two shuffles and a job).

Data files are written straight under the table's ``data/`` folder at paths
from ``layout`` (``kernel_output``); nothing here touches the catalog, so they
stay invisible until the driver's Iceberg commit names them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from glue_jobs import kernel_output as output
from glue_jobs.engine import Engine
from glue_jobs.kernel_inputs import current_rows, register_inputs
from glue_jobs.kernel_model import KernelJob, KernelResult
from glue_jobs.merge_sql import TOMB_FOLDER, MergeSql
from hybrid_ingest import iceberg, layout
from hybrid_ingest.lake import Lake


def run_kernel(engine: Engine, lake: Lake, job: KernelJob) -> KernelResult:
    """Merge and write: decisions, affected partitions, their new data files, the next tombstones."""
    sql = MergeSql(job.spec, engine.dialect, job.params, narrow_stored=engine.narrow_stored)
    register_inputs(engine, lake, job, sql)
    if job.one_pass:
        engine.define("cur_all", current_rows(engine, lake, job, sql, job.current), False)
    for name, statement, materialize in sql.prelude(job.one_pass):
        engine.define(name, statement, materialize)
    known = [p.value for p in job.current]
    metrics = engine.observe("k", sql.decisions(job.one_pass), sql.metrics(known if job.one_pass else None),
                             reused=not job.one_pass)
    result = KernelResult()
    _positions(engine, job, sql, result)
    if job.one_pass:
        _one_pass(engine, lake, job, sql, result, metrics, known)
    else:
        _keys_first(engine, lake, job, sql, result, metrics)
    return result


def _positions(engine: Engine, job: KernelJob, sql: MergeSql, result: KernelResult) -> None:
    """Per shard the highest merged position and the newest source time (footers, else the rows)."""
    positions = job.positions.items() if job.positions is not None else (
        (shard, (position, newest)) for shard, position, newest in engine.fetch(sql.positions()))
    for shard, (position, newest) in positions:
        result.positions[str(shard)] = str(position)
        if isinstance(newest, dt.datetime) and (result.newest_op_ts is None or newest > result.newest_op_ts):
            result.newest_op_ts = newest


def _keys_first(engine: Engine, lake: Lake, job: KernelJob, sql: MergeSql, result: KernelResult,
                metrics: Callable[[], dict[str, Any]]) -> None:
    for name, statement, materialize in sql.views():
        engine.define(name, statement, materialize)
    found = metrics()
    _decide(result, job, found, _affected(found, job))
    if result.affected:
        output.write_affected(engine, lake, job, sql, result)
    if _tombstones_changed(result):
        result.tombstones = output.write_tombstones(engine, lake, job)


def _one_pass(engine: Engine, lake: Lake, job: KernelJob, sql: MergeSql, result: KernelResult,
              metrics: Callable[[], dict[str, Any]], known: list[Any]) -> None:
    folder = layout.run_data_dir(job.spec.table, job.run_id)
    written = engine.write(sql.output_one_pass(known), lake, folder, "_pdir", job.field_ids, job.rows_per_file,
                           job.compression)
    found = metrics()
    new = _affected(found, job)
    tokens = output.tokens(engine, sql, known, [v for v in new if v not in known])
    changed = output.changed_partitions(lake, written, job, tokens)
    _decide(result, job, found, [*new, *changed])
    output.keep_affected(lake, written, tokens, result)
    if _tombstones_changed(result):
        result.tombstones = output.rewrite_tombstones(lake, written.get(TOMB_FOLDER, []), job)
    output.delete(lake, written.get(TOMB_FOLDER, []))


def _affected(metrics: dict[str, Any], job: KernelJob) -> list[Any]:
    """The partition values the decision metrics name, in the one Python form of ``hybrid_ingest.iceberg``."""
    t = iceberg.partition_type(job.spec)
    found = metrics.get("affected") or []
    if isinstance(found, str):  # Spark: JSON of each value's text (``Dialect.distinct_list``)
        found = [iceberg.from_text(text, t or pa.int32()) for text in json.loads(found)]
    values = [iceberg.normalise_partition(v, t) for v in found]
    return values + ([None] if int(metrics.get("affected_null") or 0) else [])


def _decide(result: KernelResult, job: KernelJob, metrics: dict[str, Any], affected: Sequence[Any]) -> None:
    """The run's counts and affected partitions from the decision metrics."""
    counts = {name: int(value or 0) for name, value in metrics.items() if not name.startswith("affected")}
    kept = counts.pop("tombstones_kept", 0)
    deletes = counts.setdefault("deletes", 0)
    for name in ("raw_rows", "upserts", "rows_removed"):
        counts.setdefault(name, 0)
    result.stats = {
        **counts,
        "extract_rows": sum(x.files.rows for x in job.extracts),
        "full_extract_deletes": counts.get("full_extract_deletes", 0),
        "tombstones_before": job.tombstones.rows if job.tombstones is not None else 0,
        "tombstones_after": deletes + kept,
    }
    chosen = list(dict.fromkeys(affected))
    if job.rewrite_all:
        chosen += [p.value for p in job.current if p.value not in chosen]
    result.affected = chosen


def _tombstones_changed(result: KernelResult) -> bool:
    s = result.stats
    return bool(s["deletes"] or s["tombstones_before"] != s["tombstones_after"])
