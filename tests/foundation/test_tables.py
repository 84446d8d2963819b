"""Table specs: loading, refusal of specs that could not be merged, event validation, partition values."""

from __future__ import annotations

import datetime as dt
import json
import posixpath
from pathlib import Path
from typing import Any

import pytest

from hybrid_ingest.convert import row_from_json
from hybrid_ingest.errors import SpecError, ValidationError
from hybrid_ingest.layout import encode_value, partition_data_dir, raw_file
from hybrid_ingest.position import Position
from hybrid_ingest.tables import Partitioning, TableSpec, load_spec, load_specs, validate_event
from tests.conftest import SCHEMAS

SCHEMA: dict[str, Any] = {"type": "record", "name": "t", "fields": [
    {"name": "id", "type": "long"}, {"name": "d", "type": {"type": "int", "logicalType": "date"}},
    {"name": "s", "type": ["null", "string"], "default": None}]}


def test_demo_schemas_load() -> None:
    specs = {s.table: s for s in load_specs([SCHEMAS])}
    assert set(specs) == {"customers", "orders", "order_items"}
    assert specs["orders"].partition == Partitioning("order_date", "month")
    assert specs["order_items"].primary_key == ("order_id", "line_no")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"primary_key": ("nope",)}, "primary key field"),
        ({"primary_key": ("s",)}, "must not be nullable"),
        ({"primary_key": ()}, "at least one"),
        ({"partition": Partitioning("nope")}, "partition column"),
        ({"partition": Partitioning("id", "month")}, "date or timestamp"),
        ({"compatibility": "SIDEWAYS"}, "compatibility"),
        ({"table": "other"}, "named like the table"),
    ],
)
def test_bad_specs_are_refused(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"table": "t", "primary_key": ("id",), "schema": SCHEMA}
    args.update(kwargs)
    with pytest.raises(SpecError, match=message):
        TableSpec(**args)


def test_missing_partner_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "t.avsc").write_text(json.dumps(SCHEMA))
    with pytest.raises(SpecError, match=r"t\.table\.json is missing"):
        load_spec(tmp_path / "t.avsc")


def test_a_folder_with_a_lone_avsc_is_refused_naming_it(tmp_path: Path) -> None:
    """A folder's table is its two files: an .avsc without its .table.json is a mistake, not something to skip."""
    (tmp_path / "t.avsc").write_text(json.dumps(SCHEMA))
    with pytest.raises(SpecError, match=r"t\.table\.json is missing"):
        load_specs([tmp_path])


def test_event_validation() -> None:
    spec = TableSpec("t", ("id",), SCHEMA)
    validate_event(spec, {"op": "d", "seq": 1, "row": {"id": 1}})
    with pytest.raises(ValidationError, match="needs non-null"):
        validate_event(spec, {"op": "c", "seq": 1, "row": {"id": 1}})
    with pytest.raises(ValidationError, match="op must be"):
        validate_event(spec, {"op": "x", "seq": 1, "row": {"id": 1}})
    with pytest.raises(ValidationError, match="seq"):
        validate_event(spec, {"op": "c", "seq": -1, "row": {"id": 1}})
    with pytest.raises(ValidationError, match="not in the schema"):
        validate_event(spec, {"op": "d", "seq": 1, "row": {"id": 1, "zzz": 2}})


def test_json_rows_follow_avro_json_mapping() -> None:
    spec = {s.table: s for s in load_specs([SCHEMAS])}["orders"]
    base = {
        "order_id": 1, "customer_id": 2, "order_date": "2026-11-21", "status": "new", "total_amount": "10.50",
        "currency": "EUR", "item_count": 1, "discount_rate": 0, "placed_at": "2026-11-21T10:00:00Z",
        "external_ref": "00000000-0000-0000-0000-000000000001",
    }
    row = row_from_json(spec, base)
    assert row["order_date"] == dt.date(2026, 11, 21)
    assert row["placed_at"] == dt.datetime(2026, 11, 21, 10, tzinfo=dt.UTC)
    assert str(row["total_amount"]) == "10.50"
    assert row["notes"] is None
    for change, message in (
        ({"total_amount": "1.001"}, "does not fit"),
        ({"item_count": 2**31}, "out of range"),
        ({"order_date": "21/11/2026"}, "not an ISO-8601 date"),
        ({"status": None}, "must not be null"),
        ({"order_id": True}, "integer"),
    ):
        with pytest.raises(ValidationError, match=message):
            row_from_json(spec, {**base, **change})
    with pytest.raises(ValidationError, match=r"row\.customer_id is missing"):
        row_from_json(spec, {k: v for k, v in base.items() if k != "customer_id"})


