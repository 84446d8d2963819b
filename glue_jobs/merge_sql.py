"""The merge rules as SQL text, generated once and executed unchanged by both engine kernels.

Writing the rules once is how the DuckDB and PySpark kernels keep identical
semantics: each kernel only registers its inputs under the relation names below
(``raw_in``, ``ext_in``, ``cur_keys`` or ``cur_all``, ``tomb``, later ``cur_rows``),
runs these statements in order, and writes their output. The SQL uses the subset
both engines share (window functions, ``EXISTS``, ``CASE``, ``UNION ALL``); only
type names, literals, row numbering and a few aggregates differ, through ``Dialect``.

Every decision comes from one pass grouped by key (``decisions``): the changes,
the key's stored rows and its tombstone are one relation, and window functions
over each key give the winner and whether it applies. A join-based plan needs a
shuffle per join on Spark; this needs one. The same pass serves both kernel plans
(``kernel.py``): keys first (narrow records; the winners' rows are fetched by row
number afterwards) and one pass (whole rows; the output comes straight from it).

The rules (DESIGN.md "Merge semantics"):

* Candidates are raw changes above the per-shard watermark (``_kpos`` greater than
  the shard's merged position) plus the rows of landed extracts, each at its
  extract's ``as_of_seq`` as a snapshot read (op ``r``).
* Per key the change with the highest ``_seq`` wins. **Tie rule** (equal seq, same
  key, same run): a full extract beats an incremental extract beats the stream;
  between extracts the later one (by ``as_of_seq``, then ``extract_id``) wins;
  between stream changes the *earliest* Kinesis position wins. Across runs the
  table's stored row always wins a tie (a change must be strictly newer), so "the
  first delivered wins" holds whether two equal-seq changes arrive in one batch or
  two. Legitimate ties are duplicates of one commit, which are equal anyway.
* A winner is applied only if its seq is above both the key's stored seq (the
  maximum over its rows, in case a crashed run left a moved key in two partitions)
  and the key's tombstone; otherwise it is stale and changes nothing.
* Applied deletes leave tombstones ``(key, _seq, deleted_at)``; tombstones older
  than the retention cutoff are purged, tombstones of keys that got a newer change
  are dropped.
* A full extract at ``as_of_seq = N`` raises the table's *floor* to N: the table
  equals the extract as of N, so every other change with seq <= N is stale, and
  every stored key absent from the extract whose seq is <= N gets a delete at N
  (a "virtual delete", which also leaves a tombstone).
* A key whose partition value changes is removed from its old partition and
  inserted into its new one; every stored copy but the surviving row is removed.

Partitions: ``_part`` is a row's Iceberg partition value (the transform of its
partition column, typed; see ``hybrid_ingest.iceberg.partition_type``), null for
a null column and for every row of an unpartitioned table. Partition values are
always compared null-safely. Every column name and literal in the text goes
through ``hybrid_ingest.sqltext`` (``Dialect.ident``/``Dialect.string``), so a
column called ``order`` or a value holding quotes round-trips.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from hybrid_ingest import sqltext
from hybrid_ingest.convert import arrow_schema, default_value
from hybrid_ingest.iceberg import partition_type
from hybrid_ingest.tables import TableSpec

STREAM, INCREMENTAL, FULL = 0, 1, 2
NULL_FOLDER = "n"  # the output folder of the null partition (every other folder is an index or x + a hash)
TOMB_FOLDER = "t"  # the one-pass output folder of the next tombstones
RAW_META = ("_op", "_seq", "_op_ts", "_shard", "_kpos")
CURATED_META = ("_seq", "_op_ts", "_merged_at")


@dataclass(frozen=True)
class Dialect:
    """What differs between the engines' SQL: type names, literals and date formatting."""

    name: sqltext.SqlDialect  # "duckdb" or "spark"

    def type(self, t: pa.DataType) -> str:
        spark = self.name == "spark"
        if pa.types.is_int64(t):
            return "BIGINT"
        if pa.types.is_int32(t):
            return "INT" if spark else "INTEGER"
        if pa.types.is_float32(t):
            return "FLOAT"
        if pa.types.is_float64(t):
            return "DOUBLE"
        if pa.types.is_boolean(t):
            return "BOOLEAN"
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return "STRING" if spark else "VARCHAR"
        if pa.types.is_binary(t) or pa.types.is_large_binary(t):
            return "BINARY" if spark else "BLOB"
        if pa.types.is_decimal(t):
            return f"DECIMAL({t.precision},{t.scale})"
        if pa.types.is_date32(t):
            return "DATE"
        if pa.types.is_timestamp(t):
            return "TIMESTAMP" if spark else "TIMESTAMPTZ"
        raise ValueError(f"no SQL type for Arrow type {t}")

    def string(self, value: str) -> str:
        return sqltext.string(value, self.name)

    def ident(self, name: str) -> str:
        return sqltext.ident(name, self.name)

    def literal(self, value: Any, t: pa.DataType) -> str:
        sql_type = self.type(t)
        if value is None:
            return f"CAST(NULL AS {sql_type})"
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        if isinstance(value, bytes):
            return f"{'unhex' if self.name == 'spark' else 'from_hex'}({self.string(value.hex())})"
        if isinstance(value, dt.datetime):
            stamp = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
            return f"CAST({self.string(stamp.astimezone(dt.UTC).isoformat())} AS {sql_type})"
        if isinstance(value, int | float | decimal.Decimal | dt.date):
            return f"CAST({self.string(str(value))} AS {sql_type})"
        return f"CAST({self.string(str(value))} AS {sql_type})"

    @property
    def rid(self) -> str:
        """The column that numbers the rows of a materialised relation made by ``numbered``."""
        return "_rid" if self.name == "spark" else "rowid"

    def numbered(self, select: str) -> str:
        """``select`` with a row number ``rid`` once materialised: DuckDB tables have ``rowid`` already."""
        return f"SELECT *, monotonically_increasing_id() AS _rid FROM ({select}) c" if self.name == "spark" else select

    def distinct_list(self, expr: str, t: pa.DataType) -> str:
        """An aggregate: the distinct non-null values of ``expr`` (of type ``t``) as a list.

        DuckDB returns typed values. Spark's observed metrics cannot carry an array
        to Python, so there the list is JSON of each value's text (hex for
        binary), which ``hybrid_ingest.iceberg.from_text`` reads back exactly.
        """
        if self.name == "spark":
            text = f"hex({expr})" if pa.types.is_binary(t) else f"CAST({expr} AS STRING)"
            return f"to_json(collect_set({text}))"
        return f"coalesce(list(DISTINCT {expr}) FILTER (WHERE {expr} IS NOT NULL), [])"

    def transform(self, column: str, granularity: str) -> str:
        """Iceberg's day, month or year transform of a date or timestamp (the session's time zone is UTC)."""
        if granularity == "day":
            return f"CAST({column} AS DATE)"
        years = f"(year({column}) - 1970)"
        if granularity == "year":
            return f"CAST({years} AS INT)"
        return f"CAST({years} * 12 + month({column}) - 1 AS INT)"

    def same(self, a: str, b: str) -> str:
        """Null-safe equality (two null partition values are the same partition)."""
        return f"{a} IS NOT DISTINCT FROM {b}"


