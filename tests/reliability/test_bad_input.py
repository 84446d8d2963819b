"""The bad-input corpus: every kind of broken input gives a clear error or a dead letter, and nothing is lost.

Stream side (the consumer's micro-batch core): events in = raw rows out + dead
letters, and every dead letter keeps the refused bytes whole with its reason.
Edge side (producers, bulk push, manifests, registry, query): a clear error that
names the problem, and nothing half-sent or half-landed.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from aws_kinesis_agg.aggregator import RecordAggregator

from hybrid_ingest import layout
from hybrid_ingest.aws import Clients
from hybrid_ingest.convert import arrow_schema
from hybrid_ingest.errors import (
    ManifestError,
    QueryError,
    RecordTooLargeError,
    SchemaIncompatibleError,
    ValidationError,
    WireFormatError,
)
from hybrid_ingest.lake import Lake
from hybrid_ingest.manifest import Manifest, list_extracts, read_manifest, verify_manifest, write_manifest
from hybrid_ingest.query.local import LocalQuery
from hybrid_ingest.registry import Registry, SchemaVersion
from hybrid_ingest.state import StateStore
from hybrid_ingest.wire import MAGIC, Codec
from producers.events import event_from_line
from producers.kinesis import MAX_RECORD_BYTES
from producers.producer import encode_event
from streaming_consumer.core import KinesisRecord, build_batch
from streaming_consumer.sink import write_batch
from tests.conftest import Runner
from tests.reliability import tally

EPOCH = dt.datetime(2026, 11, 21, 10, 0, tzinfo=dt.UTC)
SHARD = "shardId-000000000000"


def customer(key: int, seq: int, op: str = "c", **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "customer_id": key, "email": f"c{key}@example.com", "full_name": f"Customer {key}", "country": "FR",
        "tier": "gold", "credit_limit": decimal.Decimal("10.50"), "is_active": True,
        "signup_date": dt.date(2024, 1, 1), "updated_at": EPOCH, "phone": None,
    }
    row.update(changes)
    return {"op": op, "seq": seq, "ts": EPOCH, "row": row if op != "d" else {"customer_id": key}}


def aggregated(payloads: list[bytes]) -> bytes:
    aggregator = RecordAggregator()
    for i, data in enumerate(payloads):
        assert aggregator.add_user_record(f"customers|{i}", data) is None
    _key, _hash, data = aggregator.clear_and_get().get_contents()
    return bytes(data)


def bad_md5(payloads: list[bytes]) -> bytes:
    data = bytearray(aggregated(payloads))
    data[-1] ^= 0xFF
    return bytes(data)


def bad_protobuf(_payloads: list[bytes]) -> bytes:
    body = b"\x0a\xff\xff\xff\xff garbage"
    return b"\xf3\x89\x9a\xc2" + body + hashlib.md5(body).digest()


def corpus(codec: Codec, unknown: Codec) -> dict[str, tuple[bytes, str]]:
    """name -> (bytes on the wire, the dead-letter reason the consumer must give)."""
    good = codec.encode(customer(900, 1))
    body = good[10:]
    return {
        "truncated avro": (good[: len(good) - 7], "bad-wire-format"),
        "garbled avro body": (codec.header + bytes(reversed(body)), "bad-wire-format"),
        "trailing bytes": (good + b"\x00\x01", "bad-wire-format"),
        "wrong magic bytes": (b"\xc3\x02" + good[2:], "bad-wire-format"),
        "shorter than the header": (MAGIC + b"\x01\x02", "bad-wire-format"),
        "empty record": (b"", "bad-wire-format"),
        "json instead of avro": (b'{"op": "c", "seq": 1}', "bad-wire-format"),
        "unknown fingerprint": (unknown.encode({"op": "c", "seq": 1, "ts": None, "row": {"customer_id": 901}}),
                                "unknown-fingerprint"),
        "aggregate with a bad MD5": (bad_md5([codec.encode(customer(902, 1)), good]), "bad-wire-format"),
        "aggregate protobuf that does not parse": (bad_protobuf([]), "bad-wire-format"),
        "insert missing a required field": (codec.encode(customer(903, 1, email=None)), "invalid-row"),
        "negative seq": (codec.encode(customer(904, -5)), "invalid-row"),
    }


@pytest.fixture
def customers(registry: Registry) -> SchemaVersion:
    return registry.latest("customers")


@pytest.fixture
def stranger() -> Codec:
    """A codec for a schema nobody registered: well-formed records with an unknown fingerprint."""
    return Codec({"type": "record", "name": "stranger", "fields": [
        {"name": "op", "type": "string"}, {"name": "seq", "type": "long"},
        {"name": "ts", "type": ["null", "long"], "default": None},
        {"name": "row", "type": {"type": "record", "name": "r", "fields": [
            {"name": "customer_id", "type": "long"}]}}]})


def test_every_bad_stream_record_is_dead_lettered_and_nothing_is_lost(
        customers: SchemaVersion, stranger: Codec, registry: Registry, lake: Lake) -> None:
    codec = customers.codec
    bad = corpus(codec, stranger)
    goods = [codec.encode(customer(k, 10 + k)) for k in range(20)]
    # good and bad interleaved, some good ones inside a healthy aggregate
    wire: list[bytes] = []
    expected_good = 0
    for i, (data, _reason) in enumerate(bad.values()):
        wire.append(goods[i % len(goods)] if i % 2 else aggregated(goods[i:i + 3]))
        expected_good += 1 if i % 2 else len(goods[i:i + 3])
        wire.append(data)
    records = [KinesisRecord(data, str(1000 + i), f"customers|{i}", EPOCH) for i, data in enumerate(wire)]
    result = build_batch(SHARD, records, registry.by_fingerprint)
    written = write_batch(lake, result)

    events_in = expected_good + len(bad)
    assert result.rows == expected_good
    assert len(result.dead) == len(bad)
    lost = events_in - (written.rows + written.dead)
    tally.lost(lost)
    tally.add("bad_stream_events_in", events_in)
    assert lost == 0
    by_bytes = {d.data: d for d in result.dead}
    for name, (data, reason) in bad.items():
        tally.bad_input(f"stream: {name}")
        assert data in by_bytes, f"{name}: not dead-lettered whole"
        letter = by_bytes[data]
        assert letter.reason == reason, f"{name}: reason {letter.reason!r}, expected {reason!r} ({letter.error})"
        assert letter.error, f"{name}: no error message"
    # the dead letters are in the lake under dlq/stream/<reason>/, bytes intact
    stored = []
    for info in lake.files(layout.DLQ, ".jsonl"):
        reason = lake.rel(info.path).split("/")[2]
        for line in lake.read_bytes(lake.rel(info.path)).decode().splitlines():
            doc = json.loads(line)
            assert doc["reason"] == reason
            stored.append(doc)
    assert len(stored) == len(bad)
    assert result.last is not None
    assert result.last.sequence == 1000 + len(wire) - 1, "the checkpoint must cover the dead letters too"


def decode_as_a_reader(registry: Registry, fallback: SchemaVersion, data: bytes) -> dict[str, Any]:
    """Find the writer schema by the record's fingerprint (when it has one), then decode with it."""
    fp = data[2:10] if data[:2] == MAGIC and len(data) >= 10 else fallback.fingerprint
    return registry.by_fingerprint(fp).codec.decode(data)


