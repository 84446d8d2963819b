"""What differs between the engines' SQL (DuckDB, Spark): type names, literals, a few functions and joins.

The merge statements (``merge_sql``, ``merge_output_sql``) are written once in
the subset both engines share; everything they spell differently comes from
here, and every identifier and string literal goes through
``hybrid_ingest.sqltext``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from hybrid_ingest import sqltext


@dataclass(frozen=True)
class Dialect:
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
        return _ident(name, self.name)

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

    def numbered(self, select: str) -> str:
        """``select`` with a number per row, ``_rid``: unique, and stable once materialised."""
        number = "monotonically_increasing_id()" if self.name == "spark" else "row_number() OVER ()"
        return f"SELECT *, {number} AS _rid FROM ({select}) c"

    def div(self, a: str, b: str) -> str:
        """Integer division (DuckDB's ``/`` is a float's)."""
        return f"({a} {'//' if self.name == 'duckdb' else 'DIV'} {b})"

    @property
    def anti_join(self) -> str:
        return "ANTI JOIN" if self.name == "duckdb" else "LEFT ANTI JOIN"

    @property
    def semi_join(self) -> str:
        return "SEMI JOIN" if self.name == "duckdb" else "LEFT SEMI JOIN"

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


@functools.lru_cache(maxsize=4096)
def _ident(name: str, dialect: sqltext.SqlDialect) -> str:
    """sqltext's quoting, once per name: it runs sqlglot's generator (half a millisecond), and a merge's
    statements quote the same few columns thousands of times."""
    return sqltext.ident(name, dialect)
