"""JSON change events to the events the codec encodes, compiled once per schema version.

``convert.py`` states the rules value by value, with one ``json_*`` function per
Avro type, and names the field of every refusal. Run per value, its generic
dispatch (unwrap the union, look the type up, call) costs more than fastavro's
whole encode. ``compile_reader`` turns one table's rules into one generated
Python function per schema version: each field's check is inlined for the
primitive types (an exact ``type(v) is int`` and a range, a frozenset lookup
for an enum symbol), and the logical types call a closure specialised to the
field (its precision, scale, zone rule).

The compiled reader only takes what it is sure of. Whatever it does not take
(a bad value, a missing field, a decimal given as a JSON float, an unusual
form) raises ``NotTaken``, and the caller goes through ``convert``'s detailed
path, which either accepts the event (the reader is only a fast path, never a
second rule book) or refuses it with the field path. So a line is read as
``convert`` reads it, and an accepted event is the same value as the one
``producers.events.event_from_json`` returns (a property test compares the
two). What the reader accepts also passes ``tables.validate_event`` and
``send_checks.RowChecks``: every non-nullable field is converted non-null or
defaulted, a delete carries its key, and the values fastavro would let through
but the lake cannot hold (decimals out of range, UUID text, zoned local
timestamps, floats beyond float32) are refused here first.

JSON numbers: the parser in front of it (orjson) reads an integer beyond 64
bits as a float where ``json`` keeps an int (both read a float literal as the
same float). For every type but decimal the two give the same verdict and value;
a decimal therefore takes a float here only below 2**63 in magnitude, where it
cannot be such an integer, and leaves a bigger one to the detailed path (which
parses the line again with ``json``).
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Callable
from functools import partial
from typing import Any

from hybrid_ingest.convert import (
    DECIMAL_CONTEXT,
    FLOAT32_MAX,
    INT32_RANGE,
    INT64_RANGE,
    LOCAL_TIMESTAMPS,
    UUID_TEXT,
    default_value,
    json_bytes,
    kinds,
    unwrap,
)
from hybrid_ingest.tables import OPS, SEQ_MAX, TS_TYPE, TableSpec

EVENT_KEYS = frozenset({"op", "seq", "ts", "row"})
_BIG = float(2**63)  # orjson reads an integer literal as an int up to here (and up to 2**64 - 1 above 0)

JsonReader = Callable[[Any], dict[str, Any]]


class NotTaken(Exception):
    """The compiled reader does not take this event as it is; ``convert``'s detailed path decides."""


# -- closures for the logical types: the same result as convert's json_* function, or NotTaken ------------


def _decimal_reader(precision: int, scale: int) -> Callable[[Any], decimal.Decimal]:
    quantum = decimal.Decimal(1).scaleb(-scale)
    digits_before = precision - scale

    def read_decimal(value: Any) -> decimal.Decimal:
        kind = value.__class__
        if kind is str:
            number = decimal.Decimal(value)
        elif kind is int or (kind is float and -_BIG < value < _BIG):
            number = decimal.Decimal(str(value))
        else:
            raise NotTaken  # a float this big may be an integer orjson read as a float: json reads it again
        if not number.is_finite():
            raise NotTaken
        exponent = number.as_tuple().exponent
        if not isinstance(exponent, int) or exponent < -scale or (number and number.adjusted() >= digits_before):
            raise NotTaken
        return number.quantize(quantum, context=DECIMAL_CONTEXT)

    return read_decimal


def _instant_reader(value: Any) -> dt.datetime:
    if value.__class__ is not str:
        raise NotTaken
    parsed = dt.datetime.fromisoformat(value)
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def _local_timestamp_reader(value: Any) -> dt.datetime:
    if value.__class__ is not str:
        raise NotTaken
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is not None:
        raise NotTaken
    return parsed


def _date_reader(value: Any) -> dt.date:
    if value.__class__ is not str:
        raise NotTaken
    return dt.date.fromisoformat(value)


def _uuid_reader(value: Any) -> str:
    if value.__class__ is not str or not UUID_TEXT.fullmatch(value):
        raise NotTaken
    return value


def _bytes_reader(base: Any) -> Callable[[Any], bytes]:
    """convert's own function bound to the field's type (rare in change events); its error is NotTaken's cue."""
    return partial(json_bytes, base, path="")


# -- code generation ----------------------------------------------------------------------------------------


