"""Generated source histories and how they reach the lake: the scenarios the reliability tests replay.

A scenario is plain data. A simulated source database (``Source``) runs a random
history over one to three small test tables: inserts, updates, deletes,
re-inserts, updates that move a row to another partition, snapshot reads, full
and incremental extracts, and one schema evolution that adds a field with a
default. Its final state is the ground truth.

Delivery then does what the wire does to that history: each key's changes go to
the shard its (table, key) hashes to; producer retries re-order neighbours and
re-send events (duplicates at new Kinesis positions); the consumer cuts each
shard into raw files (one schema version per file) and, after a simulated
restart, writes a file overlapping the previous one; merge runs see a prefix of
every shard and whichever extracts have landed. The oracle over what was
delivered by run ``r`` is what curated must hold after run ``r``.
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from hybrid_ingest.tables import Partitioning, TableSpec
from tests.reliability.oracle import Change, Extract, Key, Row, TableOracle

SHARDS = ("shardId-000000000000", "shardId-000000000001")
# Real Kinesis sequence numbers have ~56 digits: far beyond int64, on purpose
POSITION_BASE = 49_590_338_271_490_256_608_559_692_538_361_571_095_921_575_989_136_588_898
POSITION_STEP = 1_000_000_000
EVOLVED_FIELD: dict[str, Any] = {"name": "note", "type": "string", "default": "none"}
NOTES = ("none", "rush", "gift")


def _record(name: str, fields: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": "hybrid_ingest.reliability", "fields": fields}


DECIMAL = {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}
DATE = {"type": "int", "logicalType": "date"}

# Small tables that between them cover every merge shape: unpartitioned, partitioned
# by month of a date (updates move rows between months), composite key partitioned
# by identity of a string (updates move rows between regions).
TEST_SPECS: dict[str, TableSpec] = {
    "rel_plain": TableSpec("rel_plain", ("id",), _record("rel_plain", [
        {"name": "id", "type": "long"},
        {"name": "name", "type": "string"},
        {"name": "qty", "type": "int"},
        {"name": "price", "type": ["null", "double"], "default": None},
    ])),
    "rel_part": TableSpec("rel_part", ("id",), _record("rel_part", [
        {"name": "id", "type": "long"},
        {"name": "day", "type": DATE},
        {"name": "status", "type": "string"},
        {"name": "amount", "type": DECIMAL},
    ]), Partitioning("day", "month")),
    "rel_comp": TableSpec("rel_comp", ("a", "b"), _record("rel_comp", [
        {"name": "a", "type": "long"},
        {"name": "b", "type": "int"},
        {"name": "region", "type": "string"},
        {"name": "v", "type": "string"},
        {"name": "flag", "type": "boolean"},
    ]), Partitioning("region", "identity")),
}


def evolved(spec: TableSpec) -> TableSpec:
    """The table after the mid-history evolution: one string field added, with a default (BACKWARD-safe)."""
    schema = copy.deepcopy(spec.schema)
    schema["fields"].append(dict(EVOLVED_FIELD))
    return spec.with_schema(schema)


def shard_of(table: str, key: Key) -> str:
    """Partition key = table + primary key, as DESIGN.md says: one key's events stay on one shard."""
    return SHARDS[zlib.crc32(f"{table}|{key!r}".encode()) % len(SHARDS)]


Draw = Callable[[st.SearchStrategy[Any]], Any]


def _row(table: str, key: Key, draw: Draw) -> Row:
    if table == "rel_plain":
        return {"id": key[0], "name": draw(st.sampled_from(["ann", "bob", "cy"])),
                "qty": draw(st.integers(0, 3)), "price": draw(st.sampled_from([None, 1.5, 2.25]))}
    if table == "rel_part":
        return {"id": key[0], "day": draw(st.sampled_from(["2026-01-15", "2026-01-31", "2026-02-01", "2026-03-09"])),
                "status": draw(st.sampled_from(["new", "paid", "sent"])),
                "amount": f"{draw(st.integers(0, 99_999)) / 100:.2f}"}
    return {"a": key[0], "b": key[1], "region": draw(st.sampled_from(["eu", "us", "apac"])),
            "v": draw(st.sampled_from(["x", "y", "z"])), "flag": draw(st.booleans())}


def _keys(table: str) -> list[Key]:
    if table == "rel_comp":
        return [(a, b) for a in (1, 2, 3) for b in (0, 1)]
    return [(i,) for i in range(1, 7)]


