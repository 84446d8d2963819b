"""The kernel driver: (current partition rows, tombstones, incoming changes) -> new data files.

``run_kernel`` drives any ``engine.Engine`` through the same statements from
``merge_sql`` (the decisions) and ``merge_output_sql`` (the rows after them).
Both plans decide alike, per key on narrow records (stored keys, not rows);
they differ in how the stored rows are rewritten:

* keys first (the default): the decisions' counts say which partitions are
  affected, and only those are read in full and rewritten. Cheap when the
  changes touch few partitions.
* one pass (``KernelJob.one_pass``): every stored row is read whole into one
  output statement, which yields every partition's new rows and the next
  tombstones in the same write; only the partitions that changed are kept.
  When most partitions change anyway this saves Spark the job that finds the
  affected partitions before the write.

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
from glue_jobs import merge_metrics_sql as merge_metrics
from glue_jobs.engine import Engine
from glue_jobs.kernel_inputs import change_groups, current_rows, register_inputs
from glue_jobs.kernel_model import KernelJob, KernelResult
from glue_jobs.merge_output_sql import TOMB_FOLDER, output_one_pass
from glue_jobs.merge_sql import MergeSql
from hybrid_ingest import iceberg, layout
from hybrid_ingest.lake import Lake

Metrics = Callable[[], dict[str, Any]]


def run_kernel(engine: Engine, lake: Lake, job: KernelJob) -> KernelResult:
    """Merge and write: decisions, affected partitions, their new data files, the next tombstones."""
    row_ids = engine.row_ids(lake, change_groups(job))
    sql = MergeSql(job.spec, engine.dialect, job.params, narrow_stored=engine.narrow_stored,
                   aggregate_apart=engine.aggregate_apart, row_ids=row_ids is not None)
    register_inputs(engine, lake, job, sql, row_ids)
    for name, statement, materialize in sql.prelude():
        engine.define(name, statement, materialize)
    decided, multi = _decisions(engine, sql)
    known = [p.value for p in job.current]
    result = KernelResult()
    _positions(engine, job, sql, result)
    if job.one_pass:
        _one_pass(engine, lake, job, sql, result, decided, multi, known)
    else:
        _keys_first(engine, lake, job, sql, result, decided, multi)
    return result


def _decisions(engine: Engine, sql: MergeSql) -> tuple[Metrics, bool]:
    """``d`` and its counts: ``dk`` itself when no key has several changes (counted while it is materialised),
    else decided again with the tie rule in full (``MergeSql.multi``); and whether it was."""
    counts = [*merge_metrics.decisions(sql), *merge_metrics.multi_keys()]
    first = engine.observe("dk", sql.per_key(), counts, reused=True)()
    if not first.pop("multi_keys"):
        engine.define("d", "SELECT * FROM dk", False)
        return (lambda: first), False
    for name, statement, materialize in sql.multi():
        engine.define(name, statement, materialize)
    return engine.observe("d", sql.decisions(), merge_metrics.decisions(sql), reused=True), True


def _positions(engine: Engine, job: KernelJob, sql: MergeSql, result: KernelResult) -> None:
    """Per shard the highest merged position and the newest source time (footers, else the rows)."""
    positions = job.positions.items() if job.positions is not None else (
        (shard, (position, newest)) for shard, position, newest in engine.fetch(sql.positions()))
    for shard, (position, newest) in positions:
        result.positions[str(shard)] = str(position)
        if isinstance(newest, dt.datetime) and (result.newest_op_ts is None or newest > result.newest_op_ts):
            result.newest_op_ts = newest


def _keys_first(engine: Engine, lake: Lake, job: KernelJob, sql: MergeSql, result: KernelResult,
                decided: Metrics, multi: bool) -> None:
    # an engine that writes partition by partition reads both relations filtered by ``_part``: clustered by it,
    # each statement's filter skips the other partitions' blocks (DuckDB's zone maps)
    order = " ORDER BY _part" if engine.clustered_writes else ""
    views = {name: statement for name, statement, _ in sql.views(multi)}
    removed = engine.observe("removed", f"SELECT * FROM ({views['removed']}) v{order}", merge_metrics.removed(sql),
                             reused=True)
    inserted = engine.observe("inserted", f"SELECT * FROM ({views['inserted']}) v{order}", merge_metrics.inserted(sql),
                              reused=True)
    engine.define("tomb_next", views["tomb_next"], False)
    found = {**decided(), **removed(), **inserted()}
    _decide(result, job, found, [*_affected(found, "affected", job), *_affected(found, "removed_from", job)])
    if result.affected:
        output.write_affected(engine, lake, job, sql, result)
    if _tombstones_changed(result):
        result.tombstones = output.write_tombstones(engine, lake, job)


def _one_pass(engine: Engine, lake: Lake, job: KernelJob, sql: MergeSql, result: KernelResult,
              decided: Metrics, multi: bool, known: list[Any]) -> None:
    engine.define("cur_all", current_rows(engine, lake, job, sql, job.current), False)
    inserted = engine.observe("inserted", sql.inserted(multi), merge_metrics.inserted(sql, known), reused=False)
    engine.define("tomb_next", sql.tomb_next(), False)
    folder = layout.run_data_dir(job.spec.table, job.run_id)
    written = engine.write(output_one_pass(sql, known), lake, folder, "_pdir", job.field_ids, job.rows_per_file,
                           job.compression)
    found = {**decided(), **inserted()}
    new = _affected(found, "affected", job)
    tokens = output.tokens(engine, sql, known, [v for v in new if v not in known])
    footers = output.footers(lake, written)
    # the output is the stored rows kept plus the upserts: what it lacks of the stored rows was removed
    kept = sum(m.num_rows for metas in footers.values() for m in metas) - int(found.get("upserts") or 0)
    found["rows_removed"] = sum(p.files.rows for p in job.current) - kept
    changed = output.changed_partitions(footers, job, tokens)
    _decide(result, job, found, [*new, *changed])
    output.keep_affected(lake, written, tokens, result)
    if _tombstones_changed(result):
        result.tombstones = output.rewrite_tombstones(lake, written.get(TOMB_FOLDER, []), job)
    output.delete(lake, written.get(TOMB_FOLDER, []))


def _affected(metrics: dict[str, Any], name: str, job: KernelJob) -> list[Any]:
    """The partition values the metric ``name`` lists, in the one Python form of ``hybrid_ingest.iceberg``."""
    t = iceberg.partition_type(job.spec)
    found = metrics.get(name) or []
    if isinstance(found, str):  # Spark: JSON of each value's text (``Dialect.distinct_list``)
        found = [iceberg.from_text(text, t or pa.int32()) for text in json.loads(found)]
    values = [iceberg.normalise_partition(v, t) for v in found]
    return values + ([None] if int(metrics.get(f"{name}_null") or 0) else [])


def _decide(result: KernelResult, job: KernelJob, metrics: dict[str, Any], affected: Sequence[Any]) -> None:
    """The run's counts and affected partitions from the decision metrics."""
    counts = {name: int(value or 0) for name, value in metrics.items()
              if not name.startswith(("affected", "removed_from"))}
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
