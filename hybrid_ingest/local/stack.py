"""Start and stop the local stack: moto's server on loopback, in the background.

``local up`` launches ``python -m hybrid_ingest.local.stack`` as a detached process.
It binds a free loopback port, switches on moto's real Step Functions interpreter
(which calls back into the server on ``localhost:$MOTO_PORT``), installs the
Glue job runner that makes StartJobRun execute the job script for real, and only
then records its address in ``$HYBRID_INGEST_HOME/stack.json``. Tests use
``start_server`` for the same configuration in-process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from moto.server import ThreadedMotoServer

from hybrid_ingest.config import STACK_FILE, Settings
from hybrid_ingest.errors import ConfigError
from hybrid_ingest.local import glue_runner

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 60.0


def quiet_moto_logs() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("moto.stepfunctions").setLevel(logging.CRITICAL)


def enable_state_machine_execution(endpoint: str) -> None:
    request = urllib.request.Request(
        f"{endpoint}/moto-api/config",
        data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def start_server(port: int = 0) -> tuple[ThreadedMotoServer, str]:
    """Start a configured moto server in this process; returns it and its endpoint URL."""
    quiet_moto_logs()
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=port, verbose=False)
    server.start()
    _, bound = server.get_host_and_port()
    os.environ["MOTO_PORT"] = str(bound)  # the Step Functions interpreter's clients call back here
    endpoint = f"http://{LOOPBACK}:{bound}"
    enable_state_machine_execution(endpoint)
    glue_runner.install(endpoint)
    return server, endpoint


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _responds(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def running(settings: Settings) -> dict[str, object] | None:
    """The recorded stack if its process is alive and answering, else None."""
    if not settings.stack_file.exists():
        return None
    record: dict[str, object] = json.loads(settings.stack_file.read_text())
    pid = int(str(record.get("pid", 0)))
    if pid and _alive(pid) and _responds(str(record["endpoint"])):
        return record
    return None


def up(settings: Settings) -> dict[str, object]:
    """Start the stack unless it is already running; idempotent."""
    current = running(settings)
    if current is not None:
        return current
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.stack_file.unlink(missing_ok=True)
    log = (settings.home / "stack.log").open("ab")
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    process = subprocess.Popen(
        [sys.executable, "-m", "hybrid_ingest.local.stack", "--home", str(settings.home)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigError(f"local stack exited with {process.returncode}; see {settings.home / 'stack.log'}")
        record = running(settings)
        if record is not None:
            return record
        time.sleep(0.1)
    process.kill()
    raise ConfigError(f"local stack did not start within {START_TIMEOUT_S:.0f} s")


def down(settings: Settings) -> bool:
    """Stop the stack if it runs; idempotent. Returns whether one was stopped."""
    if not settings.stack_file.exists():
        return False
    record = json.loads(settings.stack_file.read_text())
    pid = int(record.get("pid", 0))
    stopped = False
    if pid and _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        stopped = True
    settings.stack_file.unlink(missing_ok=True)
    return stopped


def _serve(home: Path) -> None:
    server, endpoint = start_server()
    record = {"endpoint": endpoint, "pid": os.getpid(), "started": time.time()}
    tmp = home / f".{STACK_FILE}.tmp"
    tmp.write_text(json.dumps(record))
    tmp.replace(home / STACK_FILE)
    stop = False

    def _on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    while not stop:
        time.sleep(0.2)
    server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Run the hybrid-ingest local stack (moto server) in the foreground.")
    parser.add_argument("--home", required=True, type=Path)
    _serve(parser.parse_args().home)
