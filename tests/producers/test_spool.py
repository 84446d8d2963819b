"""The spool on its own: order, segment rolling, restart, torn tails, damage, ownership, limits."""

from __future__ import annotations

import os
import tempfile
from collections import deque
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybrid_ingest.errors import ConfigError, SpoolCorruptError, SpoolFullError
from producers.spool import FRAME, Cursor, Spool, encode_frame


def entries(start: int, n: int) -> list[tuple[str, bytes]]:
    return [(f"t|{i}", f"record-{i}".encode() * (1 + i % 5)) for i in range(start, start + n)]


def segments(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.seg"))


def test_append_read_commit_across_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=400)
    for i in range(0, 60, 6):
        spool.append(entries(i, 6))
    assert spool.pending_count == 60
    assert len(segments(tmp_path)) > 3
    first = spool.read(spool.sent, max_bytes=10**9, max_count=25)
    assert first.entries == entries(0, 25)
    spool.commit(first)
    assert spool.pending_count == 35
    assert len(segments(tmp_path)) < 10
    rest = spool.read(spool.sent, max_bytes=10**9, max_count=10**9)
    assert rest.entries == entries(25, 35)
    spool.commit(rest)
    assert spool.pending_count == 0
    assert spool.pending_bytes == 0
    assert len(segments(tmp_path)) == 1


def test_restart_resumes_after_the_sent_cursor(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=300)
    spool.append(entries(0, 30))
    spool.commit(spool.read(spool.sent, 10**9, 12))
    spool.close()
    again = Spool(tmp_path, segment_bytes=300)
    assert again.pending_count == 18
    again.append(entries(30, 5))
    assert again.read(again.sent, 10**9, 10**9).entries == entries(12, 23)


def test_torn_tail_is_truncated_on_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(entries(0, 3))
    spool.close()
    seg = tmp_path / segments(tmp_path)[-1]
    whole = seg.stat().st_size
    with seg.open("ab") as f:  # a process killed inside write(): half a frame
        f.write(encode_frame("t|99", b"never acknowledged")[:-5])
    again = Spool(tmp_path)
    assert again.pending_count == 3
    assert seg.stat().st_size == whole
    again.append(entries(3, 1))
    assert again.read(again.sent, 10**9, 10**9).entries == entries(0, 4)


def test_damage_before_the_newest_segment_is_refused(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=100)
    for i in range(6):
        spool.append(entries(i, 1))
    spool.close()
    first = tmp_path / segments(tmp_path)[0]
    data = bytearray(first.read_bytes())
    data[FRAME.size + 2] ^= 0xFF
    first.write_bytes(bytes(data))
    with pytest.raises(SpoolCorruptError, match="damaged at byte 0"):
        Spool(tmp_path, segment_bytes=100)


def test_one_owner_at_a_time(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    with pytest.raises(ConfigError, match="in use by another producer"):
        Spool(tmp_path)
    spool.close()
    Spool(tmp_path).close()


def test_limit_refuses_whole_call_and_frees_after_commit(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=200)
    spool.append(entries(0, 4))
    used = spool.pending_bytes
    with pytest.raises(SpoolFullError):
        spool.append(entries(4, 10))
    assert spool.pending_bytes == used
    assert spool.pending_count == 4
    spool.commit(spool.read(spool.sent, 10**9, 10**9))
    spool.append(entries(4, 4))
    assert spool.read(spool.sent, 10**9, 10**9).entries == entries(4, 4)


def test_read_never_passes_the_appended_end(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    assert spool.read(Cursor(0, 0), 10**9, 10**9).entries == []
    spool.append(entries(0, 2))
    batch = spool.read(Cursor(0, 0), 10**9, 10**9)
    assert batch.end == spool.end()
    assert batch.end.offset == os.path.getsize(tmp_path / segments(tmp_path)[0])


@settings(max_examples=150)
@given(st.lists(st.one_of(
    st.tuples(st.just("append"), st.integers(1, 8), st.integers(0, 300)),
    st.tuples(st.just("read"), st.integers(1, 2000), st.integers(1, 20))), max_size=40),
    st.integers(200, 3000), st.integers(100, 5000))
def test_reading_what_this_process_appended_is_reading_it_from_disk(
        operations: list[tuple[str, int, int]], segment_bytes: int, tail_bytes: int) -> None:
    """The sender is handed recent appends from memory: the same entries, end and size as the disk gives."""
    import producers.spool as spool_module

    with tempfile.TemporaryDirectory() as tmp:
        original = spool_module.TAIL_BYTES
        spool_module.TAIL_BYTES = tail_bytes
        spool = Spool(Path(tmp), segment_bytes=segment_bytes, durability="write")
        try:
            counter = 0
            for kind, a, b in operations:
                if kind == "append":
                    spool.append([(f"t|{counter + i}", bytes([i]) * (b + i)) for i in range(a)])
                    counter += a
                    continue
                kept = spool._tail
                spool._tail = deque()  # the disk path: what a restarted sender would read
                disk = spool.read(spool.sent, max_bytes=a, max_count=b)
                spool._tail = kept
                assert spool.read(spool.sent, max_bytes=a, max_count=b) == disk
                spool.commit(disk)
        finally:
            spool_module.TAIL_BYTES = original
            spool.close()