def key_fields(spec: TableSpec, key: Key) -> Row:
    return dict(zip(spec.primary_key, key, strict=True))


@dataclass(frozen=True)
class WireEvent:
    """One user record on a shard: the change, the schema version it was encoded with, its position."""

    change: Change
    version: int
    position: int


@dataclass(frozen=True)
class Delivery:
    """One thing landing in the lake before merge run ``run``: a raw file or a bulk extract."""

    run: int
    table: str
    version: int
    events: tuple[WireEvent, ...] = ()
    shard: str | None = None
    extract: Extract | None = None


@dataclass
class TableHistory:
    spec: TableSpec
    evolved_at_step: int | None = None
    changes: list[tuple[Change, int]] = field(default_factory=list)  # (change, schema version)
    extracts: list[tuple[Extract, int]] = field(default_factory=list)
    truth: dict[Key, Row] = field(default_factory=dict)

    @property
    def final_spec(self) -> TableSpec:
        return evolved(self.spec) if self.evolved_at_step is not None else self.spec


@dataclass
class Scenario:
    tables: dict[str, TableHistory]
    deliveries: list[Delivery]
    runs: int
    evolve_before_run: dict[str, int]  # table -> the run before which v2 is registered

    def delivered(self, table: str, through_run: int) -> list[Change | Extract]:
        """Everything of ``table`` merged by the end of ``through_run`` (duplicates included)."""
        items: list[Change | Extract] = []
        for d in self.deliveries:
            if d.table != table or d.run > through_run:
                continue
            if d.extract is not None:
                items.append(d.extract)
            items.extend(e.change for e in d.events)
        return items

    def spec_at(self, table: str, run: int) -> TableSpec:
        history = self.tables[table]
        due = self.evolve_before_run.get(table)
        return history.final_spec if due is not None and run >= due else history.spec

    def expected(self, table: str, through_run: int) -> dict[Key, tuple[int, Row]]:
        spec = self.spec_at(table, through_run)
        defaults = {EVOLVED_FIELD["name"]: EVOLVED_FIELD["default"]} if spec is not self.tables[table].spec else {}
        oracle = TableOracle(spec.primary_key).apply_all(self.delivered(table, through_run))
        return oracle.project(defaults)

    def counts(self) -> dict[str, int]:
        events = sum(len(d.events) for d in self.deliveries)
        return {"events": events, "extracts": sum(1 for d in self.deliveries if d.extract is not None),
                "raw_files": sum(1 for d in self.deliveries if d.events), "runs": self.runs}


# -- the source: a history of changes ---------------------------------------------------------


ACTIONS = ("insert", "insert", "update", "update", "update", "delete", "reinsert", "read", "full", "incremental")


@st.composite
def source_histories(draw: Draw, tables: tuple[str, ...] = tuple(TEST_SPECS), max_steps: int = 24,
                     evolve: bool = True) -> dict[str, TableHistory]:
    """Run a random source: one shared commit counter (like one database's LSN) over 1-3 tables."""
    chosen = draw(st.lists(st.sampled_from(tables), min_size=1, max_size=len(tables), unique=True))
    histories = {t: TableHistory(TEST_SPECS[t]) for t in sorted(chosen)}
    steps = draw(st.integers(1, max_steps))
    evolve_table = draw(st.sampled_from(sorted(chosen))) if evolve and draw(st.booleans()) else None
    evolve_step = draw(st.integers(0, steps)) if evolve_table else None
    seq = draw(st.integers(0, 5))
    deleted: dict[str, set[Key]] = {t: set() for t in histories}
    for step in range(steps + 1):
        if evolve_table is not None and step == evolve_step:
            history = histories[evolve_table]
            history.evolved_at_step = step
            for row in history.truth.values():  # ALTER TABLE ADD COLUMN ... DEFAULT
                row[EVOLVED_FIELD["name"]] = EVOLVED_FIELD["default"]
        if step == steps:
            break
        table = draw(st.sampled_from(sorted(histories)))
        history = histories[table]
        spec = history.spec
        version = 1 if history.evolved_at_step is None else 2
        action = draw(st.sampled_from(ACTIONS))
        present = sorted(history.truth)
        absent = [k for k in _keys(table) if k not in history.truth]
        if action in ("update", "delete", "read") and not present:
            action = "insert"
        if action == "reinsert":
            action = "insert"
            absent = sorted(deleted[table] - set(history.truth)) or absent
        if action == "insert" and not absent:
            action = "update"
        seq += draw(st.integers(1, 3))
        if action in ("full", "incremental"):
            rows = [copy.deepcopy(history.truth[k]) for k in present]
            if action == "incremental":
                rows = [r for r in rows if draw(st.booleans())]
            history.extracts.append((Extract(action, seq, tuple(rows)), version))
            continue
        key = draw(st.sampled_from(absent if action == "insert" else present))
        if action == "delete":
            history.changes.append((Change("d", seq, key_fields(spec, key)), version))
            del history.truth[key]
            deleted[table].add(key)
            continue
        if action == "read":
            row = copy.deepcopy(history.truth[key])
            history.changes.append((Change("r", seq, row), version))
            continue
        row = _row(table, key, draw)
        if version == 2:
            row[EVOLVED_FIELD["name"]] = draw(st.sampled_from(NOTES))
        history.truth[key] = row
        history.changes.append((Change("c" if action == "insert" else "u", seq, copy.deepcopy(row)), version))
    return histories


