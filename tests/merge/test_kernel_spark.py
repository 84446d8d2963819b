"""The Spark kernel's one-scan read of live partitions: when it trusts folder names, and that it is exact."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from glue_jobs.kernel import FileGroup, Partition
from glue_jobs.kernel_spark import SESSION_CONF, SparkEngine, _folder_keys
from hybrid_ingest.lake import Lake

SCHEMA = pa.schema([("order_id", pa.int64()), ("_seq", pa.int64())])


def part(value: str, *rels: str) -> Partition:
    return Partition(value, rels[0].rsplit("/", 1)[0], FileGroup(tuple(rels), SCHEMA))


def test_folder_keys_accepts_the_layout_when_folder_values_are_the_values() -> None:
    parts = [part("2024-01", "curated/orders/order_date_month=2024-01/v=r1/part-00000.parquet",
                  "curated/orders/order_date_month=2024-01/v=r1/part-00001.parquet"),
             part("2024-02", "curated/orders/order_date_month=2024-02/v=r2/part-00000.parquet")]
    assert _folder_keys(parts, {"order_id", "_seq"}) == ("curated/orders", "order_date_month")


@pytest.mark.parametrize("parts", [
    # the folder name is layout.safe() of the value, not the value: discovery would return "a_b"
    [part("a b", "curated/t/k=a_b/v=r/p.parquet"), part("c", "curated/t/k=c/v=r/p.parquet")],
    # Spark reads this folder value as null
    [part("__HIVE_DEFAULT_PARTITION__", "curated/t/k=__HIVE_DEFAULT_PARTITION__/v=r/p.parquet"),
     part("c", "curated/t/k=c/v=r/p.parquet")],
    # a file outside a version folder
    [part("a", "curated/t/k=a/p.parquet"), part("c", "curated/t/k=c/v=r/p.parquet")],
    # two partition keys (a table whose partitioning changed)
    [part("a", "curated/t/k=a/v=r/p.parquet"), part("c", "curated/t/j=c/v=r/p.parquet")],
    # the folder key is a data column
    [part("1", "curated/t/order_id=1/v=r/p.parquet"), part("2", "curated/t/order_id=2/v=r/p.parquet")],
])
def test_folder_keys_refuses_what_discovery_would_not_give_back(parts: list[Partition]) -> None:
    assert _folder_keys(parts, {"order_id", "_seq"}) is None


def write(lake: Lake, rel: str, ids: list[int]) -> None:
    lake.ensure_dir(rel.rsplit("/", 1)[0])
    pq.write_table(pa.table({"order_id": ids, "_seq": [1] * len(ids)}, schema=SCHEMA), lake.path(rel))


@pytest.mark.spark
def test_one_scan_and_union_fallback_give_the_same_partition_of_every_row(lake: Lake, spark: Any) -> None:
    files = {"curated/o/m=2024-01/v=r1/part-00000.parquet": [1, 2], "curated/o/m=2024-01/v=r1/part-00001.parquet": [3],
             "curated/o/m=2024-02/v=r2/part-00000.parquet": [4],
             "curated/o/m=a_b/v=r1/part-00000.parquet": [5, 6], "curated/o/m=c/v=r1/part-00000.parquet": [7]}
    for rel, ids in files.items():
        write(lake, rel, ids)
    rels = list(files)
    discovered = [part("2024-01", rels[0], rels[1]), part("2024-02", rels[2])]
    fallback = [part("a b", rels[3]), part("c", rels[4])]
    assert _folder_keys(discovered, set(SCHEMA.names)) is not None
    assert _folder_keys(fallback, set(SCHEMA.names)) is None
    before = {key: spark.conf.get(key, None) for key in SESSION_CONF}
    engine = SparkEngine(spark)
    try:
        rows: dict[int, str] = {}
        for parts in (discovered, fallback, discovered[1:]):
            view = engine.partitions_source(lake, parts)
            found = spark.sql(f"SELECT order_id, _part FROM {view}").collect()
            assert len(found) == sum(len(files[r]) for p in parts for r in p.files.rels)
            rows.update({r.order_id: r._part for r in found})
            assert engine.partitions_source(lake, parts) == view  # one view per set of files
    finally:
        engine.close()
    assert rows == {1: "2024-01", 2: "2024-01", 3: "2024-01", 4: "2024-02", 5: "a b", 6: "a b", 7: "c"}
    assert {key: spark.conf.get(key, None) for key in SESSION_CONF} == before


@pytest.mark.spark
def test_materialised_relations_are_computed_once_and_released(spark: Any) -> None:
    def persistent() -> int:
        return int(spark.sparkContext._jsc.sc().getPersistentRDDs().size())

    held = persistent()
    engine = SparkEngine(spark)
    try:
        engine.define("numbers", "SELECT id FROM range(10)", True)
        assert persistent() == held + 1  # eager: stored before anything reads it
        assert engine.fetch("SELECT count(*) FROM numbers") == [(10,)]
    finally:
        engine.close()
    assert persistent() == held
