"""The reference merge: DESIGN.md's merge rules as a few lines of plain Python.

Written from the design text alone (it imports nothing from ``glue_jobs``), so a
property test that ends ``curated == oracle`` checks the merge against the rules
and not against itself. Rows are plain dicts in the JSON spelling producers use
(dates and timestamps as ISO strings, decimals as strings).

Decisions where DESIGN.md leaves room, and why:

* A delete stores a tombstone ``(key, seq)``: any later-arriving change at or
  below that seq is stale. Retention is unbounded here (tests run well inside
  the real retention window).
* A ``full`` extract at ``N`` raises the table's *floor* to ``N``: it is the
  complete table as of ``N``, so every key it lacks was absent at ``N``. Keys
  stored at ``<= N`` and absent from it are deleted, and any change at ``<= N``
  that arrives later (for a key it lacks, or one it has) is stale as well: the
  extract already accounts for it. This reading makes the rules commutative:
  merging the same multiset of changes in any order, batching or duplication
  ends in the same state, which is what lets a test compare a merge run with
  the oracle after every run and not only at the end.
* An ``incremental`` extract at ``N`` is a set of snapshot reads (op ``r``) at
  seq ``N``: each row upserts if ``N`` is above what the key holds.
* Columns added by a schema evolution are filled with their Avro default in rows
  last written before the evolution (``project``), as the merge's projection of
  old raw files does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Key = tuple[Any, ...]
Row = dict[str, Any]


@dataclass(frozen=True)
class Change:
    """One change event as the stream carries it: op c/u/d/r, the source seq, the row (key-only for d)."""

    op: str
    seq: int
    row: Mapping[str, Any]


@dataclass(frozen=True)
class Extract:
    """A landed bulk extract: every row is the table's content as of ``as_of_seq``."""

    mode: str
    as_of_seq: int
    rows: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class Entry:
    """What the table holds for a key: the winning seq and its row, or None for a tombstone."""

    seq: int
    row: Row | None


@dataclass
class TableOracle:
    """One table's expected curated state, built by applying changes and extracts in any order."""

    keys: tuple[str, ...]
    entries: dict[Key, Entry] = field(default_factory=dict)
    floor: int = -1

    def key_of(self, row: Mapping[str, Any]) -> Key:
        missing = [k for k in self.keys if row.get(k) is None]
        if missing:
            raise ValueError(f"row {dict(row)!r} lacks key fields {missing}")
        return tuple(row[k] for k in self.keys)

    def _upsert(self, key: Key, seq: int, row: Row | None) -> bool:
        if seq <= self.floor:
            return False
        held = self.entries.get(key)
        if held is not None and held.seq >= seq:
            return False
        self.entries[key] = Entry(seq, row)
        return True

    def apply(self, change: Change) -> bool:
        """Apply one change; False when it is a duplicate or stale (it changes nothing)."""
        if change.op not in ("c", "u", "d", "r"):
            raise ValueError(f"unknown op {change.op!r}")
        key = self.key_of(change.row)
        return self._upsert(key, change.seq, None if change.op == "d" else dict(change.row))

    def apply_extract(self, extract: Extract) -> None:
        if extract.mode == "incremental":
            for row in extract.rows:
                self._upsert(self.key_of(row), extract.as_of_seq, dict(row))
            return
        if extract.mode != "full":
            raise ValueError(f"unknown extract mode {extract.mode!r}")
        n = extract.as_of_seq
        if n <= self.floor:
            return  # an older full extract: everything in it is already superseded
        present = {self.key_of(row): row for row in extract.rows}
        for key, entry in list(self.entries.items()):
            if entry.seq <= n and key not in present:
                del self.entries[key]  # absent at N (rows and tombstones): the floor now stands for it
        for key, row in present.items():
            held = self.entries.get(key)
            if held is None or held.seq < n:
                self.entries[key] = Entry(n, dict(row))
        self.floor = n

    def apply_all(self, items: Iterable[Change | Extract]) -> TableOracle:
        for item in items:
            if isinstance(item, Change):
                self.apply(item)
            else:
                self.apply_extract(item)
        return self

    def live(self) -> dict[Key, Entry]:
        """Keys that have a row (tombstones left out)."""
        return {k: e for k, e in self.entries.items() if e.row is not None}

    def project(self, defaults: Mapping[str, Any]) -> dict[Key, tuple[int, Row]]:
        """The live rows with every column of the newest schema, absent ones filled with their defaults."""
        out: dict[Key, tuple[int, Row]] = {}
        for key, entry in self.live().items():
            assert entry.row is not None
            out[key] = (entry.seq, {**defaults, **entry.row} if defaults else dict(entry.row))
        return out


def expected_state(keys: Sequence[str], items: Iterable[Change | Extract],
                   defaults: Mapping[str, Any] | None = None) -> dict[Key, tuple[int, Row]]:
    """The curated table the rules demand after merging ``items`` (in whatever order they came)."""
    return TableOracle(tuple(keys)).apply_all(items).project(defaults or {})
