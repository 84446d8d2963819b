"""A ``TRUNCATE`` as what it means for the lake table: a full extract of what the table holds after it.

A truncate empties the table as of its transaction's commit; rows the same
transaction inserted afterwards are all the table holds then. So the truncated
table's events of that transaction (already collapsed per key) become one full
extract at the commit's seq instead of stream events: the merge deletes every
key it lacks whose seq is at most that, and later changes apply on top.

Deleting (nearly) every row is what a truncate means, so its extract carries
``allow_mass_delete``: the merge's extract guard would otherwise hold it as a
mass delete (``glue_jobs.guard``). Its seq is the truncate's commit LSN, read
from the server's own WAL stream, not a number anyone typed. The source's
snapshot extract carries no such flag: on a new table it deletes nothing, and a
snapshot that would replace most of an existing lake table usually means the
wrong database or table, which is what the guard is there to catch.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from hybrid_ingest.convert import arrow_schema
from hybrid_ingest.lake import Lake
from hybrid_ingest.manifest import Manifest
from hybrid_ingest.registry import Registry, SchemaVersion
from hybrid_ingest.wire import split_header
from producers.bulk import conform, land_batches


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, uuid.UUID) else value


def rows_batch(version: SchemaVersion, rows: Sequence[dict[str, Any]]) -> pa.RecordBatch:
    """Decoded rows (possibly of older versions: absent fields are null) in the version's curated schema."""
    target = arrow_schema(version.spec)
    arrays = [pa.array([_plain(r.get(f.name)) for r in rows], type=f.type) for f in target]
    return conform(version.spec, target, pa.RecordBatch.from_arrays(arrays, schema=target), 0)


def land_truncated(lake: Lake, registry: Registry, table: str, events: Sequence[bytes], seq: int) -> Manifest:
    """Land the table's state after a truncate: the upserts among ``events`` (encoded change events)."""
    version = registry.latest(table)
    rows = []
    for data in events:
        fingerprint, _ = split_header(data)
        event = registry.by_fingerprint(fingerprint).codec.decode(data)
        if event["op"] != "d":
            rows.append(event["row"])
    return land_batches(lake, version, [rows_batch(version, rows)] if rows else [], seq, "full",
                        allow_mass_delete=True)
