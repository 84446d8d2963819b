"""A simulated on-prem database that emits change events as it changes.

The simulator *is* the source: it mutates its own tables and records one event
per change with a strictly increasing ``seq`` (its commit log position). Its
final tables are therefore the truth the curated tables must equal, computed
without any of the service's merge code. Delivery faults (duplicates, late
re-deliveries of older changes) are applied to the event list afterwards, the
way a real at-least-once pipeline would reorder and repeat them.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

Row = dict[str, Any]
Key = tuple[Any, ...]
KEYS: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id",),
    "orders": ("order_id",),
    "order_items": ("order_id", "line_no"),
}
START = dt.datetime(2025, 12, 1, tzinfo=dt.UTC)
COUNTRIES = ("PT", "DE", "FR", "ZA", "US", "JP", "BR", "IN")
STATUSES = ("new", "paid", "packed", "shipped", "delivered", "returned")


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass
class Source:
    """Source tables plus the change log it has emitted (JSON rows, Avro JSON mapping)."""

    seed: int = 7
    start: dt.datetime = START
    tick_seconds: tuple[int, int] = (1, 90)
    seq: int = 1000
    tables: dict[str, dict[Key, Row]] = field(default_factory=lambda: {t: {} for t in KEYS})
    log: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {t: [] for t in KEYS})

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.clock = self.start

    def key(self, table: str, row: Row) -> Key:
        return tuple(row[k] for k in KEYS[table])

    def _commit(self, table: str, op: str, row: Row, emit: bool) -> None:
        self.seq += self.rng.randint(1, 3)
        self.clock += dt.timedelta(seconds=self.rng.randint(*self.tick_seconds))
        key = self.key(table, row)
        if op == "d":
            del self.tables[table][key]
            payload = {k: row[k] for k in KEYS[table]}
        else:
            self.tables[table][key] = dict(row)
            payload = dict(row)
        if emit:
            self.log[table].append({"op": op, "seq": self.seq, "ts": _iso(self.clock), "row": payload})

    def insert(self, table: str, row: Row, emit: bool = True) -> None:
        self._commit(table, "c", row, emit)

    def update(self, table: str, key: Key, emit: bool = True, **changes: Any) -> None:
        self._commit(table, "u", {**self.tables[table][key], **changes}, emit)

    def delete(self, table: str, key: Key) -> None:
        self._commit(table, "d", self.tables[table][key], emit=True)

    # -- row makers -------------------------------------------------------------------------

    def customer(self, customer_id: int) -> Row:
        return {
            "customer_id": customer_id, "email": f"user{customer_id}@example.com",
            "full_name": f"Customer {customer_id}", "country": self.rng.choice(COUNTRIES),
            "tier": self.rng.choice(("bronze", "silver", "gold")),
            "credit_limit": f"{self.rng.randint(100, 50000)}.{self.rng.randint(0, 99):02d}",
            "is_active": True, "signup_date": (START.date() - dt.timedelta(days=self.rng.randint(0, 900))).isoformat(),
            "updated_at": _iso(self.clock), "phone": None if self.rng.random() < 0.3 else f"+351{customer_id:09d}",
        }

    def order(self, order_id: int, customer_id: int) -> Row:
        day = START.date() + dt.timedelta(days=self.rng.randint(0, 360))
        return {
            "order_id": order_id, "customer_id": customer_id, "order_date": day.isoformat(), "status": "new",
            "total_amount": f"{self.rng.randint(1, 2000)}.{self.rng.randint(0, 99):02d}", "currency": "EUR",
            "item_count": self.rng.randint(1, 5), "weight_kg": None if self.rng.random() < 0.2 else
            round(self.rng.uniform(0.1, 30), 2), "discount_rate": self.rng.choice((0.0, 0.05, 0.1)),
            "placed_at": _iso(self.clock), "external_ref": str(uuid.UUID(int=self.rng.getrandbits(128))),
            "notes": None,
        }

    def item(self, order_id: int, line_no: int) -> Row:
        return {
            "order_id": order_id, "line_no": line_no, "sku": f"SKU-{self.rng.randint(1, 400):04d}",
            "quantity": self.rng.randint(1, 9), "unit_price": f"{self.rng.randint(1, 300)}.{self.rng.randint(0, 99):02d}",
            "gift_wrap": self.rng.random() < 0.1, "barcode": None,
        }


@dataclass
class Scenario:
    """What the demo produces: stream events per table, and a nightly full extract of customers."""

    source: Source
    events: dict[str, list[dict[str, Any]]]
    extract_rows: list[Row]
    extract_as_of: int
    duplicates: int
    late: int


def simulate(customers: int = 300, orders: int = 1500, seed: int = 7, end: dt.datetime | None = None) -> Scenario:
    """Run the source through inserts, updates (some moving orders across months), deletes and re-inserts.

    With ``end``, the source's commit clock is placed so that its last change happens
    at ``end`` (the same history, shifted), which makes freshness figures meaningful.
    """
    start = START
    if end is not None:
        probe = _simulate(Source(seed=seed), customers, orders)
        start = end - (probe.source.clock - START)
    return _simulate(Source(seed=seed, start=start), customers, orders)


def _simulate(src: Source, customers: int, orders: int) -> Scenario:
    rng = src.rng
    # legacy customers exist before the stream starts: only the nightly extract carries them
    for cid in range(1, customers // 5 + 1):
        src.insert("customers", src.customer(cid), emit=False)
    next_customer = customers // 5 + 1
    next_order = 1
    for _ in range(customers - customers // 5):
        src.insert("customers", src.customer(next_customer))
        next_customer += 1
    extract_as_of = 0
    extract_rows: list[Row] = []
    for step in range(orders):
        cid = rng.choice([k[0] for k in src.tables["customers"]])
        oid = next_order
        next_order += 1
        src.insert("orders", src.order(oid, cid))
        for line in range(1, src.tables["orders"][(oid,)]["item_count"] + 1):
            src.insert("order_items", src.item(oid, line))
        live_orders = list(src.tables["orders"])
        for _ in range(2):
            key = rng.choice(live_orders)
            if key not in src.tables["orders"]:
                continue
            status = rng.choice(STATUSES)
            if rng.random() < 0.15:  # the order date is corrected: the row moves to another month
                day = START.date() + dt.timedelta(days=rng.randint(0, 360))
                src.update("orders", key, status=status, order_date=day.isoformat())
            else:
                src.update("orders", key, status=status, total_amount=f"{rng.randint(1, 2000)}.{rng.randint(0, 99):02d}")
        if rng.random() < 0.05:
            key = rng.choice(list(src.tables["orders"]))
            for item_key in [k for k in src.tables["order_items"] if k[0] == key[0]]:
                src.delete("order_items", item_key)
            src.delete("orders", key)
        if rng.random() < 0.08:
            key = rng.choice(list(src.tables["customers"]))
            src.update("customers", key, tier=rng.choice(("bronze", "silver", "gold")), updated_at=_iso(src.clock))
        if rng.random() < 0.02:
            key = rng.choice(list(src.tables["customers"]))
            row = dict(src.tables["customers"][key])
            src.delete("customers", key)
            if rng.random() < 0.5:  # re-insert after delete
                src.insert("customers", {**row, "full_name": row["full_name"] + " (returned)"})
        if step == orders // 2:
            extract_as_of = src.seq
            extract_rows = [dict(r) for r in src.tables["customers"].values()]
    events, duplicates, late = deliver(src.log, rng)
    return Scenario(src, events, extract_rows, extract_as_of, duplicates, late)


def deliver(log: dict[str, list[dict[str, Any]]], rng: random.Random) -> tuple[dict[str, list[dict[str, Any]]], int, int]:
    """At-least-once delivery: ~3% of events repeated, ~2% re-delivered late after newer ones."""
    out: dict[str, list[dict[str, Any]]] = {}
    duplicates = late = 0
    for table, events in log.items():
        stream = list(events)
        for event in events:
            if rng.random() < 0.03:
                stream.insert(rng.randint(stream.index(event), len(stream)), dict(event))
                duplicates += 1
        for index in range(len(stream) - 1, -1, -1):
            if stream[index]["op"] == "u" and rng.random() < 0.02:
                moved = stream.pop(index)
                stream.insert(min(len(stream), index + rng.randint(5, 50)), moved)
                late += 1
        out[table] = stream
    return out, duplicates, late
