"""The producer's durable spool: an append-only write-ahead log of (partition key, record) frames.

Every event ``send()`` accepts is appended here *before* ``send()`` returns, and
the sender only ever reads from here. So the spool is both the buffer that rides
out a Kinesis outage and the reason a killed process loses nothing: there is no
second, memory-only path that a crash could empty.

On disk, a folder of segment files ``<index:016d>.seg``, each a sequence of frames
``[u32 payload length][u32 CRC-32 of payload][payload]`` with payload
``[u16 key length][partition key utf-8][record bytes]``, plus ``sent.json``: the
(segment, offset) below which Kinesis has accepted everything. Segments wholly
below that cursor are deleted.

Durability policy (``durability``):

* ``"fsync"`` (default): every accepting call (``append`` with one or many
  records) writes and fsyncs before it returns, so an accepted event survives a
  killed process *and* a power cut. Batch with ``send_many`` to share the fsync.
* ``"write"``: every accepting call hands its bytes to the OS before it returns
  (survives a killed process, not a power cut); segments are fsynced when they
  are closed.

Recovery: a frame cut short at the end of the newest segment belongs to a call
that never returned (the process died inside ``write``) and is truncated away; a
bad frame anywhere else is damage, refused with ``SpoolCorruptError`` rather than
skipped. A crash after Kinesis accepted a batch but before ``sent.json`` moved
re-sends that batch on restart: duplicates, which the consumer and merge drop by
``seq``; never loss.

One process owns a spool folder at a time (an ``flock`` on ``.lock``).
"""

from __future__ import annotations

import bisect
import fcntl
import itertools
import json
import os
import struct
import threading
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hybrid_ingest.errors import ConfigError, SpoolCorruptError, SpoolFullError

Durability = Literal["fsync", "write"]
FRAME = struct.Struct("<II")
KEY_LEN = struct.Struct("<H")
SEGMENT_SUFFIX = ".seg"
CURSOR_FILE = "sent.json"
LOCK_FILE = ".lock"
DEFAULT_MAX_BYTES = 1024**3
DEFAULT_SEGMENT_BYTES = 64 * 1024**2
TAIL_BYTES = 32 * 1024**2  # frames this process appended, kept for the sender (see ``Spool.read``)

Entry = tuple[str, bytes]


@dataclass(frozen=True, order=True)
class Cursor:
    """A position in the log: segment index and byte offset inside it."""

    segment: int
    offset: int


def encode_frame(partition_key: str, data: bytes) -> bytes:
    key = partition_key.encode()
    payload = KEY_LEN.pack(len(key)) + key + data
    return FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def decode_payload(payload: bytes) -> Entry:
    (key_len,) = KEY_LEN.unpack_from(payload)
    start = KEY_LEN.size
    return payload[start:start + key_len].decode(), payload[start + key_len:]


def _segment_name(index: int) -> str:
    return f"{index:016d}{SEGMENT_SUFFIX}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class _Appended:
    """One ``append`` as it went to disk: where it starts and the offset just past each of its frames."""

    start: Cursor
    entries: Sequence[Entry]
    ends: list[int]

    @property
    def end(self) -> Cursor:
        return Cursor(self.start.segment, self.ends[-1])


@dataclass(frozen=True)
class Batch:
    """Frames read from the log: their entries and the cursor just past the last one."""

    entries: list[Entry]
    end: Cursor
    nbytes: int


