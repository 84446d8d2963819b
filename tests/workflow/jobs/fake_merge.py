"""Stand-in merge job for workflow tests: proves it ran (marker file in the lake) and can fail or take time.

``FAKE_MERGE_FAIL=<table>`` fails that table's run; ``FAKE_MERGE_SLEEP_<table>=<s>`` delays it;
``FAKE_MERGE_AFTER_PLAN_<table>=1`` first waits until the plan job has planned (see fake_plan.py);
``FAKE_MERGE_UNTIL_REFUSED_<table>=1`` then keeps running until a workflow execution's history shows
a StartJobRun refused for too many concurrent runs (an event, not a guess at how long that takes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlparse


def wait_for_a_refused_start(region: str, deadline: float) -> None:
    import boto3  # the local stack's endpoint comes from AWS_ENDPOINT_URL, set by the Glue job runner

    sfn = boto3.client("stepfunctions", region_name=region)
    while time.monotonic() < deadline:
        for machine in sfn.list_state_machines()["stateMachines"]:
            for execution in sfn.list_executions(stateMachineArn=machine["stateMachineArn"])["executions"]:
                events = sfn.get_execution_history(executionArn=execution["executionArn"])["events"]
                if "ConcurrentRunsExceeded" in json.dumps(events, default=str):
                    return
        time.sleep(0.1)


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
    if os.environ.get(f"FAKE_MERGE_UNTIL_REFUSED_{args.table}"):
        wait_for_a_refused_start(args.region, time.monotonic() + 120)
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
