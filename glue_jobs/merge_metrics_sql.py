"""What a merge run counts, as aggregates over the relations ``merge_sql`` defines.

Each is a list of ``(name, aggregate)``: plain aggregates with no grouping, so
an engine can compute them in the pass that materialises their relation
(``Engine.observe``). Counts the input files' footers give (extract rows,
tombstones before) are left to the kernel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from glue_jobs.merge_sql import MergeSql


def decisions(sql: MergeSql) -> list[tuple[str, str]]:
    """Over ``d`` (or ``dk`` when it is the decision): the run's counts."""
    counts = {"raw_rows": "_raw", "upserts": "_upsert", "deletes": "_delete",
              "tombstones_kept": "CASE WHEN _applied = 0 THEN _ntomb ELSE 0 END"}
    if sql.params.full_rank >= 0:  # a full extract's virtual deletes (its own rows are snapshot reads)
        counts["full_extract_deletes"] = "_vdel * _delete"
    return _counts(counts)


def multi_keys() -> list[tuple[str, str]]:
    """Over ``dk``: ``multi_keys``, how many keys have several changes."""
    return _counts({"multi_keys": "CASE WHEN _nchg > 1 THEN 1 ELSE 0 END"})


def inserted(sql: MergeSql, known: Sequence[Any] | None = None) -> list[tuple[str, str]]:
    """Over ``inserted``: ``affected``, the partitions the upserts go to (non-null values; ``affected_null``: the
    null partition). With ``known`` (the one pass, which writes every partition anyway) only those outside
    ``known``: which known ones changed, the written files' footers tell (``kernel_output.changed_partitions``)."""
    if known is None:
        return _partitions(sql, "affected", "_part", "_part IS NULL")
    outside = f"NOT {sql.in_parts('_part', known)}"
    return _partitions(sql, "affected", f"CASE WHEN {outside} THEN _part END", f"{outside} AND _part IS NULL")


def removed(sql: MergeSql) -> list[tuple[str, str]]:
    """Over ``removed``: the stored rows removed and the partitions they leave (``removed_from``, as
    ``inserted``)."""
    return [*_counts({"rows_removed": "1"}), *_partitions(sql, "removed_from", "_part", "_part IS NULL")]


def _counts(counts: Mapping[str, str]) -> list[tuple[str, str]]:
    return [(name, f"CAST(coalesce(sum({value}), 0) AS BIGINT)") for name, value in counts.items()]


def _partitions(sql: MergeSql, name: str, value: str, is_null: str) -> list[tuple[str, str]]:
    return [(name, sql.dialect.distinct_list(value, sql.part_type)),
            (f"{name}_null", f"CAST(coalesce(max(CASE WHEN {is_null} THEN 1 END), 0) AS INT)")]
