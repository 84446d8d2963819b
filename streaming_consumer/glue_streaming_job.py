"""Glue streaming job entry: Spark Structured Streaming over Kinesis, ``forEachBatch`` into the same core.

On AWS this is the job's ScriptLocation (Glue 5.0, Spark 3.5). The entry only parses the
job arguments, builds the session and starts the query; each micro-batch goes through
``make_batch_function``, which maps the rows' partitions so executors decode and write
them with ``streaming_consumer.core`` and the driver only collects a per-shard summary
(stats in the state table, CloudWatch metrics).

Spark's checkpoint location (S3) holds the source offsets, so the shard checkpoints of the
state table are not used here; a re-executed micro-batch gets the same rows and therefore
writes the same deterministic file names. Glue's Kinesis source rows carry ``data``,
``streamName``, ``partitionKey``, ``sequenceNumber`` and ``approximateArrivalTimestamp`` but
no shard id: the shard is recovered from the partition key's MD5 hash and the sequence
number against ListShards (``shards.shard_of``), which holds as long as producers route by
partition key (they do: aggregates carry the MD5 of their first key as explicit hash key).

Shard lifecycle (closed parents, children, merges) is the Kinesis source's own business
here: it follows ``ChildShards`` itself and Spark's checkpoint keeps its offsets, so none
of the shard consumer's finish logic applies. What does apply is the attribution: after
a reshard a record may belong to a closed parent or to a child whose hash range also
matches, and a closed shard's ``EndingSequenceNumber`` may be no position (kinesis-mock);
``shard_of`` takes the newest shard that holds the record. Tested against moto and
kinesis-mock (tests/consumer/test_shard_lifecycle.py).

The Kinesis source itself cannot run on this machine (no connector offline); the batch
function is tested locally on a DataFrame shaped like its rows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from hybrid_ingest.aws import Clients
from hybrid_ingest.config import Names, Settings
from hybrid_ingest.errors import ConfigError, HybridIngestError
from hybrid_ingest.lake import Lake
from hybrid_ingest.metrics import Metrics
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore
from streaming_consumer.core import KinesisRecord, build_batch
from streaming_consumer.runtime import METRIC_UNITS
from streaming_consumer.shards import ShardInfo, list_shards, shard_of
from streaming_consumer.sink import write_batch


@dataclass(frozen=True)
class JobArgs:
    job_name: str
    lake_uri: str
    checkpoint_location: str
    stream: str | None = None
    prefix: str = Names().prefix
    region: str = "eu-west-1"
    endpoint_url: str | None = None
    starting_position: str = "TRIM_HORIZON"
    window_seconds: int = 60

    def settings(self) -> Settings:
        return Settings(home=Path("."), lake_uri=self.lake_uri, region=self.region,
                        endpoint_url=self.endpoint_url or None, names=Names(self.prefix))

    @property
    def stream_name(self) -> str:
        return self.stream or Names(self.prefix).stream


def parse_args(argv: Sequence[str]) -> JobArgs:
    """Glue passes ``--key value`` pairs plus arguments of its own, which are ignored here."""
    parser = argparse.ArgumentParser(prog="glue_streaming_job", allow_abbrev=False)
    parser.add_argument("--JOB_NAME", dest="job_name", default="hybrid-ingest-stream")
    parser.add_argument("--lake_uri", required=True)
    parser.add_argument("--checkpoint_location", required=True)
    parser.add_argument("--stream")
    parser.add_argument("--prefix", default=Names().prefix)
    parser.add_argument("--region", default="eu-west-1")
    parser.add_argument("--endpoint_url")
    parser.add_argument("--starting_position", default="TRIM_HORIZON", choices=["TRIM_HORIZON", "LATEST"])
    parser.add_argument("--window_seconds", type=int, default=60)
    known, _glue_own = parser.parse_known_args(list(argv))
    return JobArgs(**vars(known))


SourceRow = tuple[bytes, str, str, int]  # data, partition key, sequence number, arrival in epoch microseconds
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def records_by_shard(rows: Iterable[SourceRow], shards: Sequence[ShardInfo]) -> dict[str, list[KinesisRecord]]:
    """Group source rows per shard in sequence order.

    A source that already deaggregated KPL records repeats the sequence number for each of
    its sub-records; those get consecutive sub numbers in source order, so (sequence, sub)
    stays unique and the merge does not collapse them. This relies on what the Kinesis source
    does: a shard's records are read into one partition, in order.
    """
    grouped: dict[str, list[KinesisRecord]] = defaultdict(list)
    for data, key, seq, arrival_us in rows:
        shard = shard_of(key, seq, shards)
        if shard is None:
            raise ConfigError(f"record {seq} with partition key {key!r} matches no shard of the stream "
                              "(explicit hash keys that disagree with the partition key are not supported)")
        arrival = EPOCH + dt.timedelta(microseconds=arrival_us)
        grouped[shard].append(KinesisRecord(bytes(data), str(seq), key, arrival))
    out: dict[str, list[KinesisRecord]] = {}
    for shard, records in grouped.items():
        records.sort(key=lambda r: int(r.sequence))  # stable: sub-records keep their order
        numbered: list[KinesisRecord] = []
        for record in records:
            if numbered and numbered[-1].sequence == record.sequence:
                record = replace(record, sub=numbered[-1].sub + 1)
            numbered.append(record)
        out[shard] = numbered
    return out


def process_partition(rows: Iterable[SourceRow], settings: Settings,
                      shards: Sequence[ShardInfo]) -> Iterator[dict[str, Any]]:
    """Runs on an executor: one partition's rows to raw files and dead letters, one summary per shard."""
    grouped = records_by_shard(rows, shards)
    if not grouped:
        return
    clients = Clients(settings)
    registry = Registry(clients.dynamodb, settings.names.registry_table)
    lake = Lake.from_uri(settings.lake_uri, settings.endpoint_url, settings.region)
    for shard, records in sorted(grouped.items()):
        result = build_batch(shard, records, registry.by_fingerprint)
        written = write_batch(lake, result)
        yield {
            "shard": shard, "kinesis_records": result.kinesis_records, "records": result.user_records,
            "bytes": result.bytes, "rows": written.rows, "dead": written.dead,
            "files": len(written.raw_files) + len(written.dlq_files),
            "newest_arrival": max(r.arrival for r in records).timestamp(),
        }