# -- the wire and the consumer: what lands, and when -------------------------------------------


def _wire_order(draw: Draw, events: list[tuple[Change, int]]) -> list[tuple[Change, int]]:
    """Producer retries: swap neighbours (a failed entry re-sent after later ones) and re-send some events."""
    order = list(events)
    for _ in range(draw(st.integers(0, len(order)))):
        i = draw(st.integers(0, max(0, len(order) - 2)))
        if i + 1 < len(order):
            order[i], order[i + 1] = order[i + 1], order[i]
    for _ in range(draw(st.integers(0, 3))):
        if not order:
            break
        i = draw(st.integers(0, len(order) - 1))
        j = draw(st.integers(i + 1, len(order)))
        order.insert(j, order[i])  # a duplicate delivery at a later position
    return order


def _cut(draw: Draw, wire: list[WireEvent]) -> list[tuple[WireEvent, ...]]:
    """Raw files of one shard: chunks of 1-5 records, one schema version each, plus restart overlaps."""
    files: list[tuple[WireEvent, ...]] = []
    i = 0
    while i < len(wire):
        size = draw(st.integers(1, 5))
        chunk = [wire[i]]
        for e in wire[i + 1:i + size]:
            if e.version != chunk[0].version:
                break
            chunk.append(e)
        fresh = len(chunk)
        if files and files[-1][0].version == chunk[0].version and draw(st.integers(0, 5)) == 0:
            # the consumer restarted before its checkpoint moved: it re-reads from inside the previous file
            previous = files[-1]
            chunk = list(previous[draw(st.integers(0, len(previous) - 1)):]) + chunk
        files.append(tuple(chunk))
        i += fresh
    return files


@st.composite
def scenarios(draw: Draw, tables: tuple[str, ...] = tuple(TEST_SPECS), max_steps: int = 24,
              max_runs: int = 4, evolve: bool = True) -> Scenario:
    histories = draw(source_histories(tables, max_steps, evolve))
    runs = draw(st.integers(1, max_runs))
    deliveries: list[Delivery] = []
    for table, history in histories.items():
        by_shard: dict[str, list[tuple[Change, int]]] = {s: [] for s in SHARDS}
        for change, version in history.changes:
            key = tuple(change.row[k] for k in history.spec.primary_key)
            by_shard[shard_of(table, key)].append((change, version))
        for shard, events in by_shard.items():
            wire = [WireEvent(c, v, POSITION_BASE + (i + 1) * POSITION_STEP)
                    for i, (c, v) in enumerate(_wire_order(draw, events))]
            files = _cut(draw, wire)
            cuts = sorted(draw(st.lists(st.integers(0, runs - 1), min_size=len(files), max_size=len(files))))
            deliveries.extend(Delivery(run, table, f[0].version, f, shard=shard)
                              for run, f in zip(cuts, files, strict=True))
        for extract, version in history.extracts:
            deliveries.append(Delivery(draw(st.integers(0, runs - 1)), table, version, extract=extract))
    evolve_before: dict[str, int] = {}
    for table, history in histories.items():
        if history.evolved_at_step is None:
            continue
        v2_runs = [d.run for d in deliveries if d.table == table and d.version == 2]
        evolve_before[table] = min(v2_runs) if v2_runs else draw(st.integers(0, runs - 1))
    return Scenario(histories, deliveries, runs, evolve_before)
