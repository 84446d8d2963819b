"""What ``ChangeEventProducer.send()`` checks of Python values, by the rules ``convert`` applies to JSON.

Values handed to ``send()`` skip the JSON conversion and go to fastavro's writer
as they are. fastavro refuses most bad values itself, and lets a few through
that the lake cannot hold; ``RowChecks`` catches those before the codec, built
once per schema version, and ``check_event`` names the field when the codec
refuses (only on that error path).
"""

from __future__ import annotations

import datetime as dt
import decimal
import io
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fastavro
from fastavro.schema import parse_schema

from hybrid_ingest.convert import (
    FLOAT32_MAX,
    INSTANTS,
    LOCAL_TIMESTAMPS,
    UUID_RULE,
    UUID_TEXT,
    check_size,
    decimal_problem,
    fit_decimal,
    json_converter,
    json_string,
    json_uuid,
    kinds,
    to_instant,
    unwrap,
)
from hybrid_ingest.errors import ValidationError
from hybrid_ingest.tables import TS_TYPE, TableSpec, envelope_schema


def check_value(avro_type: Any, value: Any, path: str) -> None:
    """Why a Python value does not belong in a field, as the JSON rules above say it, or nothing."""
    base, nullable = unwrap(avro_type, path)
    if value is None:
        if not nullable:
            raise ValidationError(f"{path} must not be null")
        return
    logical, kind = kinds(base)
    if logical == "decimal":
        if not isinstance(value, decimal.Decimal):
            raise ValidationError(f"{path}: expected a decimal.Decimal, got {value!r}")
        fit_decimal(base, value, path, repr(value))
    elif logical == "uuid":
        if not isinstance(value, uuid.UUID):
            json_uuid(base, value, path)
    elif logical == "date":
        if not isinstance(value, dt.date):
            raise ValidationError(f"{path}: expected a datetime.date, got {value!r}")
    elif logical in INSTANTS + LOCAL_TIMESTAMPS:
        if not isinstance(value, dt.datetime):
            raise ValidationError(f"{path}: expected a datetime.datetime, got {value!r}")
        to_instant(base, value, path)
    elif kind in ("bytes", "fixed"):
        if not isinstance(value, bytes | bytearray):
            raise ValidationError(f"{path}: expected bytes, got {value!r}")
        check_size(base, bytes(value), path)
    elif kind == "string":
        json_string(base, value, path)
        try:
            value.encode()
        except UnicodeEncodeError as exc:
            raise ValidationError(f"{path}: not encodable as UTF-8 ({exc.reason})") from exc
    else:
        json_converter(base, path)(base, value, path)


PythonCheck = Callable[[Any, str], None]


def _gap_check(avro_type: Any) -> PythonCheck | None:
    """A check for what fastavro's writer lets through but the lake cannot hold, or None if it has no gap.

    fastavro encodes a Decimal with too many digits before the point (the
    consumer cannot store it), any string as a UUID (the consumer would
    dead-letter it, far from its source), a zoned datetime as a local timestamp
    (dropping the zone) and an overflowing float as infinity. Everything else it
    refuses itself (then ``check_event`` names the field; a Decimal with more
    places than the scale is refused even when they are zeros) or coerces within
    the type (``True`` as 1, ``"1"`` as 1.0), as its documentation says.
    """
    base, _ = unwrap(avro_type)
    logical, kind = kinds(base)
    if logical == "decimal":
        precision, scale = int(base["precision"]), int(base.get("scale", 0))

        def decimal_check(value: Any, path: str) -> None:
            if isinstance(value, decimal.Decimal) and value.is_finite() and value and (
                    value.adjusted() >= precision - scale):
                raise ValidationError(f"{path}: {value!r} {decimal_problem(value, precision, scale)}")

        return decimal_check
    if logical == "uuid":
        def uuid_check(value: Any, path: str) -> None:
            if not isinstance(value, uuid.UUID) and not (isinstance(value, str) and UUID_TEXT.fullmatch(value)):
                raise ValidationError(f"{path}: {value!r} is not {UUID_RULE}")

        return uuid_check
    if logical in LOCAL_TIMESTAMPS:
        def local_check(value: Any, path: str) -> None:
            if isinstance(value, dt.datetime) and value.tzinfo is not None:
                raise ValidationError(f"{path}: a {logical} has no time zone; got {value.isoformat()}")

        return local_check
    if kind == "float":
        def float_check(value: Any, path: str) -> None:
            if isinstance(value, int | float) and not isinstance(value, bool) and (
                    FLOAT32_MAX < abs(value) < math.inf):
                raise ValidationError(f"{path}: {value} is out of range for float")

        return float_check
    return None


@dataclass(frozen=True)
class RowChecks:
    """``_gap_check`` of each field that has one: what ``send()`` checks before the codec, built once per schema.

    Built per schema version (``SchemaVersion.row_checks``) and run on every event
    ``send()`` takes; fields without a gap cost nothing. When the codec itself
    refuses a value, ``check_event`` finds the field.
    """

    fields: tuple[tuple[str, str, PythonCheck], ...]  # (name, path, check)

    def __call__(self, row: dict[str, Any]) -> None:
        for name, path, check in self.fields:
            value = row.get(name)
            if value is not None:
                check(value, path)


def row_checks(spec: TableSpec) -> RowChecks:
    checks = ((f["name"], _gap_check(f["type"])) for f in spec.schema["fields"])
    return RowChecks(tuple((name, f"row.{name}", check) for name, check in checks if check is not None))


def check_event(spec: TableSpec, event: dict[str, Any]) -> None:
    """Name the value the codec refused: each of ``ts`` and the row's fields is encoded alone.

    Only on the error path. The first value fastavro refuses is reported with
    ``check_value``'s reason, or fastavro's own when ``check_value`` has none.
    """
    row = event["row"]
    row_fields = envelope_schema(spec)["fields"][3]["type"]["fields"]  # as encoded: non-key fields nullable
    candidates = [("ts", TS_TYPE, event.get("ts"))]
    candidates += [(f"row.{f['name']}", f["type"], row[f["name"]]) for f in row_fields if f["name"] in row]
    for path, avro_type, value in candidates:
        refused = _fastavro_refuses(avro_type, value)
        if refused is not None:
            check_value(avro_type, value, path)
            raise ValidationError(f"{path}: {refused}")


def _fastavro_refuses(avro_type: Any, value: Any) -> str | None:
    probe = parse_schema({"type": "record", "name": "probe", "fields": [{"name": "value", "type": avro_type}]})
    try:
        fastavro.schemaless_writer(io.BytesIO(), probe, {"value": value})
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        return str(exc)
    return None


