"""``<table>_live``: the curated table's current snapshot plus the raw changes not merged yet.

The pending changes are merged with the merge's own statements (``merge_sql``)
and the DuckDB kernel's input registration, so a change shows exactly as the
next run will apply it, seconds after the consumer lands it: the rows the
changes replace or delete leave, the winners arrive (with ``_merged_at`` null).
Pending bulk extracts are not included (they are big and land nightly).

The merge's relations (``raw_in``, ``k``, ``removed`` ...) are defined in a
schema of their own per live view, so they never meet a curated table of the
same name, and what the view needs of them is materialised there; the view
itself then reads only memory and the current snapshot's view.
"""

from __future__ import annotations

import datetime as dt

from pyiceberg.table import Table

from glue_jobs import commit, inputs
from glue_jobs.kernel_duckdb import DuckDBEngine
from glue_jobs.kernel_inputs import register_inputs
from glue_jobs.kernel_model import FileGroup, KernelJob, Partition
from glue_jobs.merge_sql import MergeParams, MergeSql
from hybrid_ingest import iceberg, sqltext
from hybrid_ingest.errors import QueryError, UnknownTableError
from hybrid_ingest.lake import Lake
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore
from hybrid_ingest.tables import TableSpec

FOREVER = dt.timedelta(days=36500)  # no tombstone is too old to hide a stale pending change


def define_live(engine: DuckDBEngine, lake: Lake, registry: Registry, store: StateStore, table: Table,
                name: str, curated_view: str, view: str) -> None:
    """View ``view``: ``curated_view`` (``name``'s current snapshot) with the pending raw changes merged in."""
    try:
        spec = registry.latest(name).spec
    except UnknownTableError as exc:
        raise QueryError(str(exc)) from exc
    job, merge = _job(engine, lake, store, table, spec)
    d = engine.dialect
    scratch = sqltext.ident(f"{view}$inputs", "duckdb")
    engine.db.execute(f"CREATE SCHEMA {scratch}")
    engine.db.execute(f"SET schema = {sqltext.string(f'{view}$inputs', 'duckdb')}")
    try:
        register_inputs(engine, lake, job, merge)
        for relation, statement, materialize in merge.stage1():
            engine.define(relation, statement, materialize)
        engine.db.execute("CREATE TABLE live_removed AS SELECT * FROM removed")
        engine.db.execute("CREATE TABLE live_inserted AS SELECT * FROM inserted")
    finally:
        engine.db.execute("SET schema = 'main'")
    same_part = d.same("r._part", merge.partition_expr("c"))
    engine.db.execute(
        f"CREATE VIEW {d.ident(view)} AS SELECT * FROM {d.ident(curated_view)} c WHERE NOT EXISTS ("
        f"SELECT 1 FROM {scratch}.live_removed r WHERE {merge.key_eq('r', 'c')} AND {same_part})"
        f" UNION ALL BY NAME SELECT {merge.cols()}, _seq, _op_ts, CAST(NULL AS TIMESTAMPTZ) AS _merged_at"
        f" FROM {scratch}.live_inserted")


def _job(engine: DuckDBEngine, lake: Lake, store: StateStore, table: Table, spec: TableSpec
         ) -> tuple[KernelJob, MergeSql]:
    """A kernel job merging the pending raw changes into ``table``'s current snapshot, and its SQL."""
    watermark = store.watermark(spec.table)
    pending = inputs.gather(lake, spec.table, watermark, verify=False)
    state = iceberg.merge_state(table)
    schema = iceberg.arrow_schema(table.schema())
    groups: dict[object, list[str]] = {}
    for f in iceberg.snapshot_files(table, spec):
        groups.setdefault(f.partition, []).append(iceberg.lake_rel(lake, f.uri))
    partitions = tuple(Partition(value, FileGroup(tuple(rels), schema)) for value, rels in groups.items())
    tomb_facts = [inputs.file_facts(lake, rel) for rel in commit.tombstone_rels(table, lake, state)]
    tomb = next(iter(inputs.group_by_schema(tomb_facts)), None)
    now = dt.datetime.now(dt.UTC)
    params = MergeParams(watermark={s: str(p) for s, p in watermark.shards.items()},
                         floor=state.floor if state else -1, full_rank=-1, merged_at=now,
                         tombstone_cutoff=now - FOREVER)
    job = KernelJob(spec=spec, raw=tuple(pending.raw), extracts=(), current=partitions, tombstones=tomb,
                    params=params, rewrite_all=False, run_id="live", field_ids={}, rows_per_file=1)
    return job, MergeSql(spec, engine.dialect, params, narrow_stored=engine.narrow_stored,
                       aggregate_apart=engine.aggregate_apart)
