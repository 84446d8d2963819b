"""Fencing tokens across lease hand-offs: tokens never repeat, so a new owner is never fenced out.

A dies, B takes over (token 2), checkpoints and releases cleanly, C takes the
shard next. Had ``release`` deleted the lease item, C would restart at token 1
and every checkpoint it tried would be refused as if C had lost its lease, so
the shard would stall. ``release`` keeps the item and its token instead.
"""

from __future__ import annotations

from hybrid_ingest.aws import Clients
from hybrid_ingest.position import Position
from hybrid_ingest.state import StateStore


def test_checkpoint_after_takeover_then_clean_handoff(initialized: Clients) -> None:
    now = [1_000_000.0]
    names = initialized.settings.names
    store = StateStore(initialized.dynamodb, names.state_table, names.runs_table, clock=lambda: now[0])
    store.acquire("shard#s", "worker-a", 10)  # worker-a dies holding it
    now[0] += 11
    b = store.acquire("shard#s", "worker-b", 10)
    store.set_checkpoint("stream", "s", Position(100), lease=b)
    assert store.release(b)
    c = store.acquire("shard#s", "worker-c", 10)
    assert c.token > b.token, f"token {c.token} repeats an earlier owner's (worker-b had {b.token})"
    store.set_checkpoint("stream", "s", Position(200), lease=c)
    assert store.checkpoint("stream", "s") == Position(200)
