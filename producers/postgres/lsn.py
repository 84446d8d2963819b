"""WAL positions (LSNs) and how they become change-event ``seq`` values.

**seq = the commit LSN of the change's transaction**, one event per key per
transaction (the transaction's changes are collapsed per key, the last one
winning: ``producers.postgres.txn``). Why that is exactly the order DESIGN.md
asks for:

* Two transactions that change the same row are serialised by the row lock: the
  second one's commit record is written after the first one's, so per key the
  commit LSN grows in commit order. A change's *own* WAL position would not do: a
  transaction can write a row before another one commits and commit after it.
* Logical decoding sends a transaction only if its commit record starts at or
  after the slot's consistent point ``C``; the snapshot exported with the slot
  sees exactly the transactions that committed before ``C``. So the snapshot
  lands at ``as_of_seq = C - 1`` and every streamed change has ``seq >= C``:
  the full extract and the stream split the history at the same point.
* Several changes of one key in one transaction share the commit LSN; collapsing
  them per key leaves one event, the last change, so no two events of a key tie.

Why not distinct seqs per change (``commit_lsn << k | index``)? An LSN is a byte
position in a 64-bit WAL address space, and seq is a signed 64-bit long: any
``k`` bits taken for the index cap the WAL a database may ever have written at
``2**(63-k)`` bytes (k = 16 caps it at 128 TiB: weeks for a busy server), and a
transaction with more than ``2**k`` changes would still need a fallback. The
commit LSN alone fits while the server has written less than 8 EiB of WAL
(``seq_of`` refuses beyond that rather than wrap).
"""

from __future__ import annotations

import re

from hybrid_ingest.errors import SourceError

MAX_SEQ = 2**63 - 1
_TEXT = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")


def parse_lsn(text: str) -> int:
    """``'16/B374D848'`` (PostgreSQL's text form) as an integer."""
    match = _TEXT.fullmatch(text.strip())
    if match is None:
        raise SourceError(f"not a PostgreSQL LSN: {text!r}")
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def seq_of(commit_lsn: int) -> int:
    """The seq of every event of the transaction whose commit record starts at ``commit_lsn``."""
    if not 0 < commit_lsn <= MAX_SEQ:
        raise SourceError(f"commit LSN {format_lsn(commit_lsn)} does not fit a seq (a signed 64-bit long)")
    return commit_lsn


def snapshot_seq(consistent_point: int) -> int:
    """The ``as_of_seq`` of a snapshot exported at ``consistent_point``: just below every streamed seq."""
    return seq_of(consistent_point) - 1
