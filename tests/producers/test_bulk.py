"""Bulk extracts: validation, streaming into parts, manifest written last, checksum verification."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hybrid_ingest.errors import ManifestError, ValidationError
from hybrid_ingest.lake import Lake
from hybrid_ingest.layout import landing_dir, manifest_path
from hybrid_ingest.manifest import list_extracts, read_manifest, verify_manifest
from hybrid_ingest.registry import Registry
from producers.bulk import push_extract

CUSTOMER_HEADER = "customer_id,email,full_name,country,tier,credit_limit,is_active,signup_date,updated_at,phone"


def customers_csv(path: Path, rows: int, bad_line: str | None = None) -> Path:
    lines = [CUSTOMER_HEADER]
    for i in range(rows):
        tier = ("bronze", "silver", "gold")[i % 3]
        phone = ("" if i % 3 == 1 else '""') if i % 2 else f"+49 {i}"  # unquoted empty = null, "" = empty
        lines.append(f"{i},c{i}@example.com,\"Name, {i}\",DE,{tier},{i}.50,{'true' if i % 2 else 'false'},"
                     f"2025-03-{1 + i % 28:02d},2026-01-01T10:00:{i % 60:02d}Z,{phone}")
    if bad_line is not None:
        lines.append(bad_line)
    path.write_text("\n".join(lines) + "\n")
    return path


def read_landed(lake: Lake, table: str, extract_id: str) -> pa.Table:
    manifest = read_manifest(lake, table, extract_id)
    base = landing_dir(table, extract_id)
    return pa.concat_tables([pq.read_table(lake.path(f"{base}/{p.path}")) for p in manifest.parts])


def test_csv_extract_lands_in_parts_with_manifest(registry: Registry, lake: Lake, tmp_path: Path) -> None:
    version = registry.latest("customers")
    source = customers_csv(tmp_path / "customers.csv", 1000)
    seen: list[int] = []
    manifest = push_extract(lake, version, source, as_of_seq=500, mode="full", progress=seen.append,
                            rows_per_part=300, batch_rows=128)
    assert sum(seen) == source.stat().st_size
    assert manifest.rows == 1000
    assert [p.rows for p in manifest.parts] == [300, 300, 300, 100]
    assert manifest.as_of_seq == 500
    assert manifest.mode == "full"
    assert manifest.fingerprint == version.fingerprint.hex()
    assert manifest.extract_id.startswith("500-")
    assert verify_manifest(lake, "customers", manifest.extract_id) == manifest
    assert list_extracts(lake, "customers") == [manifest.extract_id]
    doc = json.loads(Path(lake.path(manifest_path("customers", manifest.extract_id))).read_text())
    assert set(doc) >= {"table", "extract_id", "mode", "as_of_seq", "rows", "schema_version", "fingerprint",
                        "parts", "created_at"}
    table = read_landed(lake, "customers", manifest.extract_id)
    assert table.schema.field("credit_limit").type == pa.decimal128(12, 2)
    row = table.slice(7, 1).to_pylist()[0]
    assert row == {
        "customer_id": 7, "email": "c7@example.com", "full_name": "Name, 7", "country": "DE", "tier": "silver",
        "credit_limit": decimal.Decimal("7.50"), "is_active": True, "signup_date": dt.date(2025, 3, 8),
        "updated_at": dt.datetime(2026, 1, 1, 10, 0, 7, tzinfo=dt.UTC), "phone": None,
    }
    assert table.slice(9, 1).to_pylist()[0]["phone"] == ""


def test_parquet_extract_is_cast_to_the_schema(registry: Registry, lake: Lake, tmp_path: Path) -> None:
    rows = {
        "order_id": list(range(10)), "customer_id": [1] * 10, "order_date": [dt.date(2026, 2, 1)] * 10,
        "status": ["open"] * 10, "total_amount": [decimal.Decimal("1.00")] * 10, "currency": ["EUR"] * 10,
        "item_count": list(range(10)), "weight_kg": [None] * 10, "discount_rate": [0.0] * 10,
        "placed_at": [dt.datetime(2026, 2, 1, 8)] * 10, "external_ref": [f"00000000-0000-0000-0000-{i:012d}" for i in range(10)], "notes": ["n"] * 10,
    }
    path = tmp_path / "orders.parquet"
    pq.write_table(pa.table(rows), path)  # int64 item_count, naive timestamps: cast on the way in
    manifest = push_extract(lake, registry.latest("orders"), path, as_of_seq=7, mode="incremental")
    table = read_landed(lake, "orders", manifest.extract_id)
    assert table.schema.field("item_count").type == pa.int32()
    assert table.column("placed_at")[0].as_py() == dt.datetime(2026, 2, 1, 8, tzinfo=dt.UTC)
    assert manifest.rows == 10


@pytest.mark.parametrize(("bad_line", "message"), [
    ("1001,x@y,Z,DE,platinum,1.00,true,2025-01-01,2026-01-01T00:00:00Z,", "'platinum' is not one of"),
    ("1001,x@y,Z,DE,gold,1.00,true,,2026-01-01T00:00:00Z,", "row 21, column 'signup_date': must not be empty"),
    ("1001,x@y,Z,DE,gold,abc,true,2025-01-01,2026-01-01T00:00:00Z,", "credit_limit"),
])
def test_bad_rows_are_refused_and_nothing_lands(registry: Registry, lake: Lake, tmp_path: Path,
                                                bad_line: str, message: str) -> None:
    source = customers_csv(tmp_path / "c.csv", 20, bad_line=bad_line)
    with pytest.raises(ValidationError, match=message):
        push_extract(lake, registry.latest("customers"), source, as_of_seq=1, mode="full",
                     rows_per_part=5, batch_rows=4)
    assert lake.files("landing/customers") == []


def test_missing_or_extra_columns_are_refused(registry: Registry, lake: Lake, tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(CUSTOMER_HEADER.replace(",phone", "") + "\n")
    with pytest.raises(ValidationError, match=r"lacks column\(s\) \['phone'\]"):
        push_extract(lake, registry.latest("customers"), path, as_of_seq=1, mode="full")
    path.write_text(CUSTOMER_HEADER + ",extra\n")
    with pytest.raises(ValidationError, match=r"not in the schema: \['extra'\]"):
        push_extract(lake, registry.latest("customers"), path, as_of_seq=1, mode="full")


def test_tampered_or_missing_part_is_refused(registry: Registry, lake: Lake, tmp_path: Path) -> None:
    source = customers_csv(tmp_path / "c.csv", 50)
    manifest = push_extract(lake, registry.latest("customers"), source, as_of_seq=3, mode="full",
                            rows_per_part=20)
    base = landing_dir("customers", manifest.extract_id)
    part = Path(lake.path(f"{base}/{manifest.parts[1].path}"))
    original = part.read_bytes()
    other = pq.read_table(part).slice(0, 19)
    pq.write_table(other, part)
    with pytest.raises(ManifestError, match=r"part-00001\.parquet (has .* bytes|checksum mismatch)"):
        verify_manifest(lake, "customers", manifest.extract_id)
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 0x01
    part.write_bytes(bytes(tampered))
    with pytest.raises(ManifestError, match=r"part-00001\.parquet checksum mismatch"):
        verify_manifest(lake, "customers", manifest.extract_id)
    part.unlink()
    with pytest.raises(ManifestError, match=r"part-00001\.parquet is missing"):
        verify_manifest(lake, "customers", manifest.extract_id)


def test_extract_without_manifest_is_not_ready(registry: Registry, lake: Lake, tmp_path: Path) -> None:
    manifest = push_extract(lake, registry.latest("customers"), customers_csv(tmp_path / "c.csv", 5),
                            as_of_seq=9, mode="full")
    lake.delete_file(manifest_path("customers", manifest.extract_id))
    assert list_extracts(lake, "customers") == []
    with pytest.raises(ManifestError, match="has no manifest"):
        verify_manifest(lake, "customers", manifest.extract_id)
