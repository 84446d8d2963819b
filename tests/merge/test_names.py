"""Names and values that must round-trip, on both kernels and plans: reserved words, awkward partition values.

Also what readers other than ``query`` see: pyiceberg loads every curated table
from the Glue catalog and reads the same rows, without a name mapping (the data
files carry Iceberg field IDs).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from glue_jobs.merge import MergeContext
from hybrid_ingest import iceberg
from hybrid_ingest.tables import load_spec
from tests.merge.helpers import (
    Oracle,
    RawWriter,
    assert_matches,
    customer,
    ev,
    land_extract,
    live_partitions,
    load_table,
    merge,
    order,
    table_rows,
)

AWKWARD = ["it's", 'say "hi"', "a/b", "a_b", "a b", "..", "../up", "k=v", "100%", "%2F", "grüße ✓", "", None]


def register(ctx: MergeContext, tmp_path: Path, name: str, fields: list[dict[str, Any]], key: str,
             partition: dict[str, str] | None) -> None:
    (tmp_path / f"{name}.avsc").write_text(json.dumps({"type": "record", "name": name, "fields": fields}))
    (tmp_path / f"{name}.table.json").write_text(json.dumps(
        {"table": name, "primary_key": [key], "partition": partition, "compatibility": "BACKWARD"}))
    ctx.registry.register(load_spec(tmp_path / f"{name}.avsc"))


def test_reserved_word_columns(ctx: MergeContext, raw: RawWriter, engine: str, tmp_path: Path) -> None:
    """Columns named ``order``, ``group``, ``select`` and ``from``, the key and the partition column among them."""
    register(ctx, tmp_path, "keywords", [
        {"name": "order", "type": "long"},
        {"name": "group", "type": ["null", "string"], "default": None},
        {"name": "select", "type": {"type": "int", "logicalType": "date"}},
        {"name": "from", "type": ["null", "long"], "default": None},
    ], "order", {"column": "select", "granularity": "month"})
    oracle = Oracle("keywords", ("order",))

    def row(key: int, day: str, group: str | None = "g") -> dict[str, Any]:
        return {"order": key, "group": group, "select": day, "from": key * 10}

    first = [ev("c", 1, row(1, "2026-01-05")), ev("c", 2, row(2, "2026-01-06", None)), ev("c", 3, row(3, "2026-02-01"))]
    raw.write("keywords", first)
    oracle.stream(first)
    merge(ctx, "keywords", engine)
    assert_matches(ctx, oracle)
    second = [ev("u", 4, row(1, "2026-03-01", "moved")), ev("d", 5, {"order": 2}), ev("u", 6, row(3, "2026-02-02"))]
    raw.write("keywords", second)
    oracle.stream(second)
    merge(ctx, "keywords", engine)
    rows = assert_matches(ctx, oracle)
    assert {r["order"]: r["group"] for r in rows} == {1: "moved", 3: "g"}
    assert set(live_partitions(ctx, "keywords")) == {"2026-02", "2026-03"}
    assert table_rows(ctx, 'SELECT "order", "from" FROM keywords WHERE "group" = \'moved\'') == [
        {"order": 1, "from": 10}]


def test_awkward_partition_values_round_trip(ctx: MergeContext, raw: RawWriter, engine: str,
                                             tmp_path: Path) -> None:
    """Quotes, slashes, dots, spaces, ``=``, ``%``, unicode, the empty string and null as identity partition values,
    keys moving between them over three runs: each value is its own partition, no key lost or doubled."""
    register(ctx, tmp_path, "tagged", [
        {"name": "id", "type": "long"},
        {"name": "tag", "type": ["null", "string"], "default": None},
        {"name": "n", "type": "long"},
    ], "id", {"column": "tag", "granularity": "identity"})
    oracle = Oracle("tagged", ("id",))
    seq = 0
    for run in range(3):
        events = []
        for key in range(len(AWKWARD) * 2):
            seq += 1
            events.append(ev("u" if run else "c", seq, {"id": key, "tag": AWKWARD[(key + run * 5) % len(AWKWARD)],
                                                        "n": run}))
        raw.write("tagged", events)
        oracle.stream(events)
        merge(ctx, "tagged", engine)
        rows = assert_matches(ctx, oracle)
        assert {r["tag"] for r in rows} == set(AWKWARD)
    parts = live_partitions(ctx, "tagged")
    assert len(parts) == len(AWKWARD)  # a/b, a_b and a b are three partitions, null one more
    for value in AWKWARD:
        literal = "IS NULL" if value is None else "= '" + value.replace("'", "''") + "'"
        assert table_rows(ctx, f"SELECT count(*) AS n FROM tagged WHERE tag {literal}") == [{"n": 2}]


def test_a_key_moves_into_a_new_null_partition(ctx: MergeContext, raw: RawWriter, engine: str,
                                               tmp_path: Path) -> None:
    """The null partition appearing after the table has partitions: it is written, not lost (both plans)."""
    register(ctx, tmp_path, "tagged", [
        {"name": "id", "type": "long"},
        {"name": "tag", "type": ["null", "string"], "default": None},
        {"name": "n", "type": "long"},
    ], "id", {"column": "tag", "granularity": "identity"})
    oracle = Oracle("tagged", ("id",))
    first = [ev("c", 1, {"id": 1, "tag": "a", "n": 1}), ev("c", 2, {"id": 2, "tag": "a", "n": 1})]
    second = [ev("u", 3, {"id": 1, "tag": None, "n": 2})]
    for events in (first, second):
        raw.write("tagged", events)
        oracle.stream(events)
        merge(ctx, "tagged", engine)
        assert_matches(ctx, oracle)
    assert set(live_partitions(ctx, "tagged")) == {"a", "null"}


def test_empty_full_extract_on_an_unpartitioned_table(ctx: MergeContext, engine: str) -> None:
    """A full extract of no rows at as_of_seq 1, the table's first and only input: an empty table, one snapshot."""
    land_extract(ctx.lake, ctx.registry, "customers", [], as_of_seq=1, mode="full")
    result = merge(ctx, "customers", engine)
    assert result.stats["upserts"] == 0
    assert result.stats["tombstones_after"] == 0
    assert table_rows(ctx, "SELECT * FROM customers") == []
    table = load_table(ctx, "customers")
    assert len(table.snapshots()) == 1
    assert table.scan().to_arrow().num_rows == 0
    assert ctx.store.watermark("customers").extracts == frozenset({"1-20261121T000000Z-full"})


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC)
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