def make_batch_function(settings: Settings, stream: str, metrics: Metrics | None = None,
                        clock: Callable[[], float] = time.time) -> Callable[[Any, int], list[dict[str, Any]]]:
    """The ``forEachBatch`` function: executors write, the driver records per-shard stats and metrics.

    Partitions go through ``rdd.mapPartitions`` rather than ``mapInArrow``: PySpark's Arrow
    UDF path insists on pandas, which Glue has but this project does not depend on, and the
    core wants Python values per record anyway. Arrival times travel as epoch microseconds
    so no session or worker time zone can shift them.
    """
    clients = Clients(settings)
    names = settings.names
    store = StateStore(clients.dynamodb, names.state_table, names.runs_table)

    def on_batch(frame: Any, batch_id: int) -> list[dict[str, Any]]:
        from pyspark.sql import functions as F

        shards = list_shards(clients.kinesis, stream)
        fn = partial(process_partition, settings=settings, shards=shards)
        source = frame.select("data", "partitionKey", "sequenceNumber",
                              F.unix_micros("approximateArrivalTimestamp"))
        rows: list[dict[str, Any]] = source.rdd.map(tuple).mapPartitions(fn).collect()
        for row in rows:
            lag_ms = max(int((clock() - row["newest_arrival"]) * 1000), 0)
            store.put_consumer_stats(
                stream, row["shard"], lag_ms=lag_ms, owner=f"glue-batch-{batch_id}",
                increments={"records": row["records"], "bytes": row["bytes"], "batches": 1,
                            "files": row["files"], "dlq": row["dead"]},
            )
            if metrics is not None:
                metrics.emit({"Records": row["records"], "Bytes": row["bytes"], "Batches": 1,
                              "DeadLetters": row["dead"], "MillisBehindLatest": lag_ms},
                             {"Stream": stream, "Shard": row["shard"]}, METRIC_UNITS)
        return rows

    return on_batch


def kinesis_source_options(args: JobArgs) -> dict[str, str]:
    """Options of Glue's Kinesis streaming source (``spark.readStream.format("kinesis")``)."""
    options = {
        "streamName": args.stream_name,
        "startingPosition": args.starting_position,
        "endpointUrl": args.endpoint_url or f"https://kinesis.{args.region}.amazonaws.com",
        "inferSchema": "false",
    }
    return options


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    from pyspark.sql import DataFrame, SparkSession

    spark = SparkSession.builder.appName(args.job_name).getOrCreate()
    settings = args.settings()
    names = settings.names
    metrics = Metrics(names.metrics_namespace, cloudwatch=Clients(settings).cloudwatch)
    source = spark.readStream.format("kinesis").options(**kinesis_source_options(args)).load()
    batch_function = make_batch_function(settings, args.stream_name, metrics)

    def run_batch(frame: DataFrame, batch_id: int) -> None:
        batch_function(frame, batch_id)

    query = (
        source.writeStream.foreachBatch(run_batch)
        .option("checkpointLocation", args.checkpoint_location)
        .trigger(processingTime=f"{args.window_seconds} seconds")
        .start()
    )
    query.awaitTermination()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception as exc:  # the last line becomes the job run's ErrorMessage: keep it to one line
        text = str(exc) if isinstance(exc, HybridIngestError) else f"{type(exc).__name__}: {exc}"
        print("ERROR: " + " ".join(line.strip() for line in text.splitlines()[:2])[:500])
        sys.exit(1)
