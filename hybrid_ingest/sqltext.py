"""Names and values in SQL text: the one quoting function per dialect.

No SQL text in the project is built from a table name, column name, partition
value or user-supplied literal except through ``ident`` and ``string`` here, so
a column called ``order``, a value holding ``'`` or ``\\`` or a newline, or any
unicode text round-trips exactly. sqlglot knows each dialect's rules (DuckDB and
Trino double a quote; Spark escapes with a backslash), which is why it writes
the text rather than a hand-kept escape table.

Dialect names are sqlglot's: ``duckdb`` (the DuckDB kernel and the local query),
``spark`` (the Spark kernel), ``trino`` (Athena) and ``postgres`` (the PostgreSQL
source's publication and catalog statements; values there go as query parameters).
"""

from __future__ import annotations

from typing import Literal

from sqlglot import exp

SqlDialect = Literal["duckdb", "spark", "trino", "postgres"]


def identifier(name: str) -> exp.Identifier:
    """``name`` as a quoted identifier node, for code that rewrites a parsed statement (the local query)."""
    return exp.to_identifier(name, quoted=True)


def ident(name: str, dialect: SqlDialect) -> str:
    """``name`` as a quoted identifier, whatever characters or keyword it is."""
    return identifier(name).sql(dialect=dialect)


def string(value: str, dialect: SqlDialect) -> str:
    """``value`` as a string literal."""
    return exp.Literal.string(value).sql(dialect=dialect)