CORPUS = ("truncated avro", "garbled avro body", "trailing bytes", "wrong magic bytes", "shorter than the header",
          "empty record", "json instead of avro", "unknown fingerprint", "aggregate with a bad MD5",
          "aggregate protobuf that does not parse", "insert missing a required field", "negative seq")


def test_corpus_names_are_complete(customers: SchemaVersion, stranger: Codec) -> None:
    assert tuple(corpus(customers.codec, stranger)) == CORPUS


@pytest.mark.parametrize("name", [n for n in CORPUS if not n.startswith("aggregate")])
def test_codec_refuses_each_bad_record_clearly(name: str, customers: SchemaVersion, stranger: Codec,
                                               registry: Registry) -> None:
    """Decoding directly (the path the live view and tools take) raises a typed error, never returns junk."""
    data, reason = corpus(customers.codec, stranger)[name]
    tally.bad_input(f"decode: {name}")
    if reason == "invalid-row":
        from hybrid_ingest.tables import validate_event

        with pytest.raises(ValidationError):
            validate_event(customers.spec, customers.codec.decode(data))
        return
    with pytest.raises(WireFormatError) as info:
        decode_as_a_reader(registry, customers, data)
    assert info.value.reason in ("bad-wire-format", "unknown-fingerprint")
    assert str(info.value)


BAD_LINES: dict[str, tuple[str, str]] = {
    "malformed json": ('{"op": "c", "seq": 1, "row": {', "invalid JSON"),
    "missing key": (json.dumps({"op": "c", "seq": 1, "row": {"email": "a@b"}}), "customer_id"),
    "null key": (json.dumps({"op": "d", "seq": 1, "row": {"customer_id": None}}), "customer_id"),
    "wrong type": (json.dumps({"op": "u", "seq": 1, "row": {"customer_id": "seven"}}), "customer_id"),
    "unknown field": (json.dumps({"op": "d", "seq": 2, "row": {"customer_id": 1, "shoe_size": 44}}), "shoe_size"),
    "unknown op": (json.dumps({"op": "x", "seq": 1, "row": {"customer_id": 1}}), "op must be one of"),
    "missing seq": (json.dumps({"op": "d", "row": {"customer_id": 1}}), "seq"),
    "not an object": ("[1, 2, 3]", "object"),
}


