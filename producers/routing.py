"""Partition keys and shard routing, as pure functions over plain data.

Kinesis routes a record by the MD5 of its partition key read as a 128-bit
big-endian integer, into the open shard whose hash-key range contains it. An
aggregated record is routed by *its own* partition key (the first user record's),
so the producer aggregates per target shard: every user record inside an
aggregated record then lands on the shard its own key maps to, and one key's
events never spread over two shards while the shard map is current.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hybrid_ingest.convert import to_json_value
from hybrid_ingest.errors import ValidationError
from hybrid_ingest.tables import TableSpec

# Kinesis allows 256 Unicode characters in a partition key.
MAX_PARTITION_KEY_CHARS = 256
KEY_SEPARATOR = "|"


def _key_text(value: Any) -> str:
    return str(value) if type(value) is int else str(to_json_value(value))


def partition_key(spec: TableSpec, row: Mapping[str, Any]) -> str:
    """``<table>|<pk values joined by '|'>``; a key too long for Kinesis is ``<table>|sha256:<hex>``.

    The hash fallback keeps routing deterministic (same key, same shard) for the
    rare composite key whose text exceeds 256 characters; nothing downstream reads
    the partition key back, the row carries the key. A table name has at most 63
    characters (``tables.TABLE_NAME``), so the hashed form always fits.
    """
    parts = [spec.table]
    for name in spec.primary_key:  # one loop, no intermediate lists: this runs once per event sent
        try:
            value = row[name]
        except KeyError:
            raise ValidationError(f"{spec.table}: row lacks primary key field {name!r}") from None
        if value.__class__ is str:
            parts.append(value)
        elif value.__class__ is int:
            parts.append(str(value))
        elif value is None:
            raise ValidationError(f"{spec.table}: primary key {list(spec.primary_key)} must not be null")
        else:
            parts.append(_key_text(value))
    key = KEY_SEPARATOR.join(parts)
    if len(key) <= MAX_PARTITION_KEY_CHARS:
        return key
    return f"{spec.table}{KEY_SEPARATOR}sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def hash_key(partition_key: str) -> int:
    """The 128-bit hash Kinesis routes a partition key by."""
    return int.from_bytes(hashlib.md5(partition_key.encode()).digest(), "big")


@dataclass(frozen=True)
class ShardRange:
    shard_id: str
    start: int
    end: int


class ShardMap:
    """The open shards of a stream by hash-key range; ``shard_for`` is a binary search."""

    def __init__(self, ranges: Iterable[ShardRange]) -> None:
        self.ranges = sorted(ranges, key=lambda r: r.start)
        if not self.ranges:
            raise ValidationError("a stream needs at least one open shard")
        self._starts = [r.start for r in self.ranges]

    @classmethod
    def from_list_shards(cls, shards: Iterable[Mapping[str, Any]]) -> ShardMap:
        """Build from ListShards entries, keeping only open shards (no EndingSequenceNumber)."""
        return cls(
            ShardRange(s["ShardId"], int(s["HashKeyRange"]["StartingHashKey"]),
                       int(s["HashKeyRange"]["EndingHashKey"]))
            for s in shards if "EndingSequenceNumber" not in s.get("SequenceNumberRange", {})
        )

    @property
    def shard_ids(self) -> list[str]:
        return [r.shard_id for r in self.ranges]

    def shard_for(self, partition_key: str) -> str:
        h = hash_key(partition_key)
        index = bisect.bisect_right(self._starts, h) - 1
        if index < 0 or h > self.ranges[index].end:
            raise ValidationError(f"no open shard covers hash key {h} (shard map has gaps)")
        return self.ranges[index].shard_id
