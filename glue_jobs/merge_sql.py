"""The merge rules as SQL text, generated once and executed unchanged by both engine kernels.

Writing the rules once is how the DuckDB and PySpark kernels keep identical
semantics: each kernel only registers its inputs under the relation names below
(``raw_in``, ``ext_in``, ``cur_keys``, ``tomb``, later ``cur_rows``), runs these
statements in order, and writes ``out`` / ``tomb_next``. The SQL uses the subset
both engines share (window functions, ``NOT EXISTS``, ``CASE``, ``UNION ALL``);
only type names, literals and the partition expression differ, through ``Dialect``.

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
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from hybrid_ingest.convert import arrow_schema, default_value
from hybrid_ingest.tables import TableSpec

STREAM, INCREMENTAL, FULL = 0, 1, 2
NULL_PARTITION = "__null__"
UNPARTITIONED = ""
RAW_META = ("_op", "_seq", "_op_ts", "_shard", "_kpos")
CURATED_META = ("_seq", "_op_ts", "_merged_at")


@dataclass(frozen=True)
class Dialect:
    """What differs between the engines' SQL: type names, literals and date formatting."""

    name: str  # "duckdb" or "spark"

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
        text = value.replace("\\", "\\\\") if self.name == "spark" else value
        return "'" + text.replace("'", "''") + "'"

    def literal(self, value: Any, t: pa.DataType) -> str:
        sql_type = self.type(t)
        if value is None:
            return f"CAST(NULL AS {sql_type})"
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        if isinstance(value, bytes):
            return f"{'unhex' if self.name == 'spark' else 'from_hex'}('{value.hex()}')"
        if isinstance(value, dt.datetime):
            stamp = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
            return f"CAST({self.string(stamp.astimezone(dt.UTC).isoformat())} AS {sql_type})"
        if isinstance(value, int | float | decimal.Decimal | dt.date):
            return f"CAST({self.string(str(value))} AS {sql_type})"
        return f"CAST({self.string(str(value))} AS {sql_type})"

    def date_format(self, column: str, granularity: str) -> str:
        if self.name == "spark":
            fmt = {"day": "yyyy-MM-dd", "month": "yyyy-MM", "year": "yyyy"}[granularity]
            return f"date_format({column}, '{fmt}')"
        fmt = {"day": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}[granularity]
        return f"strftime({column}, '{fmt}')"


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
        if field.name in present:
            if present[field.name] == field.type or _same_time_type(present[field.name], field.type):
                exprs.append(field.name)
            else:
                exprs.append(f"CAST({field.name} AS {dialect.type(field.type)}) AS {field.name}")
        else:
            _, default = default_value(spec.field(field.name))
            exprs.append(f"{dialect.literal(default, field.type)} AS {field.name}")
    exprs.extend(meta)
    exprs.extend(f"{expr} AS {name}" for name, expr in (extra or {}).items())
    return f"SELECT {', '.join(exprs)} FROM {source}"


def _same_time_type(a: pa.DataType, b: pa.DataType) -> bool:
    return bool(pa.types.is_timestamp(a) and pa.types.is_timestamp(b))