@pytest.mark.parametrize("name", list(BAD_LINES))
def test_produce_names_each_bad_line(name: str, customers: SchemaVersion) -> None:
    line, needle = BAD_LINES[name]
    tally.bad_input(f"json line: {name}")
    with pytest.raises(ValidationError) as info:
        event_from_line(customers.spec, line)
    assert needle in str(info.value)


def test_oversize_record_is_refused_before_sending(customers: SchemaVersion) -> None:
    tally.bad_input("oversize record")
    event = customer(1, 1, full_name="x" * (MAX_RECORD_BYTES + 10))
    with pytest.raises(RecordTooLargeError, match=r"exceeds the .*limit of one Kinesis record"):
        encode_event(customers, event)


def stream_records(clients: Clients) -> int:
    kinesis = clients.kinesis
    stream = clients.settings.names.stream
    total = 0
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        total += len(kinesis.get_records(ShardIterator=iterator, Limit=10000)["Records"])
    return total


def test_produce_file_with_bad_lines_sends_nothing(cli: Runner, initialized: Clients, tmp_path: Path) -> None:
    good = json.dumps({"op": "d", "seq": 5, "row": {"customer_id": 5}})
    lines = [good] + [line for line, _ in BAD_LINES.values()] + [good]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, _, err = cli("produce", "customers", "--input", str(path))
    tally.bad_input("produce file with bad lines")
    assert code == 1
    for number in range(2, 2 + len(BAD_LINES)):
        assert f"line {number}:" in err
    assert "line 1:" not in err
    assert stream_records(initialized) == 0, "a file with a bad line must send nothing"


