"""The Glue streaming job's forEachBatch function on a DataFrame shaped like Glue's Kinesis source rows.

The Kinesis source cannot run here (no connector offline); the rows are real records read
back from moto's stream, so sequence numbers, partition keys and arrival times are genuine.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import pytest

from hybrid_ingest import rawformat
from hybrid_ingest.aws import Clients
from hybrid_ingest.lake import Lake
from hybrid_ingest.metrics import Metrics
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore
from streaming_consumer.glue_streaming_job import kinesis_source_options, make_batch_function, parse_args
from streaming_consumer.shards import hash_key, list_shards
from tests.consumer.events import customer_event, put_aggregated, read_dlq, read_raw

pytestmark = pytest.mark.spark


def source_rows(clients: Clients, stream: str) -> list[dict[str, Any]]:
    rows = []
    for shard in list_shards(clients.kinesis, stream):
        iterator = clients.kinesis.get_shard_iterator(StreamName=stream, ShardId=shard.shard_id,
                                                      ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        for r in clients.kinesis.get_records(ShardIterator=iterator)["Records"]:
            rows.append({"data": r["Data"], "streamName": stream, "partitionKey": r["PartitionKey"],
                         "sequenceNumber": r["SequenceNumber"],
                         "approximateArrivalTimestamp": r["ApproximateArrivalTimestamp"]})
    return rows


SOURCE_DDL = ("data binary, streamName string, partitionKey string, sequenceNumber string, "
              "approximateArrivalTimestamp timestamp")


def test_for_each_batch_writes_raw_and_dlq_like_the_shard_consumer(
        spark: Any, initialized: Clients, lake: Lake, registry: Registry, store: StateStore) -> None:
    stream = initialized.settings.names.stream
    version = registry.latest("customers")
    put_aggregated(initialized.kinesis, stream,
                   [(f"customers|{k}", version.codec.encode(customer_event(k, 1))) for k in range(60)])
    initialized.kinesis.put_record(StreamName=stream, PartitionKey="customers|bad", Data=b"plain garbage")
    rows = source_rows(initialized, stream)
    frame = spark.createDataFrame(rows, SOURCE_DDL)  # two partitions under local[2]
    seen: list[str] = []
    on_batch = make_batch_function(initialized.settings, stream, Metrics("HybridIngest", sink=seen.append))
    summary = on_batch(frame, 0)
    raw = read_raw(lake, "customers").to_pylist()
    shards = {s.shard_id for s in list_shards(initialized.kinesis, stream)}
    assert {r[rawformat.SHARD] for r in raw} == shards
    assert Counter(r["customer_id"] for r in raw) == Counter(range(60))
    assert len({(r[rawformat.SHARD], r[rawformat.KPOS]) for r in raw}) == 60
    [letter] = read_dlq(lake)
    assert (letter["reason"], letter["partition_key"]) == ("bad-wire-format", "customers|bad")
    assert sum(row["records"] for row in summary) == 61
    assert sum(s["records"] for s in store.consumer_stats(stream).values()) == 61
    assert len(seen) == len(summary)
    # a re-executed micro-batch (Spark retry) rewrites the same files instead of adding copies
    files = sorted(f.path for f in lake.files("raw", ".parquet"))
    on_batch(frame, 0)
    assert sorted(f.path for f in lake.files("raw", ".parquet")) == files


def test_rows_already_deaggregated_by_the_source_keep_distinct_positions(
        spark: Any, initialized: Clients, lake: Lake, registry: Registry) -> None:
    stream = initialized.settings.names.stream
    version = registry.latest("customers")
    shard = list_shards(initialized.kinesis, stream)[0]
    key = next(f"customers|{k}" for k in range(100) if shard_of_key(f"customers|{k}", initialized, stream) == 0)
    arrival = dt.datetime(2026, 11, 21, 10, tzinfo=dt.UTC)
    rows = [{"data": version.codec.encode(customer_event(7, seq)), "streamName": stream, "partitionKey": key,
             "sequenceNumber": "1", "approximateArrivalTimestamp": arrival} for seq in (1, 2, 3)]
    # the Kinesis source reads each shard into one partition, in order
    make_batch_function(initialized.settings, stream)(spark.createDataFrame(rows, SOURCE_DDL).coalesce(1), 3)
    raw = read_raw(lake, "customers").to_pylist()
    assert sorted((r[rawformat.KINESIS_SUB], r[rawformat.SEQ]) for r in raw) == [(0, 1), (1, 2), (2, 3)]
    assert {r[rawformat.SHARD] for r in raw} == {shard.shard_id}


def shard_of_key(key: str, clients: Clients, stream: str) -> int:
    shards = list_shards(clients.kinesis, stream)
    return next(i for i, s in enumerate(shards) if s.hash_range[0] <= hash_key(key) <= s.hash_range[1])


def test_job_arguments_ignore_glue_own_and_name_the_source() -> None:
    args = parse_args(["--JOB_NAME", "stream-job", "--lake_uri", "s3://lake", "--checkpoint_location",
                       "s3://lake/_checkpoints/stream", "--TempDir", "s3://tmp", "--window_seconds", "30"])
    assert (args.job_name, args.lake_uri, args.window_seconds) == ("stream-job", "s3://lake", 30)
    assert args.stream_name == "hybrid-ingest-changes"
    options = kinesis_source_options(args)
    assert options["streamName"] == "hybrid-ingest-changes"
    assert options["endpointUrl"] == "https://kinesis.eu-west-1.amazonaws.com"
