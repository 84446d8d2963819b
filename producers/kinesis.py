"""KPL-style aggregation per shard and PutRecords delivery with per-entry retries.

Aggregation (pure): user records are packed into KPL aggregated records (the
``AggregatedRecord`` protobuf message ``aws_kinesis_agg`` ships, its magic and
MD5 trailer), one packing stream per target shard, so each aggregated record
holds only keys that hash to the shard it is routed to. The packing is
``aws_kinesis_agg.aggregator.AggRecord``'s, minus its per-record Python work
(~3.5 us a record, more than the Avro encode): the record's serialized size is
added up from the protobuf field sizes, and the message itself is built by
protobuf's C implementation.

Delivery (adapter over a boto3 Kinesis client): each PutRecords call carries at
most ONE aggregated record per shard, the oldest not yet accepted. Kinesis may
accept some entries of a call and refuse others; with one entry per shard, a
refused entry can never be overtaken by a newer record of the same shard in the
same call, and it stays at the head of its shard's queue for the next call. That
is what keeps one key's events in order across partial failures and retries.

Call-level errors (throttling, 5xx, connection failures) are retried first by
botocore's own retry policy inside the client (``hybrid_ingest.aws``); entry-level
failures are invisible to botocore, so they get exponential backoff with full
jitter here, as does a call that still fails after botocore gave up. Delivery
never drops: it keeps trying until everything is accepted or the caller asks it
to stop, and then the records are still in the spool.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aws_kinesis_agg

# the deaggregator module puts its folder on sys.path, which messages_pb2 needs to import config_pb2
from aws_kinesis_agg.deaggregator import messages_pb2
from botocore.exceptions import BotoCoreError, ClientError

from hybrid_ingest.errors import RecordTooLargeError
from producers.routing import ShardMap

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 1024 * 1024  # Kinesis: data + partition key of one record
MAX_PARTITION_KEY_BYTES = 256 * 4  # 256 characters of UTF-8
AGGREGATE_MAX_BYTES = aws_kinesis_agg.MAX_BYTES_PER_RECORD - MAX_PARTITION_KEY_BYTES
MAX_CALL_RECORDS = 500
MAX_CALL_BYTES = 5 * 1024 * 1024
# protobuf tags/varints of one user record plus the aggregate's magic and MD5 digest, rounded up
USER_RECORD_OVERHEAD = 64


def check_record_size(partition_key: str, data: bytes, limit: int = AGGREGATE_MAX_BYTES) -> None:
    """Refuse a user record that could not fit in an aggregated record on its own."""
    size = len(partition_key.encode()) + len(data) + USER_RECORD_OVERHEAD
    if size > limit:
        raise RecordTooLargeError(
            f"record for key {partition_key[:80]!r} is {len(data)} bytes encoded; with its key and framing "
            f"({size} bytes) it exceeds the {limit}-byte limit of one Kinesis record"
        )


@dataclass(frozen=True)
class Blob:
    """One aggregated Kinesis record ready for PutRecords."""

    shard_id: str
    partition_key: str
    data: bytes
    user_records: int

    @property
    def size(self) -> int:
        return len(self.data) + len(self.partition_key.encode())


KPL_FRAMING = len(aws_kinesis_agg.MAGIC) + aws_kinesis_agg.DIGEST_SIZE


def _varint_size(value: int) -> int:
    """Bytes of a protobuf varint (the common small sizes answered without arithmetic)."""
    if value < 0x80:
        return 1
    if value < 0x4000:
        return 2
    return max(1, (value.bit_length() + 6) // 7)


class _Packing:
    """One aggregated record being filled: the protobuf message, its key table and its serialized size."""

    __slots__ = ("first_key", "keys", "message", "records", "size", "table")

    def __init__(self, first_key: str) -> None:
        self.first_key = first_key
        self.message = messages_pb2.AggregatedRecord()
        self.records = self.message.records
        self.table = self.message.partition_key_table
        self.keys: dict[str, int] = {}
        self.size = KPL_FRAMING  # magic + digest + the message: the sum of its fields' tag + length + bytes

    def blob(self, shard_id: str) -> Blob:
        body = self.message.SerializeToString()
        return Blob(shard_id, self.first_key, aws_kinesis_agg.MAGIC + body + hashlib.md5(body).digest(),
                    len(self.records))


def aggregate(entries: Iterable[tuple[str, bytes]], shard_map: ShardMap,
              max_size: int = AGGREGATE_MAX_BYTES) -> dict[str, deque[Blob]]:
    """Pack user records into aggregated records per target shard, keeping log order within each shard.

    An aggregated record is routed by its first user record's key, as the KPL does. The
    size of each addition is the protobuf encoding's: a new key's ``partition_key_table``
    entry, then the record (``partition_key_index`` and ``data``) as a length-delimited field.
    """
    open_records: dict[str, _Packing] = {}
    out: dict[str, deque[Blob]] = {}
    shard_for = shard_map.shard_for
    for pk, data in entries:
        shard = shard_for(pk)
        current = open_records.get(shard)
        if current is None:
            current = open_records[shard] = _Packing(pk)
        size = len(data)
        data_field = size + (1 if size < 0x80 else 2 if size < 0x4000 else _varint_size(size)) + 1
        while True:  # at most twice: into the open aggregate, else into a new one
            index = current.keys.get(pk)
            grows = 0
            if index is None:
                index = len(current.keys)
                length = len(pk) if pk.isascii() else len(pk.encode())
                grows = 2 + length if length < 0x80 else 1 + _varint_size(length) + length  # key table entry
            inner = data_field + (2 if index < 0x80 else 1 + _varint_size(index))  # + partition_key_index
            grows += inner + (2 if inner < 0x80 else 3 if inner < 0x4000 else 1 + _varint_size(inner))
            if current.size + grows <= max_size:
                break
            if not current.records:
                raise RecordTooLargeError(f"record for key {pk[:80]!r} does not fit one aggregated record")
            out.setdefault(shard, deque()).append(current.blob(shard))
            current = open_records[shard] = _Packing(pk)
        if len(current.keys) == index:
            current.keys[pk] = index
            current.table.append(pk)
        current.records.add(partition_key_index=index, data=data)
        current.size += grows
    for shard, record in open_records.items():
        out.setdefault(shard, deque()).append(record.blob(shard))
    return out


def plan_call(queues: Mapping[str, deque[Blob]], max_records: int = MAX_CALL_RECORDS,
              max_bytes: int = MAX_CALL_BYTES) -> list[Blob]:
    """The next PutRecords call: the head of each shard's queue, within the call's limits."""
    call: list[Blob] = []
    size = 0
    for queue in queues.values():
        if not queue:
            continue
        head = queue[0]
        if len(call) >= max_records or (call and size + head.size > max_bytes):
            break
        call.append(head)
        size += head.size
    return call


def backoff_delay(attempt: int, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Truncated exponential backoff with full jitter (``attempt`` counts from 1)."""
    return rand() * min(cap, base * 2.0 ** (attempt - 1))


