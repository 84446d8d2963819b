"""The micro-batch core: Kinesis records in, raw-zone Arrow tables and dead letters out.

Pure over plain data: no client, filesystem or session is touched here. The shard
consumer, the Glue streaming job's ``forEachBatch`` function and the benchmark all
feed it the same ``KinesisRecord`` values and write what it returns through
``streaming_consumer.sink``.

KPL deaggregation uses aws-kinesis-agg's protobuf message and constants, but not its
``iter_deaggregate_records`` generator: that generator re-base64-encodes every user
record into a Lambda-shaped dict (slow), and when an aggregate's MD5 does not match
it silently hands the whole record on as a plain one. Here the 4-byte magic and the
MD5 trailer are checked directly, and a corrupt aggregate becomes one dead letter
that names the MD5 mismatch.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import gc
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import aws_kinesis_agg
import google.protobuf.message  # type: ignore[import-untyped]
import pyarrow as pa
import pyarrow.compute as pc

# the deaggregator module puts its folder on sys.path, which messages_pb2 needs to import config_pb2
from aws_kinesis_agg.deaggregator import messages_pb2

from hybrid_ingest import rawformat
from hybrid_ingest.convert import TIMESTAMP
from hybrid_ingest.errors import HybridIngestError, WireFormatError
from hybrid_ingest.position import SUB_DIGITS, Position, sequence_prefix
from hybrid_ingest.registry import SchemaVersion
from hybrid_ingest.tables import required_fields, validate_event
from hybrid_ingest.wire import fingerprint_of

KPL_MAGIC: bytes = aws_kinesis_agg.MAGIC
KPL_DIGEST_SIZE: int = aws_kinesis_agg.DIGEST_SIZE

Resolver = Callable[[bytes], SchemaVersion]


@dataclass(frozen=True, slots=True)
class KinesisRecord:
    """One record as GetRecords (or Glue's Kinesis source) returns it, possibly a KPL aggregate.

    ``sub`` is non-zero only for a plain record that a source already cut out of an aggregate
    (several rows sharing one sequence number): it keeps (sequence, sub) unique.
    """

    data: bytes
    sequence: str
    partition_key: str
    arrival: dt.datetime
    sub: int = 0


class UserRecord(NamedTuple):
    """One change event's bytes and where it sits in the shard (a tuple: one is made per event)."""

    data: bytes
    sequence: str
    sub: int
    partition_key: str
    arrival: dt.datetime

    @property
    def position(self) -> Position:
        return Position.of(self.sequence, self.sub)


@dataclass(frozen=True)
class DeadLetter:
    """Input that could not become a raw row, kept whole with the reason it was refused."""

    shard: str
    position: Position
    partition_key: str
    arrival: dt.datetime
    reason: str
    error: str
    data: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "shard": self.shard, "position": str(self.position),
            "partition_key": self.partition_key, "arrival": self.arrival.isoformat(),
            "reason": self.reason, "error": self.error, "data_base64": base64.b64encode(self.data).decode(),
        }


@dataclass(frozen=True)
class RawBatch:
    """The rows of one table at one schema version from one shard: one raw file."""

    table: str
    version: int
    shard: str
    first: Position
    last: Position
    arrival: dt.datetime
    rows: pa.Table


@dataclass
class BatchResult:
    """What one micro-batch of one shard produced; ``last`` covers dead letters too."""

    shard: str
    raw: list[RawBatch] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    kinesis_records: int = 0
    user_records: int = 0
    bytes: int = 0
    last: Position | None = None

    @property
    def rows(self) -> int:
        return sum(b.rows.num_rows for b in self.raw)


def deaggregate(record: KinesisRecord) -> list[UserRecord]:
    """The user records inside a Kinesis record (itself, sub 0, when it is not a KPL aggregate)."""
    data = record.data
    if not data.startswith(KPL_MAGIC):
        return [UserRecord(data, record.sequence, record.sub, record.partition_key, record.arrival)]
    if len(data) <= len(KPL_MAGIC) + KPL_DIGEST_SIZE:
        raise WireFormatError(f"KPL aggregate of {len(data)} bytes is too short to hold a message and digest")
    message = data[len(KPL_MAGIC):-KPL_DIGEST_SIZE]
    if hashlib.md5(message).digest() != data[-KPL_DIGEST_SIZE:]:
        raise WireFormatError("KPL aggregate MD5 digest does not match its contents (corrupt record)")
    aggregate = messages_pb2.AggregatedRecord()
    try:
        aggregate.ParseFromString(message)
    except google.protobuf.message.DecodeError as exc:
        raise WireFormatError(f"KPL aggregate protobuf does not parse: {exc}") from exc
    keys = list(aggregate.partition_key_table)
    sequence, arrival = record.sequence, record.arrival
    try:
        return [UserRecord(inner.data, sequence, sub, keys[inner.partition_key_index], arrival)
                for sub, inner in enumerate(aggregate.records)]
    except IndexError as exc:
        raise WireFormatError(f"KPL sub-record points past the {len(keys)} partition keys of its aggregate") from exc