def test_csv_extract_missing_a_column_lands_nothing(cli: Runner, lake: Lake, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,email\n1,a@b\n")
    code, _, err = cli("bulk", "push", "customers", "--input", str(bad), "--as-of-seq", "43", "--mode", "full")
    tally.bad_input("csv extract missing a column")
    assert code == 1
    assert "lacks column" in err
    assert list_extracts(lake, "customers") == []


def _landed(lake: Lake, customers: SchemaVersion, rows: int) -> tuple[str, Manifest]:
    from hybrid_ingest.manifest import PartEntry

    extract_id = "7-20261121T000000Z-test"
    data = pa.Table.from_pylist([customer(k, 1)["row"] for k in range(rows)], schema=arrow_schema(customers.spec))
    rel = f"{layout.landing_dir('customers', extract_id)}/part-00000.parquet"
    size = lake.write_parquet(rel, data)
    manifest = Manifest("customers", extract_id, "full", 7, rows, customers.version, customers.fingerprint.hex(),
                        (PartEntry("part-00000.parquet", rows, size,
                                   hashlib.sha256(lake.read_bytes(rel)).hexdigest()),), EPOCH.isoformat())
    write_manifest(lake, manifest)
    return extract_id, manifest


def _rewrite(lake: Lake, manifest: Manifest, **part: Any) -> None:
    from dataclasses import replace

    parts = tuple(replace(p, **part) for p in manifest.parts)
    rows = sum(p.rows for p in parts)
    write_manifest(lake, replace(manifest, parts=parts, rows=rows))


@pytest.mark.parametrize("damage", ["checksum", "row count", "size", "part missing", "truncated part",
                                    "manifest not json", "manifest rows disagree"])
def test_manifest_damage_is_refused(damage: str, customers: SchemaVersion, lake: Lake) -> None:
    extract_id, manifest = _landed(lake, customers, 5)
    part = f"{layout.landing_dir('customers', extract_id)}/part-00000.parquet"
    mpath = layout.manifest_path("customers", extract_id)
    tally.bad_input(f"manifest: {damage}")
    if damage == "checksum":
        _rewrite(lake, manifest, sha256="0" * 64)
    elif damage == "row count":
        _rewrite(lake, manifest, rows=6)
    elif damage == "size":
        _rewrite(lake, manifest, bytes=manifest.parts[0].bytes + 1)
    elif damage == "part missing":
        lake.delete_file(part)
    elif damage == "truncated part":
        lake.write_bytes(part, lake.read_bytes(part)[:100])
    elif damage == "manifest not json":
        lake.write_bytes(mpath, b"{not json")
    else:
        doc = manifest.to_json()
        doc["rows"] = 99
        lake.write_json(mpath, doc)
    with pytest.raises(ManifestError) as info:
        verify_manifest(lake, "customers", extract_id)
    assert extract_id in str(info.value) or "manifest" in str(info.value)
    if damage not in ("manifest not json", "manifest rows disagree"):
        assert read_manifest(lake, "customers", extract_id).extract_id == extract_id


def test_merge_refuses_a_damaged_extract_and_keeps_the_table(customers: SchemaVersion, lake: Lake,
                                                             initialized: Clients, registry: Registry,
                                                             store: StateStore) -> None:
    """A full extract with a bad checksum must not replace the table (it would delete every row it lacks)."""
    from glue_jobs.merge import MergeContext, run_merge

    extract_id, manifest = _landed(lake, customers, 5)
    _rewrite(lake, manifest, sha256="f" * 64)
    tally.bad_input("merge: full extract with a bad checksum")
    ctx = MergeContext(clients=initialized, lake=lake, registry=registry, store=store)
    result = run_merge(ctx, "customers", engine="duckdb")
    assert extract_id not in store.watermark("customers").extracts, "a damaged extract must stay pending"
    assert result.stats.get("extracts_rejected"), "the run must report the rejected extract"
    assert LocalQuery(initialized, lake, registry, store).run("SELECT count(*) FROM customers").rows == [(0,)]


def test_incompatible_schema_registration_is_refused(registry: Registry) -> None:
    tally.bad_input("incompatible schema registration")
    spec = registry.latest("customers").spec
    schema = json.loads(json.dumps(spec.schema))
    schema["fields"].append({"name": "loyalty", "type": "long"})  # no default: old data unreadable
    with pytest.raises(SchemaIncompatibleError) as info:
        registry.register(spec.with_schema(schema))
    assert "loyalty" in str(info.value)
    assert registry.latest("customers").version == 1


@pytest.mark.parametrize(("sql", "needle"), [
    ("SELEC * FROM customers", ""),
    ("SELECT nope FROM customers", "nope"),
    ("SELECT * FROM no_such_table", "no_such_table"),
    ("SELECT * FROM customers WHERE", ""),
    ("SELECT 'unterminated FROM customers", "cannot parse the SQL"),
])
def test_sql_errors_are_query_errors(sql: str, needle: str, initialized: Clients, lake: Lake,
                                     registry: Registry, store: StateStore) -> None:
    from glue_jobs.merge import MergeContext, run_merge

    run_merge(MergeContext(clients=initialized, lake=lake, registry=registry, store=store), "customers",
              engine="duckdb")
    tally.bad_input(f"sql: {sql}")
    with pytest.raises(QueryError) as info:
        LocalQuery(initialized, lake, registry, store).run(sql)
    assert needle in str(info.value)


def test_junk_file_in_raw_fails_the_merge_loudly(initialized: Clients, lake: Lake, registry: Registry,
                                                 store: StateStore) -> None:
    """A non-Parquet object in raw/ must fail the run with a clear error, not read as zero rows."""
    from glue_jobs.merge import MergeContext, run_merge
    from hybrid_ingest.errors import HybridIngestError

    tally.bad_input("non-parquet object in raw")
    rel = "raw/customers/ingest_date=2026-11-21/ingest_hour=10/shardId-000000000000-1_0-2_0.parquet"
    lake.write_bytes(rel, b"not parquet at all")
    with pytest.raises(HybridIngestError) as info:
        run_merge(MergeContext(clients=initialized, lake=lake, registry=registry, store=store), "customers",
                  engine="duckdb")
    assert str(info.value)
    assert store.watermark("customers").version == 0


# -- conversion errors: every Avro type, through produce's JSON, send()'s Python values and bulk push -------

KINDS_SCHEMA: dict[str, Any] = {"type": "record", "name": "kinds", "fields": [
    {"name": "id", "type": "long"},
    {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
    {"name": "ref", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "at_ms", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}], "default": None},
    {"name": "wall", "type": ["null", {"type": "long", "logicalType": "local-timestamp-micros"}],
     "default": None},
    {"name": "color", "type": {"type": "enum", "name": "color", "symbols": ["red", "green"]}},
    {"name": "code", "type": ["null", {"type": "fixed", "name": "code4", "size": 4}], "default": None},
    {"name": "blob", "type": ["null", "bytes"], "default": None},
    {"name": "n", "type": "int"},
    {"name": "f", "type": ["null", "float"], "default": None},
    {"name": "d", "type": ["null", "double"], "default": None},
    {"name": "s", "type": "string"},
    {"name": "b", "type": "boolean"},
]}
KINDS_ROW: dict[str, Any] = {"id": 1, "amount": "10.50", "ref": "0f0e0d0c-0b0a-4908-8706-050403020100",
                             "day": "2026-11-21", "at": "2026-11-21T10:00:00Z", "color": "red", "n": 7, "s": "x",
                             "b": True}
