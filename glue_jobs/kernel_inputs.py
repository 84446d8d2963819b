"""The kernel's inputs as relations of the engine: changes, extracts, stored keys and rows, tombstones.

Every input is projected onto the newest schema (``merge_projection.projection``), so
files of any older schema version read alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pyarrow as pa

from glue_jobs.engine import Engine
from glue_jobs.kernel_model import FileGroup, KernelJob, Partition
from glue_jobs.merge_projection import (
    EXT_META_TYPES,
    FULL,
    INCREMENTAL,
    RAW_META,
    RAW_META_TYPES,
    TOMB_META_TYPES,
    empty_relation,
    projection,
)
from glue_jobs.merge_sql import MergeSql
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
        files = merged_group([p.files for p in group])
        out.append(select(files.schema, f"(SELECT *, {sql.partition_expr()} AS _part FROM {engine.source(lake, files)})"
                                        " _parts"))
    return out


def change_groups(job: KernelJob) -> list[FileGroup]:
    """The file groups of the run's changes, raw then extracts, in the order ``register_inputs`` reads them."""
    return [g for g in job.raw if g.rels] + [x.files for x in job.extracts if x.files.rels]


def register_inputs(engine: Engine, lake: Lake, job: KernelJob, sql: MergeSql,
                    row_ids: Sequence[str] | None = None) -> None:
    """Define raw_in, ext_in, cur_keys and tomb from the job's files, each projected on the newest schema.

    ``row_ids``: ``Engine.row_ids`` of ``change_groups(job)``, which then number
    raw_in's and ext_in's rows as ``_rid``.
    """
    spec, d = job.spec, engine.dialect
    rid: dict[str, pa.DataType] = {"_rid": pa.int64()} if row_ids is not None else {}
    ids = iter(row_ids or ())

    def numbered(extra: dict[str, str]) -> dict[str, str]:
        return {**extra, "_rid": next(ids)} if row_ids is not None else extra

    raw = [projection(spec, d, g.schema, engine.source(lake, g), RAW_META, numbered({})) for g in job.raw if g.rels]
    engine.define("raw_in", _union(raw, empty_relation(spec, d, {**RAW_META_TYPES, **rid})), False)
    ext = [
        projection(spec, d, x.files.schema, engine.source(lake, x.files), (),
                   numbered({"_seq": f"CAST({x.as_of_seq} AS BIGINT)",
                             "_src": str(FULL if x.mode == "full" else INCREMENTAL), "_xrank": str(x.rank)}))
        for x in job.extracts if x.files.rels
    ]
    engine.define("ext_in", _union(ext, empty_relation(spec, d, {**EXT_META_TYPES, **rid})), bool(ext))
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


def merged_group(groups: Sequence[FileGroup]) -> FileGroup:
    """File groups of one schema as one group (one scan)."""
    return FileGroup(tuple(r for g in groups for r in g.rels), groups[0].schema, sum(g.bytes for g in groups),
                     sum(g.rows for g in groups))
