"""Decoder of PostgreSQL's ``pgoutput`` logical replication messages (protocol version 1).

Written by hand because no maintained Python package decodes pgoutput (psycopg2
delivers the raw bytes; psycopg 3 has no replication protocol at all), and the
format is small and documented: "Logical Replication Message Formats" in the
PostgreSQL manual. Integers are big-endian, strings NUL-terminated, LSNs
64-bit, times microseconds since 2000-01-01 UTC. Column values arrive in their
type's text form (we do not ask for ``binary``), decoded here to ``str``; a
value left out of an update because it is an unchanged TOASTed datum is
``UNCHANGED``.

Pure functions over bytes: one message in, one frozen dataclass out.
"""

from __future__ import annotations

import datetime as dt
import struct
from dataclasses import dataclass
from typing import Final

from hybrid_ingest.errors import SourceError

PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_U64 = struct.Struct(">Q")


class Unchanged:
    """Marker of a TOASTed value an update did not change (and so did not send)."""

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = Unchanged()
Value = str | None | Unchanged
Tuple = tuple[Value, ...]

REPLICA_IDENTITIES = {"d": "default", "n": "nothing", "f": "full", "i": "index"}


@dataclass(frozen=True)
class Begin:
    final_lsn: int          # where the transaction's commit record starts
    commit_time: dt.datetime
    xid: int


@dataclass(frozen=True)
class Commit:
    commit_lsn: int
    end_lsn: int            # just past the commit record: what a client confirms
    commit_time: dt.datetime


@dataclass(frozen=True)
class Origin:
    commit_lsn: int
    name: str


@dataclass(frozen=True)
class Column:
    key: bool               # part of the replica identity
    name: str
    type_oid: int
    typmod: int


@dataclass(frozen=True)
class Relation:
    relid: int
    namespace: str
    name: str
    replica_identity: str   # d, n, f or i
    columns: tuple[Column, ...]


@dataclass(frozen=True)
class TypeInfo:
    oid: int
    namespace: str
    name: str


@dataclass(frozen=True)
class Insert:
    relid: int
    new: Tuple


@dataclass(frozen=True)
class Update:
    relid: int
    old_kind: str | None    # 'K' (old key, when the key changed), 'O' (old row, replica identity full), None
    old: Tuple | None
    new: Tuple


@dataclass(frozen=True)
class Delete:
    relid: int
    old_kind: str           # 'K' or 'O'
    old: Tuple


@dataclass(frozen=True)
class Truncate:
    relids: tuple[int, ...]
    cascade: bool
    restart_identity: bool


@dataclass(frozen=True)
class LogicalMessage:
    transactional: bool
    lsn: int
    prefix: str
    content: bytes


Message = (Begin | Commit | Origin | Relation | TypeInfo | Insert | Update | Delete | Truncate
           | LogicalMessage)