ROW_IN_PYTHON: dict[str, Any] = {
    "id": 1, "amount": decimal.Decimal("10.50"), "ref": "0f0e0d0c-0b0a-4908-8706-050403020100",
    "day": dt.date(2026, 11, 21), "at": EPOCH, "at_ms": None, "wall": None, "color": "red", "code": None,
    "blob": None, "n": 7, "f": None, "d": None, "s": "x", "b": True}

# name -> (field, JSON value, what the error must say after ``row.<field>``)
BAD_VALUES: dict[str, tuple[str, Any, str]] = {
    "decimal 1e400": ("amount", "1e400", "out of range for decimal(10,2)"),
    "decimal with too many digits": ("amount", "123456789.5", "out of range for decimal(10,2)"),
    "decimal with too many places": ("amount", "1.001", "does not fit decimal(10,2)"),
    "decimal NaN": ("amount", "NaN", "not a finite decimal"),
    "decimal Infinity": ("amount", "-Infinity", "not a finite decimal"),
    "decimal that is no number": ("amount", "ten", "not a decimal number"),
    "decimal as a boolean": ("amount", True, "string or a number"),
    "uuid that is no uuid": ("ref", "not-a-uuid", "8-4-4-4-12"),
    "uuid in braces": ("ref", "{0f0e0d0c-0b0a-4908-8706-050403020100}", "8-4-4-4-12"),
    "uuid without hyphens": ("ref", "0f0e0d0c0b0a49088706050403020100", "8-4-4-4-12"),
    "date that does not exist": ("day", "2026-02-30", "not an ISO-8601 date"),
    "date as a number": ("day", 20261121, "ISO-8601 date string"),
    "timestamp that is no timestamp": ("at", "yesterday", "not an ISO-8601 timestamp"),
    "timestamp with month 13": ("at", "2026-13-01T00:00:00Z", "not an ISO-8601 timestamp"),
    "millisecond timestamp as a number": ("at_ms", 1796000000000, "ISO-8601 timestamp string"),
    "local timestamp with a zone": ("wall", "2026-11-21T10:00:00+02:00", "has no time zone"),
    "enum symbol not in the list": ("color", "blue", "not one of ['red', 'green']"),
    "fixed of the wrong size": ("code", "abc", "exactly 4 bytes"),
    "bytes beyond code point 255": ("blob", "\u20ac", "code points 0-255"),
    "int out of range": ("n", 2**31, "out of range for int"),
    "int as a fraction": ("n", 1.5, "expected an integer"),
    "float out of range": ("f", 1e39, "out of range for float"),
    "double out of range": ("d", 10**400, "out of range for double"),
    "string as a number": ("s", 5, "expected a string"),
    "boolean as text": ("b", "yes", "expected true or false"),
    "null in a required field": ("s", None, "must not be null"),
}


@pytest.fixture
def kinds(registry: Registry) -> SchemaVersion:
    """A table with a field of every type the lake stores, registered like any other."""
    from hybrid_ingest.tables import TableSpec

    return registry.register(TableSpec("kinds", ("id",), KINDS_SCHEMA)).version


@pytest.mark.parametrize("name", list(BAD_VALUES))
def test_json_conversion_names_the_field(name: str, kinds: SchemaVersion) -> None:
    field, value, needle = BAD_VALUES[name]
    tally.bad_input(f"json value: {name}")
    with pytest.raises(ValidationError) as info:
        event_from_line(kinds.spec, json.dumps({"op": "c", "seq": 1, "row": {**KINDS_ROW, field: value}}))
    assert f"row.{field}" in str(info.value)
    assert needle in str(info.value)


def test_json_conversion_of_the_event_time_names_ts(kinds: SchemaVersion) -> None:
    tally.bad_input("json value: event ts that is no timestamp")
    with pytest.raises(ValidationError, match=r"^ts: 'noon' is not an ISO-8601 timestamp"):
        event_from_line(kinds.spec, json.dumps({"op": "c", "seq": 1, "ts": "noon", "row": KINDS_ROW}))


def test_json_values_the_rules_accept(kinds: SchemaVersion) -> None:
    """The documented decisions: no zone = UTC, offsets converted, trailing zeros, any case of hex."""
    event = event_from_line(kinds.spec, json.dumps({"op": "c", "seq": 1, "row": {
        **KINDS_ROW, "amount": "12345678.500", "ref": "0F0E0D0C-0B0A-4908-8706-050403020100",
        "at": "2026-11-21T12:00:00+02:00", "at_ms": "2026-11-21T10:00:00", "wall": "2026-11-21T10:00:00",
        "code": "abcd", "d": 1e300}}))
    row = event["row"]
    assert row["amount"] == decimal.Decimal("12345678.50")
    assert row["at"] == row["at_ms"] == EPOCH
    assert row["wall"] == EPOCH.replace(tzinfo=None)  # a wall-clock time, no zone
    assert encode_event(kinds, event)


