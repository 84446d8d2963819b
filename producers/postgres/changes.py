"""Decoded pgoutput messages in, per committed transaction its change events (collapsed per key) out.

Pure apart from the buffer's spill file: schema lookups and evolutions happen
behind the ``resolve`` callback, which turns a relation message into a
``RelationPlan`` (``producers.postgres.relations``).

Rules:

* every event of a transaction has ``seq`` = its commit LSN and ``ts`` = its
  commit time; a key's later change in the transaction replaces its earlier one;
* insert -> ``c``; update -> ``u``; delete -> ``d`` carrying the key (from the
  old key or old row the replica identity sends);
* an update that changes the primary key is a ``d`` of the old key and a ``u``
  of the new one;
* a TOASTed value an update left unchanged is taken from the old row (replica
  identity FULL sends it); without it the change cannot be captured exactly and
  the source stops, naming table and column;
* ``TRUNCATE`` empties the table as of the commit: the transaction reports the
  table as truncated, and its events of that table after the truncate become a
  full extract at the commit's seq (``PostgresSource``), not stream events.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hybrid_ingest.errors import SourceError, ValidationError
from producers.postgres import pgoutput as pg
from producers.postgres.lsn import format_lsn, seq_of
from producers.postgres.relations import RelationPlan
from producers.postgres.txn import TxnBuffer
from producers.producer import encode_event

Resolver = Callable[[pg.Relation, Mapping[int, str]], RelationPlan]


@dataclass
class CommittedTxn:
    """A transaction whose events are in the buffer, ready to be spooled; ``end_lsn`` is what to confirm."""

    commit_lsn: int
    end_lsn: int
    commit_time: dt.datetime
    changes: int
    truncated: dict[str, RelationPlan] = field(default_factory=dict)

    @property
    def seq(self) -> int:
        return seq_of(self.commit_lsn)


class ChangeCollector:
    """Feeds on messages in stream order; ``feed`` returns a ``CommittedTxn`` at each commit."""

    def __init__(self, resolve: Resolver, buffer: TxnBuffer) -> None:
        self.resolve = resolve
        self.buffer = buffer
        self.plans: dict[int, RelationPlan] = {}
        self.type_names: dict[int, str] = {}
        self._begin: pg.Begin | None = None
        self._seq = 0
        self._changes = 0
        self._truncated: dict[str, RelationPlan] = {}

    @property
    def in_transaction(self) -> bool:
        return self._begin is not None

    def abandon(self) -> None:
        """Forget an open transaction (the slot sends it again after a restart)."""
        self._begin = None
        self.buffer.clear()

    def feed(self, message: pg.Message) -> CommittedTxn | None:
        if isinstance(message, pg.Begin):
            self.abandon()
            self._begin, self._seq, self._changes, self._truncated = message, seq_of(message.final_lsn), 0, {}
        elif isinstance(message, pg.Commit):
            return self._commit(message)
        elif isinstance(message, pg.Relation):
            self.plans[message.relid] = self.resolve(message, self.type_names)
        elif isinstance(message, pg.TypeInfo):
            self.type_names[message.oid] = f"{message.namespace}.{message.name}"
        elif isinstance(message, pg.Insert):
            plan = self._plan(message.relid)
            self._put(plan, "c", plan.row(message.new, None))
        elif isinstance(message, pg.Update):
            self._update(message)
        elif isinstance(message, pg.Delete):
            plan = self._plan(message.relid)
            self._put(plan, "d", plan.key_row(message.old))
        elif isinstance(message, pg.Truncate):
            for relid in message.relids:
                plan = self._plan(relid)
                self.buffer.drop_table(plan.ref.table)
                self._truncated[plan.ref.table] = plan
                self._changes += 1
        # Origin and logical messages carry nothing to capture
        return None

    def _plan(self, relid: int) -> RelationPlan:
        if self._begin is None:
            raise SourceError("pgoutput sent a change outside a transaction")
        plan = self.plans.get(relid)
        if plan is None:
            raise SourceError(f"pgoutput sent a change of relation {relid} before describing it")
        return plan

    def _update(self, message: pg.Update) -> None:
        plan = self._plan(message.relid)
        row = plan.row(message.new, message.old if message.old_kind == "O" else None)
        if message.old is not None:
            old_key = plan.key_row(message.old)
            if plan.key(old_key) != plan.key(row):
                self._put(plan, "d", old_key)
        self._put(plan, "u", row)

    def _put(self, plan: RelationPlan, op: str, row: dict[str, Any]) -> None:
        assert self._begin is not None
        event = {"op": op, "seq": self._seq, "ts": self._begin.commit_time, "row": row}
        try:
            entry = encode_event(plan.version, event)
        except ValidationError as exc:
            raise SourceError(f"table {plan.ref.qualified} key {plan.key(row)} in the transaction committed at "
                              f"{format_lsn(self._begin.final_lsn)}: {exc}") from None
        self.buffer.put(plan.ref.table, entry)
        self._changes += 1

    def _commit(self, message: pg.Commit) -> CommittedTxn:
        if self._begin is None:
            raise SourceError(f"pgoutput sent a commit at {format_lsn(message.commit_lsn)} without its begin")
        if message.commit_lsn != self._begin.final_lsn:
            raise SourceError(f"pgoutput commit at {format_lsn(message.commit_lsn)} does not match its begin "
                              f"({format_lsn(self._begin.final_lsn)})")
        self._begin = None
        return CommittedTxn(message.commit_lsn, message.end_lsn, message.commit_time, self._changes,
                            self._truncated)