class _Reader:
    """A cursor over one message's bytes; every read checks the bounds."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, fmt: struct.Struct) -> int:
        if self.pos + fmt.size > len(self.data):
            raise SourceError(f"pgoutput message truncated at byte {self.pos} of {len(self.data)}")
        (value,) = fmt.unpack_from(self.data, self.pos)
        self.pos += fmt.size
        return int(value)

    def i8(self) -> int:
        return self._take(_I8)

    def i16(self) -> int:
        return self._take(_I16)

    def i32(self) -> int:
        return self._take(_I32)

    def u32(self) -> int:
        return self._take(_U32)

    def lsn(self) -> int:
        return self._take(_U64)

    def time(self) -> dt.datetime:
        return PG_EPOCH + dt.timedelta(microseconds=self._take(_I64))

    def byte(self) -> str:
        if self.pos >= len(self.data):
            raise SourceError(f"pgoutput message truncated at byte {self.pos} of {len(self.data)}")
        self.pos += 1
        return chr(self.data[self.pos - 1])

    def string(self) -> str:
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            raise SourceError(f"pgoutput string at byte {self.pos} is not terminated")
        text = self.data[self.pos:end].decode()
        self.pos = end + 1
        return text

    def raw(self, length: int) -> bytes:
        if length < 0 or self.pos + length > len(self.data):
            raise SourceError(f"pgoutput value of {length} bytes at byte {self.pos} overruns the message")
        chunk = self.data[self.pos:self.pos + length]
        self.pos += length
        return chunk

    def tuple(self) -> Tuple:
        """TupleData; the hot path of the whole source, so one tight loop over local names."""
        data, pos, end = self.data, self.pos, len(self.data)
        if pos + 2 > end:
            raise SourceError(f"pgoutput message truncated at byte {pos} of {end}")
        (count,) = _I16.unpack_from(data, pos)
        pos += 2
        values: list[Value] = []
        append, length_at = values.append, _I32.unpack_from
        for _ in range(count):
            if pos >= end:
                raise SourceError(f"pgoutput message truncated at byte {pos} of {end}")
            kind = data[pos]
            pos += 1
            if kind == 116:  # 't': text
                if pos + 4 > end:
                    raise SourceError(f"pgoutput message truncated at byte {pos} of {end}")
                (length,) = length_at(data, pos)
                pos += 4
                if length < 0 or pos + length > end:
                    raise SourceError(f"pgoutput value of {length} bytes at byte {pos} overruns the message")
                append(data[pos:pos + length].decode())
                pos += length
            elif kind == 110:  # 'n': null
                append(None)
            elif kind == 117:  # 'u': unchanged TOASTed value
                append(UNCHANGED)
            else:
                raise SourceError(f"pgoutput column value kind {chr(kind)!r} is not supported (binary is not "
                                  "requested)")
        self.pos = pos
        return tuple(values)

    def end(self, message: Message) -> Message:
        if self.pos != len(self.data):
            raise SourceError(f"{len(self.data) - self.pos} trailing byte(s) after a pgoutput "
                              f"{type(message).__name__} message")
        return message


def _relation(r: _Reader) -> Relation:
    relid, namespace, name, identity = r.u32(), r.string(), r.string(), r.byte()
    columns = tuple(Column(bool(r.i8() & 1), r.string(), r.u32(), r.i32()) for _ in range(r.i16()))
    return Relation(relid, namespace, name, identity, columns)


def _update(r: _Reader) -> Update:
    relid = r.u32()
    kind = r.byte()
    old_kind, old = None, None
    if kind in ("K", "O"):
        old_kind, old = kind, r.tuple()
        kind = r.byte()
    if kind != "N":
        raise SourceError(f"pgoutput update carries {kind!r} where the new tuple ('N') belongs")
    return Update(relid, old_kind, old, r.tuple())


def _delete(r: _Reader) -> Delete:
    relid, kind = r.u32(), r.byte()
    if kind not in ("K", "O"):
        raise SourceError(f"pgoutput delete carries {kind!r} where the old key or row belongs")
    return Delete(relid, kind, r.tuple())


def _insert(r: _Reader) -> Insert:
    relid, kind = r.u32(), r.byte()
    if kind != "N":
        raise SourceError(f"pgoutput insert carries {kind!r} where the new tuple ('N') belongs")
    return Insert(relid, r.tuple())


def _truncate(r: _Reader) -> Truncate:
    count, options = r.i32(), r.i8()
    return Truncate(tuple(r.u32() for _ in range(count)), bool(options & 1), bool(options & 2))


def _message(r: _Reader) -> LogicalMessage:
    flags, lsn, prefix = r.i8(), r.lsn(), r.string()
    return LogicalMessage(bool(flags & 1), lsn, prefix, r.raw(r.i32()))


def decode(payload: bytes) -> Message:
    """One pgoutput message (the payload of one XLogData frame)."""
    if not payload:
        raise SourceError("empty pgoutput message")
    r = _Reader(payload)
    tag = r.byte()
    message: Message
    if tag == "B":
        message = Begin(r.lsn(), r.time(), r.u32())
    elif tag == "C":
        r.i8()  # flags: unused, always 0
        message = Commit(r.lsn(), r.lsn(), r.time())
    elif tag == "O":
        message = Origin(r.lsn(), r.string())
    elif tag == "R":
        message = _relation(r)
    elif tag == "Y":
        message = TypeInfo(r.u32(), r.string(), r.string())
    elif tag == "I":
        message = _insert(r)
    elif tag == "U":
        message = _update(r)
    elif tag == "D":
        message = _delete(r)
    elif tag == "T":
        message = _truncate(r)
    elif tag == "M":
        message = _message(r)
    else:
        raise SourceError(f"unknown pgoutput message type {tag!r} (is the server newer than protocol 1 allows?)")
    return r.end(message)
