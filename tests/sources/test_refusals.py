"""What the source refuses, before creating anything, in one line naming table and column (exit 1 / 2)."""

from __future__ import annotations

import pytest

from tests.conftest import Runner
from tests.sources.helpers import execute, fetch


def source(cli: Runner, dsn: str, slot: str, *tables: str) -> tuple[int, str, str]:
    return cli("source", "postgres", "--dsn", dsn, "--slot", slot, "--until-idle",
               *(a for t in tables for a in ("--table", t)))


@pytest.mark.parametrize(("ddl", "error"), [
    ("CREATE TABLE t (id int, v text)", "table public.t has no primary key"),
    ("CREATE TABLE t (id int PRIMARY KEY); ALTER TABLE t REPLICA IDENTITY NOTHING", "REPLICA IDENTITY NOTHING"),
    ("CREATE TABLE t (id int PRIMARY KEY, u int NOT NULL UNIQUE); CREATE UNIQUE INDEX t_u ON t (u); "
     "ALTER TABLE t REPLICA IDENTITY USING INDEX t_u", "replica identity index lacks primary key column(s) ['id']"),
    ("CREATE TABLE t (id int PRIMARY KEY, span interval)",
     "table public.t column 'span': type interval is not mapped"),
    ("CREATE TABLE t (id int PRIMARY KEY, tags text[])", "table public.t column 'tags': type text[] is not mapped"),
    ("CREATE TABLE t (id int PRIMARY KEY, amount numeric)",
     "table public.t column 'amount': numeric without precision and scale"),
    ("CREATE TABLE t (id int PRIMARY KEY, amount numeric(50, 2))", "numeric(50,2) does not fit"),
    ('CREATE TABLE t (id int PRIMARY KEY, "Two Words" int)', "column 'Two Words': not a valid Avro field name"),
    ("CREATE TABLE t (id int PRIMARY KEY, _hidden int)", "column '_hidden': names starting with '_' are reserved"),
    ('CREATE TABLE t (id int PRIMARY KEY, "ID2" int, id2 int)', "column 'id2': repeats column 'ID2'"),
    ("CREATE VIEW t AS SELECT 1 AS id", "public.t is not a table"),
])
def test_uncapturable_tables_are_refused_before_anything_is_created(cli: Runner, pg_dsn: str, slot: str,
                                                                     ddl: str, error: str) -> None:
    execute(pg_dsn, ddl)
    code, _, err = source(cli, pg_dsn, slot, "public.t")
    assert code == 1
    assert error in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert fetch(pg_dsn, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (slot,)) == [(0,)]
    assert fetch(pg_dsn, "SELECT count(*) FROM pg_publication") == [(0,)]


def test_missing_table_and_unreachable_database(cli: Runner, pg_dsn: str, slot: str) -> None:
    code, _, err = source(cli, pg_dsn, slot, "public.nothing")
    assert (code, err.strip()) == (1, "error: table public.nothing does not exist (names are exact and "
                                      "case-sensitive)")
    code, _, err = source(cli, "host=127.0.0.1 port=1 dbname=x user=postgres connect_timeout=2", slot, "public.t")
    assert code == 1
    assert err.startswith(f"error: postgres (slot '{slot}'): connection to server at \"127.0.0.1\"")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("args", "error"), [
    (["--slot", "Bad-Name", "--table", "public.t"], "a slot name is 1-63 of a-z, 0-9 and _"),
    (["--slot", "ok", "--table", "public.Orders"], "lake table name 'Orders'"),
    (["--slot", "ok", "--table", "public.a=x", "--table", "other.b=x"], "lake table(s) ['x'] named more than once"),
    (["--slot", "ok"], "at least one --table is needed"),
])
def test_usage_errors_exit_2(cli: Runner, args: list[str], error: str) -> None:
    code, _, err = cli("source", "postgres", "--dsn", "dbname=x", *args)
    assert code == 2
    assert error in err


def test_a_slot_or_publication_that_is_not_ours_is_left_alone(cli: Runner, pg_dsn: str, slot: str) -> None:
    execute(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY)")
    execute(pg_dsn, "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", params=(slot,))
    code, _, err = source(cli, pg_dsn, slot, "public.t")
    assert code == 1
    assert f"replication slot '{slot}' exists but no source recorded creating it" in err
    execute(pg_dsn, "SELECT pg_drop_replication_slot(%s)", params=(slot,))
    execute(pg_dsn, f'CREATE PUBLICATION "{slot}" FOR TABLE t')
    code, _, err = source(cli, pg_dsn, slot, "public.t")
    assert code == 1
    assert f"publication '{slot}' exists but no source recorded creating it" in err
