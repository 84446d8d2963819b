"""``query`` is read-only (issue #17 item 2): one read statement over the catalog's relations, nothing else.

The attack corpus runs through the installed console script, as an attacker at
a shell would: each statement is refused with exit 1 and one line on stderr,
no traceback, and nothing is read or written outside (no file content in any
output, no file created, no DuckDB extension folder in ``$HOME``). Then the
second wall on its own: the DuckDB connection a query runs on cannot touch a
file other than the snapshot's data files, nor change its configuration back.
"""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pytest

from glue_jobs.merge import MergeContext, run_merge
from hybrid_ingest import iceberg
from hybrid_ingest.errors import QueryError
from hybrid_ingest.query import statement
from hybrid_ingest.query.local import LocalQuery
from hybrid_ingest.query.sandbox import lock_down
from tests.foundation.test_exit_codes import SCRIPT, stack_env
from tests.merge.helpers import RawWriter, ev, load_table, order

SECRET = "canary-7f3a9c"


def corpus(tmp: Path, secret: Path, curated: str) -> list[str]:
    """Every way in we know of: file functions, replacement scans, writes, settings, DDL/DML, tricks."""
    out = tmp / "out"
    return [
        # file and table functions, in every position
        "SELECT * FROM read_csv_auto('/etc/passwd')",
        f"SELECT * FROM read_csv('{secret}', header = false)",
        "SELECT * FROM read_text('/etc/passwd')",
        f"SELECT * FROM read_blob('{secret}')",
        f"SELECT * FROM read_json_auto('{secret}')",
        f"SELECT * FROM read_parquet('{curated}')",
        f"SELECT * FROM parquet_scan('{curated}')",
        f"SELECT * FROM parquet_metadata('{curated}')",
        "SELECT * FROM glob('/etc/*')",
        "SELECT * FROM orders, query('SELECT 1')",
        "SELECT * FROM query_table('orders')",
        "SELECT * FROM duckdb_settings()",
        "SELECT * FROM TABLE(exclude_columns(input => TABLE(orders), columns => DESCRIPTOR(status)))",
        "SELECT read_text('/etc/passwd')",
        "SELECT (SELECT content FROM read_text('/etc/passwd'))",
        "SELECT * FROM orders WHERE EXISTS (SELECT 1 FROM read_csv('/etc/passwd'))",
        "VALUES (1) UNION SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM orders_live, read_text('/etc/passwd')",
        "WITH x AS (SELECT * FROM read_text('/etc/passwd')) SELECT * FROM x",
        # replacement scans: a path where a table name goes
        "SELECT * FROM '/etc/passwd'",
        'SELECT * FROM "/etc/passwd"',
        f"SELECT * FROM '{secret}'",
        f"SELECT * FROM '{curated}'",
        # DuckDB's own catalog and other databases
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM pragma_database_list",
        "SELECT * FROM main.orders",
        # writes, settings, extensions
        f"COPY (SELECT 1) TO '{out}-copy.csv'",
        f"COPY orders TO '{out}-orders.csv'",
        f"COPY orders FROM '{secret}'",
        f"ATTACH '{out}-attach.db' AS x",
        f"EXPORT DATABASE '{out}-export'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET threads = 1",
        "SET enable_external_access = true",
        "RESET enable_external_access",
        "PRAGMA version",
        "CALL pragma_version()",
        f"SELECT * INTO {out.name}_into FROM orders",
        # DDL and DML
        "CREATE TABLE t AS SELECT 1 AS x",
        "CREATE VIEW v AS SELECT * FROM orders",
        "INSERT INTO orders SELECT * FROM orders",
        "WITH x AS (SELECT * FROM orders) INSERT INTO orders SELECT * FROM x",
        "UPDATE orders SET status = 'x'",
        "DELETE FROM orders",
        "DROP TABLE orders",
        "ALTER TABLE orders ADD COLUMN x INT",
        # other statements
        "DESCRIBE orders",
        "SHOW TABLES",
        "EXPLAIN SELECT 1",
        "USE other",
        # several statements, comments and quoting tricks
        f"SELECT 1; COPY (SELECT 1) TO '{out}-second.csv'",
        "SELECT * FROM orders; DROP TABLE orders",
        f"SELECT 1 -- ;\n; COPY (SELECT 1) TO '{out}-comment.csv'",
        f"/* SELECT 1 */ COPY (SELECT 1) TO '{out}-block.csv'",
        f"SELECT * FROM \"orders\"\";COPY (SELECT 1) TO '{out}-quote.csv'; --\"",
        "SELECT * FROM \"read_csv_auto\"('/etc/passwd')",
        "SELECT * FROM READ_CSV_AUTO('/etc/passwd')",
        f"SELECT 'x'; COPY (SELECT 1) TO '{out}-string.csv'",
        ";",
        "",
        # unicode lookalikes
        f"ＣＯＰＹ (SELECT 1) TO '{out}-wide.csv'",  # noqa: RUF001  fullwidth
        "SELECT * FROM оrders",  # noqa: RUF001  Cyrillic o
        "SELECT * FROM read_csv_аuto('/etc/passwd')",  # noqa: RUF001  Cyrillic a
        "SELECT * FROM \"ｒｅａｄ_text\"('/etc/passwd')",  # noqa: RUF001  fullwidth
    ]