def empty_relation(spec: TableSpec, dialect: Dialect, meta: Mapping[str, pa.DataType],
                   only: Sequence[str] | None = None) -> str:
    """A typed relation with no rows, for inputs that have no files this run."""
    cols = [f"{dialect.literal(None, f.type)} AS {f.name}" for f in arrow_schema(spec)
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

    watermark: Mapping[str, str]  # shard -> sortable() position already merged
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

    @property
    def keys(self) -> list[str]:
        return list(self.spec.primary_key)

    @property
    def row_columns(self) -> list[str]:
        return self.spec.field_names

    def key_eq(self, a: str, b: str) -> str:
        return " AND ".join(f"{a}.{k} = {b}.{k}" for k in self.keys)

    def partition_expr(self, alias: str = "") -> str:
        part = self.spec.partition
        if part is None:
            return self.dialect.string(UNPARTITIONED)
        column = f"{alias}.{part.column}" if alias else part.column
        if part.granularity == "identity":
            text = f"CAST({column} AS {self.dialect.type(pa.string())})"
        else:
            text = self.dialect.date_format(column, part.granularity)
        return f"coalesce({text}, {self.dialect.string(NULL_PARTITION)})"

    def watermark_expr(self) -> str:
        if not self.params.watermark:
            return "''"
        cases = " ".join(f"WHEN {self.dialect.string(shard)} THEN {self.dialect.string(pos)}"
                         for shard, pos in sorted(self.params.watermark.items()))
        return f"CASE _shard {cases} ELSE '' END"

    def cols(self, alias: str = "") -> str:
        prefix = f"{alias}." if alias else ""
        return ", ".join(f"{prefix}{c}" for c in self.row_columns)

    def stage1(self) -> list[tuple[str, str, bool]]:
        """(name, select, materialise) up to the decisions; the kernel then reads the affected partitions."""
        p = self.params
        keys = ", ".join(self.keys)
        null_rest = ", ".join(
            c if c in self.keys else f"{self.dialect.literal(None, f.type)} AS {c}"
            for c, f in zip(self.row_columns, arrow_schema(self.spec), strict=True)
        )
        virtual = ""
        if p.full_rank >= 0:
            virtual = (
                f" UNION ALL SELECT {null_rest}, 'd' AS _op, CAST({p.floor} AS BIGINT) AS _seq,"
                f" {self.dialect.literal(None, RAW_META_TYPES['_op_ts'])} AS _op_ts, {FULL} AS _src,"
                f" {p.full_rank} AS _xrank, '' AS _kpos FROM cur_keys c WHERE c._seq <= {p.floor}"
                f" AND NOT EXISTS (SELECT 1 FROM ext_in e WHERE e._xrank = {p.full_rank}"
                f" AND {self.key_eq('e', 'c')})"
            )
        order = "_seq DESC, _src DESC, _xrank DESC, _kpos ASC"
        return [
            ("raw_above", f"SELECT * FROM raw_in WHERE _kpos > {self.watermark_expr()}", True),
            ("chg_all",
             f"SELECT {self.cols()}, _op, _seq, _op_ts, {STREAM} AS _src, -1 AS _xrank, _kpos FROM raw_above"
             f" UNION ALL SELECT {self.cols()}, 'r' AS _op, _seq,"
             f" {self.dialect.literal(None, RAW_META_TYPES['_op_ts'])} AS _op_ts, _src, _xrank, '' AS _kpos"
             f" FROM ext_in{virtual}", False),
            ("win",
             f"SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY {keys} ORDER BY {order}) AS _rn"
             f" FROM chg_all WHERE _seq > {p.floor} OR (_src = {FULL} AND _xrank = {p.full_rank})) ranked"
             f" WHERE _rn = 1", True),
            ("old",
             f"SELECT {', '.join(f'c.{k}' for k in self.keys)}, c._seq, c._part,"
             f" max(c._seq) OVER (PARTITION BY {', '.join(f'c.{k}' for k in self.keys)}) AS _maxseq"
             f" FROM cur_keys c JOIN win w ON {self.key_eq('c', 'w')}", True),
            ("dec",
             f"SELECT w.*, CASE WHEN w._seq > coalesce(o._maxseq, -1) AND w._seq > coalesce(t._seq, -1)"
             f" THEN 1 ELSE 0 END AS _applied, {self.partition_expr('w')} AS _newpart"
             f" FROM win w"
             f" LEFT JOIN (SELECT DISTINCT {keys}, _maxseq FROM old) o ON {self.key_eq('w', 'o')}"
             f" LEFT JOIN tomb t ON {self.key_eq('w', 't')}", True),
            ("removed",
             f"SELECT {', '.join(f'o.{k}' for k in self.keys)}, o._part FROM old o JOIN dec d"
             f" ON {self.key_eq('o', 'd')} WHERE d._applied = 1 OR o._seq < o._maxseq", True),
            ("inserted",
             f"SELECT {self.cols()}, _seq, _op_ts, _newpart AS _part FROM dec"
             f" WHERE _applied = 1 AND _op <> 'd'", False),
            ("tomb_next",
             f"SELECT {keys}, _seq, {self.dialect.literal(p.merged_at, TOMB_META_TYPES['deleted_at'])}"
             f" AS deleted_at FROM dec WHERE _applied = 1 AND _op = 'd'"
             f" UNION ALL SELECT {', '.join(f't.{k}' for k in self.keys)}, t._seq, t.deleted_at FROM tomb t"
             f" WHERE t.deleted_at >= {self.dialect.literal(p.tombstone_cutoff, TOMB_META_TYPES['deleted_at'])}"
             f" AND NOT EXISTS (SELECT 1 FROM dec d WHERE d._applied = 1 AND {self.key_eq('d', 't')})", False),
        ]

    def summary(self) -> str:
        """Everything the core needs to know after stage 1, as one query (one Spark job, not three).

        Rows are ``(kind, name, value, ts)``: ``stat`` counts, ``pos`` the highest merged
        position and newest source time per shard, ``part`` each affected partition.
        """
        applied = "_applied = 1"
        text = self.dialect.type(pa.string())
        stats = [
            ("raw_rows", "(SELECT DISTINCT _shard, _kpos FROM raw_above) d"),
            ("extract_rows", "ext_in"),
            ("upserts", f"dec WHERE {applied} AND _op <> 'd'"),
            ("deletes", f"dec WHERE {applied} AND _op = 'd'"),
            ("full_extract_deletes", f"dec WHERE {applied} AND _op = 'd' AND _src = {FULL}"),
            ("rows_removed", "removed"),
            ("tombstones_before", "tomb"),
            ("tombstones_after", "tomb_next"),
        ]
        no_ts = self.dialect.literal(None, RAW_META_TYPES["_op_ts"])
        parts = [f"SELECT 'stat' AS kind, '{name}' AS name, CAST(count(*) AS {text}) AS value, {no_ts} AS ts"
                 f" FROM {source}" for name, source in stats]
        parts.append("SELECT 'pos', _shard, max(_kpos), max(_op_ts) FROM raw_above GROUP BY _shard")
        parts.append(f"SELECT 'part', _part, CAST(NULL AS {text}), {no_ts} FROM"
                     " (SELECT _part FROM removed UNION SELECT _part FROM inserted) a")
        return " UNION ALL ".join(parts)

    def output(self, parts: Sequence[str]) -> str:
        """Rows of the affected partitions after the merge, with ``_pidx`` = index into ``parts``."""
        pidx = "CASE _part " + " ".join(
            f"WHEN {self.dialect.string(v)} THEN {i}" for i, v in enumerate(parts)) + " END"
        merged_at = self.dialect.literal(self.params.merged_at, TOMB_META_TYPES["deleted_at"])
        return (
            f"SELECT {self.cols()}, _seq, _op_ts, _merged_at, {pidx} AS _pidx FROM ("
            f"SELECT {self.cols('c')}, c._seq, c._op_ts, c._merged_at, c._part FROM cur_rows c"
            f" WHERE NOT EXISTS (SELECT 1 FROM removed r WHERE {self.key_eq('r', 'c')} AND r._part = c._part)"
            f" UNION ALL SELECT {self.cols()}, _seq, _op_ts, {merged_at} AS _merged_at, _part FROM inserted"
            f") merged"
        )