# name -> (field, Python value given to send(), what the error must say after ``row.<field>``)
BAD_PYTHON_VALUES: dict[str, tuple[str, Any, str]] = {
    "decimal 1e400": ("amount", decimal.Decimal("1e400"), "out of range for decimal(10,2)"),
    "decimal with too many places": ("amount", decimal.Decimal("1.001"), "does not fit decimal(10,2)"),
    "decimal NaN": ("amount", decimal.Decimal("NaN"), "not a finite decimal"),
    "decimal as a float": ("amount", 1.5, "expected a decimal.Decimal"),
    "uuid that is no uuid": ("ref", "not-a-uuid", "8-4-4-4-12"),
    "date as a list": ("day", [2026, 11, 21], "expected a datetime.date"),
    "decimal with more places than the scale": ("amount", decimal.Decimal("1.500"), "Scale provided"),
    "timestamp as text": ("at", "2026-11-21T10:00:00Z", "expected a datetime.datetime"),
    "float out of range": ("f", 1e39, "out of range for float"),
    "local timestamp with a zone": ("wall", EPOCH, "has no time zone"),
    "enum symbol not in the list": ("color", "blue", "not one of"),
    "fixed of the wrong size": ("code", b"abc", "exactly 4 bytes"),
    "int as text": ("n", "7", "expected an integer"),
    "int out of range": ("n", 2**40, "out of range for int"),
    "string that is no UTF-8": ("s", "\ud800", "UTF-8"),
    "boolean as a number": ("b", 1, "expected true or false"),
}


@pytest.mark.parametrize("name", list(BAD_PYTHON_VALUES))
def test_send_refuses_bad_python_values_naming_the_field(name: str, kinds: SchemaVersion, initialized: Clients,
                                                         registry: Registry, tmp_path: Path) -> None:
    """The library's ``send()`` refuses what the consumer could not store, before anything is spooled."""
    from producers.producer import ChangeEventProducer

    field, value, needle = BAD_PYTHON_VALUES[name]
    tally.bad_input(f"send(): {name}")
    producer = ChangeEventProducer.open(initialized.kinesis, initialized.settings.names.stream, registry.latest,
                                        tmp_path / "spool", background=False)
    try:
        with pytest.raises(ValidationError) as info:
            producer.send("kinds", {"op": "c", "seq": 1, "ts": EPOCH, "row": {**ROW_IN_PYTHON, field: value}})
        assert f"row.{field}" in str(info.value)
        assert needle in str(info.value)
        assert producer.records.spool.pending_count == 0
        producer.send("kinds", {"op": "c", "seq": 2, "ts": EPOCH, "row": ROW_IN_PYTHON})
        assert producer.records.spool.pending_count == 1
    finally:
        producer.records.spool.close()


def test_send_refuses_a_bad_event_time_and_seq(kinds: SchemaVersion) -> None:
    tally.bad_input("send(): event ts that is no datetime")
    with pytest.raises(ValidationError, match=r"^ts: expected a datetime"):
        encode_event(kinds, {"op": "c", "seq": 1, "ts": "noon", "row": ROW_IN_PYTHON})
    tally.bad_input("send(): seq beyond a long")
    with pytest.raises(ValidationError, match=r"seq must be an integer from 0 to 2\^63-1"):
        encode_event(kinds, {"op": "c", "seq": 2**63, "ts": EPOCH, "row": ROW_IN_PYTHON})


def test_produce_reports_conversion_errors_by_line_and_field(cli: Runner, kinds: SchemaVersion,
                                                             initialized: Clients, tmp_path: Path) -> None:
    lines = [json.dumps({"op": "c", "seq": 1, "row": KINDS_ROW})]
    for number, (field, value, _) in enumerate(BAD_VALUES.values(), start=2):
        lines.append(json.dumps({"op": "c", "seq": number, "row": {**KINDS_ROW, field: value}}))
    path = tmp_path / "kinds.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, _, err = cli("produce", "kinds", "--input", str(path))
    tally.bad_input("produce file with conversion errors")
    assert code == 1
    reported = err.strip().splitlines()
    assert len(reported) == min(len(BAD_VALUES), 20), "one line per bad line (the first 20)"
    for number, (field, _, needle) in enumerate(list(BAD_VALUES.values())[:20], start=2):
        line = reported[number - 2]
        assert line.startswith(f"error: {path}: line {number}: row.{field}: "), line
        assert needle in line
    assert f"{len(BAD_VALUES)} bad line(s), nothing was sent" in reported[-1]
    assert stream_records(initialized) == 0


