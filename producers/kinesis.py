"""KPL-style aggregation per shard and PutRecords delivery with per-entry retries.

Aggregation (pure): user records are packed with ``aws_kinesis_agg`` into
aggregated records, one packing stream per target shard, so each aggregated
record holds only keys that hash to the shard it is routed to.

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

import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aws_kinesis_agg
from aws_kinesis_agg.aggregator import AggRecord
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


def _blob(shard_id: str, record: AggRecord) -> Blob:
    pk, _, data = record.get_contents()
    return Blob(shard_id, pk, data, record.get_num_user_records())


def aggregate(entries: Iterable[tuple[str, bytes]], shard_map: ShardMap,
              max_size: int = AGGREGATE_MAX_BYTES) -> dict[str, deque[Blob]]:
    """Pack user records into aggregated records per target shard, keeping log order within each shard."""
    open_records: dict[str, AggRecord] = {}
    out: dict[str, deque[Blob]] = {}
    for pk, data in entries:
        shard = shard_map.shard_for(pk)
        current = open_records.get(shard)
        if current is None:
            current = open_records[shard] = AggRecord(max_size)
        if not current.add_user_record(pk, data):
            out.setdefault(shard, deque()).append(_blob(shard, current))
            current = open_records[shard] = AggRecord(max_size)
            current.add_user_record(pk, data)
    for shard, record in open_records.items():
        out.setdefault(shard, deque()).append(_blob(shard, record))
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
