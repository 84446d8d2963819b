"""One PostgreSQL server for the session (initdb in a temporary folder), a fresh database per test."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from hybrid_ingest.aws import Clients
from hybrid_ingest.lake import Lake
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore
from tests.sources.helpers import Env
from tests.sources.pgserver import PostgresServer


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pg_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A new empty database; its slots and the database itself are dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    dsn = postgres_server.create_database(name)
    yield dsn
    drop_database(postgres_server, name)


def drop_database(server: PostgresServer, name: str, attempts: int = 50) -> None:
    """Drop the database and its slots (a slot whose walsender is still exiting is retried)."""
    admin = psycopg2.connect(server.dsn("postgres"))
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            for _ in range(attempts):
                cur.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                            "WHERE database = %s AND active_pid IS NOT NULL", (name,))
                cur.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                            "WHERE database = %s AND NOT active", (name,))
                cur.execute("SELECT count(*) FROM pg_replication_slots WHERE database = %s", (name,))
                if cur.fetchone() == (0,):
                    cur.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
                    return
                time.sleep(0.1)
    finally:
        admin.close()


@pytest.fixture
def slot(pg_dsn: str) -> str:
    """A slot name unique in the cluster (slots are cluster-wide): the test database's name."""
    return str(psycopg2.extensions.parse_dsn(pg_dsn)["dbname"])


@pytest.fixture
def env(initialized: Clients, lake: Lake, registry: Registry, store: StateStore, tmp_path: Path) -> Env:
    return Env(initialized, lake, registry, store, tmp_path)
