"""A bulk extract streams: peak memory stays far below the size of the file (slow: writes ~400 MB)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.producers.test_bulk import CUSTOMER_HEADER

ROWS = 4_000_000


@pytest.mark.slow
def test_extract_larger_than_its_memory_use(tmp_path: Path) -> None:
    source = tmp_path / "big.csv"
    with source.open("w") as f:
        f.write(CUSTOMER_HEADER + "\n")
        for start in range(0, ROWS, 100_000):  # every key once: an extract holds a key once (bulk push checks)
            f.write("".join(f"{i},c{i}@example.com,Name {i},DE,gold,{i % 100_000}.25,true,2025-03-01,"
                            "2026-01-01T10:00:00Z,+1\n" for i in range(start, start + 100_000)))
    size = source.stat().st_size
    child = subprocess.run([sys.executable, "-m", "tests.producers.bulk_memory_child", str(source),
                            str(tmp_path / "lake")], capture_output=True, text=True, cwd=REPO, check=False,
                           env=os.environ | {"PYTHONPATH": str(REPO)}, timeout=600)
    assert child.returncode == 0, child.stderr
    rows, parts, peak = map(int, child.stdout.split())
    assert (rows, parts) == (ROWS, ROWS // 250_000)
    assert peak < size * 0.6, f"peak RSS {peak / 1e6:.0f} MB for a {size / 1e6:.0f} MB file"
    print(f"{size / 1e6:.0f} MB CSV landed with peak RSS {peak / 1e6:.0f} MB")
