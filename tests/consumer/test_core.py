"""The pure micro-batch core and the lake sink: no AWS, a tmp lake only."""

from __future__ import annotations

import base64
import copy
import datetime as dt
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hybrid_ingest import rawformat
from hybrid_ingest.errors import UnknownFingerprintError
from hybrid_ingest.lake import Lake
from hybrid_ingest.position import Position
from hybrid_ingest.registry import SchemaVersion
from hybrid_ingest.tables import envelope_schema, load_spec
from hybrid_ingest.wire import fingerprint
from streaming_consumer.core import KinesisRecord, build_batch, deaggregate
from streaming_consumer.shards import ShardInfo, hash_key, shard_of
from streaming_consumer.sink import write_batch
from tests.consumer.events import (
    EPOCH,
    aggregate,
    customer_event,
    encode,
    kinesis_records,
    order_event,
    read_dlq,
    read_raw,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def version_of(table: str, version: int = 1, extra_field: bool = False) -> SchemaVersion:
    spec = load_spec(SCHEMAS / f"{table}.avsc")
    if extra_field:
        schema = copy.deepcopy(spec.schema)
        schema["fields"].append({"name": "loyalty", "type": ["null", "string"], "default": None})
        spec = spec.with_schema(schema)
    return SchemaVersion(spec, version, fingerprint(envelope_schema(spec)))


CUSTOMERS = version_of("customers")
CUSTOMERS_V2 = version_of("customers", 2, extra_field=True)
ORDERS = version_of("orders")
KNOWN = {v.fingerprint: v for v in (CUSTOMERS, CUSTOMERS_V2, ORDERS)}


def resolve(fp: bytes) -> SchemaVersion:
    if fp not in KNOWN:
        raise UnknownFingerprintError(f"no registered schema has fingerprint {fp.hex()}")
    return KNOWN[fp]


@pytest.fixture
def tmp_lake(tmp_path: Path) -> Lake:
    return Lake.from_uri((tmp_path / "lake").as_uri())


def test_plain_and_aggregated_records_give_the_same_user_records() -> None:
    payloads = encode(CUSTOMERS, [customer_event(k, k) for k in range(5)])
    keys = [f"customers|{k}" for k in range(5)]
    [(agg_key, agg_data)] = aggregate(zip(keys, payloads, strict=True))
    inner = deaggregate(KinesisRecord(agg_data, "42", agg_key, EPOCH))
    assert [u.data for u in inner] == payloads
    assert [u.position for u in inner] == [Position(42, sub) for sub in range(5)]
    assert [u.partition_key for u in inner] == keys
    plain = deaggregate(KinesisRecord(payloads[0], "7", keys[0], EPOCH))
    assert [(u.data, u.position) for u in plain] == [(payloads[0], Position(7, 0))]


def test_batch_routes_tables_with_envelope_columns() -> None:
    customers = encode(CUSTOMERS, [customer_event(1, 10), customer_event(1, 11, "u"), customer_event(2, 12, "d")])
    orders = encode(ORDERS, [order_event(5, 3)])
    [(_, agg)] = aggregate([("customers|1", customers[0]), ("orders|5", orders[0]), ("customers|1", customers[1])])
    records = [*kinesis_records([agg], start=100), *kinesis_records([customers[2]], start=101)]
    result = build_batch("shardId-000000000001", records, resolve)
    assert result.dead == []
    assert result.kinesis_records == 2
    assert result.user_records == 4
    assert result.last == Position(101, 0)
    by_table = {b.table: b for b in result.raw}
    cust = by_table["customers"]
    assert cust.rows.schema == rawformat.raw_schema(CUSTOMERS.spec, 1)
    assert (cust.first, cust.last) == (Position(100, 0), Position(101, 0))
    assert cust.rows.column(rawformat.OP).to_pylist() == ["c", "u", "d"]
    assert cust.rows.column(rawformat.SEQ).to_pylist() == [10, 11, 12]
    assert cust.rows.column(rawformat.KINESIS_SUB).to_pylist() == [0, 2, 0]
    assert cust.rows.column(rawformat.KPOS).to_pylist() == [
        str(Position(100, 0)), str(Position(100, 2)), str(Position(101, 0))]
    assert cust.rows.column(rawformat.SHARD).to_pylist() == ["shardId-000000000001"] * 3
    assert cust.rows.column("email").to_pylist() == ["c1@example.com", "c1@example.com", None]
    assert cust.rows.column("tier").to_pylist() == ["gold", "gold", None]
    assert cust.rows.column(rawformat.OP_TS)[0].as_py() == EPOCH + dt.timedelta(seconds=10)
    assert cust.rows.column(rawformat.ARRIVAL).to_pylist() == [EPOCH, EPOCH, EPOCH]
    order = by_table["orders"]
    assert order.rows.column("external_ref").to_pylist() == ["00000000-0000-0000-0000-000000000005"]
    assert order.rows.column(rawformat.KINESIS_SUB).to_pylist() == [1]


def test_a_batch_cut_in_slices_is_the_batch_cut_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slices bound a flush's decoded events in memory; the rows, their order and positions do not depend on them."""
    customers = encode(CUSTOMERS, [customer_event(k, k, "c" if k % 3 else "d") for k in range(40)])
    orders = encode(ORDERS, [order_event(k, 100 + k) for k in range(9)])
    mixed = [(f"customers|{k}", p) for k, p in enumerate(customers[:25])] + [
        (f"orders|{k}", p) for k, p in enumerate(orders)]
    aggregates = [data for _, data in aggregate(mixed)]
    records = [*kinesis_records(aggregates, start=7), *kinesis_records(customers[25:], start=50)]
    records = [KinesisRecord(r.data, r.sequence, r.partition_key, EPOCH + dt.timedelta(seconds=int(r.sequence)))
               for r in records]
    whole = build_batch("s", records, resolve)
    monkeypatch.setattr("streaming_consumer.core.SLICE_EVENTS", 4)
    sliced = build_batch("s", records, resolve)
    assert [b.rows.num_rows for b in whole.raw] == [40, 9]
    assert [b.rows.to_batches()[0].num_rows for b in sliced.raw] == [4, 4]  # really cut in slices
    for one, other in zip(whole.raw, sliced.raw, strict=True):
        assert (one.table, one.first, one.last, one.arrival) == (other.table, other.first, other.last, other.arrival)
        assert one.rows.equals(other.rows)
    kpos = whole.raw[0].rows.column(rawformat.KPOS).to_pylist()
    kseq = whole.raw[0].rows.column(rawformat.KINESIS_SEQ).to_pylist()
    subs = whole.raw[0].rows.column(rawformat.KINESIS_SUB).to_pylist()
    arrival = whole.raw[0].rows.column(rawformat.ARRIVAL).to_pylist()
    assert kpos == [str(Position(int(q), s)) for q, s in zip(kseq, subs, strict=True)]
    assert arrival == [EPOCH + dt.timedelta(seconds=int(q)) for q in kseq]
    assert kseq[-15:] == [str(n) for n in range(50, 65)]


def test_bad_input_goes_to_dead_letters_and_neighbours_are_kept() -> None:
    good = encode(CUSTOMERS, [customer_event(k, k) for k in range(6)])
    [(_, agg)] = aggregate((f"customers|{k}", p) for k, p in enumerate(good[:3]))
    corrupt_agg = bytearray(agg)
    corrupt_agg[20] ^= 0xFF
    missing_email = customer_event(9, 9)
    missing_email["row"]["email"] = None  # the envelope allows null; validation does not
    unknown_fp = bytearray(good[4])
    unknown_fp[3] ^= 0xFF
    payloads = [good[3], bytes(corrupt_agg), b"not avro at all", CUSTOMERS.codec.encode(missing_email),
                bytes(unknown_fp), good[5]]
    result = build_batch("s-1", kinesis_records(payloads), resolve)
    assert [b.rows.column("customer_id").to_pylist() for b in result.raw] == [[3, 5]]
    reasons = {d.position.sequence: (d.reason, d.error) for d in result.dead}
    assert reasons[2][0] == "bad-wire-format"
    assert "MD5" in reasons[2][1]
    assert reasons[3][0] == "bad-wire-format"
    assert reasons[4][0] == "invalid-row"
    assert "email" in reasons[4][1]
    assert reasons[5][0] == "unknown-fingerprint"
    assert {d.position.sequence: d.data for d in result.dead}[2] == bytes(corrupt_agg)
    assert result.last == Position(6, 0)


def test_restart_inside_an_aggregate_skips_the_sub_records_already_done() -> None:
    payloads = encode(CUSTOMERS, [customer_event(k, k) for k in range(10)])
    [(key, agg)] = aggregate((f"customers|{k}", p) for k, p in enumerate(payloads))
    records = [KinesisRecord(agg, "50", key, EPOCH)]
    result = build_batch("s", records, resolve, after=Position(50, 6))
    assert [b.rows.column("customer_id").to_pylist() for b in result.raw] == [[7, 8, 9]]
    nothing_new = build_batch("s", records, resolve, after=Position(50, 9))
    assert nothing_new.raw == []
    assert nothing_new.last == Position(50, 9)


def test_two_schema_versions_of_a_table_make_two_files(tmp_lake: Lake) -> None:
    v1 = encode(CUSTOMERS, [customer_event(1, 1), customer_event(3, 3)])
    v2_event = customer_event(2, 2)
    v2_event["row"]["loyalty"] = "platinum"
    v2 = encode(CUSTOMERS_V2, [v2_event])
    result = build_batch("s", kinesis_records([v1[0], v2[0], v1[1]]), resolve)
    assert [(b.version, b.first, b.last) for b in result.raw] == [
        (1, Position(1), Position(3)), (2, Position(2), Position(2))]
    written = write_batch(tmp_lake, result)
    assert len(set(written.raw_files)) == 2
    meta = [pq.read_schema(tmp_lake.path(p)).metadata[rawformat.META_SCHEMA_VERSION] for p in written.raw_files]
    assert sorted(meta) == [b"1", b"2"]
    assert read_raw(tmp_lake, "customers").num_rows == 3


def test_sink_names_are_deterministic_so_a_rerun_overwrites(tmp_lake: Lake) -> None:
    payloads = [*encode(ORDERS, [order_event(k, k) for k in range(4)]), b"\xc3\x01garbage"]
    records = kinesis_records(payloads, start=7)
    first = write_batch(tmp_lake, build_batch("shardId-000000000000", records, resolve))
    again = write_batch(tmp_lake, build_batch("shardId-000000000000", records, resolve))
    assert first.raw_files == again.raw_files
    assert first.raw_files == [
        f"raw/orders/ingest_date=2026-11-21/ingest_hour=10/shardId-000000000000-{Position(7)}-{Position(10)}.parquet"]
    assert first.dlq_files == [
        f"dlq/stream/bad-wire-format/shardId-000000000000-{Position(11)}-{Position(11)}.jsonl"]
    assert len(tmp_lake.files("raw", ".parquet")) == 1
    [letter] = read_dlq(tmp_lake)
    assert base64.b64decode(letter["data_base64"]) == b"\xc3\x01garbage"
    assert (letter["shard"], letter["position"]) == ("shardId-000000000000", str(Position(11)))
    assert letter["reason"] == "bad-wire-format"
    assert letter["error"]


def test_shard_of_uses_the_key_hash_and_the_sequence_range() -> None:
    half = 2**127
    shards = [
        ShardInfo("parent", starting_sequence="100", ending_sequence="199", hash_range=(0, 2**128 - 1)),
        ShardInfo("low", ("parent",), starting_sequence="200", hash_range=(0, half - 1)),
        ShardInfo("high", ("parent",), starting_sequence="200", hash_range=(half, 2**128 - 1)),
    ]
    low_key = next(f"k{i}" for i in range(100) if hash_key(f"k{i}") < half)
    high_key = next(f"k{i}" for i in range(100) if hash_key(f"k{i}") >= half)
    assert shard_of(low_key, "150", shards) == "parent"
    assert shard_of(low_key, "250", shards) == "low"
    assert shard_of(high_key, "250", shards) == "high"
    assert shard_of(high_key, "50", shards) is None
