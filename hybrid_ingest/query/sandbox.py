"""The DuckDB connection a query runs on, locked down once its views are defined.

The statement check (``statement``) refuses anything but a read of the views;
this is the wall behind it, in DuckDB's own terms: external access off (no file,
network, ATTACH, COPY, INSTALL or LOAD), except the files listed in
``allowed_paths`` (exactly the data files the views read: DuckDB >= 1.3 checks
reads against it even with external access off), no Python replacement scans
(DuckDB would otherwise read a DataFrame or Arrow table named in the SQL from
the caller's variables), no extension autoloading, and the configuration locked
so the statement cannot ``SET`` any of it back.
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb

from hybrid_ingest import sqltext

_OFF = ("python_enable_replacements", "autoinstall_known_extensions", "autoload_known_extensions",
        "enable_external_access")


def lock_down(con: duckdb.DuckDBPyConnection, allowed_paths: Iterable[str]) -> None:
    """From now on ``con`` reads only ``allowed_paths`` and its own memory; its settings are frozen."""
    listed = ", ".join(sqltext.string(p, "duckdb") for p in sorted(set(allowed_paths)))
    con.execute(f"SET allowed_paths = [{listed}]")
    for setting in _OFF:
        con.execute(f"SET {setting} = false")
    con.execute("SET lock_configuration = true")


def sealed() -> duckdb.DuckDBPyConnection:
    """A locked connection with nothing in it, in UTC: for evaluating a constant expression of the user's."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    lock_down(con, ())
    return con
