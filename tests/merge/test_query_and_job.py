"""The Glue entry script, sizing, run history, dead-lettered manifests, and the DuckDB kernel on an s3:// lake."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from glue_jobs import inputs, sizing
from glue_jobs.kernel_model import FileGroup
from glue_jobs.merge import MergeContext, _one_pass, run_merge
from hybrid_ingest import iceberg, layout
from hybrid_ingest.aws import Clients
from hybrid_ingest.errors import MergeError
from hybrid_ingest.lake import Lake
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import DEFAULT_SETTINGS, StateStore
from tests.merge.helpers import (
    ARRIVAL,
    SHARDS,
    Oracle,
    RawWriter,
    assert_matches,
    ev,
    key_only,
    land_extract,
    order,
    table_rows,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def duck(initialized: Clients, lake: Lake, registry: Registry, store: StateStore) -> MergeContext:
    return MergeContext(clients=initialized, lake=lake, registry=registry, store=store)


def test_bad_manifest_goes_to_dlq_and_is_not_retried(duck: MergeContext) -> None:
    extract = land_extract(duck.lake, duck.registry, "orders", [order(1)], as_of_seq=5, mode="full")
    part = f"{layout.landing_dir('orders', extract)}/part-00000.parquet"
    duck.lake.write_bytes(part, duck.lake.read_bytes(part) + b"tampered")
    result = run_merge(duck, "orders", engine="duckdb")
    assert result.stats["extracts_rejected"] == [extract]
    record = duck.lake.read_json(layout.dlq_file("merge", "bad-manifest", f"orders-{extract}.json"))
    assert "bytes" in record["error"]
    again = run_merge(duck, "orders", engine="duckdb")
    assert again.stats["extracts_rejected"] == []
    assert table_rows(duck, "SELECT * FROM orders") == []


def test_run_history_records_stats_engine_and_reason(duck: MergeContext, raw: RawWriter) -> None:
    raw.write("orders", [ev("c", 1, order(1)), ev("d", 2, key_only("orders", order(1)))])
    result = run_merge(duck, "orders", engine="auto", run_id="r1")
    current = iceberg.current_snapshots(duck.clients, duck.lake)  # what ``status`` shows
    snapshot = current("orders")
    assert snapshot is not None
    assert snapshot[0] == result.snapshot_id
    assert current("customers") is None  # never merged
    [record] = duck.store.runs("orders")
    assert record["snapshot_id"] == result.snapshot_id
    assert record["status"] == "SUCCEEDED"
    assert record["engine"] == "duckdb"
    assert "spark_threshold_bytes" in record["engine_reason"]
    assert record["rows_in"] == 2
    assert record["deletes"] == 1
    assert record["duration_s"] > 0


@pytest.mark.parametrize("statistics", [True, False])
def test_merged_positions_come_from_footers_or_from_the_rows(duck: MergeContext, raw: RawWriter,
                                                             statistics: bool) -> None:
    """Where footers carry min/max the run reads no rows for its positions; without, the engine asks the rows."""
    shard_a, shard_b = SHARDS
    raw.write("orders", [ev("c", 1, order(1)), ev("c", 2, order(3))], shard=shard_a, statistics=statistics)
    _, last_b = raw.write("orders", [ev("c", 3, order(2))], shard=shard_b, statistics=statistics)
    pending = inputs.gather(duck.lake, "orders", duck.store.watermark("orders"), verify=False)
    assert (pending.positions is not None) == statistics
    run_merge(duck, "orders", engine="duckdb")
    _, last_a = raw.write("orders", [ev("u", 4, order(1, status="paid"))], shard=shard_a, statistics=statistics)
    run_merge(duck, "orders", engine="duckdb")
    watermark = duck.store.watermark("orders")
    assert watermark.shards == {shard_a: last_a, shard_b: last_b}
    assert watermark.newest_op_ts == (ARRIVAL + dt.timedelta(seconds=4)).timestamp()
    # the already merged file of shard b is skipped by name; shard a's first file holds nothing above its watermark
    assert inputs.gather(duck.lake, "orders", watermark, verify=False).raw_files == 0


def test_kernel_plan_follows_the_change_ratio_on_spark_only() -> None:
    facts = inputs.MergeInputs(raw=[FileGroup(("a.parquet",), pa.schema([]), 10, 50)])
    assert _one_pass("auto", "spark", facts, 400, False, 0.1)
    assert not _one_pass("auto", "spark", facts, 600, False, 0.1)
    assert _one_pass("auto", "spark", facts, 10**9, True, 0.1)  # a schema rewrite touches every row
    assert not _one_pass("auto", "duckdb", facts, 400, False, 0.1)
    assert _one_pass("one_pass", "duckdb", facts, 400, False, 0.1)
    assert not _one_pass("keys_first", "spark", facts, 400, False, 0.1)
    with pytest.raises(MergeError, match="unknown kernel plan"):
        _one_pass("fast", "spark", facts, 400, False, 0.1)


def test_sizing_picks_engine_capacity_and_flex() -> None:
    small = sizing.InputEstimate("t", raw_bytes=10, raw_files=1, extract_bytes=0, extracts=0,
                                 affected_bytes=100, table_bytes=100)
    plan = sizing.plan_table(small, dict(DEFAULT_SETTINGS), None)
    assert (plan["engine"], plan["worker_type"], plan["workers"], plan["execution_class"]) == (
        "duckdb", "G.1X", 2, "STANDARD")
    big = sizing.InputEstimate("t", raw_bytes=0, raw_files=0, extract_bytes=40 * sizing.GIB, extracts=1,
                               affected_bytes=0, table_bytes=0)
    plan = sizing.plan_table(big, dict(DEFAULT_SETTINGS), None)
    assert (plan["engine"], plan["workers"], plan["execution_class"]) == ("spark", 11, "FLEX")
    assert sizing.plan_table(big, dict(DEFAULT_SETTINGS), "duckdb")["engine"] == "duckdb"
    assert "requested" in sizing.plan_table(small, dict(DEFAULT_SETTINGS), "spark")["reason"]


def test_estimate_inputs_counts_pending_bytes(duck: MergeContext, raw: RawWriter) -> None:
    raw.write("orders", [ev("c", 1, order(1))])
    land_extract(duck.lake, duck.registry, "orders", [order(2)], as_of_seq=3, mode="incremental")
    table_bytes = sizing.snapshot_bytes(duck.clients, duck.lake)
    estimate = sizing.estimate_inputs(duck.lake, duck.store, duck.registry, "orders", table_bytes)
    assert estimate.raw_files == 1
    assert estimate.raw_bytes > 0
    assert estimate.extracts == 1
    assert estimate.extract_bytes > 0
    run_merge(duck, "orders", engine="duckdb")
    after = sizing.estimate_inputs(duck.lake, duck.store, duck.registry, "orders", table_bytes)
    assert (after.raw_files, after.extracts, after.affected_bytes) == (0, 0, 0)
    assert after.table_bytes > 0


def test_glue_entry_script_runs_by_path_and_reports_errors(duck: MergeContext, raw: RawWriter) -> None:
    raw.write("orders", [ev("c", 1, order(1))])
    settings = duck.clients.settings
    env = {"AWS_ENDPOINT_URL": str(settings.endpoint_url), "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "PATH": "/usr/bin:/bin"}
    script = str(REPO / "glue_jobs" / "merge_job.py")
    args = ["--JOB_NAME", "hybrid-ingest-merge", "--lake_uri", settings.lake_uri, "--engine", "duckdb",
            "--region", settings.region, "--job-bookmark-option", "job-bookmark-disable"]
    ok = subprocess.run([sys.executable, script, "--table", "orders", "--run_id", "job-1", *args],
                        capture_output=True, text=True, env=env, timeout=120, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout.splitlines()[-1])["stats"]["upserts"] == 1
    bad = subprocess.run([sys.executable, script, "--table", "nope", *args],
                         capture_output=True, text=True, env=env, timeout=120, check=False)
    assert bad.returncode == 1
    assert bad.stdout.splitlines()[-1].startswith("ERROR: UnknownTableError")


def test_s3_lake_through_pyarrow_fs(initialized: Clients) -> None:
    """The DuckDB kernel and the query path on an s3:// lake (moto's S3): read via Arrow datasets, upload."""
    settings = initialized.settings
    initialized.s3.create_bucket(Bucket="lake", CreateBucketConfiguration={
        "LocationConstraint": settings.region})  # type: ignore[typeddict-item]
    lake = Lake.from_uri("s3://lake/root", settings.endpoint_url, settings.region)
    names = settings.names
    ctx = MergeContext(initialized, lake, Registry(initialized.dynamodb, names.registry_table),
                       StateStore(initialized.dynamodb, names.state_table, names.runs_table))
    raw = RawWriter(lake, ctx.registry)
    first = [ev("c", 1, order(1)), ev("c", 2, order(2, day="2026-03-01")), ev("d", 3, key_only("orders", order(2)))]
    raw.write("orders", first)
    run_merge(ctx, "orders", engine="duckdb")
    pending = [ev("u", 4, order(1, status="s3"))]
    raw.write("orders", pending)
    oracle = Oracle("orders", ("order_id",))
    oracle.stream(first)
    assert_matches(ctx, oracle)
    oracle.stream(pending)
    assert_matches(ctx, oracle, table="orders_live")
    assert lake.files("curated/orders", ".parquet")[0].path.startswith("lake/root/curated/orders/")
