"""``consume --until-idle`` right after a consumer died: it waits for the dead worker's leases, takes over, drains.

Through the installed console script in subprocesses (what a scheduler runs), against
moto's server: a consumer is killed with SIGKILL while it holds every shard, more events
arrive, and ``consume --until-idle`` must read all of them and exit 0; with a shard held
by someone who never renews it, it must exit 1 naming the shard and the holder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from hybrid_ingest.aws import Clients
from hybrid_ingest.lake import Lake
from hybrid_ingest.registry import Registry
from streaming_consumer.shards import list_shards
from tests.consumer.workers import FakeClock, config, make_store, merged_view, produce_customers, worker

CONSOLE_SCRIPT = str(Path(sys.executable).with_name("hybrid-ingest"))
LEASE = "3"


def cli_env(clients: Clients) -> dict[str, str]:
    settings = clients.settings
    return {**os.environ, "AWS_ENDPOINT_URL": settings.endpoint_url or "", "HYBRID_INGEST_HOME": str(settings.home),
            "HYBRID_INGEST_LAKE_URI": settings.lake_uri}


def wait_for_leases(clients: Clients, count: int, timeout: float = 60.0) -> None:
    store = make_store(clients, FakeClock())
    stream = clients.settings.names.stream
    deadline = time.monotonic() + timeout
    while len(store.leases(f"shard#{stream}#")) < count or not store.checkpoints(stream):
        assert time.monotonic() < deadline, "the consumer did not take its shards"
        time.sleep(0.1)


def test_until_idle_after_a_killed_consumer_takes_over_and_reads_everything(
        initialized: Clients, lake: Lake, registry: Registry) -> None:
    stream = initialized.settings.names.stream
    shards = list_shards(initialized.kinesis, stream)
    produced = produce_customers(initialized, registry, stream, range(300), seq=1)
    env = cli_env(initialized)
    daemon = subprocess.Popen([CONSOLE_SCRIPT, "consume", "--lease-seconds", LEASE], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_leases(initialized, len(shards))
    finally:
        os.kill(daemon.pid, signal.SIGKILL)  # no flush, no release: its leases stay live until they expire
        daemon.wait()
    produced += produce_customers(initialized, registry, stream, range(200, 500), seq=2)
    done = subprocess.run([CONSOLE_SCRIPT, "consume", "--until-idle", "--lease-seconds", LEASE], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    read = sum(int(line.split(": ")[1].split()[0]) for line in done.stdout.splitlines()
               if line.startswith("shardId-"))
    assert read >= 300, done.stdout  # at least everything produced after the kill
    assert merged_view(lake) == Counter(produced)


def test_until_idle_exits_1_naming_shards_held_past_the_deadline(
        initialized: Clients, lake: Lake, registry: Registry) -> None:
    stream = initialized.settings.names.stream
    first, second = list_shards(initialized.kinesis, stream)[:2]
    produce_customers(initialized, registry, stream, range(100), seq=1)
    store = make_store(initialized, FakeClock())
    store.acquire(f"shard#{stream}#{first.shard_id}", "stuck-worker", ttl_seconds=3600)  # never renewed
    done = subprocess.run([CONSOLE_SCRIPT, "consume", "--until-idle", "--takeover-deadline", "1"],
                          env=cli_env(initialized), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    [message] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert f"{first.shard_id} (held by stuck-worker until " in message
    assert second.shard_id not in message
    assert "Traceback" not in done.stderr
    assert store.checkpoint(stream, second.shard_id) is not None  # the readable shard was drained


def test_a_holder_seen_renewing_is_left_alone(initialized: Clients, lake: Lake, registry: Registry) -> None:
    """Two live until-idle workers do not wait for each other: a renewed lease means a live holder."""
    stream = initialized.settings.names.stream
    produce_customers(initialized, registry, stream, range(50), seq=1)
    clock = FakeClock()
    a = worker(initialized, lake, registry, config(stream), clock, name="a")
    b = worker(initialized, lake, registry, config(stream), clock, name="b")
    a.step()
    assert len(a.readers) == 2
    b.step()  # a holds both shards; b has nothing it may take
    assert {shard for shard, _ in b.unreadable()} == set(a.readers)  # not seen renewing yet: maybe dead
    clock.now += 6  # past half the lease: a renews when it steps, and hands b its share
    a.step()
    b.step()
    assert len(a.readers) == len(b.readers) == 1
    assert b.unreadable() == []  # a's shard: its lease was renewed since b first saw it
    b.step()  # its restart re-reads the checkpointed record once, then finds the tip
    assert b.idle()