def test_pyiceberg_reads_what_query_reads(ctx: MergeContext, raw: RawWriter, engine: str) -> None:
    """Every curated table through pyiceberg (field IDs, no name mapping) equals the query path, row for row."""
    raw.write("orders", [ev("c", 1, order(1)), ev("c", 2, order(2, day="2026-03-03", notes="n")),
                         ev("u", 3, order(1, day="2026-02-02", weight=None))])
    raw.write("customers", [ev("c", 4, customer(1)), ev("c", 5, customer(2, name="Bo"))])
    for table in ("orders", "customers"):
        merge(ctx, table, engine)
        loaded = load_table(ctx, table)
        assert "schema.name-mapping.default" not in loaded.properties
        assert loaded.metadata.format_version == 2
        assert {k: loaded.properties.get(k) for k in ("write.format.default", "commit.retry.num-retries")} == {
            "write.format.default": "parquet", "commit.retry.num-retries": "0"}
        by_pyiceberg = sorted((tuple(sorted((k, _plain(v)) for k, v in r.items()))
                               for r in loaded.scan().to_arrow().to_pylist()), key=str)
        by_query = sorted((tuple(sorted((k, _plain(v)) for k, v in r.items()))
                           for r in table_rows(ctx, f"SELECT * FROM {table}")), key=str)
        assert by_pyiceberg == by_query
        assert len(by_query) == 2
        ids = {f.name: f.field_id for f in loaded.schema().fields}
        for f in iceberg.snapshot_files(loaded, None):  # every column by ID; timestamps INT64 micros, never INT96
            schema = pq.read_metadata(ctx.lake.path(iceberg.lake_rel(ctx.lake, f.uri)),
                                      filesystem=ctx.lake.fs).schema
            for i in range(len(schema)):
                column = schema.column(i)
                assert column.physical_type != "INT96", column.name
            arrow = schema.to_arrow_schema()
            assert {a.name: int(a.metadata[b"PARQUET:field_id"]) for a in arrow} == ids
            assert str(arrow.field("_merged_at").type) == "timestamp[us, tz=UTC]"
