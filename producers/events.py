"""Change events from JSON documents (the ``produce`` file format and Kafka message values).

JSON follows Avro's JSON mapping with ISO-8601 dates/timestamps and decimal
strings (``hybrid_ingest.convert``); the result is the Python event the codec
encodes. Parsing is pure so the CLI can check a whole file before sending any.

Two paths, one verdict: ``encode_line`` parses with orjson and converts with the
schema version's compiled reader (``hybrid_ingest.json_reader``); a line either
of them does not take goes through the detailed path (``json`` + ``convert``'s
per-type functions + ``encode_event``), which accepts it the same way or refuses
it naming the field. Only bad lines pay for the second look.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import orjson

from hybrid_ingest.convert import from_json_value, row_from_json
from hybrid_ingest.errors import ValidationError
from hybrid_ingest.registry import SchemaVersion
from hybrid_ingest.tables import OPS, TS_TYPE, TableSpec, validate_event
from producers.kinesis import check_record_size
from producers.producer import encode_event
from producers.routing import partition_key
from producers.spool import Entry

EVENT_KEYS = frozenset({"op", "seq", "ts", "row"})


def event_from_json(spec: TableSpec, doc: Any) -> dict[str, Any]:
    """A validated change event from a parsed JSON object."""
    if not isinstance(doc, dict):
        raise ValidationError(f"expected a JSON object, got {type(doc).__name__}")
    unknown = set(doc) - EVENT_KEYS
    if unknown:
        raise ValidationError(f"unknown event keys {sorted(unknown)} (allowed: {sorted(EVENT_KEYS)})")
    op = doc.get("op")
    if op not in OPS:
        raise ValidationError(f"op must be one of {OPS}, got {op!r}")
    row = doc.get("row")
    if not isinstance(row, dict):
        raise ValidationError("row must be an object")
    event = {
        "op": op,
        "seq": doc.get("seq"),
        "ts": from_json_value(TS_TYPE, doc.get("ts"), "ts"),
        "row": row_from_json(spec, row, key_only=op == "d"),
    }
    validate_event(spec, event)
    return event


def event_from_line(spec: TableSpec, line: str | bytes) -> dict[str, Any]:
    try:
        doc = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValidationError(f"invalid JSON: {exc}") from exc
    except RecursionError:
        # json's decoder recurses per nesting level: a line of many thousand '[' is bad input, not a crash
        raise ValidationError("invalid JSON: nested too deeply to decode") from None
    return event_from_json(spec, doc)


def encode_line(version: SchemaVersion, line: str | bytes) -> Entry:
    """One JSON change event as a spool entry (partition key, single-object Avro bytes); ValidationError if bad."""
    try:
        event = version.json_reader(orjson.loads(line))
        data = version.codec.encode(event)
    except Exception:
        return encode_event(version, event_from_line(version.spec, line))
    key = partition_key(version.spec, event["row"])
    check_record_size(key, data)
    return key, data


def encode_lines(version: SchemaVersion, lines: Iterable[str | bytes], max_errors: int = 20
                 ) -> tuple[list[Entry], list[str], int]:
    """Validate and encode every non-blank line: (entries, up to ``max_errors`` 'line N: reason', bad count).

    Everything is checked before anything is sent, so a file is published whole or not at all.
    """
    entries: list[Entry] = []
    errors: list[str] = []
    bad = 0
    for number, line in enumerate(lines, start=1):
        if not line or line.isspace():  # isspace stops at the first other character: no copy of the line
            continue
        try:
            entries.append(encode_line(version, line))
        except ValidationError as exc:
            bad += 1
            if len(errors) < max_errors:
                errors.append(f"line {number}: {exc}")
    return entries, errors, bad