def projection(spec: TableSpec, dialect: Dialect, file_schema: pa.Schema, source: str,
               meta: Sequence[str], extra: Mapping[str, str] | None = None) -> str:
    """Select the newest schema's columns from files of any older schema version.

    A column the files lack reads as the field's Avro default (or null), a column
    whose type was promoted (int -> long, float -> double) is cast; columns the
    newest schema dropped are not selected. ``meta`` columns are taken as they are.
    """
    target = arrow_schema(spec)
    present = {f.name: f.type for f in file_schema}
    exprs: list[str] = []
    for field in target:
        name = dialect.ident(field.name)
        if field.name in present:
            if present[field.name] == field.type or _same_time_type(present[field.name], field.type):
                exprs.append(name)
            else:
                exprs.append(f"CAST({name} AS {dialect.type(field.type)}) AS {name}")
        else:
            _, default = default_value(spec.field(field.name))
            exprs.append(f"{dialect.literal(default, field.type)} AS {name}")
    exprs.extend(meta)
    exprs.extend(f"{expr} AS {name}" for name, expr in (extra or {}).items())
    return f"SELECT {', '.join(exprs)} FROM {source}"


def _same_time_type(a: pa.DataType, b: pa.DataType) -> bool:
    return bool(pa.types.is_timestamp(a) and pa.types.is_timestamp(b))


