"""``produce`` and ``bulk push`` as users run them (in process, against moto's server)."""

from __future__ import annotations

import json
from pathlib import Path

from hybrid_ingest.aws import Clients
from hybrid_ingest.lake import Lake
from hybrid_ingest.manifest import list_extracts, verify_manifest
from hybrid_ingest.registry import Registry
from tests.conftest import Runner
from tests.producers.helpers import read_stream
from tests.producers.test_bulk import customers_csv


def customer(i: int, seq: int, op: str = "c") -> str:
    row = {"customer_id": i, "email": f"c{i}@x.org", "full_name": f"N {i}", "country": "FR", "tier": "gold",
           "credit_limit": "100.25", "is_active": True, "signup_date": "2024-05-01",
           "updated_at": "2026-11-21T10:00:00Z"}
    if op == "d":
        row = {"customer_id": i}
    return json.dumps({"op": op, "seq": seq, "ts": "2026-11-21T10:00:00Z", "row": row})


def test_produce_sends_a_valid_file(cli: Runner, initialized: Clients, registry: Registry, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lines = [customer(i, 10 + i) for i in range(30)] + ["", customer(3, 99, op="d")]
    path.write_text("\n".join(lines) + "\n")
    code, out, err = cli("produce", "customers", "--input", str(path))
    assert code == 0, err
    assert "sent 31 event(s) of customers to hybrid-ingest-changes" in out
    shards = read_stream(initialized.kinesis, initialized.settings.names.stream, registry)
    events = [e for evs in shards.values() for e in evs]
    assert len(events) == 31
    deleted = [e for e in events if e["op"] == "d"]
    assert deleted[0]["row"]["customer_id"] == 3
    assert deleted[0]["row"]["email"] is None


def test_produce_reports_bad_lines_and_sends_nothing(cli: Runner, initialized: Clients, registry: Registry,
                                                     tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    bad_decimal = json.loads(customer(2, 2))
    bad_decimal["row"]["credit_limit"] = "1.234"
    path.write_text("\n".join([customer(1, 1), json.dumps(bad_decimal), "{not json", customer(4, 4),
                               json.dumps({"op": "x", "seq": 1, "row": {}})]) + "\n")
    code, _, err = cli("produce", "customers", "--input", str(path))
    assert code == 1
    assert "line 2: row.credit_limit: '1.234' does not fit decimal(12,2)" in err
    assert "line 3: invalid JSON" in err
    assert "line 5: op must be one of" in err
    assert "line 1:" not in err
    assert "3 bad line(s)" in err
    assert "nothing was sent" in err
    shards = read_stream(initialized.kinesis, initialized.settings.names.stream, registry)
    assert sum(map(len, shards.values())) == 0


def test_produce_unknown_table(cli: Runner, tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text(customer(1, 1) + "\n")
    code, _, err = cli("produce", "nope", "--input", str(path))
    assert code == 1
    assert "table 'nope' is not registered" in err


def test_bulk_push_lands_a_verified_extract(cli: Runner, lake: Lake, tmp_path: Path) -> None:
    source = customers_csv(tmp_path / "customers.csv", 120)
    code, out, err = cli("bulk", "push", "customers", "--input", str(source), "--as-of-seq", "42",
                         "--mode", "incremental")
    assert code == 0, err
    [extract] = list_extracts(lake, "customers")
    assert f"landed customers extract {extract}: 120 row(s) in 1 part(s), mode incremental, as_of_seq 42" in out
    assert verify_manifest(lake, "customers", extract).rows == 120
    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,email\n1,a@b\n")
    code, _, err = cli("bulk", "push", "customers", "--input", str(bad), "--as-of-seq", "43", "--mode", "full")
    assert code == 1
    assert "lacks column(s)" in err
    assert list_extracts(lake, "customers") == [extract]


def test_produce_refuses_a_line_nested_too_deeply(cli: Runner, initialized: Clients, registry: Registry,
                                                  tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(customer(1, 1) + "\n" + "[" * 200_000 + "\n")
    code, _, err = cli("produce", "customers", "--input", str(path))
    assert code == 1
    assert "line 2: invalid JSON: nested too deeply to decode" in err
    assert sum(map(len, read_stream(initialized.kinesis, initialized.settings.names.stream, registry).values())) == 0