SLICE_EVENTS = 10_000


class _Accumulator:
    """The events of one (table, schema version) from one batch, cut into Arrow columns a slice at a time.

    The hot loop only appends the decoded event and its user record. Every ``SLICE_EVENTS``
    events (and at the end) the slice's columns are cut out with one comprehension each
    (much cheaper than appending field by field) and its decoded dicts are dropped: a flush
    holds at most one slice of Python objects beside compact Arrow data, so its memory is
    bounded by the flush policy's bytes, not by how many events a burst packed into them.
    What is the same for all user records of one Kinesis record (its sequence number,
    arrival, ``_kpos`` prefix) is converted once per record and repeated by Arrow.
    """

    def __init__(self, version: SchemaVersion, shard: str) -> None:
        self.version = version
        self.shard = shard
        spec = version.spec
        self.schema = rawformat.raw_schema(spec, version.version)
        self.types = {f.name: f.type for f in self.schema}
        # fastavro returns uuid.UUID for uuid logical types; Arrow stores them as strings
        self.uuid_fields = {f["name"] for f in spec.schema["fields"] if _is_uuid(f["type"])}
        self.required = tuple(required_fields(spec))
        self.keys = tuple(spec.primary_key)
        self.events: list[dict[str, Any]] = []
        self.records: list[UserRecord] = []
        self.batches: list[pa.RecordBatch] = []
        self.first: UserRecord | None = None
        self.last: UserRecord | None = None

    def check(self, event: dict[str, Any]) -> None:
        """``validate_event`` for an event decoded with this version's envelope, without its per-call setup.

        Avro decoding already guarantees the op symbol, an integer seq and a row with exactly
        the schema's fields, so what is left is the sign of seq and the non-null fields each
        op needs; anything suspicious goes through ``validate_event`` for the canonical error.
        """
        row = event["row"]
        for name in self.keys if event["op"] == "d" else self.required:
            if row[name] is None:
                validate_event(self.version.spec, event)
        if event["seq"] < 0:
            validate_event(self.version.spec, event)

    def add(self, record: UserRecord, event: dict[str, Any]) -> None:
        self.events.append(event)
        self.records.append(record)
        if len(self.events) >= SLICE_EVENTS:
            self.cut()

    def cut(self) -> None:
        """The pending events as one Arrow record batch; their dicts are let go."""
        events, records = self.events, self.records
        if not events:
            return
        if self.first is None:
            self.first = records[0]
        self.last = records[-1]
        self.events, self.records = [], []
        count = len(events)
        runs: list[UserRecord] = []  # the first user record of each Kinesis record, in order
        run_of: list[int] = []
        sequence = None
        for r in records:
            if r.sequence is not sequence:  # one aggregate's user records share its sequence string
                sequence = r.sequence
                runs.append(r)
            run_of.append(len(runs) - 1)
        repeat = pa.array(run_of, pa.int32())
        subs = pa.array([r.sub for r in records], pa.int64())
        prefixes = pa.array([sequence_prefix(r.sequence) for r in runs], pa.string()).take(repeat)
        data: dict[str, Any] = {
            rawformat.OP: [e["op"] for e in events],
            rawformat.SEQ: [e["seq"] for e in events],
            rawformat.OP_TS: [e["ts"] for e in events],
            rawformat.SHARD: pa.repeat(pa.scalar(self.shard, pa.string()), count),
            rawformat.KINESIS_SEQ: pa.array([r.sequence for r in runs], pa.string()).take(repeat),
            rawformat.KINESIS_SUB: subs,
            rawformat.KPOS: pc.binary_join_element_wise(
                prefixes, pc.utf8_lpad(subs.cast(pa.string()), SUB_DIGITS, "0"), ""),
            rawformat.ARRIVAL: pa.array([r.arrival for r in runs], TIMESTAMP).take(repeat),
            rawformat.SCHEMA_VERSION: pa.repeat(pa.scalar(self.version.version, pa.int32()), count),
        }
        rows = [e["row"] for e in events]
        del events
        for name in self.version.spec.field_names:
            if name in self.uuid_fields:
                data[name] = [None if r[name] is None else str(r[name]) for r in rows]
            else:
                data[name] = [r[name] for r in rows]
        arrays = [column if isinstance(column, pa.Array) else pa.array(column, type=self.types[name])
                  for name, column in data.items()]
        self.batches.append(pa.RecordBatch.from_arrays(arrays, schema=self.schema))

    def finish(self) -> RawBatch | None:
        self.cut()
        if self.first is None or self.last is None:
            return None
        return RawBatch(
            table=self.version.table, version=self.version.version, shard=self.shard,
            first=self.first.position, last=self.last.position, arrival=self.first.arrival,
            rows=pa.Table.from_batches(self.batches, schema=self.schema),
        )


