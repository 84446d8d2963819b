"""Glue entry script of the merge job: parse the job arguments, build the adapters, call the library.

Arguments (Glue style ``--key value``; Glue's own extra arguments are ignored):
``--table``, ``--engine`` (auto|duckdb|spark), ``--run_id``, ``--lake_uri``,
``--name_prefix``, ``--region``. A failure prints ``ERROR: <message>`` as the
last line and exits 1 (GetJobRun's ErrorMessage on the local stack). A Spark
session is built only for the Spark engine: a DuckDB run starts no Spark work
(on Glue, the job's existing session is reused by ``getOrCreate``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from glue_jobs.job_args import job_parser, parse_job_args
from glue_jobs.merge import MergeContext, run_merge
from hybrid_ingest.aws import Clients
from hybrid_ingest.config import Settings
from hybrid_ingest.lake import Lake
from hybrid_ingest.metrics import Metrics
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, Settings]:
    parser = job_parser("hybrid-ingest merge job (one table)")
    parser.add_argument("--table", required=True)
    parser.add_argument("--engine", choices=("auto", "duckdb", "spark"), default="auto")
    parser.add_argument("--run_id", default=None)
    return parse_job_args(parser, argv)


def spark_session() -> Any:
    """The Glue job's session on AWS, a local[*] one elsewhere."""
    from pyspark.sql import SparkSession

    return (SparkSession.builder.appName("hybrid-ingest-merge")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.ui.enabled", "false")
            .getOrCreate())


def run(argv: Sequence[str]) -> dict[str, Any]:
    args, settings = parse_args(argv)
    clients = Clients(settings)
    names = settings.names
    store = StateStore(clients.dynamodb, names.state_table, names.runs_table)
    ctx = MergeContext(
        clients=clients, lake=Lake.from_uri(settings.lake_uri, settings.endpoint_url, settings.region),
        registry=Registry(clients.dynamodb, names.registry_table), store=store,
        metrics=Metrics(names.metrics_namespace, sink=print, cloudwatch=clients.cloudwatch),
        spark_factory=spark_session,
    )
    result = run_merge(ctx, args.table, engine=args.engine, run_id=args.run_id)
    return {"table": result.table, "run_id": result.run_id, "engine": result.engine,
            "reason": result.engine_reason, "status": result.status, "stats": result.stats}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        summary = run(sys.argv[1:] if argv is None else argv)
    except Exception as exc:
        print(f"ERROR: {type(exc).__name__}: {exc}", flush=True)
        return 1
    print(json.dumps(summary, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
