"""Conversions between a table's Avro row schema, JSON input, Python values, and Arrow columns.

One mapping used by every component: producers parse JSON lines with it, the
consumer builds Arrow tables with it, the merge projects old raw files onto the
newest schema with its defaults, and bulk extracts are validated against it.

Arrow types: long/int/float/double/boolean/string/bytes map to their Arrow
twins, enums and uuids to strings, decimals to decimal128, dates to date32, and
every timestamp to microsecond UTC (so lake files have one time type). Nested
records, arrays, maps and unions of several types have no column type in the
lake: ``check_storable`` refuses them when a table is registered.

Every value a producer takes in is checked here and refused with a
``ValidationError`` that names its field path (``row.total_amount``, ``ts``):
one function per Avro type turns a JSON value into the Python value the codec
encodes (``from_json_value``); ``send_checks`` applies the same rules to the
Python values handed to ``ChangeEventProducer.send()``. The rules, the same for
JSON lines, Python values and bulk extracts:

* decimal: a string or number with at most ``scale`` digits after the point
  (trailing zeros are fine) and at most ``precision - scale`` before it; NaN
  and infinities are refused.
* uuid: the 36-character hyphenated hex form (``8-4-4-4-12``, any case); the
  lake stores it lower-case.
* date: an ISO-8601 date. timestamp-millis/-micros are instants: ISO-8601 with
  a zone offset (``Z``, ``+02:00``) is converted to UTC, and a timestamp
  without one is UTC. local-timestamp-* is a wall-clock time: an offset is
  refused (it would be silently dropped).
* enum: one of the symbols; fixed: exactly ``size`` bytes; bytes and fixed in
  JSON: a string of code points 0-255 (Avro's JSON mapping).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import math
import re
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from hybrid_ingest.errors import SpecError, ValidationError
from hybrid_ingest.tables import AvroSchema, TableSpec

TIMESTAMP = pa.timestamp("us", tz="UTC")
_PRIMITIVES: dict[str, pa.DataType] = {
    "long": pa.int64(), "int": pa.int32(), "float": pa.float32(), "double": pa.float64(),
    "boolean": pa.bool_(), "string": pa.string(), "bytes": pa.binary(),
}
INT32_RANGE = (-(2**31), 2**31 - 1)
INT64_RANGE = (-(2**63), 2**63 - 1)
FLOAT32_MAX = 3.4028234663852886e38
INSTANTS = ("timestamp-millis", "timestamp-micros")
LOCAL_TIMESTAMPS = ("local-timestamp-millis", "local-timestamp-micros")
UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
UUID_RULE = "a UUID in its 36-character form 8-4-4-4-12 of hex digits"
# wide enough for any decimal128 value: quantizing never hits the context's own precision limit
DECIMAL_CONTEXT = decimal.Context(prec=80, Emax=999_999, Emin=-999_999)


def unwrap(avro_type: Any, path: str = "") -> tuple[Any, bool]:
    """(the non-null branch, nullable) of a field type; unions of several non-null types are refused."""
    if isinstance(avro_type, list):
        branches = [t for t in avro_type if t != "null"]
        if len(branches) != 1:
            where = f"{path}: " if path else ""
            raise ValidationError(f"{where}only [null, T] unions are supported, got {avro_type}")
        return branches[0], "null" in avro_type
    return avro_type, False


def kinds(base: Any) -> tuple[str | None, Any]:
    """(logical type, Avro type name) of a non-union type."""
    if isinstance(base, dict):
        return base.get("logicalType"), base.get("type")
    return None, base


def arrow_type(avro_type: Any) -> pa.DataType:
    base, _ = unwrap(avro_type)
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
    if logical in INSTANTS + LOCAL_TIMESTAMPS:
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
        _, nullable = unwrap(f["type"])
        fields.append(pa.field(f["name"], arrow_type(f["type"]), nullable=all_nullable or nullable
                               or f["name"] not in spec.primary_key))
    return pa.schema(fields)


def check_storable(spec: TableSpec) -> None:
    """Refuse at registration a field the lake has no column type for, or a default that does not convert."""
    for f in spec.schema["fields"]:
        try:
            arrow_type(f["type"])
            default_value(f)
        except (ValidationError, ValueError, KeyError) as exc:
            raise SpecError(f"{spec.table}: field {f['name']!r}: {exc}") from exc


def default_value(field: AvroSchema) -> tuple[bool, Any]:
    """(has a default, the default as a Python value of the field's Arrow type)."""
    if "default" not in field:
        _, nullable = unwrap(field["type"])
        return (nullable, None)
    return True, from_json_value(field["type"], field["default"], f"default of {field['name']}")


# -- JSON -> Python, one function per Avro type: (type, value, field path) -> the value the codec encodes ----


def json_decimal(base: AvroSchema, value: Any, path: str) -> decimal.Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValidationError(f"{path}: a decimal must be a string or a number, got {value!r}")
    try:
        number = decimal.Decimal(value if isinstance(value, str) else str(value))
    except decimal.InvalidOperation as exc:
        raise ValidationError(f"{path}: {value!r} is not a decimal number") from exc
    return fit_decimal(base, number, path, repr(value))


def fit_decimal(base: AvroSchema, number: decimal.Decimal, path: str, shown: str) -> decimal.Decimal:
    """``number`` at the type's scale, or why it does not fit ``decimal(precision, scale)`` (``shown``: as given)."""
    precision, scale = int(base["precision"]), int(base.get("scale", 0))
    problem = decimal_problem(number, precision, scale)
    if problem:
        raise ValidationError(f"{path}: {shown} {problem}")
    return number.quantize(decimal.Decimal(1).scaleb(-scale), context=DECIMAL_CONTEXT)


def decimal_problem(number: decimal.Decimal, precision: int, scale: int) -> str | None:
    """Why ``number`` does not fit ``decimal(precision, scale)``; quantizes only a number with more places."""
    if not number.is_finite():
        return "is not a finite decimal"
    if number and number.adjusted() >= precision - scale:
        return (f"is out of range for decimal({precision},{scale}) "
                f"(at most {precision - scale} digit(s) before the point)")
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -scale and (
            number.quantize(decimal.Decimal(1).scaleb(-scale), context=DECIMAL_CONTEXT) != number):
        return f"does not fit decimal({precision},{scale}) (at most {scale} digit(s) after the point)"
    return None


def json_date(_base: Any, value: Any, path: str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str):
        raise ValidationError(f"{path}: expected an ISO-8601 date string, got {value!r}")
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise ValidationError(f"{path}: {value!r} is not an ISO-8601 date") from exc


def json_timestamp(base: Any, value: Any, path: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValidationError(f"{path}: {value!r} is not an ISO-8601 timestamp") from exc
    else:
        raise ValidationError(f"{path}: expected an ISO-8601 timestamp string, got {value!r}")
    return to_instant(base, parsed, path)


def to_instant(base: Any, value: dt.datetime, path: str) -> dt.datetime:
    """An instant in UTC (no zone: UTC); a local timestamp is a naive wall-clock time and may carry no zone."""
    logical, _ = kinds(base)
    if logical in LOCAL_TIMESTAMPS:
        if value.tzinfo is not None:
            raise ValidationError(f"{path}: a {logical} has no time zone; got {value.isoformat()}")
        return value
    return value.astimezone(dt.UTC) if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def json_uuid(_base: Any, value: Any, path: str) -> str:
    if not isinstance(value, str) or not UUID_TEXT.fullmatch(value):
        raise ValidationError(f"{path}: {value!r} is not {UUID_RULE}")
    return value


def json_enum(base: AvroSchema, value: Any, path: str) -> str:
    if not isinstance(value, str) or value not in base["symbols"]:
        raise ValidationError(f"{path}: {value!r} is not one of {base['symbols']}")
    return value


def json_boolean(_base: Any, value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{path}: expected true or false, got {value!r}")
    return value


def json_integer(base: Any, value: Any, path: str) -> int:
    _, kind = kinds(base)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{path}: expected an integer, got {value!r}")
    low, high = INT32_RANGE if kind == "int" else INT64_RANGE
    if not low <= value <= high:
        raise ValidationError(f"{path}: {value} is out of range for {kind}")
    return value


def json_floating(base: Any, value: Any, path: str) -> float:
    _, kind = kinds(base)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"{path}: expected a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError as exc:
        raise ValidationError(f"{path}: {value} is out of range for {kind}") from exc
    if kind == "float" and math.isfinite(number) and abs(number) > FLOAT32_MAX:
        raise ValidationError(f"{path}: {value} is out of range for float")
    return number


def json_string(_base: Any, value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{path}: expected a string, got {value!r}")
    return value


def json_bytes(base: Any, value: Any, path: str) -> bytes:
    if isinstance(value, str):
        # Avro's JSON mapping: one character per byte (code points 0-255)
        try:
            value = value.encode("latin-1")
        except UnicodeEncodeError as exc:
            raise ValidationError(f"{path}: bytes must be written with code points 0-255") from exc
    if not isinstance(value, bytes):
        raise ValidationError(f"{path}: expected a string of bytes, got {value!r}")
    return check_size(base, value, path)


def check_size(base: Any, value: bytes, path: str) -> bytes:
    _, kind = kinds(base)
    if kind == "fixed" and len(value) != base["size"]:
        raise ValidationError(f"{path}: fixed {base.get('name')!r} takes exactly {base['size']} bytes, "
                              f"got {len(value)}")
    return value


JsonConverter = Callable[[Any, Any, str], Any]
_BY_LOGICAL: dict[str, JsonConverter] = {
    "decimal": json_decimal, "date": json_date, "uuid": json_uuid,
    **{name: json_timestamp for name in INSTANTS + LOCAL_TIMESTAMPS},
}
_BY_KIND: dict[str, JsonConverter] = {
    "enum": json_enum, "boolean": json_boolean, "int": json_integer, "long": json_integer,
    "float": json_floating, "double": json_floating, "string": json_string, "bytes": json_bytes,
    "fixed": json_bytes,
}


def json_converter(base: Any, path: str) -> JsonConverter:
    logical, kind = kinds(base)
    found = _BY_LOGICAL.get(logical) if logical else None
    found = found or (_BY_KIND.get(kind) if isinstance(kind, str) else None)
    if found is None:
        raise ValidationError(f"{path}: unsupported type {base!r}")
    return found


def from_json_value(avro_type: Any, value: Any, path: str) -> Any:
    """A JSON value (Avro JSON mapping; dates/timestamps as ISO-8601, decimals as strings) as Python."""
    base, nullable = unwrap(avro_type, path)
    if value is None:
        if nullable:
            return None
        raise ValidationError(f"{path} must not be null")
    return json_converter(base, path)(base, value, path)


def row_from_json(spec: TableSpec, row: dict[str, Any], key_only: bool = False) -> dict[str, Any]:
    """Convert a JSON row to Python values; with ``key_only`` (deletes) absent non-key fields are allowed."""
    if not isinstance(row, dict):
        raise ValidationError(f"{spec.table}: row must be an object")
    unknown = set(row) - spec.field_name_set
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
                raise ValidationError(f"{spec.table}: row.{name} is missing and has no default")
            out[name] = default
            continue
        out[name] = from_json_value(f["type"], row[name], f"row.{name}")
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
