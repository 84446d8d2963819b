"""The extract guard at merge: which landed extracts a run may merge, decided before the kernel runs.

Whoever may write landing/ may write any manifest, and a manifest's ``mode`` and
``as_of_seq`` are covered by no checksum; an export that dies half-way may still
write its manifest. A full extract at ``as_of_seq = N`` deletes every stored key
it lacks whose seq is at most N and makes every change at or below N stale, so
such an extract could empty a table, or freeze it until the source's seq passes
N. Before any engine work, every pending extract is screened:

1. **Duplicate keys** (any mode): two rows of one key in one extract have the same
   seq, and no rule says which is the source's. The extract is dead-lettered
   (``duplicate-keys``) naming the first key and its rows.
2. **Seq far ahead** (any mode): an ``as_of_seq`` more than ``max_as_of_seq_ahead``
   past the highest seq the table has seen (its stored rows, tombstones, floor and
   the raw changes pending in this run) is held (``suspicious-extract``). A table
   that has seen nothing has no reference, so a source's first snapshot passes.
3. **Mass delete** (full extracts above the table's floor, newest first): one that
   would delete more than ``max_full_extract_delete_fraction`` of the live rows is
   held (``suspicious-extract``). Only the newest admitted full extract deletes
   anything in a run (older ones are superseded, their rows stale), so the check
   stops there.

An extract whose manifest says ``allow_mass_delete`` (``bulk push
--allow-mass-delete``), or that an operator released with that override for its
current manifest (``hybrid_ingest.quarantine``), skips 2 and 3, never 1.

Where the numbers come from, cheaply and exactly: the live rows are the record
counts of the snapshot's manifests; the highest seq is the ``_seq`` upper bounds
of those manifests' column statistics and the ``_seq`` statistics of the raw and
tombstone files' footers (a file without them is asked by a query); the rows a
full extract would delete are counted by one anti-join of the stored keys with
``_seq <= N`` against the extract's keys, over the key columns only, on the run's
own engine. That pre-pass is exact for the table the run read, and it runs before
the kernel, so a held extract never reaches either kernel or either plan, and
nothing of it is written or published. (The kernel's own ``full_extract_deletes``
count is only known once the decisions are made, after the write on the one-pass
plan, and counts every input of the run together: holding one extract then would
mean discarding the written files and running the kernel again.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from glue_jobs import inputs
from glue_jobs.commit import OpenRun
from glue_jobs.engine import Engine
from glue_jobs.kernel_inputs import merged_group
from glue_jobs.kernel_model import ExtractInput, FileGroup, Partition
from hybrid_ingest import iceberg
from hybrid_ingest.errors import DuplicateKeyError, HybridIngestError, SuspiciousExtractError
from hybrid_ingest.extract_keys import Duplicate, duplicate_query, key_rows
from hybrid_ingest.lake import Lake
from hybrid_ingest.tables import TableSpec

FRACTION_DIGITS = 5


@dataclass(frozen=True)
class Limits:
    """The guard's two job settings (``hybrid_ingest.state.DEFAULT_SETTINGS``)."""

    max_delete_fraction: float
    max_seq_ahead: int

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Limits:
        return cls(float(settings["max_full_extract_delete_fraction"]), int(settings["max_as_of_seq_ahead"]))


@dataclass(frozen=True)
class TableFacts:
    """What the run read of its table, for the guard.

    ``seq_known``: highest ``_seq`` values known without reading rows (manifest
    bounds, footers, the floor); ``seq_unknown``: files whose highest ``_seq`` only
    a query can tell; ``stored``: the live data files (their keys and ``_seq``).
    """

    rows_live: int
    floor: int
    stored: FileGroup | None
    seq_known: tuple[int, ...] = ()
    seq_unknown: tuple[FileGroup, ...] = ()


def table_facts(lake: Lake, run: OpenRun, pending: inputs.MergeInputs, partitions: Sequence[Partition],
                tomb_facts: Sequence[inputs.FileFacts], floor: int, rows_live: int) -> TableFacts:
    """What the guard needs of the table, from manifests and footers (a file without statistics is queried)."""
    bound, missing = iceberg.seq_upper_bound(run.table, run.files)
    tomb_max, tomb_unknown = inputs.seq_bounds(list(tomb_facts))
    stored = [p.files for p in partitions if p.files.rels]
    unbounded = [FileGroup(tuple(iceberg.lake_rel(lake, f.uri) for f in missing), stored[0].schema)] if missing else []
    known = (bound, tomb_max, pending.raw_seq_max, floor if floor >= 0 else None)
    return TableFacts(rows_live, floor, merged_group(stored) if stored else None,
                      tuple(v for v in known if v is not None), (*pending.raw_seq_unknown, *tomb_unknown, *unbounded))


@dataclass(frozen=True)
class Held:
    extract: ExtractInput
    error: HybridIngestError
    figures: dict[str, Any]


@dataclass
class Screened:
    admitted: list[ExtractInput] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)
    overridden: list[dict[str, str]] = field(default_factory=list)  # {"extract_id", "by": manifest | release}