def _is_uuid(avro_type: Any) -> bool:
    branches = avro_type if isinstance(avro_type, list) else [avro_type]
    return any(isinstance(b, dict) and b.get("logicalType") == "uuid" for b in branches)


def user_records(records: Iterable[KinesisRecord], shard: str, dead: list[DeadLetter],
                 after: Position | None = None) -> Iterator[UserRecord]:
    """Deaggregate in order; a corrupt aggregate is one dead letter.

    Records at or below ``after`` are not yielded: they were handled before a restart, and a
    restart re-reads the whole aggregate its checkpoint sits in.
    """
    after_seq = after.sequence if after is not None else -1
    after_sub = after.sub if after is not None else -1
    for record in records:
        seq = int(record.sequence)
        if seq < after_seq:
            continue
        try:
            inner = deaggregate(record)
        except WireFormatError as exc:
            if seq > after_seq or after_sub < 0:
                dead.append(DeadLetter(shard, Position.of(record.sequence), record.partition_key, record.arrival,
                                       exc.reason, str(exc), record.data))
            continue
        if seq == after_seq:
            inner = [u for u in inner if u.sub > after_sub]
        yield from inner


def build_batch(shard: str, records: Iterable[KinesisRecord], resolve: Resolver,
                after: Position | None = None) -> BatchResult:
    """Decode, validate and route one shard's records into per-(table, version) raw batches.

    ``after`` is the shard's checkpoint: user records at or below it were written by an
    earlier batch (a restart re-reads the aggregate the checkpoint sits in) and are skipped.
    A record that cannot be decoded, names an unknown schema or fails validation becomes a
    dead letter and the rest of the batch goes on; anything else (a registry outage) raises,
    so the batch is retried rather than dead-lettered.
    """
    with _cyclic_gc_paused():
        return _build_batch(shard, records, resolve, after)


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause CPython's cycle collector for one batch.

    A batch keeps one decoded dict per event alive until it is cut into columns, and the
    collector would rescan that growing heap again and again (measured: ~15% of the batch's
    CPU time). The loop creates no reference cycles, so reference counting still frees
    everything; the collector runs again as soon as the batch is built.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _build_batch(shard: str, records: Iterable[KinesisRecord], resolve: Resolver,
                 after: Position | None) -> BatchResult:
    result = BatchResult(shard)
    accumulators: dict[bytes, _Accumulator] = {}
    last_sequence: list[str] = []

    def counting(source: Iterable[KinesisRecord]) -> Iterator[KinesisRecord]:
        for record in source:
            result.kinesis_records += 1
            result.bytes += len(record.data)
            last_sequence[:] = [record.sequence]
            yield record

    last_user: UserRecord | None = None
    for record in user_records(counting(records), shard, result.dead, after):
        result.user_records += 1
        last_user = record
        try:
            fp = fingerprint_of(record.data)
            accumulator = accumulators.get(fp)
            if accumulator is None:
                accumulator = accumulators[fp] = _Accumulator(resolve(fp), shard)
            event = accumulator.version.codec.decode_message(record.data)
            accumulator.check(event)
        except HybridIngestError as exc:
            result.dead.append(DeadLetter(shard, record.position, record.partition_key, record.arrival,
                                          exc.reason, str(exc), record.data))
            continue
        accumulator.add(record, event)
    # everything read is done: the last user record, or a trailing record with none (a dead aggregate)
    candidates = [p for p in (after, last_user.position if last_user else None) if p is not None]
    if last_sequence:
        candidates.append(Position.of(last_sequence[0]))
    result.last = max(candidates) if candidates else None
    result.raw = [raw for raw in (a.finish() for a in accumulators.values()) if raw is not None]
    result.raw.sort(key=lambda b: (b.table, b.version))
    return result
