"""The source's own record in the state store: what it set up, how far it got, how far behind it is.

Written before each step that creates something in the database, so a restart
knows what is its own: ``setup`` (publication and slot may exist, half made),
``snapshot`` (slot created; the snapshot is being landed), ``streaming`` (the
snapshot landed; changes flow from the slot). A restart in ``setup`` or
``snapshot`` drops the slot and starts over: an exported snapshot dies with the
connection that created the slot, so a half-landed snapshot cannot be resumed,
only redone (complete extracts landed by the first attempt are older full
extracts, superseded by the new one). Writes are compare-and-set on the
record's version, which also fences a second process started on the same slot.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from hybrid_ingest.state import StateStore
from producers.postgres.catalog import TableRef
from producers.postgres.lsn import parse_lsn

PHASES = ("setup", "snapshot", "streaming")


@dataclass
class Progress:
    confirmed_lsn: str = ""
    server_lsn: str = ""
    lag_bytes: int = 0
    lag_seconds: float = 0.0
    transactions: int = 0
    events: int = 0


@dataclass
class SourceRecord:
    slot: str
    publication: str
    system_id: str
    database: str
    tables: list[TableRef]
    phase: str = "setup"
    consistent_lsn: str = ""
    as_of_seq: int | None = None
    extracts: dict[str, str] = field(default_factory=dict)
    progress: Progress = field(default_factory=Progress)
    version: int = 0

    @property
    def name(self) -> str:
        return record_name(self.slot)

    @property
    def consistent_point(self) -> int:
        return parse_lsn(self.consistent_lsn)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("version")
        doc["kind"] = "postgres"
        doc["tables"] = [t.to_json() for t in self.tables]
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any], version: int) -> SourceRecord:
        return cls(slot=doc["slot"], publication=doc["publication"], system_id=doc["system_id"],
                   database=doc["database"], tables=[TableRef.from_json(t) for t in doc["tables"]],
                   phase=doc["phase"], consistent_lsn=doc["consistent_lsn"], as_of_seq=doc["as_of_seq"],
                   extracts=dict(doc["extracts"]), progress=Progress(**doc["progress"]), version=version)


def record_name(slot: str) -> str:
    return f"postgres:{slot}"


def load(store: StateStore, slot: str) -> SourceRecord | None:
    found = store.source(record_name(slot))
    return None if found is None else SourceRecord.from_json(*found)


def save(store: StateStore, record: SourceRecord) -> None:
    record.version = store.put_source(record.name, record.to_json(), record.version)