def empty_relation(spec: TableSpec, dialect: Dialect, meta: Mapping[str, pa.DataType],
                   only: Sequence[str] | None = None) -> str:
    """A typed relation with no rows, for inputs that have no files this run."""
    cols = [f"{dialect.literal(None, f.type)} AS {dialect.ident(f.name)}" for f in arrow_schema(spec)
            if only is None or f.name in only]
    cols += [f"{dialect.literal(None, t)} AS {name}" for name, t in meta.items()]
    return f"SELECT {', '.join(cols)} WHERE 1 = 0"


RAW_META_TYPES: dict[str, pa.DataType] = {
    "_op": pa.string(), "_seq": pa.int64(), "_op_ts": pa.timestamp("us", tz="UTC"),
    "_shard": pa.string(), "_kpos": pa.string(),
}
EXT_META_TYPES: dict[str, pa.DataType] = {"_seq": pa.int64(), "_src": pa.int32(), "_xrank": pa.int32()}
TOMB_META_TYPES: dict[str, pa.DataType] = {"_seq": pa.int64(), "deleted_at": pa.timestamp("us", tz="UTC")}


@dataclass(frozen=True)
class MergeParams:
    """Plain values a merge run decides before any engine work."""

    watermark: Mapping[str, str]  # shard -> the text of the position already merged
    floor: int  # the table's full-extract floor after this run (-1: none)
    full_rank: int  # _xrank of the full extract that set ``floor`` in this run (-1: none)
    merged_at: dt.datetime
    tombstone_cutoff: dt.datetime