CUSTOMER_CSV_HEADER = "customer_id,email,full_name,country,tier,credit_limit,is_active,signup_date,updated_at,phone"
KINDS_HEADER = "id,amount,ref,day,at,at_ms,wall,color,code,blob,n,f,d,s,b"
KINDS_CSV_ROW = "{id},10.50,0f0e0d0c-0b0a-4908-8706-050403020100,2026-11-21,2026-11-21T10:00:00Z,,,red,,,7,,,x,true"

# name -> (column, bad CSV text in row 3, what the error must say)
BAD_CSV_VALUES: dict[str, tuple[str, str, str]] = {
    "decimal 1e400": ("amount", "1e400", "'1e400'"),
    "decimal with too many places": ("amount", "1.001", "'1.001'"),
    "decimal NaN": ("amount", "NaN", "'NaN'"),
    "uuid that is no uuid": ("ref", "not-a-uuid", "8-4-4-4-12"),
    "date that does not exist": ("day", "2026-02-30", "'2026-02-30'"),
    "timestamp that is no timestamp": ("at", "yesterday", "'yesterday'"),
    "local timestamp with a zone": ("wall", "2026-11-21T10:00:00+02:00", "'2026-11-21T10:00:00+02:00'"),
    "enum symbol not in the list": ("color", "blue", "not one of"),
    "fixed of the wrong size": ("code", "abc", "exactly 4 bytes"),
    "int out of range": ("n", "2147483648", "'2147483648'"),
    "boolean as yes": ("b", "yes", "'yes'"),
}


def kinds_csv(path: Path, column: str | None = None, text: str = "") -> Path:
    header = KINDS_HEADER.split(",")
    rows = []
    for i in range(1, 6):
        cells = KINDS_CSV_ROW.format(id=i).split(",")
        if column is not None and i == 3:
            cells[header.index(column)] = text
        rows.append(",".join(cells))
    path.write_text("\n".join([KINDS_HEADER, *rows]) + "\n")
    return path


@pytest.mark.parametrize("name", list(BAD_CSV_VALUES))
def test_bulk_push_csv_reports_file_row_and_column(name: str, cli: Runner, kinds: SchemaVersion, lake: Lake,
                                                   tmp_path: Path) -> None:
    column, text, needle = BAD_CSV_VALUES[name]
    source = kinds_csv(tmp_path / "kinds.csv", column, text)
    code, _, err = cli("bulk", "push", "kinds", "--input", str(source), "--as-of-seq", "5", "--mode", "full")
    tally.bad_input(f"csv extract: {name}")
    assert code == 1
    [line] = err.strip().splitlines()
    assert line.startswith(f"error: {source}: row 3, column {column!r}: "), line
    assert needle in line
    assert list_extracts(lake, "kinds") == []


def test_bulk_push_csv_keeps_na_as_text_and_takes_timestamps_without_zone_as_utc(
        cli: Runner, kinds: SchemaVersion, lake: Lake, tmp_path: Path) -> None:
    """Only an unquoted empty field is null: NA (Namibia) or "null" stay text; a timestamp's zone is optional."""
    source = tmp_path / "kinds.csv"
    rows = [KINDS_CSV_ROW.format(id=1).replace(",x,", ",NA,"),
            KINDS_CSV_ROW.format(id=2).replace(",x,", ",null,").replace("2026-11-21T10:00:00Z", "2026-11-21T10:00:00"),
            KINDS_CSV_ROW.format(id=3).replace("0f0e0d0c", "0F0E0D0C")]
    source.write_text("\n".join([KINDS_HEADER, *rows]) + "\n")
    code, _, err = cli("bulk", "push", "kinds", "--input", str(source), "--as-of-seq", "5", "--mode", "full")
    assert code == 0, err
    [extract] = list_extracts(lake, "kinds")
    table = pa.concat_tables(
        [pq.read_table(lake.path(f"{layout.landing_dir('kinds', extract)}/{p.path}"))
         for p in read_manifest(lake, "kinds", extract).parts])
    assert table.column("s").to_pylist() == ["NA", "null", "x"]
    assert table.column("at").to_pylist() == [EPOCH] * 3
    assert set(table.column("ref").to_pylist()) == {"0f0e0d0c-0b0a-4908-8706-050403020100"}


