"""Wire format: single-object Avro framing, round trips of every type in schemas/, fingerprint stability."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

import pytest

from hybrid_ingest.errors import ValidationError, WireFormatError
from hybrid_ingest.tables import envelope_schema, load_specs
from hybrid_ingest.wire import MAGIC, Codec, fingerprint, split_header
from tests.conftest import SCHEMAS

SPECS = {s.table: s for s in load_specs([SCHEMAS])}
UTC = dt.UTC


def rabin_crc64(data: bytes) -> int:
    """CRC-64-AVRO as the Avro specification defines it, written out independently of fastavro."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


SAMPLE_ROWS = {
    "customers": {
        "customer_id": 2**40 + 7, "email": "ana@example.com", "full_name": "Ana Łukasiewicz-Öberg",
        "country": "PT", "tier": "gold", "credit_limit": decimal.Decimal("12345.67"), "is_active": True,
        "signup_date": dt.date(2019, 2, 28), "updated_at": dt.datetime(2026, 11, 21, 10, 0, 0, 123456, tzinfo=UTC),
        "phone": None,
    },
    "orders": {
        "order_id": -(2**62), "customer_id": 1, "order_date": dt.date(2026, 1, 31), "status": "shipped",
        "total_amount": decimal.Decimal("-0.01"), "currency": "EUR", "item_count": 2**31 - 1,
        "weight_kg": 1.5, "discount_rate": 0.125, "placed_at": dt.datetime(2026, 1, 31, 23, 59, 59, 999000, tzinfo=UTC),
        "external_ref": str(uuid.UUID(int=42)), "notes": "gift: 🎁",
    },
    "order_items": {
        "order_id": 5, "line_no": 0, "sku": "SKU-1", "quantity": 3, "unit_price": decimal.Decimal("9.99"),
        "gift_wrap": False, "barcode": bytes(range(256)),
    },
}


@pytest.mark.parametrize("table", sorted(SAMPLE_ROWS))
@pytest.mark.parametrize("op", ["c", "u", "r"])
def test_round_trip_every_type(table: str, op: str) -> None:
    codec = Codec(envelope_schema(SPECS[table]))
    event = {"op": op, "seq": 2**53 + 1, "ts": dt.datetime(2026, 11, 21, 10, 0, tzinfo=UTC),
             "row": SAMPLE_ROWS[table]}
    data = codec.encode(event)
    assert data[:2] == MAGIC
    assert data[2:10] == codec.fingerprint
    decoded = codec.decode(data)
    row = decoded.pop("row")
    assert decoded == {"op": op, "seq": event["seq"], "ts": event["ts"]}
    for name, value in SAMPLE_ROWS[table].items():
        assert (str(row[name]) if isinstance(row[name], uuid.UUID) else row[name]) == value, name


def test_delete_carries_only_the_key() -> None:
    spec = SPECS["order_items"]
    codec = Codec(envelope_schema(spec))
    decoded = codec.decode(codec.encode({"op": "d", "seq": 9, "ts": None, "row": {"order_id": 5, "line_no": 2}}))
    assert decoded["row"]["order_id"] == 5
    assert decoded["row"]["line_no"] == 2
    assert decoded["row"]["sku"] is None


def test_key_fields_stay_required_on_the_wire() -> None:
    codec = Codec(envelope_schema(SPECS["order_items"]))
    with pytest.raises(ValidationError):
        codec.encode({"op": "d", "seq": 1, "ts": None, "row": {"order_id": 5}})


def test_fingerprint_is_crc64_avro_of_canonical_form_little_endian() -> None:
    schema = {"type": "record", "name": "x", "namespace": "n", "doc": "ignored",
              "fields": [{"name": "a", "type": "int", "default": 0}]}
    canonical = b'{"name":"n.x","type":"record","fields":[{"name":"a","type":"int"}]}'
    assert fingerprint(schema) == rabin_crc64(canonical).to_bytes(8, "little")
    # stable across doc/default changes, since the canonical form drops them
    assert fingerprint({**schema, "doc": "other"}) == fingerprint(schema)


def test_envelope_fingerprints_are_stable() -> None:
    """Pinned values: a change here means every producer and consumer in the field disagrees."""
    got = {t: fingerprint(envelope_schema(s)).hex() for t, s in SPECS.items()}
    assert got == {
        "customers": "8d049f1b54fe2bbc",
        "order_items": "6526a29b9cbd5af8",
        "orders": "56b6e5d34bafed75",
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "shorter"),
        (b"\xc3\x01\x00", "shorter"),
        (b"\xc3\x02" + bytes(8) + b"\x00", "magic"),
        (b"\x00\x01" + bytes(8), "magic"),
    ],
)
def test_bad_frames_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(WireFormatError, match=message):
        split_header(data)


def test_truncated_and_trailing_bodies_are_refused() -> None:
    codec = Codec(envelope_schema(SPECS["orders"]))
    data = codec.encode({"op": "c", "seq": 1, "ts": None, "row": SAMPLE_ROWS["orders"]})
    with pytest.raises(WireFormatError):
        codec.decode(data[:-5])
    with pytest.raises(WireFormatError, match="trailing"):
        codec.decode(data + b"\x00")
    with pytest.raises(WireFormatError, match="fingerprint"):
        Codec(envelope_schema(SPECS["customers"])).decode(data)
