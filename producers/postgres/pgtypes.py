"""PostgreSQL column types as Avro types, and their text form as Python values.

One mapping for the catalog (registering a table), the pgoutput stream (whose
relation messages carry type OID and modifier) and the snapshot (which reads
every column as ``::text``), so a value is parsed the same way whichever path
it takes. Text forms are fixed by the session settings every connection of the
source sets (``SESSION_OPTIONS``): ISO dates, UTC, hex bytea.

Mapped: smallint/integer -> int, bigint -> long, numeric(p,s) -> decimal(p,s)
(p <= 38, 0 <= s <= p: Arrow's decimal128), real -> float, double precision ->
double, text/varchar/char -> string, boolean, date, timestamp ->
local-timestamp-micros, timestamptz -> timestamp-micros, uuid -> string/uuid,
json/jsonb -> string (their text), bytea -> bytes. Anything else is refused.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hybrid_ingest.errors import SourceError

SESSION_OPTIONS = ("-c DateStyle=ISO -c TimeZone=UTC -c IntervalStyle=iso_8601 -c bytea_output=hex "
                   "-c extra_float_digits=3 -c client_encoding=UTF8 -c standard_conforming_strings=on")

BOOL, BYTEA, INT8, INT2, INT4, TEXT, JSON = 16, 17, 20, 21, 23, 25, 114
FLOAT4, FLOAT8, BPCHAR, VARCHAR, DATE = 700, 701, 1042, 1043, 1082
TIMESTAMP, TIMESTAMPTZ, NUMERIC, UUID, JSONB = 1114, 1184, 1700, 2950, 3802

NAMES = {BOOL: "boolean", BYTEA: "bytea", INT8: "bigint", INT2: "smallint", INT4: "integer", TEXT: "text",
         JSON: "json", FLOAT4: "real", FLOAT8: "double precision", BPCHAR: "character",
         VARCHAR: "character varying", DATE: "date", TIMESTAMP: "timestamp without time zone",
         TIMESTAMPTZ: "timestamp with time zone", NUMERIC: "numeric", UUID: "uuid", JSONB: "jsonb"}
MAX_DECIMAL_PRECISION = 38

Parser = Callable[[str], Any]


def _decimal(text: str) -> decimal.Decimal:
    value = decimal.Decimal(text)
    if not value.is_finite():
        raise ValueError(f"{text} has no decimal value")
    return value


def _bool(text: str) -> bool:
    if text not in ("t", "f"):
        raise ValueError(f"{text!r} is not a boolean")
    return text == "t"


def _timestamptz(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC)


def _bytea(text: str) -> bytes:
    if not text.startswith("\\x"):
        raise ValueError("bytea is not in hex form")
    return bytes.fromhex(text[2:])


def _text(text: str) -> str:
    return text


_PARSERS: dict[int, Parser] = {
    INT2: int, INT4: int, INT8: int, NUMERIC: _decimal, FLOAT4: float, FLOAT8: float, BOOL: _bool,
    TEXT: _text, VARCHAR: _text, BPCHAR: _text, JSON: _text, JSONB: _text, UUID: _text,
    DATE: dt.date.fromisoformat, TIMESTAMP: dt.datetime.fromisoformat, TIMESTAMPTZ: _timestamptz, BYTEA: _bytea,
}


@dataclass(frozen=True)
class ColumnType:
    """A mapped column: its Avro type (without null) and the parser of its text form."""

    avro: Any
    parse: Parser


def _numeric(typmod: int) -> Any:
    if typmod < 4:
        raise ValueError("numeric without precision and scale has no fixed decimal type; declare numeric(p,s)")
    precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0x7FF
    if (typmod - 4) & 0x400:  # PostgreSQL 15 allows a negative scale, stored as 11-bit two's complement
        scale -= 0x800
    if not 0 <= scale <= precision or precision > MAX_DECIMAL_PRECISION:
        raise ValueError(f"numeric({precision},{scale}) does not fit a decimal with 0 <= scale <= precision <= "
                         f"{MAX_DECIMAL_PRECISION}")
    return {"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale}


def column_type(oid: int, typmod: int, where: str, type_name: str | None = None) -> ColumnType:
    """The mapping of one column, or a one-line refusal naming ``where`` (table and column) and the type."""
    simple: dict[int, Any] = {
        INT2: "int", INT4: "int", INT8: "long", FLOAT4: "float", FLOAT8: "double", BOOL: "boolean",
        TEXT: "string", VARCHAR: "string", BPCHAR: "string", JSON: "string", JSONB: "string", BYTEA: "bytes",
        DATE: {"type": "int", "logicalType": "date"},
        TIMESTAMP: {"type": "long", "logicalType": "local-timestamp-micros"},
        TIMESTAMPTZ: {"type": "long", "logicalType": "timestamp-micros"},
        UUID: {"type": "string", "logicalType": "uuid"},
    }
    name = type_name or NAMES.get(oid) or f"type oid {oid}"
    if oid == NUMERIC:
        try:
            return ColumnType(_numeric(typmod), _PARSERS[NUMERIC])
        except ValueError as exc:
            raise SourceError(f"{where}: {exc}") from None
    if oid not in simple:
        raise SourceError(f"{where}: type {name} is not mapped to an Avro type (mapped: integers, numeric(p,s), "
                          "real, double precision, text, varchar, char, boolean, date, timestamp, timestamptz, uuid, "
                          "json, jsonb, bytea)")
    return ColumnType(simple[oid], _PARSERS[oid])


def parse_value(column: ColumnType, text: str, where: str) -> Any:
    """A value's text form as the Python value its Avro type encodes; refused in one line if it has none."""
    try:
        return column.parse(text)
    except (ValueError, ArithmeticError) as exc:
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise SourceError(f"{where}: value {shown!r} cannot be captured: {exc}") from None