@pytest.mark.parametrize(("column", "values", "needle"), [
    ("amount", pa.array([decimal.Decimal("1.00")] * 2 + [decimal.Decimal("1.001")] * 3, pa.decimal128(12, 3)),
     "does not convert to decimal128(10, 2)"),
    ("amount", pa.array([1.5, 2.25, 1.234, 1.0, 2.0]), "does not fit decimal128(10, 2) exactly"),
    ("ref", pa.array(["0f0e0d0c-0b0a-4908-8706-050403020100"] * 2 + ["nope"] * 3), "8-4-4-4-12"),
    ("n", pa.array([1, 2, 2**40, 3, 4]), "does not convert to int32"),
])
def test_bulk_push_parquet_reports_file_row_and_column(column: str, values: pa.Array, needle: str, cli: Runner,
                                                       kinds: SchemaVersion, lake: Lake, tmp_path: Path) -> None:
    good = pa.Table.from_pylist([{**ROW_IN_PYTHON, "id": i} for i in range(1, 6)], schema=arrow_schema(kinds.spec))
    source = tmp_path / "kinds.parquet"
    pq.write_table(good.set_column(good.schema.get_field_index(column), column, values), source)
    code, _, err = cli("bulk", "push", "kinds", "--input", str(source), "--as-of-seq", "5", "--mode", "full")
    tally.bad_input(f"parquet extract: {values.type} {column}")
    assert code == 1
    [line] = err.strip().splitlines()
    assert line.startswith(f"error: {source}: row 3, column {column!r}: "), line
    assert needle in line
    assert list_extracts(lake, "kinds") == []


@pytest.mark.parametrize(("field_type", "needle"), [
    ({"type": "record", "name": "address", "fields": [{"name": "zip", "type": "string"}]}, "unsupported"),
    ({"type": "array", "items": "string"}, "unsupported"),
    ({"type": "map", "values": "long"}, "unsupported"),
    (["null", "string", "long"], "only [null, T] unions"),
    ({"type": "bytes", "logicalType": "decimal", "precision": 40, "scale": 2}, "precision"),
])
def test_types_the_lake_cannot_store_are_refused_at_registration(field_type: Any, needle: str,
                                                                  registry: Registry) -> None:
    """No producer can send what the consumer and merge have no column for: refused with the field named."""
    from hybrid_ingest.errors import SpecError
    from hybrid_ingest.tables import TableSpec

    tally.bad_input(f"registration: field of type {json.dumps(field_type)[:40]}")
    schema = {"type": "record", "name": "odd", "fields": [{"name": "id", "type": "long"},
                                                          {"name": "extra", "type": field_type}]}
    with pytest.raises(SpecError) as info:
        registry.register(TableSpec("odd", ("id",), schema))
    assert "field 'extra'" in str(info.value)
    assert needle in str(info.value)
    assert "odd" not in registry.tables()


@pytest.mark.parametrize(("avsc", "needle"), [
    ('{"type": "record", "name": "things", "fields": [', "invalid JSON"),
    ('{"type": "record", "name": "things", "fields": [{"name": "id", "type": "lng"}]}', "unknown type 'lng'"),
    ('{"type": "record", "name": "things", "fields": [{"name": "id", "type": "long"}, '
     '{"name": "Id2", "type": "long"}, {"name": "id2", "type": "long"}]}', "differ only in case"),
    ('{"type": "record", "name": "things", "fields": [{"name": "id", "type": "long"}, '
     '{"name": "x-y", "type": "long"}]}', "not a valid Avro name"),
])
def test_schemas_register_of_an_invalid_avro_file_is_one_line(avsc: str, needle: str, cli: Runner,
                                                              tmp_path: Path) -> None:
    tally.bad_input(f"schemas register: {needle}")
    (tmp_path / "things.table.json").write_text(json.dumps({"table": "things", "primary_key": ["id"]}))
    (tmp_path / "things.avsc").write_text(avsc)
    code, _, err = cli("schemas", "register", str(tmp_path / "things.avsc"))
    assert code == 1
    [line] = err.strip().splitlines()
    assert line.startswith("error: ")
    assert "things" in line
    assert needle in line


@pytest.mark.parametrize(("name", "content", "needle"), [
    ("parquet that is not", b"PAR1 and then nothing", "not a readable Parquet file"),
    ("csv of random bytes", bytes(range(256)) * 4, "lacks column"),
    ("csv with a value that is not utf-8", (CUSTOMER_CSV_HEADER + "\n1,\xff@x,N,DE,gold,1.00,true,2025-01-01,"
                                           "2026-01-01T00:00:00Z,\n").encode("latin-1"), "invalid UTF8"),
])
def test_bulk_push_of_a_damaged_file_is_one_line(name: str, content: bytes, needle: str, cli: Runner, lake: Lake,
                                                 tmp_path: Path) -> None:
    tally.bad_input(f"bulk push: {name}")
    source = tmp_path / ("extract.parquet" if name.startswith("parquet") else "extract.csv")
    source.write_bytes(content)
    code, _, err = cli("bulk", "push", "customers", "--input", str(source), "--as-of-seq", "5", "--mode", "full")
    assert code == 1
    [line] = err.strip().splitlines()
    assert line.startswith(f"error: {source}: ")
    assert needle in line
    assert list_extracts(lake, "customers") == []