THROTTLING_CODES = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException",
                              "KMSThrottlingException", "LimitExceededException"})


@dataclass
class DeliveryStats:
    calls: int = 0
    records: int = 0
    user_records: int = 0
    entry_failures: int = 0
    call_failures: int = 0
    reroutes: int = 0
    last_error: str | None = None
    failures_by_code: dict[str, int] = field(default_factory=dict)


class KinesisDelivery:
    """Delivers batches of (partition key, user record) to one stream; the client is passed in."""

    def __init__(self, kinesis: KinesisClient, stream: str, *, base_delay: float = 0.1,
                 throttle_base_delay: float = 0.5, max_delay: float = 10.0,
                 shard_map_ttl: float = 300.0, sleep: Callable[[float], Any] = time.sleep) -> None:
        self.kinesis = kinesis
        self.stream = stream
        self.base_delay = base_delay
        self.throttle_base_delay = throttle_base_delay
        self.max_delay = max_delay
        self.shard_map_ttl = shard_map_ttl
        self.sleep = sleep
        self.stats = DeliveryStats()
        self._shard_map: ShardMap | None = None
        self._shard_map_at = 0.0

    def shard_map(self) -> ShardMap:
        """The open shards, re-listed after a TTL or when Kinesis routed a record elsewhere (resharding)."""
        if self._shard_map is None or time.monotonic() - self._shard_map_at > self.shard_map_ttl:
            shards: list[Any] = []
            kwargs: dict[str, Any] = {"StreamName": self.stream}
            while True:
                page = self.kinesis.list_shards(**kwargs)
                shards.extend(page["Shards"])
                token = page.get("NextToken")
                if not token:
                    break
                kwargs = {"NextToken": token}
            self._shard_map = ShardMap.from_list_shards(shards)
            self._shard_map_at = time.monotonic()
        return self._shard_map

    def _note_error(self, code: str, message: str) -> None:
        self.stats.failures_by_code[code] = self.stats.failures_by_code.get(code, 0) + 1
        self.stats.last_error = f"{code}: {message}"

    def deliver(self, entries: list[tuple[str, bytes]], should_stop: Callable[[], bool]) -> bool:
        """Put every entry, in order per shard; False if asked to stop before all were accepted."""
        attempt = 0
        while True:
            try:
                queues = aggregate(entries, self.shard_map())
                break
            except (ClientError, BotoCoreError) as exc:
                attempt += 1
                self._note_error(type(exc).__name__, str(exc))
                if not self._wait(attempt, throttled=False, should_stop=should_stop):
                    return False
        attempt = 0
        while any(queues.values()):
            call = plan_call(queues)
            try:
                response = self.kinesis.put_records(
                    StreamName=self.stream,
                    Records=[{"Data": b.data, "PartitionKey": b.partition_key} for b in call],
                )
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "ClientError")
                self.stats.call_failures += 1
                self._note_error(code, str(exc))
                attempt += 1
                if not self._wait(attempt, code in THROTTLING_CODES, should_stop):
                    return False
                continue
            except BotoCoreError as exc:
                self.stats.call_failures += 1
                self._note_error(type(exc).__name__, str(exc))
                attempt += 1
                if not self._wait(attempt, False, should_stop):
                    return False
                continue
            self.stats.calls += 1
            throttled = failed = False
            for blob, result in zip(call, response["Records"], strict=True):
                error = result.get("ErrorCode")
                if error:
                    failed = True
                    throttled = throttled or error in THROTTLING_CODES
                    self.stats.entry_failures += 1
                    self._note_error(error, result.get("ErrorMessage", ""))
                    continue
                queues[blob.shard_id].popleft()
                self.stats.records += 1
                self.stats.user_records += blob.user_records
                if result.get("ShardId") not in (None, blob.shard_id):
                    self.stats.reroutes += 1
                    self._shard_map = None
            if failed:
                attempt += 1
                if not self._wait(attempt, throttled, should_stop):
                    return False
            else:
                attempt = 0
        return True

    def _wait(self, attempt: int, throttled: bool, should_stop: Callable[[], bool]) -> bool:
        if should_stop():
            return False
        base = self.throttle_base_delay if throttled else self.base_delay
        delay = backoff_delay(attempt, base, self.max_delay)
        log.warning("kinesis delivery attempt %d failed (%s); retrying in %.2fs",
                    attempt, self.stats.last_error, delay)
        self.sleep(delay)
        return not should_stop()
