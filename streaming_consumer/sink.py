"""Writes a micro-batch's output to the lake: raw Parquet files and dead-letter JSON lines.

Every object is written whole and atomically (``Lake``), under a name made only of
the shard, positions and first arrival time, so re-running the same batch after a
crash overwrites what it wrote before instead of adding a copy. Callers move the
shard checkpoint only after ``write_batch`` returns.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field

from hybrid_ingest import layout
from hybrid_ingest.lake import Lake
from streaming_consumer.core import BatchResult, DeadLetter

DLQ_STAGE = "stream"


@dataclass
class Written:
    raw_files: list[str] = field(default_factory=list)
    dlq_files: list[str] = field(default_factory=list)
    rows: int = 0
    dead: int = 0


def dlq_name(shard: str, letters: list[DeadLetter]) -> str:
    first = min(d.position for d in letters)
    last = max(d.position for d in letters)
    return f"{shard}-{first}-{last}.jsonl"


def write_batch(lake: Lake, result: BatchResult) -> Written:
    """Write every raw file and dead-letter file of a batch; returns their relative paths."""
    written = Written()
    for raw in result.raw:
        path = layout.raw_file(raw.table, raw.arrival, raw.shard, raw.first, raw.last)
        lake.write_parquet(path, raw.rows)
        written.raw_files.append(path)
        written.rows += raw.rows.num_rows
    by_reason: dict[str, list[DeadLetter]] = defaultdict(list)
    for letter in result.dead:
        by_reason[letter.reason].append(letter)
    for reason, letters in sorted(by_reason.items()):
        path = layout.dlq_file(DLQ_STAGE, reason, dlq_name(result.shard, letters))
        body = "".join(json.dumps(d.to_json(), sort_keys=True) + "\n" for d in letters)
        lake.write_bytes(path, body.encode())
        written.dlq_files.append(path)
        written.dead += len(letters)
    return written
