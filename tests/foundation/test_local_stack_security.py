"""The local stack runs only the project's own job scripts, and listens on loopback only."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hybrid_ingest.aws import Clients
from hybrid_ingest.local.glue_runner import RefusedScript, project_script_roots, script_path
from tests.conftest import REPO

# ---------------------------------------------------------------- which scripts may run


@pytest.fixture
def root(tmp_path: Path) -> Path:
    jobs = tmp_path / "project" / "glue_jobs"
    jobs.mkdir(parents=True)
    (jobs / "merge_job.py").write_text("print('merge')\n")
    (tmp_path / "evil.py").write_text("print('evil')\n")
    return jobs


def test_runs_a_script_of_the_project(root: Path) -> None:
    assert script_path((root / "merge_job.py").as_uri(), [root]) == (root / "merge_job.py").resolve()
    assert script_path(str(root / "merge_job.py"), [root]) == (root / "merge_job.py").resolve()


def test_the_installed_projects_job_scripts_are_allowed() -> None:
    roots = project_script_roots()
    assert {r.name for r in roots} == {"glue_jobs", "streaming_consumer"}
    for script in (REPO / "glue_jobs" / "merge_job.py", REPO / "glue_jobs" / "plan_job.py",
                   REPO / "streaming_consumer" / "glue_streaming_job.py"):  # fmt: skip
        assert script_path(script.as_uri(), roots) == script.resolve()


@pytest.mark.parametrize("location", [
    "{tmp}/evil.py",
    "file://{tmp}/evil.py",
    "file://{root}/../../evil.py",
    "file://{root}/%2e%2e/%2e%2e/evil.py",
    "file://{root}/link.py",
    "file://{root}/notes.txt",
    "file://{root}",
    "file://{root}/missing.py",
    "s3://bucket/glue_jobs/merge_job.py",
    "file://otherhost{root}/merge_job.py",
], ids=["plain-path", "file-uri", "dot-dot", "encoded-dot-dot", "symlink-out", "not-python", "directory", "missing",
        "s3", "remote-host"])  # fmt: skip
def test_refuses_anything_else(root: Path, location: str) -> None:
    tmp = root.parent.parent
    (root / "link.py").symlink_to(tmp / "evil.py")
    (root / "notes.txt").write_text("x")
    with pytest.raises(RefusedScript, match="refused ScriptLocation"):
        script_path(location.format(tmp=tmp, root=root), [root])


def test_a_caller_of_the_stack_cannot_run_its_own_script(clients: Clients, tmp_path: Path) -> None:
    """CreateJob + StartJobRun with ScriptLocation=file:///.../evil.py: FAILED with the reason, nothing executed."""
    marker = tmp_path / "evil-ran"
    evil = tmp_path / "evil.py"
    evil.write_text(f"open({str(marker)!r}, 'w').write('pwned')\n")
    clients.glue.create_job(Name="evil", Role="arn:aws:iam::123456789012:role/x",
                            Command={"Name": "glueetl", "ScriptLocation": evil.as_uri(), "PythonVersion": "3"})  # fmt: skip
    run_id = clients.glue.start_job_run(JobName="evil")["JobRunId"]
    run = clients.glue.get_job_run(JobName="evil", RunId=run_id)["JobRun"]
    assert run["JobRunState"] == "FAILED"
    assert "refused ScriptLocation" in run["ErrorMessage"]
    assert "project's own job scripts" in run["ErrorMessage"]
    assert not marker.exists()


# ---------------------------------------------------------------- loopback only


def listening_addresses(pid: int) -> list[tuple[str, int]]:
    """The (address, port) of every TCP socket the process listens on, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            address, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A = LISTEN
                continue
            host_hex, port_hex = address.split(":")
            raw = bytes.fromhex(host_hex)
            # /proc prints each 32-bit word of the address in host (little-endian) order
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.append((socket.inet_ntop(family, words), int(port_hex, 16)))
    return found


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT_URL", "HYBRID_INGEST"))}
    env["HYBRID_INGEST_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "hybrid_ingest.cli", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120, check=False)  # fmt: skip


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, object]]:
    home = tmp_path / "home"
    up = _cli(home, "local", "up")
    assert up.returncode == 0, up.stderr
    try:
        yield json.loads((home / "stack.json").read_text())
    finally:
        _cli(home, "local", "down")


@pytest.mark.skipif(
    not Path("/proc/self/net/tcp").exists(), reason="reads listening sockets from Linux's /proc"
)
def test_the_stack_listens_on_loopback_only(stack: dict[str, object]) -> None:
    listening = listening_addresses(int(str(stack["pid"])))
    port = int(str(stack["endpoint"]).rsplit(":", 1)[1])
    assert ("127.0.0.1", port) in listening
    assert [a for a in listening if a[0] != "127.0.0.1"] == [], "the stack must not listen beyond loopback"


def test_listening_addresses_sees_a_wildcard_bind() -> None:
    """The check above would notice a server bound to every interface (0.0.0.0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("0.0.0.0", 0))
        server.listen()
        port = server.getsockname()[1]
        if not Path("/proc/self/net/tcp").exists():
            pytest.skip("reads listening sockets from Linux's /proc")
        assert ("0.0.0.0", port) in listening_addresses(os.getpid())
