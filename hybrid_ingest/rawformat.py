"""The raw zone's file format: the contract between the stream consumer and the merge.

A raw file holds the change events of one table from one shard, in Kinesis order,
as Parquet with the envelope as ``_``-prefixed columns followed by the row's
columns (all nullable: a delete carries only its key). Every row of a file was
written with one schema version of the table, recorded in the file's key-value
metadata; the merge projects older files onto the newest schema, filling columns
the file lacks with the field's Avro default.

``_kpos`` is the Kinesis position as a fixed-width string whose order is the
numeric order of (sequence number, sub-sequence number): watermarks compare
against it and the merge deduplicates overlapping files on (``_shard``, ``_kpos``).
"""

from __future__ import annotations

import pyarrow as pa

from hybrid_ingest.convert import TIMESTAMP, arrow_schema
from hybrid_ingest.tables import TableSpec

OP = "_op"
SEQ = "_seq"
OP_TS = "_op_ts"
SHARD = "_shard"
KINESIS_SEQ = "_kseq"
KINESIS_SUB = "_ksub"
KPOS = "_kpos"
ARRIVAL = "_arrival"
SCHEMA_VERSION = "_schema_version"

META_FIELDS: tuple[pa.Field, ...] = (
    pa.field(OP, pa.string(), nullable=False),
    pa.field(SEQ, pa.int64(), nullable=False),
    pa.field(OP_TS, TIMESTAMP),
    pa.field(SHARD, pa.string(), nullable=False),
    pa.field(KINESIS_SEQ, pa.string(), nullable=False),
    pa.field(KINESIS_SUB, pa.int64(), nullable=False),
    pa.field(KPOS, pa.string(), nullable=False),
    pa.field(ARRIVAL, TIMESTAMP, nullable=False),
    pa.field(SCHEMA_VERSION, pa.int32(), nullable=False),
)
META_NAMES: tuple[str, ...] = tuple(f.name for f in META_FIELDS)

# Parquet key-value metadata keys on every raw file
META_TABLE = b"hybrid_ingest.table"
META_SCHEMA_VERSION = b"hybrid_ingest.schema_version"

# Curated rows carry the row's columns plus these (DESIGN.md "Command line")
CURATED_SEQ = "_seq"
CURATED_OP_TS = "_op_ts"
CURATED_MERGED_AT = "_merged_at"
CURATED_META_FIELDS: tuple[pa.Field, ...] = (
    pa.field(CURATED_SEQ, pa.int64(), nullable=False),
    pa.field(CURATED_OP_TS, TIMESTAMP),
    pa.field(CURATED_MERGED_AT, TIMESTAMP, nullable=False),
)


def raw_schema(spec: TableSpec, version: int) -> pa.Schema:
    """Arrow schema of a raw file written with ``spec``'s schema (registry version ``version``)."""
    schema = pa.schema(list(META_FIELDS) + list(arrow_schema(spec, all_nullable=True)))
    return schema.with_metadata({META_TABLE: spec.table.encode(), META_SCHEMA_VERSION: str(version).encode()})


def curated_schema(spec: TableSpec) -> pa.Schema:
    """Arrow schema of a curated data file (partition key columns live in the path, not the file)."""
    return pa.schema(list(arrow_schema(spec)) + list(CURATED_META_FIELDS))
