"""Test inputs written per the contracts (raw files, landed extracts) and an independent oracle.

The oracle replays the source's history in plain Python (a dict of key -> latest
row by seq, a full extract replacing the whole state as of its seq); it shares no
code with the merge, so a scenario passing means the merge agrees with the rules,
not with itself.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
from pyiceberg.table import Table

from glue_jobs.merge import MergeContext, RunResult, run_merge
from hybrid_ingest import iceberg, layout
from hybrid_ingest.convert import arrow_schema, row_from_json
from hybrid_ingest.lake import Lake
from hybrid_ingest.manifest import Manifest, PartEntry, write_manifest
from hybrid_ingest.position import Position
from hybrid_ingest.query.local import LocalQuery
from hybrid_ingest.rawformat import raw_schema
from hybrid_ingest.registry import Registry

SHARDS = ("shardId-000000000000", "shardId-000000000001")
ARRIVAL = dt.datetime(2026, 11, 21, 10, 0, tzinfo=dt.UTC)
Event = dict[str, Any]


def order(order_id: int, day: str = "2026-01-15", status: str = "new", notes: str | None = None,
          weight: float | None = 1.5, amount: str = "10.00") -> dict[str, Any]:
    return {"order_id": order_id, "customer_id": order_id % 7, "order_date": day, "status": status,
            "total_amount": amount, "currency": "EUR", "item_count": 1, "weight_kg": weight,
            "discount_rate": 0.0, "placed_at": f"{day}T08:00:00Z",
            "external_ref": f"00000000-0000-0000-0000-{order_id:012d}", "notes": notes}


def item(order_id: int, line_no: int, sku: str = "sku", qty: int = 1) -> dict[str, Any]:
    return {"order_id": order_id, "line_no": line_no, "sku": sku, "quantity": qty, "unit_price": "2.50",
            "gift_wrap": False, "barcode": None}


def customer(cid: int, name: str = "Ann") -> dict[str, Any]:
    return {"customer_id": cid, "email": f"c{cid}@example.com", "full_name": name, "country": "NL",
            "tier": "gold", "credit_limit": "100.00", "is_active": True, "signup_date": "2025-01-01",
            "updated_at": "2026-01-01T00:00:00Z", "phone": None}


def ev(op: str, seq: int, row: dict[str, Any]) -> Event:
    return {"op": op, "seq": seq, "row": row}


def key_only(table: str, row: dict[str, Any]) -> dict[str, Any]:
    keys = {"orders": ("order_id",), "order_items": ("order_id", "line_no"), "customers": ("customer_id",)}[table]
    return {k: row[k] for k in keys}


@dataclass
class RawWriter:
    """Writes raw files as the consumer would: per shard, positions increasing, deterministic names."""

    lake: Lake
    registry: Registry
    next_seq: dict[str, int] = field(default_factory=dict)

    def write(self, table: str, events: list[Event], shard: str = SHARDS[0],
              start: int | None = None, version: int | None = None, statistics: bool = True
              ) -> tuple[Position, Position]:
        """Write one raw file; ``start`` re-uses positions (a redelivery after a consumer restart).

        ``statistics=False`` leaves the footer without min/max, as some writers do.
        """
        schema_version = self.registry.version(table, version) if version else self.registry.latest(table)
        spec = schema_version.spec
        first = self.next_seq.get(shard, 1000) if start is None else start
        columns: dict[str, list[Any]] = {f.name: [] for f in raw_schema(spec, schema_version.version)}
        positions = []
        for i, event in enumerate(events):
            pos = Position(first + i, 0)
            positions.append(pos)
            row = row_from_json(spec, event["row"], key_only=event["op"] == "d")
            columns["_op"].append(event["op"])
            columns["_seq"].append(event["seq"])
            columns["_op_ts"].append(ARRIVAL + dt.timedelta(seconds=event["seq"]))
            columns["_shard"].append(shard)
            columns["_kseq"].append(str(pos.sequence))
            columns["_ksub"].append(0)
            columns["_kpos"].append(str(pos))
            columns["_arrival"].append(ARRIVAL)
            columns["_schema_version"].append(schema_version.version)
            for f in spec.field_names:
                columns[f].append(row.get(f))
        if start is None:
            self.next_seq[shard] = first + len(events)
        schema = raw_schema(spec, schema_version.version)
        data = pa.table(columns, schema=schema)
        rel = layout.raw_file(table, ARRIVAL, shard, positions[0], positions[-1])
        self.lake.write_parquet(rel, data, write_statistics=statistics)
        return positions[0], positions[-1]


def land_extract(lake: Lake, registry: Registry, table: str, rows: list[dict[str, Any]], as_of_seq: int,
                 mode: str, extract_id: str | None = None, allow_mass_delete: bool = False) -> str:
    """Land an extract as DataSync would: parts first, the manifest last."""
    version = registry.latest(table)
    spec = version.spec
    extract_id = extract_id or f"{as_of_seq}-20261121T000000Z-{mode}"
    converted = [row_from_json(spec, r) for r in rows]
    data = pa.Table.from_pylist(converted, schema=arrow_schema(spec))
    part_rel = f"{layout.landing_dir(table, extract_id)}/part-00000.parquet"
    size = lake.write_parquet(part_rel, data)
    digest = hashlib.sha256(lake.read_bytes(part_rel)).hexdigest()
    write_manifest(lake, Manifest(
        table=table, extract_id=extract_id, mode=mode, as_of_seq=as_of_seq,  # type: ignore[arg-type]
        rows=len(rows), schema_version=version.version, fingerprint=version.fingerprint.hex(),
        parts=(PartEntry("part-00000.parquet", len(rows), size, digest),), created_at=ARRIVAL.isoformat(),
        allow_mass_delete=allow_mass_delete))
    return extract_id


@dataclass
class Oracle:
    """The source table as of the highest seq seen: independent replay of what was delivered."""

    table: str
    keys: tuple[str, ...]
    history: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    snapshots: list[tuple[int, list[dict[str, Any]]]] = field(default_factory=list)

    def stream(self, events: Iterable[Event]) -> None:
        for e in events:
            self.history.append((e["seq"], e["op"], e["row"]))

    def full_extract(self, as_of: int, rows: list[dict[str, Any]]) -> None:
        self.snapshots.append((as_of, rows))

    def incremental(self, as_of: int, rows: list[dict[str, Any]]) -> None:
        self.history.extend((as_of, "r", r) for r in rows)

    def expected(self) -> dict[tuple[Any, ...], tuple[int, dict[str, Any]]]:
        state: dict[tuple[Any, ...], tuple[int, dict[str, Any] | None]] = {}
        floor = -1
        if self.snapshots:
            floor, rows = max(self.snapshots, key=lambda s: s[0])
            state = {tuple(r[k] for k in self.keys): (floor, r) for r in rows}
        for seq, op, row in sorted(self.history, key=lambda h: h[0]):
            if seq <= floor:
                continue
            key = tuple(row[k] for k in self.keys)
            if key in state and state[key][0] >= seq:
                continue
            state[key] = (seq, None if op == "d" else row)
        return {k: (s, r) for k, (s, r) in state.items() if r is not None}


def normalise(value: Any) -> Any:
    """Values as the JSON inputs spell them, so query rows compare to oracle rows."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return f"{value:.2f}"
    return value


