"""Avro single-object encoding: ``C3 01`` + 8-byte little-endian CRC-64-AVRO fingerprint + body.

fastavro does the Avro work (canonical form, fingerprint, schemaless binary);
this module only frames it. A ``Codec`` is built once per schema version and
reused: it keeps the parsed schema and the 10-byte header, so encoding a record
is one fastavro call and one concatenation.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import fastavro
from fastavro.schema import fingerprint as _fingerprint
from fastavro.schema import parse_schema, to_parsing_canonical_form

from hybrid_ingest.errors import ValidationError, WireFormatError

MAGIC = b"\xc3\x01"
HEADER_SIZE = len(MAGIC) + 8


def canonical_form(schema: dict[str, Any]) -> str:
    return str(to_parsing_canonical_form(parse_schema(schema, _write_hint=False)))


def fingerprint(schema: dict[str, Any]) -> bytes:
    """CRC-64-AVRO of the parsing canonical form, as the 8 little-endian bytes the wire carries."""
    return bytes.fromhex(_fingerprint(canonical_form(schema), "CRC-64-AVRO"))


def split_header(data: bytes) -> tuple[bytes, memoryview]:
    """Return (fingerprint, body) of a single-object-encoded message."""
    if len(data) < HEADER_SIZE:
        raise WireFormatError(f"message of {len(data)} bytes is shorter than the {HEADER_SIZE}-byte header")
    if data[:2] != MAGIC:
        raise WireFormatError(f"bad magic bytes {data[:2].hex()} (expected c301)")
    return bytes(data[2:HEADER_SIZE]), memoryview(data)[HEADER_SIZE:]


def fingerprint_of(data: bytes) -> bytes:
    """The fingerprint of a single-object-encoded message, its framing checked (the consumer's hot path)."""
    if len(data) < HEADER_SIZE or not data.startswith(MAGIC):
        split_header(data)  # raises the framing error
    return data[2:HEADER_SIZE]


@dataclass
class Codec:
    """Encoder/decoder for one Avro schema version."""

    schema: dict[str, Any]

    def __post_init__(self) -> None:
        self.parsed = parse_schema(self.schema)
        self.fingerprint = fingerprint(self.schema)
        self.header = MAGIC + self.fingerprint

    def encode(self, record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(self.header)
        try:
            fastavro.schemaless_writer(buf, self.parsed, record)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise ValidationError(f"record does not match schema {self.schema.get('name')}: {exc}") from exc
        return buf.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        fp, body = split_header(data)
        if fp != self.fingerprint:
            raise WireFormatError(f"fingerprint {fp.hex()} is not this codec's {self.fingerprint.hex()}")
        return self.decode_body(body)

    def decode_body(self, body: memoryview | bytes) -> dict[str, Any]:
        return self._decode(io.BytesIO(body), len(body))

    def decode_message(self, data: bytes) -> dict[str, Any]:
        """The body of a whole message whose fingerprint the caller matched to this codec (no copy of it)."""
        stream = io.BytesIO(data)
        stream.seek(HEADER_SIZE)
        return self._decode(stream, len(data))

    def _decode(self, stream: io.BytesIO, end: int) -> dict[str, Any]:
        try:
            record = fastavro.schemaless_reader(stream, self.parsed, None)
        except (EOFError, ValueError, IndexError, UnicodeDecodeError, TypeError, OverflowError) as exc:
            raise WireFormatError(f"undecodable Avro body: {exc!r}") from exc
        if stream.tell() != end:
            raise WireFormatError(f"{end - stream.tell()} trailing bytes after the Avro body")
        return record  # type: ignore[return-value]
