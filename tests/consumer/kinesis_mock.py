"""kinesis-mock (npm ``kinesis-local``, the emulator LocalStack uses) on loopback, for the shard lifecycle tests.

It is a second, independent Kinesis: unlike moto it closes shards for real (a closed
shard's last GetRecords has ``NextShardIterator: null`` and ``ChildShards``; puts after a
reshard go to the children). Its server binds 0.0.0.0 with no option to change that, so
a copy of its single-file ``main.js`` with the host replaced by 127.0.0.1 is started
from a temporary folder; ``node_modules`` stays as ``npm ci`` installed it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "node_modules" / "kinesis-local"
ANY_HOST = '"0.0.0.0"'
LOOPBACK = '"127.0.0.1"'


@dataclass
class KinesisMock:
    process: subprocess.Popen[bytes]
    endpoint: str
    log: Path

    def stop(self) -> None:
        self.process.kill()  # it persists nothing, and it ignores SIGTERM for ~10 s
        self.process.wait()


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def loopback_copy(folder: Path) -> Path:
    """``main.js`` with its one listen host moved to loopback (refuses a release that changed it)."""
    source = PACKAGE / "main.js"
    if not source.exists():
        raise RuntimeError(f"{source} is missing: run `make node_modules/.installed` (npm ci)")
    text = source.read_text()
    if text.count(ANY_HOST) != 1:
        raise RuntimeError(f"{source}: expected one {ANY_HOST} listen host, found {text.count(ANY_HOST)}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.js").write_text(text.replace(ANY_HOST, LOOPBACK))
    (folder / "server.json").write_bytes((PACKAGE / "server.json").read_bytes())  # its TLS certificate
    return folder / "main.js"


def start(folder: Path, timeout: float = 60.0) -> KinesisMock:
    """Start it on free loopback ports; returns once its plain-HTTP port answers."""
    script = loopback_copy(folder)
    plain, tls = free_port(), free_port()
    env = {
        **os.environ,
        "KINESIS_MOCK_PLAIN_PORT": str(plain), "KINESIS_MOCK_TLS_PORT": str(tls),
        "LOG_LEVEL": "WARN", "ROOT_LOG_LEVEL": "ERROR", "SHOULD_PERSIST_DATA": "false",
        "AWS_REGION": "eu-west-1",
        # creating and deleting the per-test streams need not take the default half second
        "CREATE_STREAM_DURATION": "50ms", "DELETE_STREAM_DURATION": "50ms",
    }
    log = folder / "kinesis-mock.log"
    with log.open("wb") as out:
        process = subprocess.Popen(["node", str(script)], cwd=folder, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"kinesis-mock exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", plain), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"kinesis-mock did not listen on 127.0.0.1:{plain} within {timeout} s") from None
            time.sleep(0.1)
    return KinesisMock(process, f"http://127.0.0.1:{plain}", log)
