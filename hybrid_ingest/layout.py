"""Lake path layout (DESIGN.md "Lake layout"): pure functions from plain values to relative paths.

Paths are relative to the lake root and use ``/``; the ``Lake`` adapter turns them
into filesystem paths or URIs. Names are deterministic so that a retried write
lands on the same object instead of beside it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from urllib.parse import quote

from hybrid_ingest.position import Position

LANDING = "landing"
RAW = "raw"
DLQ = "dlq"
CURATED = "curated"
DATA = "data"
METADATA = "metadata"
TOMBSTONES = "tombstones"
MAX_SEGMENT = 96
ZONES = (LANDING, RAW, DLQ, CURATED)
MANIFEST_NAME = "_manifest.json"
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


def dlq_dir(stage: str, reason: str) -> str:
    return f"{DLQ}/{safe(stage)}/{safe(reason)}"


def dlq_file(stage: str, reason: str, name: str) -> str:
    return f"{dlq_dir(stage, reason)}/{safe(name)}"


def curated_table_dir(table: str) -> str:
    return f"{CURATED}/{safe(table)}"


def curated_data_dir(table: str) -> str:
    """``curated/<table>/data``: the Iceberg table's data files (its ``metadata/`` folder is Iceberg's own)."""
    return f"{curated_table_dir(table)}/{DATA}"


def partition_data_dir(table: str, key: str | None, value: str | None) -> str:
    """``curated/<table>/data/<key>=<encoded value>`` (``data`` alone when unpartitioned).

    ``value`` is the partition value's text (null: None) and goes through
    ``encode_value``, so no value can leave the folder or share another value's.
    """
    base = curated_data_dir(table)
    return base if key is None else f"{base}/{safe(key)}={encode_value(value)}"


def data_file_prefix(run_id: str, index: int) -> str:
    """The start of a data file's name: the run and the partition's index in it, so no two writes collide."""
    return f"{safe(run_id)}-{index:05d}"


def run_data_dir(table: str, run_id: str) -> str:
    """``curated/<table>/data/<run_id>``: where an engine's own partitioned write puts a run's files."""
    return f"{curated_data_dir(table)}/{safe(run_id)}"


def tombstones_dir(table: str) -> str:
    """``curated/<table>/tombstones``: in the table's folder beside, never inside, ``data/``: no reader sees them."""
    return f"{curated_table_dir(table)}/{TOMBSTONES}"


def tombstone_dir(table: str, run_id: str) -> str:
    """A run's tombstone files (an engine names the files in it)."""
    return f"{tombstones_dir(table)}/{safe(run_id)}"


def tombstone_file(table: str, run_id: str, index: int) -> str:
    """A run's tombstone file written by the driver itself (the one-pass plan's rewrite)."""
    return f"{tombstone_dir(table, run_id)}/part-{index:05d}.parquet"


def curated_metadata_dir(table: str) -> str:
    """``curated/<table>/metadata``: Iceberg's metadata files, written by pyiceberg."""
    return f"{curated_table_dir(table)}/{METADATA}"


def encode_value(value: str | None) -> str:
    """A partition value's text as one path segment: percent-encoded, so injective and unable to escape.

    Every byte but ``[A-Za-z0-9_.-~]`` becomes ``%XX`` (``/``, ``=``, ``%``,
    quotes, spaces, unicode), and ``..`` can only appear after ``<key>=``. Null
    and over-long values use ``%~``, which percent-encoding never produces: null
    is ``%~null``; a value encoding to more than 96 characters keeps its first 64
    and ``%~`` plus a SHA-256 prefix (file names carry the run and partition
    index, so even a hash collision would not make two files one).
    """
    if value is None:
        return "%~null"
    encoded = quote(value, safe="")
    if len(encoded) <= MAX_SEGMENT:
        return encoded
    head = encoded[:64]
    cut = head.rfind("%", len(head) - 2)  # never end inside a %XX escape
    digest = hashlib.sha256(value.encode()).hexdigest()[:32]
    return f"{head[:cut] if cut >= 0 else head}%~{digest}"