class _Source:
    """The generated function's text and the constants it refers to (passed as its globals)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {"NotTaken": NotTaken}

    def constant(self, prefix: str, value: Any) -> str:
        name = f"{prefix}{len(self.constants)}"
        self.constants[name] = value
        return name

    def emit(self, indent: int, *lines: str) -> None:
        self.lines.extend("    " * indent + line for line in lines)


def _value_check(src: _Source, base: Any, indent: int, name: str) -> None:
    """Lines that check ``v`` (None fails every check) and put the value the codec encodes into ``row``."""
    logical, kind = kinds(base)
    reader: Callable[[Any], Any] | None = None
    if logical == "decimal":
        reader = _decimal_reader(int(base["precision"]), int(base.get("scale", 0)))
    elif logical in ("timestamp-millis", "timestamp-micros"):
        reader = _instant_reader
    elif logical in LOCAL_TIMESTAMPS:
        reader = _local_timestamp_reader
    elif logical == "date":
        reader = _date_reader
    elif logical == "uuid":
        reader = _uuid_reader
    elif kind in ("bytes", "fixed"):
        reader = _bytes_reader(base)
    if reader is not None:
        src.emit(indent, f"row[{name!r}] = {src.constant('read', reader)}(v)")
    elif kind in ("long", "int"):
        low, high = INT32_RANGE if kind == "int" else INT64_RANGE
        src.emit(indent, f"if v.__class__ is not int or not {low} <= v <= {high}:", "    raise NotTaken")
    elif kind in ("double", "float"):
        src.emit(indent, "if v.__class__ is int:", f"    row[{name!r}] = v = float(v)",
                 "elif v.__class__ is not float:", "    raise NotTaken")
        if kind == "float":
            isfinite = src.constant("isfinite", math.isfinite)
            src.emit(indent, f"if abs(v) > {FLOAT32_MAX!r} and {isfinite}(v):", "    raise NotTaken")
    elif kind == "boolean":
        src.emit(indent, "if v.__class__ is not bool:", "    raise NotTaken")
    elif kind == "string":
        src.emit(indent, "if v.__class__ is not str:", "    raise NotTaken")
    elif kind == "enum":
        symbols = src.constant("symbols", frozenset(base["symbols"]))
        src.emit(indent, f"if v.__class__ is not str or v not in {symbols}:", "    raise NotTaken")
    else:
        src.emit(indent, "raise NotTaken")


def _field(src: _Source, field: dict[str, Any], key_only: bool, is_key: bool) -> None:
    """Lines that check field ``name`` of ``row`` in place: converted, defaulted, left out of a delete, or NotTaken.

    A non-nullable field without a default needs no test for absence or null: ``row.get``
    gives None, and None passes no check.
    """
    name = field["name"]
    base, nullable = unwrap(field["type"])
    has_default, default = default_value(field)
    leave_out = key_only and not is_key  # a delete carries its key; other fields it leaves out stay out
    if not nullable and not has_default and not leave_out:
        src.emit(1, f"v = row.get({name!r})")
        _value_check(src, base, 1, name)
        return
    missing = src.constant("missing", object())
    src.emit(1, f"v = row.get({name!r}, {missing})")
    src.emit(1, f"if v is {missing}:")
    if leave_out:
        src.emit(2, "pass")
    elif has_default:
        src.emit(2, f"row[{name!r}] = {src.constant('default', default)}")
    else:
        src.emit(2, "raise NotTaken")
    src.emit(1, "elif v is None:")
    src.emit(2, "pass" if nullable else "raise NotTaken")
    src.emit(1, "else:")
    _value_check(src, base, 2, name)


def _row_function(src: _Source, spec: TableSpec, name: str, key_only: bool) -> None:
    src.emit(0, f"def {name}(row):")
    src.emit(1, f"if row.__class__ is not dict or not row.keys() <= {src.constant('fields', spec.field_name_set)}:",
             "    raise NotTaken")
    for field in spec.schema["fields"]:
        _field(src, field, key_only, field["name"] in spec.primary_key)


def compile_reader(spec: TableSpec) -> JsonReader:
    """The table's JSON change events (parsed) as codec-ready events; ``NotTaken`` for anything else.

    The reader converts the parsed document in place (it is the caller's fresh parse) and returns it.
    """
    src = _Source()
    _row_function(src, spec, "full_row", key_only=False)
    _row_function(src, spec, "key_row", key_only=True)
    ts_base, _ = unwrap(TS_TYPE)
    assert ts_base.get("logicalType") == "timestamp-micros"
    src.emit(0, "def read(doc):")
    src.emit(1, f"if doc.__class__ is not dict or not doc.keys() <= {src.constant('keys', EVENT_KEYS)}:",
             "    raise NotTaken",
             "op = doc['op']", "seq = doc['seq']", "ts = doc.get('ts')",
             f"if op.__class__ is not str or op not in {src.constant('ops', frozenset(OPS))}:",
             "    raise NotTaken",
             f"if seq.__class__ is not int or not 0 <= seq <= {SEQ_MAX}:", "    raise NotTaken",
             "if ts is not None:",
             f"    doc['ts'] = {src.constant('ts', _instant_reader)}(ts)",
             "elif 'ts' not in doc:",
             "    doc['ts'] = None",
             "if op == 'd':",
             "    key_row(doc['row'])",
             "else:",
             "    full_row(doc['row'])",
             "return doc")
    namespace = dict(src.constants)
    exec(compile("\n".join(src.lines) + "\n", f"<json reader of {spec.table}>", "exec"), namespace)
    reader: JsonReader = namespace["read"]
    return reader
