"""One leased shard's reading, buffering, flushing and end, for the shard consumer's ``Worker``.

A shard ends the way AWS documents it: GetRecords returns its last records (possibly
none) with ``NextShardIterator: null`` and the children in ``ChildShards``. The reader
then stops polling, flushes what it took, checkpoints the shard as finished, and the
children (from ``ChildShards`` as well as ListShards) become readable once every parent
is finished. ``EndingSequenceNumber`` alone never finishes a shard; it is read only by
the fallback for moto, which never ends a closed shard (``shards.drained_without_end_signal``).
The lifecycle is tested against moto and against kinesis-mock (tests/consumer/).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from hybrid_ingest.position import Position
from hybrid_ingest.state_leases import Lease
from streaming_consumer.core import KinesisRecord, build_batch
from streaming_consumer.shards import ShardInfo, drained_without_end_signal, shard_from_child
from streaming_consumer.sink import write_batch

if TYPE_CHECKING:
    from streaming_consumer.runtime import Worker


@dataclass(frozen=True)
class FlushEvent:
    """One flush, in the order it happened (what the summary and the tests look at)."""

    shard: str
    first: Position | None
    last: Position
    rows: int
    dead: int
    files: tuple[str, ...]
    finished: bool


class ShardReader:
    """One leased shard: its iterator, its unflushed buffer and where it is checkpointed."""

    def __init__(self, worker: Worker, info: ShardInfo, lease: Lease) -> None:
        self.worker = worker
        self.info = info
        self.lease = lease
        self.checkpoint = worker.store.checkpoint(worker.config.stream, info.shard_id)
        self.buffer: list[KinesisRecord] = []
        self.buffered_bytes = 0
        self.buffer_started: float | None = None
        self.last_read: str | None = None
        self.caught_up = False
        self.ended = False  # GetRecords said so (null NextShardIterator): nothing more to read
        self.finished = False  # the finish is checkpointed: children may start
        self.lag_ms = 0
        self.record_bytes: float | None = None  # running mean size of a Kinesis record on this shard
        self.iterator: str | None = self._new_iterator()

    @property
    def shard_id(self) -> str:
        return self.info.shard_id

    def _new_iterator(self) -> str:
        kinesis = self.worker.kinesis
        args: dict[str, Any] = {"StreamName": self.worker.config.stream, "ShardId": self.shard_id}
        if self.last_read is not None:
            args.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=self.last_read)
        elif self.checkpoint is not None and self.checkpoint.sequence > 0:
            # AT, not AFTER: the checkpoint may sit inside a KPL aggregate whose later sub-records are not done
            args.update(ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=str(self.checkpoint.sequence))
        else:
            args.update(ShardIteratorType="TRIM_HORIZON")
        return kinesis.get_shard_iterator(**args)["ShardIterator"]

    def limit(self) -> int:
        """Records to ask for so a response stays near ``max_response_bytes``.

        Before any record was seen, assume the largest (1 MiB aggregated records).
        """
        config = self.worker.config
        mean = self.record_bytes if self.record_bytes is not None else float(1024 * 1024)
        return max(1, min(config.get_records_limit, int(config.max_response_bytes / max(mean, 1.0))))

    def poll(self) -> int:
        """One GetRecords call; returns how many Kinesis records it added to the buffer."""
        if self.ended or self.iterator is None:
            return 0
        try:
            response = self.worker.kinesis.get_records(ShardIterator=self.iterator, Limit=self.limit())
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ExpiredIteratorException":
                raise
            self.iterator = self._new_iterator()
            return 0
        records = response.get("Records", [])
        self.lag_ms = int(response.get("MillisBehindLatest", 0))
        self.iterator = response.get("NextShardIterator")
        response_bytes = 0
        for r in records:
            self.buffer.append(KinesisRecord(r["Data"], r["SequenceNumber"], r["PartitionKey"],
                                             r["ApproximateArrivalTimestamp"]))
            response_bytes += len(r["Data"])
        self.buffered_bytes += response_bytes
        if records:
            mean = response_bytes / len(records)
            self.record_bytes = mean if self.record_bytes is None else 0.5 * (self.record_bytes + mean)
            self.last_read = records[-1]["SequenceNumber"]
            if self.buffer_started is None:
                self.buffer_started = self.worker.clock()
        if self.iterator is None:
            # the shard is closed and these were its last records: take them, then finish
            self.ended = True
            self.worker.discover(shard_from_child(doc) for doc in response.get("ChildShards", []))
        self.caught_up = self.ended or (not records and self.lag_ms == 0)
        return len(records)

    def due(self) -> bool:
        policy = self.worker.config.flush
        if not self.buffer:
            return False
        if len(self.buffer) >= policy.max_records or self.buffered_bytes >= policy.max_bytes:
            return True
        started = self.buffer_started if self.buffer_started is not None else self.worker.clock()
        if self.worker.clock() - started >= policy.max_seconds:
            return True
        if self.read_to_end():
            return True  # nothing more will come: finish the shard now
        return self.caught_up and self.worker.config.flush_when_idle

    def read_to_end(self) -> bool:
        """Everything the shard will ever hold is read (the buffer may still have to be flushed)."""
        if self.ended:
            return True
        read_through = max(int(self.last_read) if self.last_read is not None else -1,
                           self.checkpoint.sequence if self.checkpoint is not None else -1)
        return drained_without_end_signal(self.info, None if read_through < 0 else read_through, self.caught_up)

    def at_end(self) -> bool:
        """Read to its end and everything read is checkpointed: the shard can be marked finished."""
        return not self.buffer and self.read_to_end()

    def flush(self) -> FlushEvent | None:
        """Write the buffer to raw, then move the checkpoint; ConditionFailedError if the lease was lost."""
        if not self.buffer:
            return None
        worker = self.worker
        result = build_batch(self.shard_id, self.buffer, worker.resolve, after=self.checkpoint)
        written = write_batch(worker.lake, result)
        assert result.last is not None  # a non-empty buffer always has a last position
        finished = self.read_to_end()  # the whole buffer goes out now: its end is the shard's
        if self.checkpoint is None or self.checkpoint < result.last:
            worker.store.set_checkpoint(worker.config.stream, self.shard_id, result.last, lease=self.lease,
                                        finished=finished)
            self.checkpoint = result.last
            self.finished = finished
        self.buffer = []
        self.buffered_bytes = 0
        self.buffer_started = None
        if not written.raw_files and not written.dlq_files:
            return None  # only records a restart re-read and skipped: nothing to report
        first = min((b.first for b in result.raw), default=None)
        event = FlushEvent(self.shard_id, first, result.last, written.rows, written.dead,
                           tuple(written.raw_files + written.dlq_files), finished)
        worker.record_flush(self, event, result.user_records, result.kinesis_records, result.bytes)
        return event
