"""Lake path layout (DESIGN.md "Lake layout"): pure functions from plain values to relative paths.

Paths are relative to the lake root and use ``/``; the ``Lake`` adapter turns them
into filesystem paths or URIs. Names are deterministic so that a retried write
lands on the same object instead of beside it.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from hybrid_ingest.position import Position
from hybrid_ingest.tables import Partitioning

LANDING = "landing"
RAW = "raw"
DLQ = "dlq"
CURATED = "curated"
TOMBSTONES = "_tombstones"
ZONES = (LANDING, RAW, DLQ, CURATED)
MANIFEST_NAME = "_manifest.json"
VERSION_PREFIX = "v="
_SAFE = re.compile(r"[^A-Za-z0-9._=-]")


def safe(part: str) -> str:
    """A path segment that cannot escape its folder or confuse hive-style parsing."""
    return _SAFE.sub("_", part) or "_"


def raw_file(table: str, arrival: dt.datetime, shard: str, first: Position, last: Position) -> str:
    """``raw/<table>/ingest_date=YYYY-MM-DD/ingest_hour=HH/<shard>-<first>-<last>.parquet``.

    ``arrival`` must be the first record's arrival time (not the wall clock), so a
    batch re-read after a crash gets the same name.
    """
    arrival = arrival.astimezone(dt.UTC)
    return (
        f"{RAW}/{safe(table)}/ingest_date={arrival:%Y-%m-%d}/ingest_hour={arrival:%H}/"
        f"{safe(shard)}-{first}-{last}.parquet"
    )


def raw_table_dir(table: str) -> str:
    return f"{RAW}/{safe(table)}"


def landing_dir(table: str, extract_id: str) -> str:
    return f"{LANDING}/{safe(table)}/{safe(extract_id)}"


def landing_table_dir(table: str) -> str:
    return f"{LANDING}/{safe(table)}"


def manifest_path(table: str, extract_id: str) -> str:
    return f"{landing_dir(table, extract_id)}/{MANIFEST_NAME}"


def dlq_file(stage: str, reason: str, name: str) -> str:
    return f"{DLQ}/{safe(stage)}/{safe(reason)}/{safe(name)}"


def curated_table_dir(table: str) -> str:
    return f"{CURATED}/{safe(table)}"


def tombstone_dir(table: str, run_id: str) -> str:
    """Tombstones live beside, never inside, the table's partitions, so readers never see them."""
    return f"{CURATED}/{TOMBSTONES}/{safe(table)}/{VERSION_PREFIX}{safe(run_id)}"


def curated_version_dir(table: str, partition: Partitioning | None, value: str | None, run_id: str) -> str:
    """``curated/<table>/<key>=<value>/v=<run_id>``, or ``curated/<table>/v=<run_id>`` unpartitioned."""
    base = curated_table_dir(table)
    if partition is None:
        return f"{base}/{VERSION_PREFIX}{safe(run_id)}"
    if value is None:
        raise ValueError("a partitioned table needs a partition value")
    return f"{base}/{partition.key}={safe(value)}/{VERSION_PREFIX}{safe(run_id)}"


def _as_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).date() if value.tzinfo else value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        return dt.date.fromisoformat(value[:10])
    raise TypeError(f"cannot take a date from {value!r}")


def partition_value(partition: Partitioning, value: Any) -> str:
    """The partition a row lands in, as the string the lake and catalog use.

    Null partition columns go to ``__null__`` rather than failing, so no row is lost.
    """
    if value is None:
        return "__null__"
    if partition.granularity == "identity":
        return str(value)
    day = _as_date(value)
    if partition.granularity == "day":
        return day.isoformat()
    if partition.granularity == "month":
        return f"{day.year:04d}-{day.month:02d}"
    return f"{day.year:04d}"
