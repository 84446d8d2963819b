"""The merge's output as SQL: each affected partition's rows after the merge, and the one pass's single output.

A partition after the merge is its stored rows minus ``removed`` plus the
``inserted`` rows that go to it (``merge_sql`` defines both). Output folders are
named by a *token* per partition (``folder``), which ``kernel_output`` maps back
to partition values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from glue_jobs.merge_sql import MergeSql
from hybrid_ingest.convert import arrow_schema

NULL_FOLDER = "n"  # the output folder of the null partition (every other folder is an index or x + a hash)
TOMB_FOLDER = "t"  # the one-pass output folder of the next tombstones


def folder(sql: MergeSql, part: str, known: Sequence[Any]) -> str:
    """The output folder of a partition value: its index in ``known``, else ``n`` for null, else ``x`` + an MD5.

    All are safe, short hive folder values whatever the partition value holds,
    and the kernel maps them back (``kernel_output.tokens``); the index costs
    nothing per row (hashing every row cost measurably over millions of rows),
    and the hash only serves values ``known`` lacks (the one pass's new
    partitions).
    """
    nulls = [i for i, v in enumerate(known) if v is None]
    null_folder = sql.dialect.string(str(nulls[0]) if nulls else NULL_FOLDER)
    cases = " ".join(f"WHEN {part} = {sql.part_literal(v)} THEN '{i}'" for i, v in enumerate(known) if v is not None)
    text = sql.dialect.type(pa.string())
    return f"CASE WHEN {part} IS NULL THEN {null_folder} {cases} ELSE concat('x', md5(CAST({part} AS {text}))) END"


def part_is(sql: MergeSql, expr: str, value: Any) -> str:
    """``expr`` is the partition ``value``: a plain comparison with a literal (engines prune on it), or IS NULL."""
    return f"{expr} IS NULL" if value is None else f"{expr} = {sql.part_literal(value)}"


def _kept(sql: MergeSql, stored: str, same_part: str, extra: str = "") -> str:
    """The stored rows of ``stored`` that stay: not removed from their partition (``same_part`` tests ``r._part``)."""
    return (f"SELECT {sql.cols('c')}, c._seq, c._op_ts, c._merged_at{extra} FROM {stored} c {sql.dialect.anti_join}"
            f" removed r ON {sql.key_eq('r', 'c')} AND {same_part}")


def _inserted(sql: MergeSql, extra: str = "", where: str = "") -> str:
    return f"SELECT {sql.cols()}, _seq, _op_ts, {sql.merged_at} AS _merged_at{extra} FROM inserted{where}"


def output(sql: MergeSql, parts: Sequence[Any]) -> str:
    """Rows of the affected partitions ``parts`` (the ones in ``cur_rows``) after the merge, by ``_pdir``."""
    return (f"SELECT {sql.cols()}, _seq, _op_ts, _merged_at, {folder(sql, '_part', parts)} AS _pdir FROM ("
            f"{_kept(sql, 'cur_rows', sql.dialect.same('r._part', 'c._part'), ', c._part')}"
            f" UNION ALL {_inserted(sql, ', _part')}) merged")


def partition_output(sql: MergeSql, value: Any, stored: str | None) -> str:
    """One partition's rows after the merge; ``stored`` reads its current rows (None: a new partition)."""
    inserted = _inserted(sql, where=f" WHERE {part_is(sql, '_part', value)}")
    if stored is None:
        return inserted
    return f"{_kept(sql, stored, part_is(sql, 'r._part', value))} UNION ALL {inserted}"


def output_one_pass(sql: MergeSql, parts: Sequence[Any]) -> str:
    """Every partition's rows after the merge, and the next tombstones, in one statement over ``cur_all``.

    ``parts``: the current partition values (new ones get hashed folders).
    Tombstone rows go to folder ``t`` (never a partition's folder) with their
    deletion time in ``_merged_at``; the kernel rewrites them as tombstone files.
    """
    d = sql.dialect
    rest = ", ".join(c if c in sql.keys else f"{d.literal(None, f.type)} AS {c}"
                     for c, f in zip(sql.row_columns, arrow_schema(sql.spec), strict=True))
    null_ts = d.literal(None, pa.timestamp("us", tz="UTC"))
    # the stored rows that stay, decided row by row against their key's decision: no ``removed`` relation
    # (which would read the stored keys once more to be built, and be broadcast again)
    kept = (f"SELECT {sql.cols('c')}, c._seq, c._op_ts, c._merged_at, c._part FROM cur_all c LEFT JOIN d"
            f" ON {sql.key_eq('d', 'c')} WHERE NOT {sql.goes('c', 'd')}")
    return (
        f"SELECT {sql.cols()}, _seq, _op_ts, _merged_at, {folder(sql, '_part', parts)} AS _pdir FROM ("
        f"{kept} UNION ALL {_inserted(sql, ', _part')}) merged"
        f" UNION ALL SELECT {rest}, _seq, {null_ts} AS _op_ts, deleted_at AS _merged_at, {d.string(TOMB_FOLDER)}"
        " AS _pdir FROM tomb_next"
    )
