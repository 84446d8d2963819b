"""Counts the reliability tests keep while they run, for ``bench/reliability_report.py``.

A test adds to a counter as it does the thing counted (an example replayed, a
fault injected, a bad input tried, events in and out); the package's conftest
writes the totals to the JSON file named by ``HYBRID_INGEST_RELIABILITY_TALLY``
when the session ends. Plain module state is enough: pytest runs the tests of
one session in one process.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

TALLY_ENV = "HYBRID_INGEST_RELIABILITY_TALLY"
COUNTS: Counter[str] = Counter()
KINDS: dict[str, Counter[str]] = {"faults": Counter(), "bad_inputs": Counter()}


def add(name: str, n: int = 1) -> None:
    COUNTS[name] += n


def fault(kind: str) -> None:
    """A fault was injected (a crash at a commit boundary, a throttle, a lost lease...)."""
    COUNTS["faults_injected"] += 1
    KINDS["faults"][kind] += 1


def bad_input(kind: str) -> None:
    COUNTS["bad_inputs_tried"] += 1
    KINDS["bad_inputs"][kind] += 1


def lost(n: int) -> None:
    """Events that went in and neither came out nor reached the dead-letter area (must stay 0)."""
    COUNTS["events_lost"] += n


def dump(path: Path) -> None:
    doc = {"counts": dict(COUNTS), "kinds": {k: dict(v) for k, v in KINDS.items()}}
    path.write_text(json.dumps(doc, indent=2, sort_keys=True))