def test_partition_values_and_paths() -> None:
    assert partition_data_dir("orders", "order_date_month", "2026-01") == "curated/orders/data/order_date_month=2026-01"
    assert partition_data_dir("t", None, None) == "curated/t/data"
    awkward = [None, "", "null", "%~null", "a/b", "a_b", "a b", "..", "../x", "=", "%", "%2F", "'", '"', "ü", "x" * 300]
    encoded = [encode_value(v) for v in awkward]
    assert len(set(encoded)) == len(awkward)  # injective: no two values share a folder
    assert all("/" not in e and len(e) <= 100 for e in encoded)
    for value in awkward:  # the folder is one segment below data/: no value climbs out or in
        path = partition_data_dir("t", "k", value)
        assert posixpath.normpath(path) == path
        assert path.startswith("curated/t/data/k=")
    arrival = dt.datetime(2026, 11, 22, 1, 2, tzinfo=dt.UTC)
    assert raw_file("orders", arrival, "shardId-000000000001", Position(5), Position(9, 2)) == (
        f"raw/orders/ingest_date=2026-11-22/ingest_hour=01/shardId-000000000001-{Position(5)}-{Position(9, 2)}.parquet"
    )


def schema_named(table: str, *fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": "record", "name": table, "fields": [{"name": "id", "type": "long"}, *fields]}


@pytest.mark.parametrize("table", ["Orders", "1orders", "x'y", "..", "a-b", "a b", "ordérs", "_t", "", "a" * 64])
def test_table_names_outside_the_rule_are_refused(table: str) -> None:
    """Issue #17: a table name is a path segment, a catalog name and a SQL name: ``..`` or ``x'y`` never are."""
    with pytest.raises(SpecError) as info:
        TableSpec(table, ("id",), schema_named(table))
    assert "[a-z][a-z0-9_]{0,62}" in str(info.value)
    assert repr(table) in str(info.value)


@pytest.mark.parametrize("table", ["a", "orders", "order_items2", "a" * 63])
def test_table_names_inside_the_rule_are_accepted(table: str) -> None:
    assert TableSpec(table, ("id",), schema_named(table)).table == table


@pytest.mark.parametrize("name", ["x-y", "1x", "a b", "é", ""])
def test_field_names_must_be_avro_names(name: str) -> None:
    with pytest.raises(SpecError, match="not a valid Avro name"):
        TableSpec("t", ("id",), schema_named("t", {"name": name, "type": "string"}))


@pytest.mark.parametrize(("first", "second"), [("Name", "name"), ("name", "NAME"), ("Code", "cODE")])
def test_field_names_equal_ignoring_case_are_refused(first: str, second: str) -> None:
    """Issue #16: ``Name`` and ``name`` are one column to Athena, DuckDB and Spark."""
    with pytest.raises(SpecError) as info:
        TableSpec("t", ("id",), schema_named("t", {"name": first, "type": "string"},
                                             {"name": second, "type": "string"}))
    message = str(info.value)
    assert f"fields {first!r} and {second!r} differ only in case" in message


def test_a_field_name_twice_is_refused() -> None:
    with pytest.raises(SpecError, match="field 'x' appears twice"):
        TableSpec("t", ("id",), schema_named("t", {"name": "x", "type": "string"}, {"name": "x", "type": "long"}))


@pytest.mark.parametrize(("avsc", "needle"), [
    ('{"type": "record", "name": "t", "fields": [', "t.avsc: invalid JSON"),
    ('[1, 2]', "Avro record schema"),
    ('{"type": "record", "name": "t", "fields": [{"name": "id", "type": "lng"}]}', "unknown type 'lng'"),
    ('{"type": "record", "name": "t", "fields": [{"name": "id"}]}', "field #1 needs"),
    ('{"type": "record", "name": "t", "fields": [{"name": "id", "type": "long"}, '
     '{"name": "f", "type": {"type": "fixed", "name": "f4"}}]}', "missing 'size'"),
    ('{"type": "record", "name": "t", "fields": [{"name": "id", "type": "long"}, '
     '{"name": "n", "type": "int", "default": "x"}]}', "Default value"),
    ('{"type": "record", "name": "t", "fields": [{"name": "id", "type": "long"}, '
     '{"name": "e", "type": {"type": "enum", "name": "e", "symbols": ["a b"]}}]}', "symbol"),
    ('{"type": "record", "name": "t", "fields": [{"name": "id", "type": "long"}, '
     '{"name": "e", "type": {"type": "enum", "name": "bad-name", "symbols": ["a"]}}]}', "bad-name"),
])
def test_invalid_avro_files_are_refused_naming_the_file(avsc: str, needle: str, tmp_path: Path) -> None:
    (tmp_path / "t.table.json").write_text(json.dumps({"table": "t", "primary_key": ["id"]}))
    (tmp_path / "t.avsc").write_text(avsc)
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "t.avsc")
    assert needle in str(info.value)
    assert "t.avsc" in str(info.value)
