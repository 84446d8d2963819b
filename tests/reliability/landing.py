"""Put a scenario's deliveries into the lake exactly as the contracts say the components do.

Raw files follow ``hybrid_ingest.rawformat`` (the consumer's side of the contract)
and extracts follow ``hybrid_ingest.manifest`` (parts first, manifest last), so
the merge under test reads what production would hand it. Only shared contract
modules are used here, never the components' own writers: a bug in a writer
must not be able to hide the same bug in the merge.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import pyarrow as pa

from hybrid_ingest import layout
from hybrid_ingest.convert import arrow_schema, row_from_json
from hybrid_ingest.lake import Lake
from hybrid_ingest.manifest import Manifest, PartEntry, write_manifest
from hybrid_ingest.position import Position
from hybrid_ingest.rawformat import raw_schema
from hybrid_ingest.registry import Registry
from tests.reliability.history import POSITION_BASE, POSITION_STEP, Delivery, TableHistory, evolved

ARRIVAL = dt.datetime(2026, 11, 21, 10, 0, tzinfo=dt.UTC)
OP_TS_BASE = dt.datetime(2026, 11, 20, 0, 0, tzinfo=dt.UTC)


def register_tables(registry: Registry, histories: dict[str, TableHistory]) -> None:
    for history in histories.values():
        registry.register(history.spec)


def register_evolution(registry: Registry, history: TableHistory) -> None:
    registry.register(evolved(history.spec))


def arrival_of(position: int) -> dt.datetime:
    return ARRIVAL + dt.timedelta(seconds=(position - POSITION_BASE) // POSITION_STEP)


def write_raw(lake: Lake, registry: Registry, delivery: Delivery) -> str:
    """One raw file of one shard, named by its first and last position as the consumer names it."""
    if delivery.shard is None or not delivery.events:
        raise ValueError("a raw delivery needs a shard and events")
    version = registry.version(delivery.table, delivery.version)
    spec = version.spec
    schema = raw_schema(spec, version.version)
    columns: dict[str, list[Any]] = {f.name: [] for f in schema}
    for event in delivery.events:
        change = event.change
        position = Position(int(event.position), 0)
        row = row_from_json(spec, dict(change.row), key_only=change.op == "d")
        columns["_op"].append(change.op)
        columns["_seq"].append(change.seq)
        columns["_op_ts"].append(OP_TS_BASE + dt.timedelta(seconds=change.seq))
        columns["_shard"].append(delivery.shard)
        columns["_kseq"].append(str(position.sequence))
        columns["_ksub"].append(position.sub)
        columns["_kpos"].append(str(position))
        columns["_arrival"].append(arrival_of(event.position))
        columns["_schema_version"].append(version.version)
        for name in spec.field_names:
            columns[name].append(row.get(name))
    first, last = delivery.events[0].position, delivery.events[-1].position
    rel = layout.raw_file(delivery.table, arrival_of(first), delivery.shard, Position(int(first)), Position(int(last)))
    lake.write_parquet(rel, pa.table(columns, schema=schema))
    return rel


def land_extract(lake: Lake, registry: Registry, delivery: Delivery, parts: int = 1) -> str:
    """Land an extract as DataSync would: every part first, the manifest (with checksums) last."""
    extract = delivery.extract
    if extract is None:
        raise ValueError("not an extract delivery")
    version = registry.version(delivery.table, delivery.version)
    spec = version.spec
    extract_id = f"{extract.as_of_seq}-20261121T000000Z-{extract.mode}"
    rows = [row_from_json(spec, dict(r)) for r in extract.rows]
    entries = []
    for index in range(parts):
        chunk = rows[index::parts]
        name = f"part-{index:05d}.parquet"
        rel = f"{layout.landing_dir(delivery.table, extract_id)}/{name}"
        size = lake.write_parquet(rel, pa.Table.from_pylist(chunk, schema=arrow_schema(spec)))
        entries.append(PartEntry(name, len(chunk), size, hashlib.sha256(lake.read_bytes(rel)).hexdigest()))
    write_manifest(lake, Manifest(
        table=delivery.table, extract_id=extract_id, mode=extract.mode,  # type: ignore[arg-type]
        as_of_seq=extract.as_of_seq, rows=len(rows), schema_version=version.version,
        fingerprint=version.fingerprint.hex(), parts=tuple(entries), created_at=ARRIVAL.isoformat()))
    return extract_id


def land(lake: Lake, registry: Registry, delivery: Delivery) -> str:
    if delivery.extract is not None:
        return land_extract(lake, registry, delivery)
    return write_raw(lake, registry, delivery)