def table_rows(ctx: MergeContext, sql: str) -> list[dict[str, Any]]:
    result = LocalQuery(ctx.clients, ctx.lake, ctx.registry, ctx.store).run(sql)
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


def assert_matches(ctx: MergeContext, oracle: Oracle, table: str | None = None,
                   columns: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The curated table (through the query path) equals the oracle, row for row, with _seq."""
    name = table or oracle.table
    rows = table_rows(ctx, f"SELECT * FROM {name}")
    expected = oracle.expected()
    got: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = tuple(row[k] for k in oracle.keys)
        assert key not in got, f"key {key} appears twice in {name}"
        got[key] = row
    assert set(got) == set(expected), f"keys differ: extra {set(got) - set(expected)}, missing {set(expected) - set(got)}"
    for key, (seq, row) in expected.items():
        actual = got[key]
        assert actual["_seq"] == seq, f"{key}: _seq {actual['_seq']} != {seq}"
        for column in columns or row:
            assert normalise(actual[column]) == normalise(row[column]), (
                f"{key}.{column}: {actual[column]!r} != {row[column]!r}")
    return rows


def merge(ctx: MergeContext, table: str, engine: str, **kwargs: Any) -> RunResult:
    return run_merge(ctx, table, engine=engine, **kwargs)


def load_table(ctx: MergeContext, table: str) -> Table:
    """The curated table as pyiceberg loads it from the Glue catalog."""
    loaded = iceberg.load(iceberg.catalog(ctx.clients, ctx.lake), iceberg.identifier(ctx.clients, table))
    assert loaded is not None, f"no curated table {table}"
    return loaded


def live_partitions(ctx: MergeContext, table: str) -> dict[str, frozenset[str]]:
    """Partition (Iceberg's human text, ``null``) -> the data file URIs of the current snapshot."""
    spec = ctx.registry.latest(table).spec
    out: dict[str, set[str]] = {}
    for f in iceberg.snapshot_files(load_table(ctx, table), spec):
        out.setdefault("null" if f.partition is None else iceberg.human(spec, f.partition), set()).add(f.uri)
    return {k: frozenset(v) for k, v in out.items()}


def unreferenced_files(ctx: MergeContext, table: str) -> set[str]:
    """Data and tombstone files under the table's folder that no snapshot of the table references."""
    from glue_jobs.retention import referenced

    keep = referenced(load_table(ctx, table), ctx.lake)
    found = set()
    for folder in (layout.curated_data_dir(table), layout.tombstones_dir(table)):  # with hidden ``_pdir=`` folders
        selector = pafs.FileSelector(ctx.lake.path(folder), allow_not_found=True, recursive=True)
        found |= {ctx.lake.rel(i.path) for i in ctx.lake.fs.get_file_info(selector)
                  if i.type == pafs.FileType.File and i.base_name.endswith(".parquet")}
    return found - keep
