"""One transaction's change events, collapsed to the last one per key until the commit arrives.

Every event of a transaction carries the same seq (its commit LSN, see
``producers.postgres.lsn``), so only a key's last change may leave the
transaction. Events are kept encoded (partition key -> Avro bytes); the
partition key names the table and the key, so it is the collapsing key too.

Memory is bounded: past ``max_keys`` distinct keys the buffer moves to an SQLite
file in the source's work folder (Python's own ``sqlite3``; ``INSERT OR
REPLACE`` by key does the collapsing there), so a bulk update of millions of
rows in one transaction costs disk, not memory.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

from producers.spool import Entry

SPILL_FILE = "transaction.sqlite"


class TxnBuffer:
    """Per key the last event of the open transaction: ``put``, ``drop_table``, ``entries``, ``clear``."""

    def __init__(self, spill_dir: Path, max_keys: int = 200_000) -> None:
        self.spill_path = spill_dir / SPILL_FILE
        self.max_keys = max_keys
        self._memory: dict[str, tuple[str, bytes]] = {}
        self._db: sqlite3.Connection | None = None

    @property
    def spilled(self) -> bool:
        return self._db is not None

    def __len__(self) -> int:
        if self._db is None:
            return len(self._memory)
        return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])

    def put(self, table: str, entry: Entry) -> None:
        """Keep ``entry`` as the key's last event (its partition key names table and key)."""
        if self._db is not None:
            self._db.execute("INSERT OR REPLACE INTO events VALUES (?, ?, ?)", (entry[0], table, entry[1]))
            return
        self._memory[entry[0]] = (table, entry[1])
        if len(self._memory) > self.max_keys:
            self._spill()

    def _spill(self) -> None:
        self.spill_path.parent.mkdir(parents=True, exist_ok=True)
        self.spill_path.unlink(missing_ok=True)
        db = sqlite3.connect(self.spill_path, isolation_level=None)
        db.execute("PRAGMA journal_mode = OFF")
        db.execute("PRAGMA synchronous = OFF")  # a crash loses the open transaction, which the slot re-sends
        db.execute("CREATE TABLE events (pk TEXT PRIMARY KEY, tbl TEXT NOT NULL, data BLOB NOT NULL)")
        db.execute("BEGIN")
        db.executemany("INSERT INTO events VALUES (?, ?, ?)",
                       ((pk, table, data) for pk, (table, data) in self._memory.items()))
        self._memory.clear()
        self._db = db

    def drop_table(self, table: str) -> None:
        """Forget the table's events so far (a TRUNCATE inside the transaction)."""
        if self._db is not None:
            self._db.execute("DELETE FROM events WHERE tbl = ?", (table,))
            return
        self._memory = {pk: v for pk, v in self._memory.items() if v[0] != table}

    def entries(self, batch: int = 10_000) -> Iterator[tuple[str, Entry]]:
        """``(table, entry)`` for every kept event, in no particular order (keys are independent)."""
        if self._db is None:
            for pk, (table, data) in self._memory.items():
                yield table, (pk, data)
            return
        cursor = self._db.execute("SELECT pk, tbl, data FROM events")
        while rows := cursor.fetchmany(batch):
            for pk, table, data in rows:
                yield table, (pk, data)

    def clear(self) -> None:
        self._memory = {}
        if self._db is not None:
            self._db.close()
            self._db = None
            self.spill_path.unlink(missing_ok=True)
