"""The kernel's data model: what the engine-independent core hands a kernel, and what it gets back.

Plain data only (no engine, session or catalog object), so the driver, both
engines and the tests share it. Partition values are in the one Python form of
``hybrid_ingest.iceberg`` (``None`` for the null partition and for the single
partition of an unpartitioned table).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from glue_jobs.merge_sql import MergeParams
from hybrid_ingest.tables import TableSpec


@dataclass(frozen=True)
class FileGroup:
    """Parquet files (lake-relative) that share one schema."""

    rels: tuple[str, ...]
    schema: pa.Schema
    bytes: int = 0
    rows: int = 0


@dataclass(frozen=True)
class ExtractInput:
    extract_id: str
    mode: str
    as_of_seq: int
    rank: int
    files: FileGroup
    allow_mass_delete: bool = False  # the manifest's own override of the extract guard (``glue_jobs.guard``)
    manifest_sha256: str = ""  # what an operator's release covers (``hybrid_ingest.quarantine``)


@dataclass(frozen=True)
class Partition:
    """One live partition of the snapshot the run read: its value and its data files."""

    value: Any
    files: FileGroup


@dataclass(frozen=True)
class KernelJob:
    """Everything a kernel needs, decided by the engine-independent core; plain data only."""

    spec: TableSpec
    raw: tuple[FileGroup, ...]
    extracts: tuple[ExtractInput, ...]
    current: tuple[Partition, ...]
    tombstones: FileGroup | None
    params: MergeParams
    rewrite_all: bool
    run_id: str
    field_ids: Mapping[str, int]  # curated column -> its Iceberg field ID, written into every data file
    rows_per_file: int  # the file cap: max_rows_per_file, or fewer when target_file_bytes is reached first
    compression: str = "snappy"
    one_pass: bool = False
    # shard -> (highest position, newest source time) of the raw input when its footers tell; None: ask the rows
    positions: Mapping[str, tuple[str, dt.datetime | None]] | None = None

    def change_rows(self) -> int:
        """The candidate changes' rows before the watermark filter: raw records and extract rows."""
        return sum(g.rows for g in self.raw) + sum(x.files.rows for x in self.extracts)

    def stored_rows(self) -> int:
        return sum(p.files.rows for p in self.current)

    def decision_rows(self) -> int:
        """At most how many rows the per-key decisions hold (``merge_sql.DECISIONS``): a key per change and
        tombstone, and every stored row when a full extract may delete the keys it lacks."""
        tombstones = self.tombstones.rows if self.tombstones is not None else 0
        stored = self.stored_rows() if self.params.full_rank >= 0 else 0
        return self.change_rows() + tombstones + stored


@dataclass(frozen=True)
class WrittenFile:
    """A data or tombstone file the kernel wrote (lake-relative), not visible to anyone before the commit."""

    rel: str
    bytes: int


@dataclass
class KernelResult:
    written: dict[Any, list[WrittenFile]] = field(default_factory=dict)  # partition value -> its new files
    affected: list[Any] = field(default_factory=list)  # partitions replaced (those without files are emptied)
    tombstones: list[WrittenFile] | None = None  # None: the current tombstone files stay
    stats: dict[str, int] = field(default_factory=dict)
    positions: dict[str, str] = field(default_factory=dict)  # shard -> the text of the highest merged position
    newest_op_ts: dt.datetime | None = None

    def files(self) -> list[WrittenFile]:
        """Every file this run wrote (what to remove if its commit is refused)."""
        return [f for files in self.written.values() for f in files] + list(self.tombstones or [])
