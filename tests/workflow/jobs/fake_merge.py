"""Stand-in merge job for workflow tests: proves it ran (marker file in the lake) and can fail or take time.

``FAKE_MERGE_FAIL=<table>`` fails that table's run; ``FAKE_MERGE_SLEEP_<table>=<s>`` delays it;
``FAKE_MERGE_AFTER_PLAN_<table>=1`` first waits until the plan job has planned (see fake_plan.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlparse


def main() -> int:
    parser = argparse.ArgumentParser()
    for name in ("--table", "--engine", "--run_id", "--lake_uri", "--name_prefix", "--region"):
        parser.add_argument(name, required=True)
    args, _ = parser.parse_known_args()
    lake = Path(urlparse(args.lake_uri).path)
    if os.environ.get(f"FAKE_MERGE_AFTER_PLAN_{args.table}"):
        deadline = time.monotonic() + 60
        while not (lake / "fake-planned").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    time.sleep(float(os.environ.get(f"FAKE_MERGE_SLEEP_{args.table}", "0.2")))
    if args.table == os.environ.get("FAKE_MERGE_FAIL"):
        print(f"ERROR: MergeError: boom on {args.table}", flush=True)
        return 1
    marker = lake / "fake-merged" / args.run_id / f"{args.table}.json"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(vars(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
