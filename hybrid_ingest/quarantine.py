"""Extracts the merge holds back, and their release: one record per held extract under ``dlq/merge/``.

An extract the merge will not take stays where it landed (the merge never
writes landing/) and gets a record at ``dlq/merge/<reason>/<table>-<extract_id>.json``
with the reason in words and, for the guard's findings, the numbers behind it.
The record is also what keeps the extract out of every later run
(``glue_jobs.inputs``), so nothing is dead-lettered twice and nothing is dropped:

* ``bad-manifest``: the manifest is missing, malformed or does not match its parts;
* ``duplicate-keys``: the extract holds a primary key twice (``hybrid_ingest.extract_keys``);
* ``suspicious-extract``: a full extract that would delete more than
  ``max_full_extract_delete_fraction`` of the table's live rows, or an extract
  whose ``as_of_seq`` is more than ``max_as_of_seq_ahead`` past the highest seq the
  table has seen (``glue_jobs.guard``).

``release`` is the operator's way back (``hybrid-ingest bulk release``): it
records the release in the state store (who, when, the record it ends, and
whether a mass delete is allowed) and then removes the record, so the next run
reads the extract again. The override covers the manifest as it was released
(its SHA-256): a manifest edited afterwards is judged afresh.
"""

from __future__ import annotations

import datetime as dt
import getpass
from dataclasses import dataclass, field
from typing import Any

from hybrid_ingest import layout
from hybrid_ingest.errors import (
    DuplicateKeyError,
    HybridIngestError,
    ManifestError,
    SuspiciousExtractError,
)
from hybrid_ingest.lake import Lake
from hybrid_ingest.manifest import manifest_sha256
from hybrid_ingest.state import StateStore

STAGE = "merge"
REASONS = (ManifestError.reason, DuplicateKeyError.reason, SuspiciousExtractError.reason)


@dataclass(frozen=True)
class HeldExtract:
    table: str
    extract_id: str
    reason: str
    error: str
    at: str
    figures: dict[str, Any] = field(default_factory=dict)


def record_path(reason: str, table: str, extract_id: str) -> str:
    return layout.dlq_file(STAGE, reason, f"{table}-{extract_id}.json")


def hold(lake: Lake, table: str, extract_id: str, error: HybridIngestError, now: dt.datetime,
         figures: dict[str, Any] | None = None) -> str:
    """Record why ``extract_id`` is held; returns the record's path."""
    doc: dict[str, Any] = {
        "stage": STAGE, "reason": error.reason, "table": table, "extract_id": extract_id, "error": str(error),
        "at": now.isoformat(), "manifest": layout.manifest_path(table, extract_id),
        "release": f"hybrid-ingest bulk release {table} {extract_id}"
                   + (" --allow-mass-delete" if error.reason == SuspiciousExtractError.reason else ""),
    }
    if figures is not None:
        doc["figures"] = figures
    return lake.write_json(record_path(error.reason, table, extract_id), doc)


def held_reason(lake: Lake, table: str, extract_id: str) -> str | None:
    """The reason ``extract_id`` is held for, or None if it is not held."""
    return next((r for r in REASONS if lake.exists(record_path(r, table, extract_id))), None)


def held(lake: Lake, table: str | None = None) -> list[HeldExtract]:
    """Every held extract (of ``table``), oldest record first."""
    out: list[HeldExtract] = []
    for reason in REASONS:
        for info in lake.files(layout.dlq_dir(STAGE, reason), ".json", recursive=False):
            owner, _, extract_id = info.base_name.removesuffix(".json").partition("-")
            if table is not None and owner != table:
                continue
            doc = lake.read_json(lake.rel(info.path))
            out.append(HeldExtract(str(doc.get("table", owner)), str(doc.get("extract_id", extract_id)), reason,
                                   str(doc.get("error", "")), str(doc.get("at", "")), dict(doc.get("figures") or {})))
    return sorted(out, key=lambda h: (h.at, h.table, h.extract_id))


def release(lake: Lake, store: StateStore, table: str, extract_id: str, allow_mass_delete: bool,
            now: dt.datetime | None = None) -> HeldExtract:
    """Let the next run merge a held extract again; ``allow_mass_delete`` lets it pass the guard's numbers."""
    found = [h for h in held(lake, table) if h.extract_id == extract_id]
    if not found:
        raise HybridIngestError(f"extract {table}/{extract_id} is not held (no record under dlq/{STAGE}/): "
                                "nothing to release (`hybrid-ingest status` lists held extracts)")
    if not lake.exists(layout.manifest_path(table, extract_id)):
        raise ManifestError(f"extract {table}/{extract_id} has no manifest in landing/ any more: "
                            "land it again instead")
    entry = found[0]
    stamp = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    store.put_release(table, extract_id, {
        "allow_mass_delete": allow_mass_delete, "manifest_sha256": manifest_sha256(lake, table, extract_id),
        "released_at": stamp.isoformat(), "released_by": _user(), "held_as": entry.reason, "error": entry.error,
        "figures": entry.figures,
    })
    lake.delete_file(record_path(entry.reason, table, extract_id))
    return entry


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in the environment and no passwd entry
        return "unknown"