def screen(engine: Engine, lake: Lake, spec: TableSpec, extracts: Sequence[ExtractInput], table: TableFacts,
           limits: Limits, releases: Mapping[str, Mapping[str, Any]]) -> Screened:
    """Split the pending extracts into those this run merges and those it holds (see the module's rules)."""
    out = Screened()
    clean: list[ExtractInput] = []
    for x in extracts:
        duplicate = _duplicate(engine, lake, spec, x)
        if duplicate is None:
            clean.append(x)
        else:
            out.held.append(Held(x, DuplicateKeyError(duplicate.message()), duplicate.figures()))
    if not clean:
        return out
    judged = [x for x in clean if _override(x, releases) is None]
    highest = highest_seq(engine, lake, table) if judged else None
    deleting: ExtractInput | None = None  # the newest admitted full extract above the floor: the one that deletes
    for x in sorted(clean, key=lambda e: e.rank, reverse=True):
        deletes = x.mode == "full" and x.as_of_seq > table.floor and deleting is None
        by = _override(x, releases)
        if by is not None:
            out.overridden.append({"extract_id": x.extract_id, "by": by})
        else:
            problems, figures = _judge(engine, lake, spec, x, table, highest, limits, deletes)
            if problems:  # the record says how to release it (``hybrid_ingest.quarantine.hold``)
                out.held.append(Held(x, SuspiciousExtractError("; ".join(problems)), figures))
                continue
        if deletes:
            deleting = x
        out.admitted.append(x)
    out.admitted.sort(key=lambda e: e.rank)
    return out


def _override(x: ExtractInput, releases: Mapping[str, Mapping[str, Any]]) -> str | None:
    """Who vouched for the extract's numbers: its manifest, or a release of exactly this manifest."""
    if x.allow_mass_delete:
        return "manifest"
    released = releases.get(x.extract_id) or {}
    if released.get("allow_mass_delete") and released.get("manifest_sha256") == x.manifest_sha256:
        return "release"
    return None


def _judge(engine: Engine, lake: Lake, spec: TableSpec, x: ExtractInput, table: TableFacts, highest: int | None,
           limits: Limits, deletes: bool) -> tuple[list[str], dict[str, Any]]:
    """What is wrong with an extract's numbers (nothing: an empty list), and the numbers."""
    problems: list[str] = []
    figures: dict[str, Any] = {}
    if deletes:
        doomed = rows_to_delete(engine, lake, spec, table.stored, x)
        fraction = round(doomed / table.rows_live, FRACTION_DIGITS) if table.rows_live else 0.0
        figures.update({"rows_live": table.rows_live, "rows_to_delete": doomed, "delete_fraction": fraction,
                        "max_full_extract_delete_fraction": limits.max_delete_fraction})
        if doomed > limits.max_delete_fraction * table.rows_live:
            problems.append(f"would delete {doomed} of {table.rows_live} live rows ({fraction} > "
                            f"max_full_extract_delete_fraction {limits.max_delete_fraction})")
    ahead = None if highest is None else x.as_of_seq - highest
    figures.update({"as_of_seq": x.as_of_seq, "highest_seq_seen": highest, "seq_ahead": ahead,
                    "max_as_of_seq_ahead": limits.max_seq_ahead})
    if ahead is not None and ahead > limits.max_seq_ahead:
        problems.append(f"as_of_seq {x.as_of_seq} is {ahead} ahead of the highest seq the table has seen, "
                        f"{highest} (> max_as_of_seq_ahead {limits.max_seq_ahead}): every later change up to "
                        "it would be stale")
    return problems, figures


def _duplicate(engine: Engine, lake: Lake, spec: TableSpec, x: ExtractInput) -> Duplicate | None:
    if not x.files.rels:
        return None
    keys = [engine.dialect.ident(k) for k in spec.primary_key]
    found = engine.fetch(duplicate_query(keys, engine.source(lake, x.files)))
    if not found:
        return None
    key = dict(zip(spec.primary_key, found[0][:-1], strict=True))
    return Duplicate(key, key_rows(lake, x.files.rels, x.files.schema, key), int(found[0][-1]))


def highest_seq(engine: Engine, lake: Lake, table: TableFacts) -> int | None:
    """The highest seq the table has seen; None if it has seen none."""
    values = list(table.seq_known)
    selects = [f"SELECT max(_seq) AS _m FROM {engine.source(lake, g)}" for g in table.seq_unknown if g.rels]
    if selects:
        (found,), = engine.fetch(f"SELECT max(_m) FROM ({' UNION ALL '.join(selects)}) u")
        if found is not None:
            values.append(int(found))
    return max(values, default=None)


def rows_to_delete(engine: Engine, lake: Lake, spec: TableSpec, stored: FileGroup | None, x: ExtractInput) -> int:
    """Stored rows whose key the full extract ``x`` lacks and whose seq is at most its ``as_of_seq``."""
    if stored is None or not stored.rels:
        return 0
    d = engine.dialect
    keys = [d.ident(k) for k in spec.primary_key]
    cols = ", ".join(keys)
    where = f"c._seq <= CAST({x.as_of_seq} AS BIGINT)"
    if x.files.rels:
        same = " AND ".join(f"e.{k} = c.{k}" for k in keys)
        where += f" AND NOT EXISTS (SELECT 1 FROM (SELECT {cols} FROM {engine.source(lake, x.files)}) e WHERE {same})"
    (count,), = engine.fetch(f"SELECT count(*) FROM (SELECT {cols}, _seq FROM {engine.source(lake, stored)}) c"
                             f" WHERE {where}")
    return int(count)
