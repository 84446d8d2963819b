"""Retention of a curated table: Iceberg snapshot expiry, then removal of files no snapshot names.

Snapshots older than the window are expired (never the current one), so time
travel works within the window. Then every file under the table's ``data/``,
``tombstones/`` and manifest files under ``metadata/`` that no remaining
snapshot references and that is older than the window is deleted: replaced
partitions' files, expired snapshots' manifests, and what a killed run wrote
but never committed (younger files are left alone: a running merge may be about
to commit them). Iceberg's own metadata JSON files are kept in check by the
table property ``write.metadata.delete-after-commit.enabled``.
"""

from __future__ import annotations

import datetime as dt
import logging

import pyarrow.fs as pafs
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from hybrid_ingest import iceberg, layout
from hybrid_ingest.lake import Lake

LOGGER = logging.getLogger("glue_jobs.retention")


def expire_snapshots(table: Table, cutoff: dt.datetime) -> tuple[Table, int]:
    """Expire every snapshot older than ``cutoff`` but the current one; returns the table after, and how many."""
    current = table.current_snapshot()
    cutoff_ms = int(cutoff.timestamp() * 1000)
    old = [s.snapshot_id for s in table.snapshots()
           if s.timestamp_ms < cutoff_ms and (current is None or s.snapshot_id != current.snapshot_id)]
    if not old:
        return table, 0
    try:
        table.maintenance.expire_snapshots().by_ids(old).commit()
    except CommitFailedException as exc:  # a merge committed meanwhile: the next run expires them
        LOGGER.warning("snapshot expiry of %s deferred: %s", table.name(), exc)
        return table, 0
    return table.refresh(), len(old)


def referenced(table: Table, lake: Lake) -> set[str]:
    """Lake-relative paths of every file a remaining snapshot needs: data, tombstones, manifests."""
    out: set[str] = set()
    seen: set[str] = set()  # snapshots share manifests: read each once
    base = iceberg.lake_rel(lake, iceberg.table_uri(table))
    for snapshot in table.snapshots():
        out.add(iceberg.lake_rel(lake, snapshot.manifest_list))
        for manifest in snapshot.manifests(table.io):
            if manifest.manifest_path in seen:
                continue
            seen.add(manifest.manifest_path)
            out.add(iceberg.lake_rel(lake, manifest.manifest_path))
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                out.add(iceberg.lake_rel(lake, entry.data_file.file_path))
        state = iceberg.merge_state(table, snapshot)
        if state is not None:
            out.update(f"{base}/{rel}" for rel in state.tombstones)
    return out


def remove_unreferenced(table: Table, lake: Lake, spec_table: str, cutoff: dt.datetime) -> int:
    """Delete the table's files no remaining snapshot references, last modified before ``cutoff``.

    The folders are listed first: when no file is old enough to go, no manifest
    is read (a young table, or one whose files all changed within the window).
    """
    candidates = []
    for folder, suffix in ((layout.curated_data_dir(spec_table), ""), (layout.tombstones_dir(spec_table), ""),
                           (layout.curated_metadata_dir(spec_table), ".avro")):
        selector = pafs.FileSelector(lake.path(folder), allow_not_found=True, recursive=True)
        candidates += [info for info in lake.fs.get_file_info(selector)
                       if info.type == pafs.FileType.File and info.path.endswith(suffix)
                       and info.mtime is not None and info.mtime.astimezone(dt.UTC) < cutoff]
    if not candidates:
        return 0
    keep = referenced(table, lake)
    deleted = 0
    for info in candidates:
        if lake.rel(info.path) not in keep:
            lake.fs.delete_file(info.path)
            deleted += 1
    return deleted


def retain(table: Table, lake: Lake, spec_table: str, now: dt.datetime, hours: float) -> tuple[int, int]:
    """Expire old snapshots, then remove unreferenced files; returns (snapshots expired, files deleted)."""
    cutoff = now - dt.timedelta(hours=hours)
    table, expired = expire_snapshots(table, cutoff)
    return expired, remove_unreferenced(table, lake, spec_table, cutoff)
