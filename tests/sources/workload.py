"""Tables with every mapped type, and a concurrent workload of random transactions against them."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

import psycopg2
import psycopg2.errors

from tests.sources.helpers import execute

TABLES = ["public.accounts", "sales.Orders=sales_orders"]

SCHEMA = [
    "CREATE SCHEMA sales",
    """CREATE TABLE accounts (
        id bigint PRIMARY KEY, balance numeric(12,2) NOT NULL, rate real, score double precision,
        name text NOT NULL, code char(3), label varchar(20), active boolean NOT NULL, born date,
        seen timestamp, changed_at timestamptz NOT NULL, ref uuid, doc jsonb, raw bytea, small smallint,
        visits integer)""",
    """CREATE TABLE sales."Orders" (
        region text, order_no integer, amount numeric(10,3) NOT NULL, placed timestamptz, note text,
        payload bytea, meta json, PRIMARY KEY (region, order_no))""",
    'ALTER TABLE sales."Orders" REPLICA IDENTITY FULL',
]
REGIONS = ["north", "south", "east", "west", "o'hara \\ quoted"]


def seed(dsn: str, accounts: int, orders: int) -> None:
    execute(dsn, *SCHEMA)
    execute(
        dsn,
        f"""INSERT INTO accounts SELECT g, (g * 13.37)::numeric(12,2), g / 7.0, g * 1e-3, 'name ' || g,
              CASE WHEN g % 5 = 0 THEN NULL ELSE 'c' || (g % 10) END, 'label ' || (g % 3), g % 2 = 0,
              DATE '2000-01-01' + g, TIMESTAMP '2024-02-29 12:00:00.5' + g * interval '1 minute',
              TIMESTAMPTZ '2026-01-01 00:00:00+02' + g * interval '1 second',
              md5(g::text)::uuid, jsonb_build_object('g', g, 'tags', jsonb_build_array('a', g)),
              decode(md5(g::text), 'hex'), (g % 100)::smallint, NULL
            FROM generate_series(1, {accounts}) g""",
        f"""INSERT INTO sales."Orders" SELECT (ARRAY['north','south','east','west'])[1 + g % 4], g,
              g * 1.125, now(), repeat('x', g % 7), '\\x0a0b', '{{"k": [1, 2.50]}}'
            FROM generate_series(1, {orders}) g""",
    )


@dataclass
class Workload:
    """Random transactions: inserts, updates, key changes, deletes, several changes of one key in one."""

    dsn: str
    seed: int
    transactions: int
    committed: int = 0
    aborted: int = 0
    progress: threading.Event = field(default_factory=threading.Event)
    progress_at: int = 0

    def _statements(self, rng: random.Random) -> list[tuple[str, tuple[object, ...]]]:
        a = rng.randint(1, 400)
        region, no = rng.choice(REGIONS), rng.randint(1, 200)
        choices: list[list[tuple[str, tuple[object, ...]]]] = [
            [("UPDATE accounts SET balance = balance + %s, visits = coalesce(visits, 0) + 1, changed_at = now() "
              "WHERE id = %s", (rng.randint(-500, 500) / 100, a))],
            [("INSERT INTO accounts (id, balance, name, active, changed_at, ref, raw, rate) VALUES "
              "(%s, %s, %s, true, now(), gen_random_uuid(), %s, %s) ON CONFLICT (id) DO NOTHING",
              (rng.randint(1, 600), "12345.67", "new \u00e9 \U0001f600", bytes([0, 255, 10]), 1 / 3))],
            [("DELETE FROM accounts WHERE id = %s", (a,))],
            [("UPDATE accounts SET id = %s WHERE id = %s", (rng.randint(401, 700), a))],  # a key change
            [("UPDATE accounts SET name = 'first' WHERE id = %s", (a,)),
             ("UPDATE accounts SET name = 'second', doc = '{\"n\": null}' WHERE id = %s", (a,)),
             ("DELETE FROM accounts WHERE id = %s", (a,)),
             ("INSERT INTO accounts (id, balance, name, active, changed_at) VALUES (%s, 0, 'reborn', false, now())",
              (a,))],
            [('INSERT INTO sales."Orders" VALUES (%s, %s, %s, now(), %s, NULL, NULL) ON CONFLICT DO NOTHING',
              (region, no, "1.500", rng.choice(["small", rng.randbytes(4000).hex()])))],  # big: TOASTed
            [('UPDATE sales."Orders" SET amount = amount * 2 WHERE region = %s AND order_no = %s', (region, no)),
             ('UPDATE sales."Orders" SET order_no = order_no + 1000 WHERE region = %s AND order_no = %s',
              (region, no))],
            [('DELETE FROM sales."Orders" WHERE region = %s AND order_no = %s', (region, no))],
        ]
        return [s for _ in range(rng.randint(1, 3)) for s in rng.choice(choices)]

    def run(self) -> None:
        rng = random.Random(self.seed)
        con = psycopg2.connect(self.dsn)
        try:
            for _ in range(self.transactions):
                statements = self._statements(rng)
                try:
                    with con.cursor() as cur:
                        for sql, params in statements:
                            cur.execute(sql, params)
                    con.commit()
                    self.committed += 1
                except (psycopg2.errors.UniqueViolation, psycopg2.errors.DeadlockDetected):
                    con.rollback()
                    self.aborted += 1
                if self.committed == self.progress_at:
                    self.progress.set()
        finally:
            con.close()


def run_concurrently(workloads: list[Workload]) -> list[threading.Thread]:
    threads = [threading.Thread(target=w.run, name=f"workload-{w.seed}") for w in workloads]
    for t in threads:
        t.start()
    return threads
