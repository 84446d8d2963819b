"""Conversions between a table's Avro row schema, JSON input, and Arrow columns.

One mapping used by every component: producers parse JSON lines with it, the
consumer builds Arrow tables with it, the merge projects old raw files onto the
newest schema with its defaults, and bulk extracts are validated against it.

Arrow types: long/int/float/double/boolean/string/bytes map to their Arrow
twins, enums and uuids to strings, decimals to decimal128, dates to date32, and
every timestamp to microsecond UTC (so lake files have one time type).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import math
from typing import Any

import pyarrow as pa

from hybrid_ingest.errors import ValidationError
from hybrid_ingest.tables import AvroSchema, TableSpec

TIMESTAMP = pa.timestamp("us", tz="UTC")
_PRIMITIVES: dict[str, pa.DataType] = {
    "long": pa.int64(), "int": pa.int32(), "float": pa.float32(), "double": pa.float64(),
    "boolean": pa.bool_(), "string": pa.string(), "bytes": pa.binary(),
}
INT32_RANGE = (-(2**31), 2**31 - 1)
INT64_RANGE = (-(2**63), 2**63 - 1)


def _unwrap(avro_type: Any) -> tuple[Any, bool]:
    """(the non-null branch, nullable) of a field type; unions of several non-null types are refused."""
    if isinstance(avro_type, list):
        branches = [t for t in avro_type if t != "null"]
        if len(branches) != 1:
            raise ValidationError(f"only [null, T] unions are supported, got {avro_type}")
        return branches[0], "null" in avro_type
    return avro_type, False


def arrow_type(avro_type: Any) -> pa.DataType:
    base, _ = _unwrap(avro_type)
    if isinstance(base, str):
        if base in _PRIMITIVES:
            return _PRIMITIVES[base]
        raise ValidationError(f"unsupported Avro type {base!r}")
    logical = base.get("logicalType")
    kind = base.get("type")
    if logical == "decimal":
        return pa.decimal128(int(base["precision"]), int(base.get("scale", 0)))
    if logical == "date":
        return pa.date32()
    if logical in ("timestamp-millis", "timestamp-micros", "local-timestamp-millis", "local-timestamp-micros"):
        return TIMESTAMP
    if kind in ("enum",) or logical == "uuid":
        return pa.string()
    if kind == "fixed":
        return pa.binary()
    if isinstance(kind, str) and kind in _PRIMITIVES:
        return _PRIMITIVES[kind]
    raise ValidationError(f"unsupported Avro type {base!r}")


def arrow_schema(spec: TableSpec, all_nullable: bool = False) -> pa.Schema:
    """The table's columns as Arrow; ``all_nullable`` for raw files, where deletes carry only keys."""
    fields = []
    for f in spec.schema["fields"]:
        _, nullable = _unwrap(f["type"])
        fields.append(pa.field(f["name"], arrow_type(f["type"]), nullable=all_nullable or nullable
                               or f["name"] not in spec.primary_key))
    return pa.schema(fields)


def default_value(field: AvroSchema) -> tuple[bool, Any]:
    """(has a default, the default as a Python value of the field's Arrow type)."""
    if "default" not in field:
        _, nullable = _unwrap(field["type"])
        return (nullable, None)
    return True, from_json_value(field["type"], field["default"], field["name"], avro_default=True)


def _parse_timestamp(value: Any, name: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValidationError(f"field {name!r}: {value!r} is not an ISO-8601 timestamp") from exc
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    raise ValidationError(f"field {name!r}: expected an ISO-8601 timestamp string, got {value!r}")


def from_json_value(avro_type: Any, value: Any, name: str, avro_default: bool = False) -> Any:
    """A JSON value (Avro JSON mapping; dates/timestamps as ISO-8601, decimals as strings) as Python."""
    base, nullable = _unwrap(avro_type)
    if value is None:
        if nullable:
            return None
        raise ValidationError(f"field {name!r} must not be null")
    logical = base.get("logicalType") if isinstance(base, dict) else None
    kind = base.get("type") if isinstance(base, dict) else base
    if logical == "decimal":
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValidationError(f"field {name!r}: decimal must be a string or number, got {value!r}")
        try:
            number = decimal.Decimal(str(value))
        except decimal.InvalidOperation as exc:
            raise ValidationError(f"field {name!r}: {value!r} is not a decimal") from exc
        scale = int(base.get("scale", 0))
        precision = int(base["precision"])
        if not number.is_finite():
            raise ValidationError(f"field {name!r}: {value!r} is not a finite decimal")
        quantized = number.quantize(decimal.Decimal(1).scaleb(-scale))
        if quantized != number or len(quantized.as_tuple().digits) > precision:
            raise ValidationError(f"field {name!r}: {value!r} does not fit decimal({precision},{scale})")
        return quantized
    if logical == "date":
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError as exc:
                raise ValidationError(f"field {name!r}: {value!r} is not an ISO date") from exc
        if isinstance(value, dt.date):
            return value
        raise ValidationError(f"field {name!r}: expected an ISO date string, got {value!r}")
    if logical and logical.endswith(("timestamp-millis", "timestamp-micros")):
        return _parse_timestamp(value, name)
    if kind == "enum":
        symbols = base["symbols"]
        if value not in symbols:
            raise ValidationError(f"field {name!r}: {value!r} is not one of {symbols}")
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValidationError(f"field {name!r}: expected true/false, got {value!r}")
        return value
    if kind in ("int", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"field {name!r}: expected an integer, got {value!r}")
        low, high = INT32_RANGE if kind == "int" else INT64_RANGE
        if not low <= value <= high:
            raise ValidationError(f"field {name!r}: {value} is out of range for {kind}")
        return value
    if kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError(f"field {name!r}: expected a number, got {value!r}")
        return float(value)
    if kind == "string":
        if not isinstance(value, str):
            raise ValidationError(f"field {name!r}: expected a string, got {value!r}")
        return value
    if kind in ("bytes", "fixed"):
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            # Avro's JSON mapping: one character per byte (code points 0-255).
            try:
                return value.encode("latin-1")
            except UnicodeEncodeError as exc:
                raise ValidationError(f"field {name!r}: bytes must use code points 0-255") from exc
        raise ValidationError(f"field {name!r}: expected a bytes string, got {value!r}")
    raise ValidationError(f"field {name!r}: unsupported type {base!r}")


def row_from_json(spec: TableSpec, row: dict[str, Any], key_only: bool = False) -> dict[str, Any]:
    """Convert a JSON row to Python values; with ``key_only`` (deletes) absent non-key fields are allowed."""
    if not isinstance(row, dict):
        raise ValidationError(f"{spec.table}: row must be an object")
    unknown = set(row) - set(spec.field_names)
    if unknown:
        raise ValidationError(f"{spec.table}: unknown fields {sorted(unknown)}")
    out: dict[str, Any] = {}
    for f in spec.schema["fields"]:
        name = f["name"]
        if name not in row:
            if key_only and name not in spec.primary_key:
                continue
            has_default, default = default_value(f)
            if not has_default:
                raise ValidationError(f"{spec.table}: missing field {name!r}")
            out[name] = default
            continue
        out[name] = from_json_value(f["type"], row[name], name)
    return out


def to_json_value(value: Any) -> Any:
    """A Python/Arrow value as JSON (ISO-8601 times, decimal strings, base64 bytes)."""
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
