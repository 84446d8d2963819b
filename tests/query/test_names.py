"""Names and values round-trip through ``query``: a table called ``group`` with columns ``order``,
``select`` and ``from``, awkward values, in query results, its live view, time travel and metadata tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from glue_jobs.merge import MergeContext, run_merge
from hybrid_ingest.tables import load_spec
from tests.conftest import Runner
from tests.merge.helpers import RawWriter, ev

AWKWARD = ["it's", 'say "hi"', "a\\b", "line\nbreak", "..", "grüße ✓", "", "'; DROP TABLE x; --", None]


@pytest.fixture
def group(duck: MergeContext, tmp_path: Path) -> str:
    fields = [{"name": "order", "type": "long"}, {"name": "select", "type": ["null", "string"], "default": None},
              {"name": "from", "type": {"type": "int", "logicalType": "date"}}]
    (tmp_path / "group.avsc").write_text(json.dumps({"type": "record", "name": "group", "fields": fields}))
    (tmp_path / "group.table.json").write_text(json.dumps(
        {"table": "group", "primary_key": ["order"], "partition": {"column": "select", "granularity": "identity"},
         "compatibility": "BACKWARD"}))
    duck.registry.register(load_spec(tmp_path / "group.avsc"))
    return "group"


def row(key: int, value: str | None) -> dict[str, Any]:
    return {"order": key, "select": value, "from": "2026-01-05"}


def jsonl(cli: Runner, sql: str) -> list[dict[str, Any]]:
    code, out, err = cli("query", sql, "--format", "jsonl")
    assert (code, err) == (0, ""), err
    return [json.loads(line) for line in out.splitlines()]


def test_reserved_words_and_awkward_values_round_trip(cli: Runner, duck: MergeContext, raw: RawWriter,
                                                      group: str) -> None:
    merged = [ev("c", i + 1, row(i + 1, v)) for i, v in enumerate(AWKWARD)]
    raw.write(group, merged)
    first = run_merge(duck, group, engine="duckdb")
    expected = {r["row"]["order"]: r["row"]["select"] for r in merged}
    rows = jsonl(cli, 'SELECT "order", "select", "from" FROM "group" ORDER BY "order"')
    assert {r["order"]: r["select"] for r in rows} == expected
    assert {r["from"] for r in rows} == {"2026-01-05"}
    # pending changes: values move between awkward partitions, one key goes, one arrives
    pending = [ev("u", 20, row(1, 'say "hi"')), ev("u", 21, row(2, None)), ev("d", 22, {"order": 3}),
               ev("c", 23, row(99, "it's"))]
    raw.write(group, pending)
    live = jsonl(cli, 'SELECT "order", "select", _seq FROM group_live ORDER BY "order"')
    after = {**expected, 1: 'say "hi"', 2: None, 99: "it's"}
    del after[3]
    assert {r["order"]: r["select"] for r in live} == after
    assert {r["order"]: r["_seq"] for r in live if r["order"] in (1, 2, 99)} == {1: 20, 2: 21, 99: 23}
    where = jsonl(cli, "SELECT \"order\" FROM hybrid_ingest_curated.group_live WHERE \"select\" = 'it''s'")
    assert where == [{"order": 99}]  # key 1 held "it's" until its pending change
    run_merge(duck, group, engine="duckdb")
    old = jsonl(cli, f'SELECT "order", "select" FROM "group" FOR VERSION AS OF {first.snapshot_id} ORDER BY 1')
    assert {r["order"]: r["select"] for r in old} == expected
    now = jsonl(cli, 'SELECT "order", "select" FROM "group" ORDER BY 1')
    assert {r["order"]: r["select"] for r in now} == after
    snaps = jsonl(cli, 'SELECT count(*) AS n FROM "group$snapshots"')
    assert snaps == [{"n": 2}]
    code, out, _ = cli("query", 'SELECT "order", "select" FROM "group" WHERE "order" IN (4, 8) ORDER BY 1',
                       "--format", "csv")
    assert (code, out) == (0, 'order,select\n4,"line\nbreak"\n8,\'; DROP TABLE x; --\n')
