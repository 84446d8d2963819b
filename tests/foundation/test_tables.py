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
        ({"order_date": "21/11/2026"}, "ISO date"),
        ({"status": None}, "must not be null"),
        ({"order_id": True}, "integer"),
    ):
        with pytest.raises(ValidationError, match=message):
            row_from_json(spec, {**base, **change})
    with pytest.raises(ValidationError, match="missing field 'customer_id'"):
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
