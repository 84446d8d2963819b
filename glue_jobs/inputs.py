"""What a merge run reads: raw files above the watermark and verified extracts (the live partitions
come from the table's snapshot: ``merge.live_partitions``).

Only listings and Parquet footers are read here (no row data), so the sizing step
can call the same code to estimate a run before choosing its engine.

Raw files are skipped by name only when that is safe: a raw file's name carries
its shard and its last position (``layout.raw_file``), so a file whose last
position is at or below the shard's watermark holds nothing new. Anything whose
name does not parse is read, and the engines filter rows on ``_kpos`` anyway.

An extract whose manifest does not verify is held with a record at
``dlq/merge/bad-manifest/<table>-<extract_id>.json`` saying why
(``hybrid_ingest.quarantine``); an extract held for any reason (also by the
guard, ``glue_jobs.guard``) is skipped until ``hybrid-ingest bulk release`` removes
its record, so it is not verified again on every run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from glue_jobs.kernel_model import ExtractInput, FileGroup
from hybrid_ingest import layout, manifest, quarantine
from hybrid_ingest.errors import ManifestError
from hybrid_ingest.lake import Lake
from hybrid_ingest.position import Position
from hybrid_ingest.state import Watermark


@dataclass(frozen=True)
class FileFacts:
    rel: str
    bytes: int
    rows: int
    schema: pa.Schema
    tail: RawTail | None = None  # raw files: where the file ends, from its footer's statistics
    seq_max: int | None = None  # the highest ``_seq`` per the footer's statistics (None: no such statistic)


@dataclass(frozen=True)
class RawTail:
    """A raw file's shard, highest ``_kpos`` and newest ``_op_ts``, read from its column statistics."""

    shard: str
    kpos: str
    op_ts: dt.datetime | None


@dataclass
class MergeInputs:
    raw: list[FileGroup] = field(default_factory=list)
    positions: dict[str, tuple[str, dt.datetime | None]] | None = None  # see ``merged_positions``
    raw_bytes: int = 0
    raw_files: int = 0
    extracts: list[ExtractInput] = field(default_factory=list)
    extract_bytes: int = 0
    rejected: list[str] = field(default_factory=list)  # extract ids held for a bad manifest
    held: list[dict[str, str]] = field(default_factory=list)  # held by the guard: {"extract_id", "reason"}
    overridden: list[dict[str, str]] = field(default_factory=list)  # not judged by the guard's numbers: {.., "by"}
    # the highest ``_seq`` among the raw files whose footers tell, and the raw files whose footers do not
    raw_seq_max: int | None = None
    raw_seq_unknown: list[FileGroup] = field(default_factory=list)


def file_facts(lake: Lake, rel: str) -> FileFacts:
    with lake.fs.open_input_file(lake.path(rel)) as f:
        meta = pq.ParquetFile(f).metadata
        size = f.size()
    return FileFacts(rel, int(size), int(meta.num_rows), meta.schema.to_arrow_schema().remove_metadata(),
                     _tail(meta), _seq_max(meta))


def _seq_max(meta: pq.FileMetaData) -> int | None:
    """The highest ``_seq`` of a file from its row groups' statistics; None if a row group has none."""
    if "_seq" not in meta.schema.names:
        return None
    index = meta.schema.names.index("_seq")
    highest: int | None = None
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        if group.num_rows == 0:
            continue
        stats = group.column(index).statistics
        if stats is None or not stats.has_min_max:
            if stats is not None and stats.null_count == group.num_rows:
                continue
            return None
        highest = int(stats.max) if highest is None else max(highest, int(stats.max))
    return highest


def seq_bounds(facts: list[FileFacts]) -> tuple[int | None, list[FileGroup]]:
    """The highest ``_seq`` the footers of ``facts`` tell, and (grouped) the files whose footers do not."""
    known = [f.seq_max for f in facts if f.seq_max is not None]
    unknown = [f for f in facts if f.seq_max is None and f.rows]
    return max(known, default=None), group_by_schema(unknown)


def _tail(meta: pq.FileMetaData) -> RawTail | None:
    """The file's one shard and its highest position and newest source time, or None if the footer cannot tell.

    Every writer of the raw zone (pyarrow, DuckDB, Spark) records min/max per row
    group; a file that mixes shards or lacks a statistic gets None.
    """
    names = meta.schema.names
    if meta.num_row_groups == 0 or not {"_shard", "_kpos", "_op_ts"} <= set(names):
        return None
    shards: set[Any] = set()
    kpos: list[Any] = []
    op_ts: list[Any] = []
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        if group.num_rows == 0:
            continue
        stats = {name: group.column(names.index(name)).statistics for name in ("_shard", "_kpos", "_op_ts")}
        if any(st is None or not st.has_min_max for st in (stats["_shard"], stats["_kpos"])):
            return None
        shards |= {stats["_shard"].min, stats["_shard"].max}
        kpos.append(stats["_kpos"].max)
        op = stats["_op_ts"]
        if op is not None and op.has_min_max:
            op_ts.append(op.max)
        elif op is None or op.null_count != group.num_rows:
            return None
    if len(shards) != 1 or not kpos:
        return None
    newest = max(op_ts) if op_ts else None
    return RawTail(str(shards.pop()), str(max(kpos)), newest if isinstance(newest, dt.datetime) else None)


