"""The spool on its own: order, segment rolling, restart, torn tails, damage, ownership, limits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
