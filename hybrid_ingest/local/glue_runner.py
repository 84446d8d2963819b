"""Make moto's Glue StartJobRun execute the job's script for real, and GetJobRun report its true state.

moto's Glue backend only fakes job runs (SUCCEEDED at once, nothing executed). The
local stack needs the Step Functions workflow's Glue tasks to run the actual merge,
so this swaps moto's ``FakeJobRun`` for a subclass whose state follows a
subprocess running the job's ``ScriptLocation`` with Glue-style ``--key value``
arguments: RUNNING while it runs, then SUCCEEDED or FAILED (with the last error
line as ``ErrorMessage``), exactly what a poller of GetJobRun sees on AWS.

This patches moto internals (``moto.glue.models``), hence moto is pinned.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import moto.glue.models as glue_models

_ORIGINAL_START = glue_models.FakeJob.start_job_run
_ENDPOINT: dict[str, str] = {}
ERROR_PREFIX = "ERROR:"


def script_path(location: str) -> Path:
    """A local path for a job's ScriptLocation; only local files can run on the local stack."""
    parsed = urlparse(location)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme else location)
    raise FileNotFoundError(f"the local stack can only run file:// scripts, not {location}")


def error_message(log: str) -> str:
    """The job's own error line if it printed one, else the log's last non-empty line."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith(ERROR_PREFIX):
            return line.removeprefix(ERROR_PREFIX).strip()[:2000]
    return (lines[-1] if lines else "job failed without output")[:2000]


class RealJobRun(glue_models.FakeJobRun):
    """A job run backed by a subprocess; ``status`` is read from the process, not from moto's clock."""

    process: subprocess.Popen[bytes] | None = None
    launch_error: str | None = None
    log_path: Path | None = None

    def launch(self, location: str, arguments: dict[str, str], endpoint: str) -> None:
        try:
            script = script_path(location)
        except FileNotFoundError as exc:
            self.launch_error = str(exc)
            return
        argv = [sys.executable, str(script), "--JOB_NAME", self.job_name, "--JOB_RUN_ID", self.job_run_id]
        for key, value in (arguments or {}).items():
            argv += [key if key.startswith("--") else f"--{key}", value]
        env = dict(os.environ)
        env.update({
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "PYTHONUNBUFFERED": "1",
        })
        fd, log_name = tempfile.mkstemp(prefix=f"glue-{self.job_name}-", suffix=".log")
        self.log_path = Path(log_name)
        with os.fdopen(fd, "wb") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env)

    @property
    def status(self) -> str:
        if self.launch_error is not None:
            return "FAILED"
        if self.process is None:
            return "STARTING"
        code = self.process.poll()
        if code is None:
            return "RUNNING"
        if self.completed_on is None or self.completed_on <= self.started_on:
            self.completed_on = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        return "SUCCEEDED" if code == 0 else "FAILED"

    @status.setter
    def status(self, value: str) -> None:  # moto sets the initial state; ours comes from the process
        pass

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = super().as_dict()
        state = self.status
        if state == "FAILED":
            out["ErrorMessage"] = self.launch_error or error_message(self.log())
        if state in ("SUCCEEDED", "FAILED"):
            out["ExecutionTime"] = int((self.completed_on - self.started_on).total_seconds())
        else:
            out.pop("CompletedOn", None)
        return out


def _start_job_run(self: glue_models.FakeJob, *args: Any, **kwargs: Any) -> str:
    run_id = _ORIGINAL_START(self, *args, **kwargs)
    run = next(r for r in self.job_runs if r.job_run_id == run_id)
    if isinstance(run, RealJobRun):
        run.completed_on = None  # type: ignore[assignment]
        command: dict[str, str] = self.command if isinstance(self.command, dict) else {}
        location = command.get("ScriptLocation", "")
        run.launch(location, dict(run.arguments or {}), _ENDPOINT["url"])
    return str(run_id)


def install(endpoint: str) -> None:
    """Patch moto so Glue job runs execute for real, calling AWS APIs at ``endpoint``; idempotent."""
    _ENDPOINT["url"] = endpoint
    glue_models.FakeJobRun = RealJobRun  # type: ignore[misc]
    glue_models.FakeJob.start_job_run = _start_job_run  # type: ignore[method-assign]
