"""Shard topology: which shards exist, which are closed, and which may be read now.

Pure functions over ``ListShards`` output (and the ``ChildShards`` of GetRecords) plus one
thin adapter that pages through ListShards. Kinesis keeps a key's events on one shard,
but after a split or merge the key's earlier events are in the parent and its later
ones in a child, so a child may only be read once all its parents are finished.

When a shard has been read to its end is what Kinesis says, not what ListShards says:
GetRecords answers a closed shard's last records with ``NextShardIterator: null`` (and
the children in ``ChildShards``). ``EndingSequenceNumber`` only tells that a shard is
closed; its value is no reading position one can wait for (kinesis-mock reports
9223372036854775807, below every real sequence number). ``drained_without_end_signal``
is the one fallback, for moto, which never ends a closed shard's iterator.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient


@dataclass(frozen=True)
class ShardInfo:
    shard_id: str
    parents: tuple[str, ...] = ()
    starting_sequence: str = "0"
    ending_sequence: str | None = None
    hash_range: tuple[int, int] = (0, 2**128 - 1)

    @property
    def closed(self) -> bool:
        return self.ending_sequence is not None

    @property
    def ending_known(self) -> bool:
        """Closed with an ending that is a sequence number of this shard (not kinesis-mock's Long.MaxValue)."""
        return self.ending_sequence is not None and int(self.ending_sequence) >= int(self.starting_sequence)

    def holds(self, hash_key: int, sequence: str) -> bool:
        """Whether a record with this hash key and sequence number may have been written to this shard.

        An ending that is no position (kinesis-mock's) bounds nothing; ``shard_of`` then
        tells a closed parent from its children by their starting sequence numbers.
        """
        if not self.hash_range[0] <= hash_key <= self.hash_range[1]:
            return False
        seq = int(sequence)
        if seq < int(self.starting_sequence):
            return False
        return not self.ending_known or seq <= int(self.ending_sequence or 0)


def shard_from_api(doc: Mapping[str, Any]) -> ShardInfo:
    parents = tuple(p for p in (doc.get("ParentShardId"), doc.get("AdjacentParentShardId")) if p)
    seq_range = doc.get("SequenceNumberRange", {})
    hash_range = doc.get("HashKeyRange", {})
    return ShardInfo(
        shard_id=doc["ShardId"], parents=parents,
        starting_sequence=str(seq_range.get("StartingSequenceNumber", "0")),
        ending_sequence=seq_range.get("EndingSequenceNumber"),
        hash_range=(int(hash_range.get("StartingHashKey", 0)), int(hash_range.get("EndingHashKey", 2**128 - 1))),
    )


def shard_from_child(doc: Mapping[str, Any]) -> ShardInfo:
    """A shard from a GetRecords response's ``ChildShards`` entry (open, its parents named)."""
    hash_range = doc.get("HashKeyRange", {})
    return ShardInfo(
        shard_id=doc["ShardId"], parents=tuple(doc.get("ParentShards", ())),
        hash_range=(int(hash_range.get("StartingHashKey", 0)), int(hash_range.get("EndingHashKey", 2**128 - 1))),
    )


def with_discovered(listed: Iterable[ShardInfo], discovered: Mapping[str, ShardInfo]) -> list[ShardInfo]:
    """ListShards' answer plus children that GetRecords named and ListShards does not show yet."""
    shards = {s.shard_id: s for s in listed}
    for shard_id, info in discovered.items():
        shards.setdefault(shard_id, info)
    return sorted(shards.values(), key=lambda s: s.shard_id)


def drained_without_end_signal(info: ShardInfo, read_through: int | None, caught_up: bool) -> bool:
    """Whether a closed shard is finished although GetRecords never ended it (moto's behaviour).

    Only when ListShards gives a real ending, everything up to it was read
    (``read_through``: the highest sequence number read or checkpointed, None if none), and the
    last GetRecords came back empty at the tip. On Kinesis the null iterator always comes
    first; on kinesis-mock the ending is not a position, so this never fires there.
    """
    if not info.ending_known or not caught_up:
        return False
    assert info.ending_sequence is not None
    reached = int(info.starting_sequence) if read_through is None else read_through
    return reached >= int(info.ending_sequence)


def list_shards(kinesis: KinesisClient, stream: str) -> list[ShardInfo]:
    shards: list[ShardInfo] = []
    response = kinesis.list_shards(StreamName=stream)
    while True:
        shards.extend(shard_from_api(doc) for doc in response.get("Shards", []))
        token = response.get("NextToken")
        if not token:
            return sorted(shards, key=lambda s: s.shard_id)
        response = kinesis.list_shards(NextToken=token)


def readable(shards: Iterable[ShardInfo], finished: set[str]) -> list[ShardInfo]:
    """Unfinished shards whose parents are all finished (a parent past retention counts as finished)."""
    listed = {s.shard_id for s in shards}
    return [
        s for s in shards
        if s.shard_id not in finished and all(p in finished or p not in listed for p in s.parents)
    ]


def fair_share(shard_count: int, worker_count: int) -> int:
    """How many shards one worker should hold so that every shard has an owner."""
    return math.ceil(shard_count / max(worker_count, 1))


def hash_key(partition_key: str) -> int:
    """Kinesis routes a record by the MD5 of its partition key, read as a 128-bit integer."""
    return int.from_bytes(hashlib.md5(partition_key.encode()).digest(), "big")


def shard_of(partition_key: str, sequence: str, shards: Iterable[ShardInfo]) -> str | None:
    """The shard a record was written to, for sources that do not say (Glue's Kinesis source).

    Of the shards whose hash range and sequence range hold it, the one opened last: a
    child starts after its parent's records, so a record at or past a child's start was
    written to the child.
    """
    key = hash_key(partition_key)
    holding = [s for s in shards if s.holds(key, sequence)]
    if not holding:
        return None
    return max(holding, key=lambda s: int(s.starting_sequence)).shard_id