@pytest.fixture
def merged(duck: MergeContext, raw: RawWriter) -> str:
    """``orders`` merged once; returns the path of one of its curated data files."""
    raw.write("orders", [ev("c", 1, order(1)), ev("c", 2, order(2))])
    run_merge(duck, "orders", engine="duckdb")
    [first, *_] = iceberg.snapshot_files(load_table(duck, "orders"), None)
    return duck.lake.path(iceberg.lake_rel(duck.lake, first.uri))


def test_attack_corpus_is_refused_through_the_console_script(duck: MergeContext, merged: str,
                                                             tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text(f"{SECRET}\n")
    home = tmp_path / "attacker-home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    env = {**stack_env(duck.clients), "HOME": str(home)}
    before = sorted(os.listdir(tmp_path))

    def attempt(sql: str) -> str | None:
        proc = subprocess.run([str(SCRIPT), "query", sql], env=env, cwd=work, capture_output=True, text=True,
                              timeout=300, check=False)
        lines = proc.stderr.strip().splitlines()
        leaked = [s for s in (SECRET, "root:x:0:0", "PAR1") if s in proc.stdout + proc.stderr]
        if proc.returncode != 1 or proc.stdout or len(lines) != 1 or "Traceback" in proc.stderr or leaked:
            return f"{sql!r}: exit {proc.returncode}, stdout {proc.stdout[:120]!r}, stderr {proc.stderr[-300:]!r}"
        return None

    with ThreadPoolExecutor(3) as pool:  # each process mostly imports the CLI: three at a time, same outcome
        failures = [f for f in pool.map(attempt, corpus(work, secret, merged)) if f]
    assert not failures, f"{len(failures)} not refused cleanly:\n" + "\n".join(failures)
    assert sorted(os.listdir(tmp_path)) == before
    assert list(work.iterdir()) == [], "nothing is written where the query runs"
    assert list(home.iterdir()) == [], "no DuckDB extension or state folder in $HOME"
    assert secret.read_text() == f"{SECRET}\n"
    assert load_table(duck, "orders").current_snapshot() is not None


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_text('/etc/passwd')", "COPY (SELECT 1) TO '/tmp/x'", "SELECT 1; SELECT 2",
    "SET threads = 1", "SELECT * FROM '/etc/passwd'",
])
def test_refused_before_anything_runs(sql: str) -> None:
    """The statement check needs no catalog, no stack and no DuckDB: refusing comes first."""
    with pytest.raises(QueryError):
        statement.parse(sql)


@pytest.mark.parametrize("sql", [
    "SELECT 1", "VALUES (1, 'a'), (2, 'b')", "SELECT 1 UNION ALL SELECT 2 EXCEPT SELECT 3",
    "WITH x AS (SELECT 1 AS a) SELECT * FROM x", "(SELECT 1) INTERSECT (SELECT 1)",
    "SELECT * FROM UNNEST(ARRAY[1, 2]) AS u(x)", "SELECT * FROM (VALUES (1)) AS v(a)",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r",
])
def test_reads_without_tables_are_accepted(sql: str) -> None:
    parsed = statement.parse(sql)
    assert parsed.references == []


def test_references_name_what_the_statement_reads() -> None:
    parsed = statement.parse('SELECT * FROM orders o JOIN db.orders FOR VERSION AS OF 7 p ON true, "orders$history" '
                             "WHERE o.x IN (SELECT x FROM orders_live) AND EXISTS (WITH c AS (SELECT 1) SELECT * FROM c)")
    assert [(r.name, r.database, r.version is not None) for r in parsed.references] == [
        ("orders", None, False), ("orders", "db", True), ("orders$history", None, False), ("orders_live", None, False)]


def test_the_connection_is_locked_down(duck: MergeContext, merged: str, tmp_path: Path) -> None:
    """Defence in depth: past the statement check, DuckDB itself reads only the allowed files."""
    secret = tmp_path / "secret.csv"
    secret.write_text(f"{SECRET}\n")
    con = duckdb.connect()
    con.execute(f"CREATE VIEW v AS SELECT * FROM read_parquet(['{merged}'])")
    lock_down(con, [merged])
    assert con.execute("SELECT count(*) FROM v").fetchall() == [(2,)]
    for sql in (f"SELECT * FROM read_csv('{secret}')", "SELECT * FROM read_text('/etc/passwd')",
                f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'", f"ATTACH '{tmp_path / 'x.db'}'",
                "SET enable_external_access = true", "SET allowed_paths = ['/etc/passwd']",
                "SET python_enable_replacements = true", "LOAD httpfs", "SELECT * FROM tmp_path"):
        with pytest.raises(duckdb.Error):
            con.execute(sql).fetchall()
    assert not (tmp_path / "x.csv").exists()
    assert not (tmp_path / "x.db").exists()
    con.close()


def test_a_local_query_reads_after_lock_down(duck: MergeContext, merged: str) -> None:
    local = LocalQuery(duck.clients, duck.lake, duck.registry, duck.store)
    assert local.run("SELECT count(*) FROM orders").rows == [(2,)]
    assert local.run("SELECT count(*) FROM orders_live").rows == [(2,)]
    with pytest.raises(QueryError, match=r"read_text\(\.\.\.\) is a table function \(line 1, column 15\)"):
        local.run("SELECT * FROM read_text('/etc/passwd')")