def merged_positions(facts: list[FileFacts], watermark: Watermark) -> dict[str, tuple[str, dt.datetime | None]] | None:
    """Per shard, the highest position a merge of these raw files reaches and the newest source time among
    them (``_kpos`` above the shard's watermark only); None when a footer cannot tell, and the engine asks
    the rows instead."""
    merged = {shard: str(pos) for shard, pos in watermark.shards.items()}
    out: dict[str, tuple[str, dt.datetime | None]] = {}
    for fact in facts:
        if fact.tail is None:
            return None
        tail = fact.tail
        if tail.kpos <= merged.get(tail.shard, ""):
            continue
        kpos, newest = out.get(tail.shard, ("", None))
        times = [t for t in (newest, tail.op_ts) if t is not None]
        out[tail.shard] = (max(kpos, tail.kpos), max(times) if times else None)
    return out


def group_by_schema(facts: list[FileFacts]) -> list[FileGroup]:
    """Files that share a schema are read together; each group is projected onto the newest schema once."""
    groups: dict[str, list[FileFacts]] = {}
    for fact in facts:
        groups.setdefault(fact.schema.to_string(show_field_metadata=False), []).append(fact)
    return [FileGroup(tuple(f.rel for f in items), items[0].schema, sum(f.bytes for f in items),
                      sum(f.rows for f in items))
            for _, items in sorted(groups.items())]


def _last_position(name: str) -> tuple[str, Position] | None:
    """(shard, last position) from ``layout.raw_file``'s name; None if it does not parse."""
    parts = name.removesuffix(".parquet").rsplit("-", 2)
    if len(parts) != 3:
        return None
    try:
        return parts[0], Position.parse(parts[2])
    except ValueError:
        return None


def raw_files_above(lake: Lake, table: str, watermark: Watermark) -> list[FileFacts]:
    merged = {layout.safe(shard): pos for shard, pos in watermark.shards.items()}
    out: list[FileFacts] = []
    for info in lake.files(layout.raw_table_dir(table), ".parquet"):
        parsed = _last_position(info.base_name)
        if parsed is not None and parsed[0] in merged and parsed[1] <= merged[parsed[0]]:
            continue
        out.append(file_facts(lake, lake.rel(info.path)))
    return out


def pending_extracts(lake: Lake, table: str, watermark: Watermark, verify: bool,
                     now: dt.datetime | None = None) -> tuple[list[ExtractInput], list[str]]:
    """Extracts with a manifest, not merged yet, in (as_of_seq, extract_id) order; and the rejected ids."""
    found: list[ExtractInput] = []
    rejected: list[str] = []
    for extract_id in manifest.list_extracts(lake, table):
        if extract_id in watermark.extracts or quarantine.held_reason(lake, table, extract_id):
            continue
        try:
            doc = (manifest.verify_manifest(lake, table, extract_id) if verify
                   else manifest.read_manifest(lake, table, extract_id))
        except ManifestError as exc:
            if verify:
                quarantine.hold(lake, table, extract_id, exc, now or dt.datetime.now(dt.UTC))
                rejected.append(extract_id)
            continue
        base = layout.landing_dir(table, extract_id)
        facts = [file_facts(lake, f"{base}/{p.path}") for p in doc.parts]
        groups = group_by_schema(facts)
        if len(groups) > 1:
            raise ManifestError(f"extract {table}/{extract_id} mixes {len(groups)} schemas in its parts")
        group = groups[0] if groups else FileGroup((), pa.schema([]), 0)
        digest = manifest.manifest_sha256(lake, table, extract_id) if verify else ""
        found.append(ExtractInput(extract_id, doc.mode, doc.as_of_seq, 0, group, doc.allow_mass_delete, digest))
    found.sort(key=lambda x: (x.as_of_seq, manifest.extract_sort_key(x.extract_id)))
    ranked = [dataclasses.replace(x, rank=i) for i, x in enumerate(found)]
    return ranked, rejected


def gather(lake: Lake, table: str, watermark: Watermark, verify: bool = True,
           now: dt.datetime | None = None) -> MergeInputs:
    raw = raw_files_above(lake, table, watermark)
    extracts, rejected = pending_extracts(lake, table, watermark, verify, now)
    seq_max, seq_unknown = seq_bounds(raw)
    return MergeInputs(
        raw=group_by_schema(raw), positions=merged_positions(raw, watermark),
        raw_bytes=sum(f.bytes for f in raw), raw_files=len(raw),
        extracts=extracts, extract_bytes=sum(x.files.bytes for x in extracts), rejected=rejected,
        raw_seq_max=seq_max, raw_seq_unknown=seq_unknown,
    )
