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
from glue_jobs.kernel_model import KernelJob, KernelResult, Partition
from glue_jobs.merge_sql import (
    EXT_META_TYPES,
    FULL,
    INCREMENTAL,
    RAW_META,
    RAW_META_TYPES,
    TOMB_META_TYPES,
    MergeSql,
    empty_relation,
    projection,
)
from hybrid_ingest import iceberg, layout
from hybrid_ingest.lake import Lake


def _union(selects: list[str], empty: str) -> str:
    return " UNION ALL ".join(f"SELECT * FROM ({s}) u{i}" for i, s in enumerate(selects)) if selects else empty


def partition_reads(engine: Engine, lake: Lake, sql: MergeSql, parts: Sequence[Partition],
                    select: Callable[[pa.Schema, str], str]) -> list[str]:
    """``select(schema, source)`` once per schema among the partitions, each one scan of all their files.

    ``source`` has every stored column plus ``_part``, the row's partition value
    computed from the row itself: with hidden partitioning a row's partition is
    a function of its own column, so no file needs mapping to a partition.
    """
    groups: dict[str, list[Partition]] = {}
    for p in parts:
        if p.files.rels:
            groups.setdefault(p.files.schema.to_string(show_field_metadata=False), []).append(p)
    out = []
    for group in groups.values():
        files = output.merged_group([p.files for p in group])
        out.append(select(files.schema, f"(SELECT *, {sql.partition_expr()} AS _part FROM {engine.source(lake, files)})"
                                        " _parts"))
    return out


def register_inputs(engine: Engine, lake: Lake, job: KernelJob, sql: MergeSql) -> None:
    """Define raw_in, ext_in, cur_keys and tomb from the job's files, each projected on the newest schema."""
    spec, d = job.spec, engine.dialect
    raw = [projection(spec, d, g.schema, engine.source(lake, g), RAW_META) for g in job.raw if g.rels]
    engine.define("raw_in", _union(raw, empty_relation(spec, d, RAW_META_TYPES)), False)
    ext = [
        projection(spec, d, x.files.schema, engine.source(lake, x.files), (),
                   {"_seq": f"CAST({x.as_of_seq} AS BIGINT)",
                    "_src": str(FULL if x.mode == "full" else INCREMENTAL), "_xrank": str(x.rank)})
        for x in job.extracts if x.files.rels
    ]
    engine.define("ext_in", _union(ext, empty_relation(spec, d, EXT_META_TYPES)), bool(ext))
    keys = ", ".join(sql.keys)
    cur = partition_reads(engine, lake, sql, job.current,
                          lambda _schema, source: f"SELECT {keys}, _seq, _part FROM {source}")
    empty_keys = empty_relation(spec, d, {"_seq": pa.int64(), "_part": sql.part_type}, spec.primary_key)
    engine.define("cur_keys", _union(cur, empty_keys), False)
    if job.tombstones is not None and job.tombstones.rels:
        tomb = f"SELECT {keys}, _seq, deleted_at FROM {engine.source(lake, job.tombstones)}"
    else:
        tomb = empty_relation(spec, d, TOMB_META_TYPES, spec.primary_key)
    engine.define("tomb", tomb, False)


def current_rows(engine: Engine, lake: Lake, job: KernelJob, sql: MergeSql, parts: Sequence[Partition]) -> str:
    """The stored rows of ``parts``, whole, on the newest schema, with ``_part``."""
    spec, d = job.spec, engine.dialect
    reads = partition_reads(engine, lake, sql, parts,
                            lambda schema, source: projection(spec, d, schema, source,
                                                              ("_seq", "_op_ts", "_merged_at", "_part")))
    empty = empty_relation(spec, d, {"_seq": pa.int64(), "_op_ts": RAW_META_TYPES["_op_ts"],
                                     "_merged_at": RAW_META_TYPES["_op_ts"], "_part": sql.part_type})
    return _union(reads, empty)


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
        result.tombstones = output.rewrite_tombstones(lake, written.get(output.TOMB_FOLDER, []), job)
    output.delete(lake, written.get(output.TOMB_FOLDER, []))


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
