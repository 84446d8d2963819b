"""The merge benchmarks' fixture: a curated ``orders`` table, changes as raw files, and timed runs.

Shared by ``bench_merge.py`` (engines against their peers) and ``profile_merge.py``
(where one merge spends its time).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from glue_jobs.merge import MergeContext, run_merge
from hybrid_ingest import iceberg, layout
from hybrid_ingest.bootstrap import init
from hybrid_ingest.cli.context import AppContext
from hybrid_ingest.config import Names, Settings
from hybrid_ingest.manifest import Manifest, PartEntry, write_manifest
from hybrid_ingest.position import SEQUENCE_DIGITS, SUB_DIGITS

REPO = Path(__file__).resolve().parent.parent
MONTHS = 24
SHARD = "shardId-000000000000"


def rows_sql(n: int, key_offset: int = 0, month_expr: str = "(i % 24)", seq_expr: str = "1") -> str:
    """Rows of the orders schema; ``i`` is the row number, keys are ``key_offset + i``."""
    return f"""
        SELECT CAST({key_offset} + i AS BIGINT) AS order_id, CAST(i % 50000 AS BIGINT) AS customer_id,
               CAST(DATE '2024-01-01' + INTERVAL ({month_expr}) MONTH + INTERVAL (i % 28) DAY AS DATE) AS order_date,
               CASE i % 3 WHEN 0 THEN 'new' WHEN 1 THEN 'paid' ELSE 'shipped' END AS status,
               CAST((i % 100000) / 100.0 AS DECIMAL(12,2)) AS total_amount, 'EUR' AS currency,
               CAST(1 + i % 9 AS INTEGER) AS item_count, CAST(i % 40 / 4.0 AS FLOAT) AS weight_kg,
               (i % 10) / 100.0 AS discount_rate,
               TIMESTAMPTZ '2024-01-01 00:00:00+00' + INTERVAL (i % 1000000) SECOND AS placed_at,
               'ref-' || CAST(i AS VARCHAR) AS external_ref,
               CASE WHEN i % 5 = 0 THEN NULL ELSE 'note' END AS notes,
               CAST({seq_expr} AS BIGINT) AS _seq, i AS _i
        FROM range({n}) t(i)"""


def changes_sql(n: int, key_space: int, base_seq: int, one_month: bool) -> str:
    """1 change per key: 70% updates and 10% deletes of existing keys, 20% inserts of new keys."""
    month = "0" if one_month else "(i * 7 % 24)"  # keys i * 24 live in month 0: they stay there
    upd, dele = int(n * 0.7), int(n * 0.1)
    stride = max(1, key_space // (upd + dele)) if not one_month else 24
    return f"""
        SELECT * EXCLUDE (_seq, order_id, _i),
               CASE WHEN _i < {upd + dele} THEN CAST(_i * {stride} AS BIGINT) % {key_space}
                    ELSE CAST({key_space} * 10 + _i AS BIGINT) END AS order_id,
               CASE WHEN _i < {upd} THEN 'u' WHEN _i < {upd + dele} THEN 'd' ELSE 'c' END AS _op,
               CAST({base_seq} + _i AS BIGINT) AS _seq
        FROM ({rows_sql(n, 0, month)}) r"""


@dataclass(frozen=True)
class Timed:
    """One timed run: wall seconds, CPU seconds (this process, and the Spark JVM's when there is one), the
    1-minute load average when it started, and the run's statistics."""

    wall: float
    cpu: float
    load: float
    stats: dict[str, Any] = field(default_factory=dict)


def jvm_cpu(spark: Any) -> float:
    """CPU seconds the Spark session's JVM has used (user + system, from /proc): its work is not this process's."""
    pid = spark.sparkContext._gateway.proc.pid
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Clock:
    def __init__(self, spark: Any = None) -> None:
        self.spark = spark
        self.load = os.getloadavg()[0]
        self.cpu = self._cpu()
        self.wall = time.perf_counter()

    def _cpu(self) -> float:
        return time.process_time() + (jvm_cpu(self.spark) if self.spark is not None else 0.0)

    def stop(self, stats: dict[str, Any] | None = None) -> Timed:
        return Timed(time.perf_counter() - self.wall, self._cpu() - self.cpu, self.load, stats or {})


class Bench:
    def __init__(self, root: Path, endpoint: str, prefix: str, memory: str) -> None:
        self.root = root
        self.settings = Settings(home=root, lake_uri=(root / "lake").as_uri(), endpoint_url=endpoint,
                                 names=Names(prefix))
        app = AppContext(self.settings)
        self.clients, self.lake = app.clients, app.lake
        init(self.clients, self.lake, [REPO / "schemas"])
        self.registry, self.store = app.registry, app.store
        self.store.put_settings({"tombstone_retention_hours": 10_000, "version_retention_hours": 10_000,
                                 "duckdb_memory_limit": memory})
        self.spec = self.registry.latest("orders").spec
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")

    def ctx(self, spark: Any = None, plan: str = "auto") -> MergeContext:
        return MergeContext(self.clients, self.lake, self.registry, self.store, spark=spark, plan=plan)

    def load_base(self, rows: int) -> None:
        """The initial table: a full extract merged by our DuckDB engine (setup, not measured)."""
        extract_id = "1-20240101T000000Z-base"
        rel = f"{layout.landing_dir('orders', extract_id)}/part-00000.parquet"
        Path(self.lake.path(rel)).parent.mkdir(parents=True, exist_ok=True)
        self.con.execute(f"COPY (SELECT * EXCLUDE (_seq, _i) FROM ({rows_sql(rows)})) TO '{self.lake.path(rel)}' "
                         "(FORMAT parquet, COMPRESSION snappy)")
        data = Path(self.lake.path(rel)).read_bytes()
        version = self.registry.latest("orders")
        write_manifest(self.lake, Manifest("orders", extract_id, "full", 1, rows, version.version,
                                           version.fingerprint.hex(),
                                           (PartEntry("part-00000.parquet", rows, len(data),
                                                      hashlib.sha256(data).hexdigest()),),
                                           dt.datetime.now(dt.UTC).isoformat()))
        run_merge(self.ctx(), "orders", engine="duckdb", run_id="base")

    def write_changes(self, n: int, key_space: int, base_seq: int, one_month: bool, name: str) -> Path:
        """The changes as one raw file (the consumer's format); returns a plain copy for the peers."""
        src = changes_sql(n, key_space, base_seq, one_month)
        cols = ", ".join(self.spec.field_names)
        raw_rel = f"{layout.raw_table_dir('orders')}/ingest_date=2026-01-01/ingest_hour=00/{SHARD}-{name}.parquet"
        Path(self.lake.path(raw_rel)).parent.mkdir(parents=True, exist_ok=True)
        self.con.execute(f"""COPY (SELECT _op, _seq, TIMESTAMPTZ '2026-01-01 00:00:00+00' AS _op_ts,
                '{SHARD}' AS _shard, CAST(_seq AS VARCHAR) AS _kseq, CAST(0 AS BIGINT) AS _ksub,
                lpad(CAST(_seq AS VARCHAR), {SEQUENCE_DIGITS}, '0') || '_' || repeat('0', {SUB_DIGITS}) AS _kpos,
                TIMESTAMPTZ '2026-01-01 00:00:00+00' AS _arrival, CAST(1 AS INTEGER) AS _schema_version, {cols}
            FROM ({src})) TO '{self.lake.path(raw_rel)}' (FORMAT parquet)""")
        plain = self.root / f"changes-{name}.parquet"
        self.con.execute(f"COPY ({src}) TO '{plain}' (FORMAT parquet)")
        self.raw_rel = raw_rel
        return plain

    def table(self) -> Any:
        loaded = iceberg.load(iceberg.catalog(self.clients, self.lake), iceberg.identifier(self.clients, "orders"))
        assert loaded is not None
        return loaded

    def snapshot(self) -> dict[str, Any]:
        current = self.table().current_snapshot()
        return {"snapshot_id": current.snapshot_id if current else None, "watermark": self.store.watermark("orders")}

    def restore(self, snap: dict[str, Any]) -> None:
        """Put the table back to the snapshot (the Iceberg table's current snapshot, and the watermark)."""
        self.table().manage_snapshots().set_current_snapshot(snap["snapshot_id"]).commit()
        current = self.store.watermark("orders")
        wm = snap["watermark"]
        self.store.commit_watermark(type(wm)(wm.table, dict(wm.shards), wm.extracts, 0, wm.newest_op_ts, wm.last_run),
                                    current.version)

    def merge_timed(self, engine: str, spark: Any = None, plan: str = "auto") -> Timed:
        clock = Clock(spark)
        result = run_merge(self.ctx(spark, plan), "orders", engine=engine)
        return clock.stop(result.stats)

    def curated_files(self, snap: dict[str, Any]) -> dict[str, list[str]]:
        """Month (``YYYY-MM``) -> the local paths of the snapshot's data files."""
        out: dict[str, list[str]] = {}
        for f in iceberg.snapshot_files(self.table(), self.spec, snap["snapshot_id"]):
            out.setdefault(iceberg.human(self.spec, f.partition), []).append(
                self.lake.path(iceberg.lake_rel(self.lake, f.uri)))
        return out
