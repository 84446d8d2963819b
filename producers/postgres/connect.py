"""Connections to the source database, with the session settings the value parsers rely on."""

from __future__ import annotations

from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from hybrid_ingest.errors import SourceError
from producers.postgres.pgtypes import SESSION_OPTIONS

APPLICATION_NAME = "hybrid-ingest source"


def session_dsn(dsn: str) -> str:
    """The DSN with the session settings added to any ``options`` it has."""
    try:
        params = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError as exc:
        raise SourceError(f"invalid --dsn: {one_line(exc)}") from None
    return psycopg2.extensions.make_dsn(
        dsn, options=f"{params.get('options', '')} {SESSION_OPTIONS}".strip(),
        application_name=params.get("application_name", APPLICATION_NAME))


def one_line(exc: BaseException) -> str:
    """A psycopg2 error as one line (libpq messages span several)."""
    return "; ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip()) or type(exc).__name__


def connect(dsn: str, autocommit: bool = True) -> psycopg2.extensions.connection:
    """A plain connection (catalog reads, snapshot, progress)."""
    connection = psycopg2.connect(session_dsn(dsn))
    connection.autocommit = autocommit
    return connection


def connect_replication(dsn: str) -> psycopg2.extras.LogicalReplicationConnection:
    """A logical replication connection (slot creation, the change stream)."""
    return psycopg2.connect(session_dsn(dsn), connection_factory=psycopg2.extras.LogicalReplicationConnection)


def scalar(cur: Any, sql: str, params: tuple[Any, ...] = ()) -> Any:
    cur.execute(sql, params)
    row = cur.fetchone()
    return None if row is None else row[0]
