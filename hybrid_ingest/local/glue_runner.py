"""Make moto's Glue StartJobRun execute the job's script for real, and GetJobRun report its true state.

moto's Glue backend only fakes job runs (SUCCEEDED at once, nothing executed). The
local stack needs the Step Functions workflow's Glue tasks to run the actual merge,
so this swaps moto's ``FakeJobRun`` for a subclass whose state follows a
subprocess running the job's ``ScriptLocation`` with Glue-style ``--key value``
arguments: RUNNING while it runs, then SUCCEEDED or FAILED (with the last error
line as ``ErrorMessage``), exactly what a poller of GetJobRun sees on AWS.

Only the project's own job scripts run: a ScriptLocation must resolve (symlinks
and ``..`` followed) to a ``.py`` file inside the ``glue_jobs`` or
``streaming_consumer`` package of the installed project. Anything else, such as
``file:///tmp/evil.py`` named by whoever can call CreateJob on the local stack,
is refused: the run is FAILED with the reason as its error, and nothing is
executed.

This patches moto internals (``moto.glue.models``), hence moto is pinned.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import moto.glue.models as glue_models

_ORIGINAL_START = glue_models.FakeJob.start_job_run
ERROR_PREFIX = "ERROR:"
JOB_PACKAGES = ("glue_jobs", "streaming_consumer")


class RefusedScript(ValueError):
    """A ScriptLocation the local stack will not run."""


def project_script_roots() -> tuple[Path, ...]:
    """The folders of the installed project's job packages, resolved."""
    roots = []
    for package in JOB_PACKAGES:
        spec = importlib.util.find_spec(package)
        roots += [Path(p).resolve() for p in (spec.submodule_search_locations or [])] if spec else []
    return tuple(roots)


@dataclass
class _Config:
    endpoint: str = ""
    roots: tuple[Path, ...] = ()


_CONFIG = _Config()


def script_path(location: str, roots: Sequence[Path]) -> Path:
    """The resolved local path of a job's ScriptLocation, if it is a job script under one of ``roots``.

    The path is resolved before the check, so neither a symlink nor ``..``
    (also percent-encoded) leads outside a root.
    """
    parsed = urlparse(location)
    if parsed.scheme not in ("", "file") or parsed.netloc not in ("", "localhost"):
        raise RefusedScript(f"refused ScriptLocation {location}: the local stack runs only local (file://) scripts")
    raw = Path(unquote(parsed.path) if parsed.scheme else location)
    try:
        resolved = raw.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise RefusedScript(f"refused ScriptLocation {location}: {exc}") from exc
    if resolved.suffix != ".py" or not resolved.is_file():
        raise RefusedScript(f"refused ScriptLocation {location}: not a Python job script")
    if not any(resolved.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(r) for r in roots) or "no folder"
        raise RefusedScript(f"refused ScriptLocation {location}: the local stack runs only the project's own job "
                            f"scripts (under {allowed})")
    return resolved


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

    def launch(self, location: str, arguments: dict[str, str], endpoint: str, roots: Sequence[Path]) -> None:
        try:
            script = script_path(location, roots)
        except RefusedScript as exc:
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
            state = "FAILED"  # refused before anything ran
        elif self.process is None:
            return "STARTING"
        else:
            code = self.process.poll()
            if code is None:
                return "RUNNING"
            state = "SUCCEEDED" if code == 0 else "FAILED"
        if self.completed_on is None or self.completed_on <= self.started_on:
            self.completed_on = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        return state

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
        run.launch(location, dict(run.arguments or {}), _CONFIG.endpoint, _CONFIG.roots)
    return str(run_id)


def install(endpoint: str, script_roots: Sequence[Path] | None = None) -> None:
    """Patch moto so Glue job runs execute for real, calling AWS APIs at ``endpoint``; idempotent.

    Runs execute only scripts under ``script_roots`` (default: the project's
    job packages); a caller of the stack's API cannot change them.
    """
    _CONFIG.endpoint = endpoint
    _CONFIG.roots = project_script_roots() if script_roots is None else tuple(Path(r).resolve() for r in script_roots)
    glue_models.FakeJobRun = RealJobRun  # type: ignore[misc]
    glue_models.FakeJob.start_job_run = _start_job_run  # type: ignore[method-assign]
