"""Bulk extract manifests: the contract between ``bulk push`` (or DataSync) and the merge.

An extract lands as ``landing/<table>/<extract_id>/part-NNNNN.parquet`` plus
``_manifest.json``, written LAST: an extract without a manifest is still being
copied and must be left alone. The manifest records, per part, its row count,
byte size and SHA-256, so the merge can refuse a part that was truncated or
replaced in transit (``verify_manifest``) instead of merging half an extract,
which in ``full`` mode would delete every row the missing half held.

The checksums cover the parts, not the manifest's own ``mode`` and ``as_of_seq``:
whoever may write landing/ may also edit those. What the merge does about that
(``glue_jobs.guard``) rests on two fields checked here: an ``as_of_seq`` that is
an integer a signed 64-bit seq can hold (``seq_range_error``), and
``allow_mass_delete``, the producer's statement that a full extract may delete
most of its table (``bulk push --allow-mass-delete``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Literal

import pyarrow.parquet as pq

from hybrid_ingest.errors import ManifestError
from hybrid_ingest.lake import Lake
from hybrid_ingest.layout import landing_dir, landing_table_dir, manifest_path

Mode = Literal["full", "incremental"]
MODES: tuple[str, ...] = ("full", "incremental")
MANIFEST_FORMAT = 1
SEQ_MAX = 2**63 - 1  # a seq is an Avro long, a BIGINT in both engines and Iceberg
_CHUNK = 8 * 1024 * 1024
_EXTRACT_ID = re.compile(r"^(\d+)-")


@dataclass(frozen=True)
class PartEntry:
    path: str
    rows: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    table: str
    extract_id: str
    mode: Mode
    as_of_seq: int
    rows: int
    schema_version: int
    fingerprint: str
    parts: tuple[PartEntry, ...]
    created_at: str
    format: int = MANIFEST_FORMAT
    allow_mass_delete: bool = False

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["parts"] = [asdict(p) for p in self.parts]
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> Manifest:
        """Parse and sanity-check a manifest document; anything off is a ManifestError."""
        try:
            parts = tuple(PartEntry(str(p["path"]), int(p["rows"]), int(p["bytes"]), str(p["sha256"]))
                          for p in doc["parts"])
            as_of_seq = doc["as_of_seq"]
            allow = doc.get("allow_mass_delete", False)
            manifest = cls(
                table=str(doc["table"]), extract_id=str(doc["extract_id"]), mode=doc["mode"],
                as_of_seq=as_of_seq, rows=int(doc["rows"]), schema_version=int(doc["schema_version"]),
                fingerprint=str(doc["fingerprint"]), parts=parts, created_at=str(doc["created_at"]),
                format=int(doc.get("format", MANIFEST_FORMAT)), allow_mass_delete=allow,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"malformed manifest: missing or invalid {exc}") from exc
        if manifest.mode not in MODES:
            raise ManifestError(f"manifest mode must be one of {MODES}, got {manifest.mode!r}")
        if not isinstance(as_of_seq, int) or isinstance(as_of_seq, bool):  # 9e18 or "5": a float loses digits
            raise ManifestError(f"manifest as_of_seq must be an integer, got {as_of_seq!r}")
        problem = seq_range_error(as_of_seq)
        if problem:
            raise ManifestError(f"manifest {problem}")
        if not isinstance(allow, bool):
            raise ManifestError(f"manifest allow_mass_delete must be true or false, got {allow!r}")
        if sum(p.rows for p in parts) != manifest.rows:
            raise ManifestError(f"manifest rows {manifest.rows} is not the sum of its parts' rows")
        for part in parts:
            if "/" in part.path or part.path.startswith((".", "_")):
                raise ManifestError(f"manifest part path {part.path!r} must be a plain file name in the extract")
        return manifest


def seq_range_error(as_of_seq: int) -> str | None:
    """Why ``as_of_seq`` cannot be a seq (None if it can): every seq is a signed 64-bit integer, never negative."""
    if 0 <= as_of_seq <= SEQ_MAX:
        return None
    return f"as_of_seq must be between 0 and {SEQ_MAX}, got {as_of_seq}"


def new_extract_id(as_of_seq: int, now: dt.datetime | None = None) -> str:
    """``<as_of_seq>-<UTC timestamp>-<short uuid>``: sortable by seq, unique across retries."""
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return f"{as_of_seq}-{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def extract_sort_key(extract_id: str) -> tuple[int, str]:
    match = _EXTRACT_ID.match(extract_id)
    return (int(match.group(1)) if match else -1, extract_id)


def write_manifest(lake: Lake, manifest: Manifest) -> str:
    """Write the manifest atomically; call only after every part is in place."""
    return lake.write_json(manifest_path(manifest.table, manifest.extract_id), manifest.to_json())


def read_manifest(lake: Lake, table: str, extract_id: str) -> Manifest:
    path = manifest_path(table, extract_id)
    if not lake.exists(path):
        raise ManifestError(f"extract {table}/{extract_id} has no manifest (still landing, or not an extract)")
    try:
        doc = lake.read_json(path)
    except ValueError as exc:
        raise ManifestError(f"{path}: not valid JSON: {exc}") from exc
    manifest = Manifest.from_json(doc)
    if (manifest.table, manifest.extract_id) != (table, extract_id):
        raise ManifestError(f"{path} describes {manifest.table}/{manifest.extract_id}, not {table}/{extract_id}")
    return manifest


def manifest_sha256(lake: Lake, table: str, extract_id: str) -> str:
    """The digest of the manifest file itself: a release (``hybrid_ingest.quarantine``) covers these bytes only."""
    return sha256_of(lake, manifest_path(table, extract_id))


def sha256_of(lake: Lake, rel: str) -> str:
    digest = hashlib.sha256()
    with lake.fs.open_input_stream(lake.path(rel)) as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_manifest(lake: Lake, table: str, extract_id: str) -> Manifest:
    """The manifest, once every part exists with its recorded size, SHA-256 and row count."""
    manifest = read_manifest(lake, table, extract_id)
    base = landing_dir(table, extract_id)
    for part in manifest.parts:
        rel = f"{base}/{part.path}"
        if not lake.exists(rel):
            raise ManifestError(f"extract {table}/{extract_id}: part {part.path} is missing")
        size = lake.fs.get_file_info(lake.path(rel)).size
        if size != part.bytes:
            raise ManifestError(f"extract {table}/{extract_id}: part {part.path} has {size} bytes, "
                                f"the manifest says {part.bytes}")
        digest = sha256_of(lake, rel)
        if digest != part.sha256:
            raise ManifestError(f"extract {table}/{extract_id}: part {part.path} checksum mismatch "
                                f"(sha256 {digest}, the manifest says {part.sha256})")
        try:
            with lake.fs.open_input_file(lake.path(rel)) as f:
                rows = pq.ParquetFile(f).metadata.num_rows
        except (OSError, ValueError) as exc:
            raise ManifestError(f"extract {table}/{extract_id}: part {part.path} is not Parquet: {exc}") from exc
        if rows != part.rows:
            raise ManifestError(f"extract {table}/{extract_id}: part {part.path} has {rows} rows, "
                                f"the manifest says {part.rows}")
    return manifest


def list_extracts(lake: Lake, table: str) -> list[str]:
    """Extract ids of a table whose manifest has landed, oldest ``as_of_seq`` first."""
    base = landing_table_dir(table)
    ready = [d for d in lake.dirs(base) if lake.exists(manifest_path(table, d))]
    return sorted(ready, key=extract_sort_key)