class Spool:
    """The write-ahead log; ``append`` is called by producers, ``read``/``commit`` by the one sender."""

    def __init__(self, directory: Path, max_bytes: int = DEFAULT_MAX_BYTES,
                 segment_bytes: int = DEFAULT_SEGMENT_BYTES, durability: Durability = "fsync") -> None:
        if durability not in ("fsync", "write"):
            raise ConfigError(f"spool durability must be 'fsync' or 'write', got {durability!r}")
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.durability = durability
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise ConfigError(f"spool {directory} is in use by another producer process") from None
        self._sizes: dict[int, int] = {}
        self._tail: deque[_Appended] = deque()
        self._tail_bytes = 0
        self.pending_count = 0
        try:
            self.sent = self._read_cursor()
            self._recover()
        except BaseException:
            os.close(self._lock_fd)
            raise
        last = max(self._sizes) if self._sizes else self.sent.segment
        self._active = last
        self._sizes.setdefault(last, 0)
        self._fd = os.open(self._path(last), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    # -- recovery ----------------------------------------------------------------------------------

    def _path(self, index: int) -> Path:
        return self.directory / _segment_name(index)

    def _read_cursor(self) -> Cursor:
        path = self.directory / CURSOR_FILE
        if not path.exists():
            return Cursor(0, 0)
        doc = json.loads(path.read_text())
        return Cursor(int(doc["segment"]), int(doc["offset"]))

    def _recover(self) -> None:
        """Drop segments already sent, count pending frames, truncate a torn tail of the newest segment."""
        indexes = sorted(int(p.name.removesuffix(SEGMENT_SUFFIX)) for p in self.directory.glob(f"*{SEGMENT_SUFFIX}"))
        for index in indexes:
            if index < self.sent.segment:
                self._path(index).unlink()
        live = [i for i in indexes if i >= self.sent.segment]
        for index in live:
            path = self._path(index)
            start = self.sent.offset if index == self.sent.segment else 0
            count, valid_end = self._scan(path, start)
            size = path.stat().st_size
            if valid_end != size:
                if index != live[-1]:
                    raise SpoolCorruptError(
                        f"spool segment {path} is damaged at byte {valid_end} of {size}; move it aside to "
                        "let the producer start (its events after that point are not recoverable from it)"
                    )
                with path.open("r+b") as f:
                    f.truncate(valid_end)
                    os.fsync(f.fileno())
            self._sizes[index] = valid_end
            self.pending_count += count

    @staticmethod
    def _scan(path: Path, start: int) -> tuple[int, int]:
        """(complete valid frames from ``start``, offset just past the last one)."""
        count = 0
        offset = start
        with path.open("rb") as f:
            f.seek(start)
            while True:
                header = f.read(FRAME.size)
                if len(header) < FRAME.size:
                    return count, offset
                length, crc = FRAME.unpack(header)
                payload = f.read(length)
                if len(payload) < length or zlib.crc32(payload) != crc:
                    return count, offset
                count += 1
                offset += FRAME.size + length

    # -- producer side -----------------------------------------------------------------------------

    @property
    def pending_bytes(self) -> int:
        """Bytes of frames not yet accepted by Kinesis (what ``max_bytes`` bounds)."""
        return sum(size for index, size in self._sizes.items() if index >= self.sent.segment) - self.sent.offset

    def append(self, entries: Sequence[Entry]) -> None:
        """Make ``entries`` durable (per the policy) in order, or refuse them all with SpoolFullError."""
        if not entries:
            return
        frames = [encode_frame(pk, record) for pk, record in entries]
        data = b"".join(frames)
        with self._lock:
            if self.pending_bytes + len(data) > self.max_bytes:
                raise SpoolFullError(
                    f"producer spool {self.directory} holds {self.pending_bytes} unsent bytes; accepting "
                    f"{len(data)} more would pass its limit of {self.max_bytes} (is Kinesis reachable?)"
                )
            if self._sizes[self._active] and self._sizes[self._active] + len(data) > self.segment_bytes:
                self._roll()
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            if self.durability == "fsync":
                os.fsync(self._fd)
            start = Cursor(self._active, self._sizes[self._active])
            self._sizes[self._active] += len(data)
            self.pending_count += len(entries)
            ends = list(itertools.accumulate(map(len, frames), initial=start.offset))[1:]
            self._keep_tail(_Appended(start, list(entries), ends))  # a copy: the caller may reuse its list

    def _keep_tail(self, appended: _Appended) -> None:
        self._tail.append(appended)
        self._tail_bytes += appended.ends[-1] - appended.start.offset
        while self._tail_bytes > TAIL_BYTES and len(self._tail) > 1:
            dropped = self._tail.popleft()
            self._tail_bytes -= dropped.ends[-1] - dropped.start.offset

    def _roll(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)
        self._active += 1
        self._sizes[self._active] = 0
        self._fd = os.open(self._path(self._active), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if self.durability == "fsync":
            _fsync_dir(self.directory)

    # -- sender side -------------------------------------------------------------------------------

    def end(self) -> Cursor:
        with self._lock:
            return Cursor(self._active, self._sizes[self._active])

    def read(self, start: Cursor, max_bytes: int, max_count: int) -> Batch:
        """Frames from ``start`` up to the appended end, stopping after ``max_bytes`` or ``max_count``.

        What this process appended recently (``TAIL_BYTES``) is handed over as the entries it
        appended, which the disk holds frame for frame (they were written, and fsynced under
        that policy, before ``append`` returned): the sender does not read back and parse what
        it was just given. Older frames, and everything after a restart, are read from disk.
        """
        cached = self._read_tail(start, max_bytes, max_count)
        if cached is not None:
            return cached
        end = self.end()
        entries: list[Entry] = []
        nbytes = 0
        cursor = start
        while cursor < end and len(entries) < max_count and nbytes < max_bytes:
            limit = end.offset if cursor.segment == end.segment else self._sizes[cursor.segment]
            if cursor.offset >= limit:
                cursor = Cursor(cursor.segment + 1, 0)
                continue
            with self._path(cursor.segment).open("rb", buffering=1024 * 1024) as f:
                f.seek(cursor.offset)
                offset = cursor.offset
                while offset < limit and len(entries) < max_count and nbytes < max_bytes:
                    length, crc = FRAME.unpack(f.read(FRAME.size))
                    payload = f.read(length)
                    if zlib.crc32(payload) != crc:
                        raise SpoolCorruptError(f"spool segment {self._path(cursor.segment)} changed under "
                                                f"the producer at byte {offset}")
                    entries.append(decode_payload(payload))
                    offset += FRAME.size + length
                    nbytes += FRAME.size + length
            cursor = Cursor(cursor.segment, offset)
            if offset >= limit and cursor.segment < end.segment:
                cursor = Cursor(cursor.segment + 1, 0)
        return Batch(entries, cursor, nbytes)

    def _read_tail(self, start: Cursor, max_bytes: int, max_count: int) -> Batch | None:
        """``read`` from the appended entries kept in memory, or None if ``start`` is not among them."""
        with self._lock:
            if start.segment < self._active and start.offset >= self._sizes.get(start.segment, 0):
                start = Cursor(start.segment + 1, 0)  # the end of a full segment is the start of the next
            index = next((i for i, a in enumerate(self._tail)
                          if a.start.segment == start.segment and a.start.offset <= start.offset < a.ends[-1]), None)
            if index is None:
                return None
            appended = self._tail[index]
            first = bisect.bisect_right(appended.ends, start.offset)
            if (appended.ends[first - 1] if first else appended.start.offset) != start.offset:
                return None  # not at a frame boundary: let the disk path say what is there
            entries: list[Entry] = []
            nbytes = 0
            cursor = start
            # appends follow each other on disk: each starts where the last ended, or at a new segment
            for appended in itertools.islice(self._tail, index, None):
                offset = cursor.offset if appended.start.segment == cursor.segment else 0
                position = first
                while position < len(appended.ends) and len(entries) < max_count and nbytes < max_bytes:
                    entries.append(appended.entries[position])
                    nbytes += appended.ends[position] - offset
                    offset = appended.ends[position]
                    position += 1
                cursor = Cursor(appended.start.segment, offset)
                first = 0
                if position < len(appended.ends):
                    break
            return Batch(entries, cursor, nbytes)

    def commit(self, batch: Batch) -> None:
        """Record that Kinesis accepted everything up to ``batch.end``; delete segments wholly below it."""
        path = self.directory / CURSOR_FILE
        tmp = path.with_name(f".{CURSOR_FILE}.tmp")
        with tmp.open("w") as f:
            json.dump({"segment": batch.end.segment, "offset": batch.end.offset}, f)
            if self.durability == "fsync":
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        with self._lock:
            self.sent = batch.end
            self.pending_count -= len(batch.entries)
            while self._tail and self._tail[0].end <= batch.end:
                dropped = self._tail.popleft()
                self._tail_bytes -= dropped.ends[-1] - dropped.start.offset
            for index in [i for i in self._sizes if i < batch.end.segment]:
                del self._sizes[index]
                self._path(index).unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            os.fsync(self._fd)
            os.close(self._fd)
            os.close(self._lock_fd)
