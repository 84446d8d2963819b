"""State store: leases and locks (contention, expiry, takeover, fencing), checkpoints, watermarks."""

from __future__ import annotations

import threading

import pytest

from hybrid_ingest.errors import ConditionFailedError, LeaseHeldError
from hybrid_ingest.position import Position
from hybrid_ingest.state import StateStore, Watermark


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def timed(store: StateStore, clock: FakeClock) -> StateStore:
    return StateStore(store._ddb, store._state, store._runs, clock=clock)


def test_two_contenders_one_lock(store: StateStore) -> None:
    barrier = threading.Barrier(2)
    results: dict[str, str] = {}

    def contend(owner: str) -> None:
        barrier.wait()
        try:
            store.acquire("batch", owner, ttl_seconds=60)
            results[owner] = "held"
        except LeaseHeldError:
            results[owner] = "refused"

    threads = [threading.Thread(target=contend, args=(o,)) for o in ("run-a", "run-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values()) == ["held", "refused"]
    holder = store.lease("batch")
    assert holder is not None
    assert results[holder.owner] == "held"


def test_expired_lease_is_taken_over_and_old_owner_is_fenced(timed: StateStore, clock: FakeClock) -> None:
    old = timed.acquire("shard#s#0", "worker-1", ttl_seconds=10)
    with pytest.raises(LeaseHeldError, match="worker-1"):
        timed.acquire("shard#s#0", "worker-2", ttl_seconds=10)
    clock.now += 11
    new = timed.acquire("shard#s#0", "worker-2", ttl_seconds=10)
    assert new.token == old.token + 1
    with pytest.raises(LeaseHeldError):
        timed.renew(old, ttl_seconds=10)
    assert not timed.release(old)
    # the new owner checkpoints with its token; the paused old owner cannot write behind it
    timed.set_checkpoint("s", "0", Position(100), lease=new)
    with pytest.raises(ConditionFailedError):
        timed.set_checkpoint("s", "0", Position(200), lease=old)
    assert timed.checkpoint("s", "0") == Position(100)


def test_renew_keeps_a_lease_alive(timed: StateStore, clock: FakeClock) -> None:
    lease = timed.acquire("batch", "run-a", ttl_seconds=10)
    clock.now += 8
    lease = timed.renew(lease, ttl_seconds=10)
    clock.now += 8
    with pytest.raises(LeaseHeldError):
        timed.acquire("batch", "run-b", ttl_seconds=10)
    assert timed.release(lease)
    assert timed.lease("batch") is None
    successor = timed.acquire("batch", "run-b", ttl_seconds=10)
    assert successor.owner == "run-b"
    assert successor.token == lease.token + 1  # tokens never repeat, even across a clean release


def test_reacquire_by_the_same_owner_keeps_the_token(timed: StateStore) -> None:
    first = timed.acquire("batch", "run-a", ttl_seconds=10)
    again = timed.acquire("batch", "run-a", ttl_seconds=10)
    assert again.token == first.token


def test_checkpoints_only_move_forward(store: StateStore) -> None:
    store.set_checkpoint("s", "shard-0", Position(49590338271490256608559692538361571095921575989136588898, 3))
    store.set_checkpoint("s", "shard-0", Position(49590338271490256608559692538361571095921575989136588898, 4))
    with pytest.raises(ConditionFailedError):
        store.set_checkpoint("s", "shard-0", Position(49590338271490256608559692538361571095921575989136588898, 4))
    with pytest.raises(ConditionFailedError):
        store.set_checkpoint("s", "shard-0", Position(int("9" * 20), 0))
    store.set_checkpoint("s", "shard-1", Position(5), finished=True)
    assert store.checkpoints("s") == {
        "shard-0": Position(49590338271490256608559692538361571095921575989136588898, 4),
        "shard-1": Position(5),
    }
    assert store.finished_shards("s") == {"shard-1"}


def test_positions_order_numerically() -> None:
    assert Position(9) < Position(10)
    assert Position(10, 1) > Position(10, 0)
    assert Position.parse(str(Position(123, 7))) == Position(123, 7)


def test_watermark_compare_and_set(store: StateStore) -> None:
    assert store.watermark("orders").version == 0
    first = store.commit_watermark(
        Watermark("orders", {"shard-0": Position(10, 2)}, frozenset({"x1"}), newest_op_ts=5.0), expected_version=0
    )
    assert first.version == 1
    with pytest.raises(ConditionFailedError, match="concurrent"):
        store.commit_watermark(Watermark("orders", {"shard-0": Position(11)}), expected_version=0)
    read = store.watermark("orders")
    assert read.shards == {"shard-0": Position(10, 2)}
    assert read.extracts == frozenset({"x1"})
    assert read.merged("shard-0", Position(10, 1))
    assert not read.merged("shard-0", Position(10, 3))
    assert not read.merged("shard-9", Position(1))


def test_settings_and_run_history(store: StateStore) -> None:
    store.put_settings({"target_file_bytes": 1024})
    assert store.settings()["target_file_bytes"] == 1024
    assert store.settings()["engine"] == "auto"
    with pytest.raises(ValueError, match="unknown"):
        store.put_settings({"no_such_setting": 1})
    store.record_run("orders", "r1", "2026-11-22T01:00:00Z", {"status": "SUCCEEDED"})
    store.record_run("orders", "r2", "2026-11-22T02:00:00Z", {"status": "FAILED", "error": "boom"})
    runs = store.runs("orders")
    assert [r["status"] for r in runs] == ["FAILED", "SUCCEEDED"]
    assert runs[0]["error"] == "boom"


def test_shard_queries_read_every_page(store: StateStore) -> None:
    """A stream with more shards than one query page holds: no checkpoint or finished flag is missed."""
    for i in range(7):
        store.set_checkpoint("s", f"shard-{i}", Position(i + 1), finished=i % 2 == 0)
    store.page_size = 2
    assert set(store.checkpoints("s")) == {f"shard-{i}" for i in range(7)}
    assert store.finished_shards("s") == {f"shard-{i}" for i in range(0, 7, 2)}
    assert len(store.checkpoints("s")) == 7
