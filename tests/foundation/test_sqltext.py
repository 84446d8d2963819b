"""Identifiers and string literals round-trip through each engine's own parser."""

from __future__ import annotations

from typing import Any

import duckdb
import pytest

from hybrid_ingest.sqltext import ident, string

AWKWARD = ["order", "group", "select", "Name", 'a"b', "a`b", "a'b", "a\\b", "a b", "a/b", "..", "é☃", "x\ny", ""]


@pytest.mark.parametrize("value", AWKWARD)
def test_duckdb_round_trip(value: str) -> None:
    con = duckdb.connect()
    if value:  # an identifier cannot be empty
        con.execute(f"CREATE TABLE t ({ident(value, 'duckdb')} INTEGER)")
        assert [d[0] for d in con.execute("SELECT * FROM t").description] == [value]
    assert con.execute(f"SELECT {string(value, 'duckdb')}").fetchall() == [(value,)]


@pytest.mark.spark
def test_spark_round_trip(spark: Any) -> None:
    names = [v for v in AWKWARD if v]
    select = ", ".join(f"{string(v, 'spark')} AS {ident(v.replace('.', '_'), 'spark')}" for v in names)
    row = spark.sql(f"SELECT {select}").collect()[0]
    assert list(row) == names
    assert [f.name for f in spark.sql(f"SELECT {select}").schema.fields] == [v.replace(".", "_") for v in names]
