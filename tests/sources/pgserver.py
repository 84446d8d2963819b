"""A throwaway PostgreSQL 15 server for the tests: initdb in a temporary folder, loopback only.

``initdb`` and ``postgres`` refuse to run as root. As an ordinary user the
server runs as that user; as root (CI, this machine) it runs as a dedicated
unprivileged system user created on first use (``hybrid-ingest-pg``), through
``subprocess``'s ``user=``/``group=`` (no ``su``/``sudo`` needed). The data
folder and the unix socket live in a temporary folder that user owns; clients
connect over TCP on 127.0.0.1 and a free port, as superuser ``postgres`` with
trust authentication (loopback only, test data only).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg2

PG_BIN = Path(os.environ.get("HYBRID_INGEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
SERVICE_USER = "hybrid-ingest-pg"
SETTINGS = {
    "wal_level": "logical",
    "max_replication_slots": "20",
    "max_wal_senders": "20",
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",                    # a test server: durability of the database itself is not under test
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    "max_connections": "60",
    "wal_sender_timeout": "20s",
    "log_min_messages": "warning",
    "logging_collector": "off",
}


@dataclass(frozen=True)
class Account:
    uid: int | None
    gid: int | None


def service_account() -> Account:
    """Who runs the server: the current user, or (as root) an unprivileged user created once."""
    if os.geteuid() != 0:
        return Account(None, None)
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", SERVICE_USER], check=False, capture_output=True)
        entry = pwd.getpwnam(SERVICE_USER)  # created here or by a concurrent run
    return Account(entry.pw_uid, entry.pw_gid)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One cluster; ``dsn(dbname)`` for clients; ``stop()`` removes everything."""

    def __init__(self, root: Path | None = None) -> None:
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError(f"PostgreSQL 15 is not installed ({PG_BIN}/initdb missing; apt-get install "
                               "postgresql-15)")
        self.account = service_account()
        self.root = Path(tempfile.mkdtemp(prefix="hi-pg-", dir=root))
        self.data = self.root / "data"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        if self.account.uid is not None:
            os.chown(self.root, self.account.uid, self.account.gid or -1)
        self._run([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                   "--encoding=UTF8", "--locale=C", "--no-sync"])
        with (self.data / "postgresql.conf").open("a") as conf:
            for key, value in SETTINGS.items():
                conf.write(f"{key} = {value}\n")
            conf.write(f"unix_socket_directories = '{self.root}'\n")

    def _kwargs(self) -> dict[str, object]:
        if self.account.uid is None:
            return {}
        return {"user": self.account.uid, "group": self.account.gid, "extra_groups": []}

    def _run(self, args: list[str]) -> None:
        done = subprocess.run(args, capture_output=True, text=True, **self._kwargs())  # type: ignore[call-overload]
        if done.returncode:
            raise RuntimeError(f"{args[0]} failed: {done.stderr.strip()}")

    def start(self, attempts: int = 5) -> None:
        """Start on a free port (another run may take the port first: retry on a new one)."""
        for _ in range(attempts):
            self.port = free_port()
            log = (self.root / "server.log").open("ab")
            self.process = subprocess.Popen(  # type: ignore[call-overload]
                [str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, **self._kwargs())
            log.close()
            if self._wait_ready():
                return
            self._terminate()
        raise RuntimeError(f"PostgreSQL did not start: {(self.root / 'server.log').read_text()[-2000:]}")

    def _wait_ready(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            with contextlib.suppress(psycopg2.OperationalError):
                psycopg2.connect(self.dsn("postgres"), connect_timeout=2).close()
                return True
            time.sleep(0.1)
        return False

    def dsn(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user=postgres"

    def create_database(self, name: str) -> str:
        con = psycopg2.connect(self.dsn("postgres"))
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        con.close()
        return self.dsn(name)

    def _terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # "fast" shutdown: SIGTERM would wait for clients
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def stop(self) -> None:
        self._terminate()
        shutil.rmtree(self.root, ignore_errors=True)
