"""The pure parts of the PostgreSQL source: LSNs and seq, type mapping, the transaction buffer."""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path

import pytest

from hybrid_ingest.errors import SourceError
from producers.postgres import pgtypes
from producers.postgres.catalog import parse_table_ref
from producers.postgres.lsn import MAX_SEQ, format_lsn, parse_lsn, seq_of, snapshot_seq
from producers.postgres.txn import TxnBuffer


def test_lsn_text_round_trips_and_seq_sits_between_snapshot_and_stream() -> None:
    assert parse_lsn("16/B374D848") == 0x16_B374D848
    assert format_lsn(0x16_B374D848) == "16/B374D848"
    assert format_lsn(parse_lsn("0/0")) == "0/0"
    consistent_point = parse_lsn("0/1925D90")
    assert snapshot_seq(consistent_point) < seq_of(consistent_point)  # the first commit the slot may send
    assert seq_of(MAX_SEQ) == MAX_SEQ
    with pytest.raises(SourceError, match="does not fit a seq"):
        seq_of(MAX_SEQ + 1)
    with pytest.raises(SourceError, match="not a PostgreSQL LSN"):
        parse_lsn("12345")


@pytest.mark.parametrize(("oid", "typmod", "text", "value"), [
    (pgtypes.INT2, -1, "-3", -3),
    (pgtypes.INT8, -1, "9223372036854775807", 2**63 - 1),
    (pgtypes.NUMERIC, (12 << 16 | 2) + 4, "-0.50", decimal.Decimal("-0.50")),
    (pgtypes.FLOAT8, -1, "1.5e+300", 1.5e300),
    (pgtypes.FLOAT4, -1, "-Infinity", float("-inf")),
    (pgtypes.BOOL, -1, "t", True),
    (pgtypes.BPCHAR, 7, "ab ", "ab "),
    (pgtypes.DATE, -1, "2024-02-29", dt.date(2024, 2, 29)),
    (pgtypes.TIMESTAMP, -1, "2020-01-01 10:00:00.123456", dt.datetime(2020, 1, 1, 10, 0, 0, 123456)),
    (pgtypes.TIMESTAMPTZ, -1, "2026-11-30 06:43:36.49+00", dt.datetime(2026, 11, 30, 6, 43, 36, 490000,
                                                                      tzinfo=dt.UTC)),
    (pgtypes.BYTEA, -1, "\\x00ff0a", b"\x00\xff\n"),
    (pgtypes.JSONB, -1, '{"a": [1, 2]}', '{"a": [1, 2]}'),
])
def test_text_forms_parse_to_the_avro_types_values(oid: int, typmod: int, text: str, value: object) -> None:
    column = pgtypes.column_type(oid, typmod, "t.c")
    assert pgtypes.parse_value(column, text, "t.c") == value


def test_numeric_modifiers_map_to_decimals_or_are_refused() -> None:
    assert pgtypes.column_type(pgtypes.NUMERIC, (38 << 16 | 0) + 4, "w").avro == {
        "type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 0}
    negative_scale = (5 << 16 | (-2 & 0x7FF)) + 4
    with pytest.raises(SourceError, match=r"w: numeric\(5,-2\) does not fit"):
        pgtypes.column_type(pgtypes.NUMERIC, negative_scale, "w")


@pytest.mark.parametrize(("oid", "text", "reason"), [
    (pgtypes.NUMERIC, "NaN", "has no decimal value"),
    (pgtypes.DATE, "infinity", "Invalid isoformat"),
    (pgtypes.DATE, "0044-03-15 BC", "Invalid isoformat"),
    (pgtypes.TIMESTAMPTZ, "10000-01-01 00:00:00+00", "Invalid isoformat"),
])
def test_values_without_an_avro_value_are_refused_naming_where(oid: int, text: str, reason: str) -> None:
    column = pgtypes.column_type(oid, (10 << 16 | 2) + 4 if oid == pgtypes.NUMERIC else -1, "w")
    with pytest.raises(SourceError, match=f"table t column 'c': value .* cannot be captured: .*{reason}"):
        pgtypes.parse_value(column, text, "table t column 'c'")


def test_table_refs() -> None:
    assert parse_table_ref("sales.Orders=orders").qualified == "sales.Orders"
    assert parse_table_ref("items").to_json() == {"schema": "public", "name": "items", "table": "items"}
    with pytest.raises(ValueError, match=r"not SCHEMA\.TABLE"):
        parse_table_ref(".x")


def test_buffer_keeps_the_last_event_per_key_in_memory_and_on_disk(tmp_path: Path) -> None:
    for max_keys in (100, 2):
        buffer = TxnBuffer(tmp_path, max_keys)
        buffer.put("a", ("a|1", b"first"))
        buffer.put("b", ("b|1", b"other table"))
        buffer.put("a", ("a|2", b"x"))
        buffer.put("a", ("a|1", b"last"))
        buffer.put("a", ("a|3", b"y"))
        assert buffer.spilled == (max_keys == 2)
        assert len(buffer) == 4
        assert sorted(buffer.entries()) == [("a", ("a|1", b"last")), ("a", ("a|2", b"x")), ("a", ("a|3", b"y")),
                                            ("b", ("b|1", b"other table"))]
        buffer.drop_table("a")
        buffer.put("a", ("a|9", b"after truncate"))
        assert sorted(buffer.entries()) == [("a", ("a|9", b"after truncate")), ("b", ("b|1", b"other table"))]
        buffer.clear()
        assert len(buffer) == 0
        assert not (tmp_path / "transaction.sqlite").exists()