@dataclass(frozen=True)
class MergeSql:
    """The statements of one merge, in execution order, for one table and dialect."""

    spec: TableSpec
    dialect: Dialect
    params: MergeParams
    narrow_stored: bool = False  # read only the stored keys that have a change (cheap hash semi-join engines)

    @property
    def keys(self) -> list[str]:
        """The primary key columns, quoted."""
        return [self.dialect.ident(k) for k in self.spec.primary_key]

    @property
    def row_columns(self) -> list[str]:
        """The row's columns, quoted."""
        return [self.dialect.ident(name) for name in self.spec.field_names]

    @property
    def part_type(self) -> pa.DataType:
        """The SQL type of ``_part`` (an int, always null, when unpartitioned)."""
        return partition_type(self.spec) or pa.int32()

    def part_literal(self, value: Any) -> str:
        return self.dialect.literal(value, self.part_type)

    @property
    def merged_at(self) -> str:
        """This run's merge time as a literal: the ``_merged_at`` of new rows and the time of new tombstones."""
        return self.dialect.literal(self.params.merged_at, TOMB_META_TYPES["deleted_at"])

    def key_eq(self, a: str, b: str) -> str:
        return " AND ".join(f"{a}.{k} = {b}.{k}" for k in self.keys)

    def partition_expr(self, alias: str = "") -> str:
        """A row's partition value: Iceberg's transform of the partition column (null stays null)."""
        part = self.spec.partition
        if part is None:
            return self.part_literal(None)
        column = self.dialect.ident(part.column)
        column = f"{alias}.{column}" if alias else column
        return column if part.granularity == "identity" else self.dialect.transform(column, part.granularity)

    def in_parts(self, expr: str, values: Sequence[Any]) -> str:
        """Null-safe: whether ``expr`` is one of the partition ``values``."""
        listed = [self.part_literal(v) for v in values if v is not None]
        # never NULL itself: ``x IN (...)`` is NULL for a null x, and NOT NULL would hide a new null partition
        tests = [f"({expr} IS NOT NULL AND {expr} IN ({', '.join(listed)}))"] if listed else []
        if any(v is None for v in values):
            tests.append(f"{expr} IS NULL")
        return f"({' OR '.join(tests)})" if tests else "FALSE"

    def watermark_expr(self) -> str:
        if not self.params.watermark:
            return "''"
        cases = " ".join(f"WHEN {self.dialect.string(shard)} THEN {self.dialect.string(pos)}"
                         for shard, pos in sorted(self.params.watermark.items()))
        return f"CASE _shard {cases} ELSE '' END"

    def cols(self, alias: str = "") -> str:
        """The row's columns, quoted, each prefixed with ``alias``."""
        prefix = f"{alias}." if alias else ""
        return ", ".join(f"{prefix}{c}" for c in self.row_columns)

    def _payload(self, one_pass: bool) -> list[str]:
        """The row columns a record carries into the decision pass.

        One pass needs whole rows (it writes from that pass). Keys first carries the
        key and the partition column only, and ``inserted`` fetches the winners'
        rows from ``chg`` by ``_rid``: a narrow pass sorts far less (on DuckDB, half
        the time at a million changes).
        """
        if one_pass:
            return self.row_columns
        part = self.spec.partition
        column = self.dialect.ident(part.column) if part is not None else None
        extra = [column] if column is not None and column not in self.keys else []
        return [*self.keys, *extra]

    def _null_rest(self, columns: Sequence[str]) -> str:
        """``columns`` (quoted) with everything but the key NULL (the row of a key-only record)."""
        types = {self.dialect.ident(f.name): f.type for f in arrow_schema(self.spec)}
        return ", ".join(c if c in self.keys else f"{self.dialect.literal(None, types[c])} AS {c}" for c in columns)

    def _changes(self, one_pass: bool) -> str:
        """The candidate changes: raw changes above the per-shard watermark and the extracts' rows.

        Keys first numbers them (``Dialect.numbered``) in a materialised relation, so
        the number is stable for the join that fetches the winners' rows.
        """
        ts, text = self.dialect.literal(None, RAW_META_TYPES["_op_ts"]), self.dialect.literal(None, pa.string())
        changes = (f"SELECT {self.cols()}, _op, _seq, _op_ts, {STREAM} AS _src, -1 AS _xrank, _kpos, _shard"
                   f" FROM raw_in WHERE _kpos > {self.watermark_expr()}"
                   f" UNION ALL SELECT {self.cols()}, 'r' AS _op, _seq, {ts} AS _op_ts, _src, _xrank,"
                   f" '' AS _kpos, {text} AS _shard FROM ext_in")
        return changes if one_pass else self.dialect.numbered(changes)

    def _records(self, one_pass: bool) -> str:
        """Every record that bears on a key's decision, in one relation: changes, stored rows, tombstones.

        ``_kind`` says which (0 change, 1 stored row, 2 tombstone). One relation lets
        a single pass grouped by key decide everything. Stored rows come from
        ``cur_keys`` (keys only) unless ``one_pass``, where ``cur_all`` brings
        them whole so the same pass also yields the new rows. With
        ``narrow_stored`` only the stored keys that have a change are read, which
        is exact unless a full extract deletes absent keys (then all are needed).
        """
        d = self.dialect
        ts, text, num = d.literal(None, RAW_META_TYPES["_op_ts"]), d.literal(None, pa.string()), d.literal(None, pa.int32())
        big, part = d.literal(None, pa.int64()), self.part_literal(None)
        payload = self._payload(one_pass)
        cols = ", ".join(payload)
        no_meta = (f"{text} AS _op, _seq, {{op_ts}} AS _op_ts, {num} AS _src, {num} AS _xrank, {text} AS _kpos,"
                   f" {text} AS _shard, {big} AS _rid")
        rid = big if one_pass else d.rid
        if one_pass:
            stored = (f"SELECT {cols}, {no_meta.format(op_ts='_op_ts')}, _merged_at, _part,"
                      f" {ts} AS _deleted_at, 1 AS _kind FROM cur_all")
        else:
            source = "cur_keys"
            if self.narrow_stored and self.params.full_rank < 0:
                source = f"(SELECT * FROM cur_keys c WHERE EXISTS (SELECT 1 FROM chg x WHERE {self.key_eq('x', 'c')}))"
            stored = (f"SELECT {self._null_rest(payload)}, {no_meta.format(op_ts=ts)}, {ts} AS _merged_at, _part,"
                      f" {ts} AS _deleted_at, 1 AS _kind FROM {source}")
        return (f"SELECT {cols}, _op, _seq, _op_ts, _src, _xrank, _kpos, _shard, {rid} AS _rid, {ts} AS _merged_at,"
                f" {part} AS _part, {ts} AS _deleted_at, 0 AS _kind FROM chg"
                f" UNION ALL {stored}"
                f" UNION ALL SELECT {self._null_rest(payload)}, {no_meta.format(op_ts=ts)}, {ts} AS _merged_at,"
                f" {part} AS _part, deleted_at AS _deleted_at, 2 AS _kind FROM tomb")

    def prelude(self, one_pass: bool) -> list[tuple[str, str, bool]]:
        """(name, select, materialise) before the decisions: ``chg``, materialised when read twice."""
        return [("chg", self._changes(one_pass), not one_pass)]

    def decisions(self, one_pass: bool) -> str:
        """``k``: every record with its key's decision, from one pass grouped by key.

        One shuffle on Spark, one partitioned sort on DuckDB. Per record: its key's
        winner rank (``_rn``), the winning seq (``_wseq``, a virtual delete's floor
        when no change is eligible), the stored and tombstone seqs, whether the
        key's winner applies (``_applied``) and whether the record repeats a
        Kinesis record already seen (``_dup``). Everything after is a filter of ``k``.
        """
        p = self.params
        ordered = (f"PARTITION BY {', '.join(self.keys)} ORDER BY _elig DESC, _seq DESC, _src DESC NULLS LAST,"
                   " _xrank DESC NULLS LAST, _kpos ASC NULLS LAST, _shard ASC NULLS LAST")
        # the key's whole group under the same ordering: one window operator (one sort) serves all
        by_key = f"{ordered} ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING"
        full = f"_src = {FULL} AND _xrank = {p.full_rank}"
        virtual = (f"CASE WHEN _infull = 0 AND _minseq <= {p.floor} THEN CAST({p.floor} AS BIGINT) END"
                   if p.full_rank >= 0 else "CAST(NULL AS BIGINT)")
        # whole-group aggregates cost per record: the eligible seq is the first record's (eligible ones sort
        # first, highest seq first), and what only a full extract's virtual deletes read is left out without one.
        # first_value shares the whole-group frame: a running frame is one more frame kind for Spark's window
        # operator, and its RANGE default compares every record's six order keys with its neighbour's.
        floor_aggregates = (f" min(CASE WHEN _kind = 1 THEN _seq END) OVER ({by_key}) AS _minseq,"
                            f" max(CASE WHEN _kind = 0 AND {full} THEN 1 ELSE 0 END) OVER ({by_key}) AS _infull,"
                            if p.full_rank >= 0 else "")
        windowed = (
            f"SELECT *, row_number() OVER ({ordered}) AS _rn,"
            f" CASE WHEN _kind = 0 AND _src = {STREAM} AND lag(_shard) OVER ({ordered}) = _shard"
            f" AND lag(_kpos) OVER ({ordered}) = _kpos THEN 1 ELSE 0 END AS _dup,"
            f" first_value(CASE WHEN _elig = 1 THEN _seq END) OVER ({by_key}) AS _eligseq,{floor_aggregates}"
            f" max(CASE WHEN _kind = 1 THEN _seq END) OVER ({by_key}) AS _maxseq,"
            f" max(CASE WHEN _kind = 2 THEN _seq END) OVER ({by_key}) AS _tseq"
            f" FROM (SELECT *, CASE WHEN _kind = 0 AND (_seq > {p.floor} OR ({full})) THEN 1 ELSE 0 END AS _elig"
            f" FROM ({self._records(one_pass)}) r) e"
        )
        decided = (
            f"SELECT *, CASE WHEN _wseq > coalesce(_maxseq, -1) AND _wseq > coalesce(_tseq, -1)"
            f" THEN 1 ELSE 0 END AS _applied"
            f" FROM (SELECT *, coalesce(_eligseq, {virtual}) AS _wseq,"
            f" CASE WHEN _eligseq IS NULL AND {virtual} IS NOT NULL THEN 1 ELSE 0 END AS _vdel FROM ({windowed}) w) v"
        )
        # what happens to each record, computed once here so every later statement reads flags
        upsert = "_rn = 1 AND _applied = 1 AND _elig = 1 AND _op <> 'd'"
        cutoff = self.dialect.literal(p.tombstone_cutoff, TOMB_META_TYPES["deleted_at"])
        # only what later statements read: the positions (``_kpos``, ``_shard``) and helper seqs stay behind
        kept = (f"{', '.join(self._payload(one_pass))}, _op, _seq, _op_ts, _src, _xrank, _rid, _merged_at, _part,"
                " _deleted_at, _kind, _rn, _elig, _dup, _vdel, _applied")
        return (
            f"SELECT {kept}, CASE WHEN {upsert} THEN 1 ELSE 0 END AS _upsert,"
            f" CASE WHEN _rn = 1 AND _applied = 1 AND ((_elig = 1 AND _op = 'd') OR _vdel = 1)"
            f" THEN 1 ELSE 0 END AS _delete,"
            # stored rows of keys with a decision go: every copy when it applies, else the stale duplicates
            f" CASE WHEN _kind = 1 AND _wseq IS NOT NULL AND (_applied = 1 OR _seq < _maxseq)"
            f" THEN 1 ELSE 0 END AS _removed,"
            f" CASE WHEN _kind = 2 AND _deleted_at >= {cutoff} AND _applied = 0 THEN 1 ELSE 0 END AS _kept_tomb,"
            f" CASE WHEN {upsert} THEN {self.partition_expr()} END AS _newpart"
            f" FROM ({decided}) d"
        )

    def views(self) -> list[tuple[str, str, bool]]:
        """The keys-first decisions as relations: ``removed``, ``inserted``, ``tomb_next``."""
        p = self.params
        keys = ", ".join(self.keys)
        return [
            ("removed", f"SELECT {keys}, _part FROM k WHERE _removed = 1", False),
            ("inserted", f"SELECT {self.cols('c')}, k._seq, k._op_ts, k._newpart AS _part"
                         f" FROM k JOIN chg c ON c.{self.dialect.rid} = k._rid WHERE k._upsert = 1", False),
            ("tomb_next",
             f"SELECT {keys}, CASE WHEN _vdel = 1 THEN CAST({p.floor} AS BIGINT) ELSE _seq END AS _seq,"
             f" {self.merged_at} AS deleted_at FROM k WHERE _delete = 1"
             f" UNION ALL SELECT {keys}, _seq, _deleted_at AS deleted_at FROM k WHERE _kept_tomb = 1", False),
        ]

    def stage1(self) -> list[tuple[str, str, bool]]:
        """Every statement up to the decisions' views, for a reader that wants the views only (the live view)."""
        return [*self.prelude(False), ("k", self.decisions(False), True), *self.views()]

    def metrics(self, known: Sequence[Any] | None = None) -> list[tuple[str, str]]:
        """(name, aggregate over ``k``): the counts only the pass knows, and the affected partitions.

        Plain aggregates with no grouping, so an engine can compute them while ``k``
        streams into a write (Spark's ``observe``) instead of in a pass of their own.
        Every aggregate is work per record, so counts the input files' footers give
        (extract rows, tombstones before) are left to the kernel. ``affected`` is
        the list of non-null partition values touched, ``affected_null`` whether
        the null partition is. With ``known`` (the one pass, which writes every
        partition anyway) they hold only the upserts' partitions outside
        ``known``: which known ones changed, the written files' footers tell
        (``kernel_output.changed_partitions``), and a set of every record's
        partition cost a Spark pass 20% of its time.
        """
        counts = {
            "raw_rows": f"CASE WHEN _kind = 0 AND _src = {STREAM} AND _dup = 0 THEN 1 ELSE 0 END",
            "upserts": "_upsert",
            "deletes": "_delete",
            "rows_removed": "_removed",
            "tombstones_kept": "_kept_tomb",
        }
        if self.params.full_rank >= 0:  # a full extract's virtual deletes (its own rows are snapshot reads)
            counts["full_extract_deletes"] = "_vdel * _delete"
        out = [(name, f"CAST(coalesce(sum({value}), 0) AS BIGINT)") for name, value in counts.items()]
        if known is None:
            touched = "(_removed = 1 OR _upsert = 1)"
            parts = "CASE WHEN _removed = 1 THEN _part ELSE _newpart END"
        else:
            touched = f"(_upsert = 1 AND NOT {self.in_parts('_newpart', known)})"
            parts = "_newpart"
        return [*out, ("affected", self.dialect.distinct_list(f"CASE WHEN {touched} THEN {parts} END", self.part_type)),
                ("affected_null", f"CAST(coalesce(max(CASE WHEN {touched} AND {parts} IS NULL THEN 1 END), 0) AS INT)")]

    def positions(self) -> str:
        """Per shard the highest merged position and newest source time: ``(shard, position, op_ts)``."""
        return (f"SELECT _shard, max(_kpos), max(_op_ts) FROM raw_in WHERE _kpos > {self.watermark_expr()}"
                " GROUP BY _shard")

    def folder(self, part: str, known: Sequence[Any]) -> str:
        """The output folder of a partition value: its index in ``known``, else ``n`` for null, else ``x`` + an MD5.

        All are safe, short hive folder values whatever the partition value holds,
        and the kernel maps them back (``kernel_output.tokens``); the index costs
        nothing per row (hashing every row cost measurably over millions of rows),
        and the hash only serves values ``known`` lacks (the one pass's new
        partitions).
        """
        nulls = [i for i, v in enumerate(known) if v is None]
        null_folder = self.dialect.string(str(nulls[0]) if nulls else NULL_FOLDER)
        cases = " ".join(f"WHEN {part} = {self.part_literal(v)} THEN '{i}'" for i, v in enumerate(known)
                         if v is not None)
        text = self.dialect.type(pa.string())
        return (f"CASE WHEN {part} IS NULL THEN {null_folder} {cases}"
                f" ELSE concat('x', md5(CAST({part} AS {text}))) END")

    def _kept(self, stored: str, same_part: str, extra: str = "") -> str:
        """The stored rows of ``stored`` that stay: not removed from their partition (``same_part`` tests ``r._part``)."""
        return (f"SELECT {self.cols('c')}, c._seq, c._op_ts, c._merged_at{extra} FROM {stored} c"
                f" WHERE NOT EXISTS (SELECT 1 FROM removed r WHERE {self.key_eq('r', 'c')} AND {same_part})")

    def part_is(self, expr: str, value: Any) -> str:
        """``expr`` is the partition ``value``: a plain comparison with a literal (engines prune on it), or IS NULL."""
        return f"{expr} IS NULL" if value is None else f"{expr} = {self.part_literal(value)}"

    def _inserted(self, extra: str = "", where: str = "") -> str:
        return f"SELECT {self.cols()}, _seq, _op_ts, {self.merged_at} AS _merged_at{extra} FROM inserted{where}"

    def output(self, parts: Sequence[Any]) -> str:
        """Rows of the affected partitions ``parts`` (the ones in ``cur_rows``) after the merge, by ``_pdir``."""
        return (f"SELECT {self.cols()}, _seq, _op_ts, _merged_at, {self.folder('_part', parts)} AS _pdir FROM ("
                f"{self._kept('cur_rows', self.dialect.same('r._part', 'c._part'), ', c._part')}"
                f" UNION ALL {self._inserted(', _part')}) merged")

    def partition_output(self, value: Any, stored: str | None) -> str:
        """One partition's rows after the merge; ``stored`` reads its current rows (None: a new partition)."""
        inserted = self._inserted(where=f" WHERE {self.part_is('_part', value)}")
        return inserted if stored is None else f"{self._kept(stored, self.part_is('r._part', value))} UNION ALL {inserted}"

    def output_one_pass(self, parts: Sequence[Any]) -> str:
        """Every partition's rows after the merge, and the next tombstones, straight from ``k`` in one scan.

        ``parts``: the current partition values (new ones get hashed folders).
        Tombstone rows go to folder ``t`` (never a partition's folder) with their
        deletion time in ``_merged_at``; the kernel rewrites them as tombstone files.
        """
        p = self.params
        kept = "_kind = 1 AND _removed = 0"
        return (
            f"SELECT {self.cols()}, CASE WHEN _delete = 1 AND _vdel = 1 THEN CAST({p.floor} AS BIGINT)"
            f" ELSE _seq END AS _seq, _op_ts,"
            f" CASE WHEN _upsert + _delete = 1 THEN {self.merged_at} WHEN _kind = 2 THEN _deleted_at"
            f" ELSE _merged_at END AS _merged_at,"
            f" CASE WHEN _upsert = 1 THEN {self.folder('_newpart', parts)}"
            f" WHEN {kept} THEN {self.folder('_part', parts)} ELSE {self.dialect.string(TOMB_FOLDER)} END AS _pdir"
            f" FROM k WHERE ({kept}) OR _upsert + _delete + _kept_tomb = 1"
        )
