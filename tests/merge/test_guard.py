"""The extract guard at merge (issue #17 item 5), on both kernels and both kernel plans.

Each finding is reproduced as it was reported, then checked against the guard:
an edited manifest that wiped and froze a table, a half-written nightly export,
an ``as_of_seq`` no seq can hold, duplicate keys (where an arbitrary row won), an
``as_of_seq`` far ahead of anything the table has seen. The rest of a run goes on
without a held extract, and nothing of it is ever half-applied.
"""

from __future__ import annotations

import json
from typing import Any

from glue_jobs.merge import MergeContext
from hybrid_ingest import layout
from tests.conftest import Runner
from tests.merge.helpers import (
    Oracle,
    RawWriter,
    assert_matches,
    customer,
    ev,
    land_extract,
    merge,
    order,
    table_rows,
)

SEQ_MAX = 2**63 - 1


def held_record(ctx: MergeContext, reason: str, table: str, extract_id: str) -> dict[str, Any]:
    rel = layout.dlq_file("merge", reason, f"{table}-{extract_id}.json")
    assert ctx.lake.exists(rel), f"no record {rel}"
    doc: dict[str, Any] = ctx.lake.read_json(rel)
    return doc


def edit_manifest(ctx: MergeContext, table: str, extract_id: str, **changes: Any) -> None:
    """What anyone who may write landing/ can do: the manifest's mode and as_of_seq are covered by no checksum."""
    rel = layout.manifest_path(table, extract_id)
    doc = ctx.lake.read_json(rel)
    doc.update(changes)
    ctx.lake.write_bytes(rel, json.dumps(doc).encode())


def count(ctx: MergeContext, table: str) -> int:
    return int(table_rows(ctx, f"SELECT count(*) AS n FROM {table}")[0]["n"])


def test_edited_manifest_can_neither_wipe_nor_freeze_the_table(ctx: MergeContext, raw: RawWriter,
                                                               engine: str) -> None:
    """The reported attack: a 1-row incremental manifest edited to ``mode: full, as_of_seq: 9e18``."""
    events = [ev("c", i, order(i, day=f"2026-0{1 + i % 3}-15")) for i in range(1, 60_001)]
    raw.write("orders", events)
    oracle = Oracle("orders", ("order_id",))
    oracle.stream(events)
    merge(ctx, "orders", engine)
    assert count(ctx, "orders") == 60_000
    extract_id = land_extract(ctx.lake, ctx.registry, "orders", [order(7, day="2026-02-15", status="x")],
                              as_of_seq=60_001, mode="incremental")
    edit_manifest(ctx, "orders", extract_id, mode="full", as_of_seq=9_000_000_000_000_000_000)
    later = [ev("u", 60_002, order(8, day="2026-03-15", status="later"))]
    raw.write("orders", later)
    oracle.stream(later)
    result = merge(ctx, "orders", engine)
    assert count(ctx, "orders") == 60_000, "the edited extract deleted rows"
    assert_matches(ctx, oracle)  # the later change applied: the table is not frozen
    record = held_record(ctx, "suspicious-extract", "orders", extract_id)
    assert record["figures"] == {
        "rows_live": 60_000, "rows_to_delete": 59_999, "delete_fraction": 0.99998,
        "as_of_seq": 9_000_000_000_000_000_000, "highest_seq_seen": 60_002,
        "seq_ahead": 9_000_000_000_000_000_000 - 60_002, "max_full_extract_delete_fraction": 0.5,
        "max_as_of_seq_ahead": 2**44}
    for figure in ("59999 of 60000 live rows", "0.99998", "9000000000000000000", "60002"):
        assert figure in record["error"], record["error"]
    assert result.stats["extracts_held"] == [{"extract_id": extract_id, "reason": "suspicious-extract"}]
    assert result.stats["extracts"] == []
    again = merge(ctx, "orders", engine)  # held: not looked at again until released
    assert again.stats["extracts"] == []
    assert again.stats["extracts_held"] == []


def test_half_written_nightly_export_is_held_and_the_rest_of_the_run_merges(
        ctx: MergeContext, raw: RawWriter, engine: str) -> None:
    """A nightly export that died a third of the way through but still wrote its manifest."""
    rows = [customer(i) for i in range(1, 3_001)]
    land_extract(ctx.lake, ctx.registry, "customers", rows, as_of_seq=5_000, mode="full",
                 extract_id="5000-20261120T000000Z-full")
    oracle = Oracle("customers", ("customer_id",))
    oracle.full_extract(5_000, rows)
    merge(ctx, "customers", engine)
    half = land_extract(ctx.lake, ctx.registry, "customers", rows[:1_000], as_of_seq=6_000, mode="full",
                        extract_id="6000-20261121T000000Z-full")
    stream = [ev("u", 5_500, customer(2_500, name="Bob")), ev("c", 6_100, customer(4_000))]
    raw.write("customers", stream)
    incremental = [customer(3_001, name="Cy")]
    land_extract(ctx.lake, ctx.registry, "customers", incremental, as_of_seq=5_900, mode="incremental")
    oracle.stream(stream)
    oracle.incremental(5_900, incremental)
    result = merge(ctx, "customers", engine)
    assert_matches(ctx, oracle)  # the stream and the incremental extract merged, no row deleted
    figures = held_record(ctx, "suspicious-extract", "customers", half)["figures"]
    assert (figures["rows_live"], figures["rows_to_delete"]) == (3_000, 2_000)
    assert figures["delete_fraction"] == 0.66667
    assert result.stats["full_extract_deletes"] == 0
    assert [x["extract_id"] for x in result.stats["extracts_held"]] == [half]


def test_as_of_seq_outside_a_long_is_dead_lettered(ctx: MergeContext, raw: RawWriter, engine: str) -> None:
    """A hand-written manifest past 2^63-1 made every merge of the table fail; a float is refused too."""
    events = [ev("c", 1, order(1)), ev("c", 2, order(2))]
    raw.write("orders", events)
    oracle = Oracle("orders", ("order_id",))
    oracle.stream(events)
    too_big = land_extract(ctx.lake, ctx.registry, "orders", [order(3)], as_of_seq=10, mode="incremental",
                           extract_id="10-20261121T000000Z-big")
    edit_manifest(ctx, "orders", too_big, as_of_seq=SEQ_MAX + 1)
    as_float = land_extract(ctx.lake, ctx.registry, "orders", [order(4)], as_of_seq=11, mode="full",
                            extract_id="11-20261121T000000Z-float")
    edit_manifest(ctx, "orders", as_float, as_of_seq=9e18)
    fine = [order(5)]
    land_extract(ctx.lake, ctx.registry, "orders", fine, as_of_seq=12, mode="incremental")
    oracle.incremental(12, fine)
    result = merge(ctx, "orders", engine)
    assert_matches(ctx, oracle)
    assert "9223372036854775808" in held_record(ctx, "bad-manifest", "orders", too_big)["error"]
    assert "as_of_seq must be an integer" in held_record(ctx, "bad-manifest", "orders", as_float)["error"]
    assert sorted(result.stats["extracts_rejected"]) == sorted([too_big, as_float])


def test_duplicate_keys_in_an_extract_are_dead_lettered(ctx: MergeContext, raw: RawWriter, engine: str) -> None:
    """Two rows of one key in one extract: which one won was up to the engine's sort."""
    base = [ev("c", 1, order(1)), ev("c", 2, order(2))]
    raw.write("orders", base)
    oracle = Oracle("orders", ("order_id",))
    oracle.stream(base)
    twice = land_extract(ctx.lake, ctx.registry, "orders",
                         [order(3), order(2, status="a"), order(4), order(2, status="b")],
                         as_of_seq=10, mode="incremental", extract_id="10-20261121T000000Z-dup")
    fine = [order(6)]
    land_extract(ctx.lake, ctx.registry, "orders", fine, as_of_seq=11, mode="incremental")
    oracle.incremental(11, fine)
    result = merge(ctx, "orders", engine)
    assert_matches(ctx, oracle)  # nothing of the refused extract, not even its clean rows
    record = held_record(ctx, "duplicate-keys", "orders", twice)
    assert record["figures"] == {"key": {"order_id": 2}, "rows": [2, 4], "keys_repeated": 1}
    assert "order_id=2" in record["error"]
    assert "rows 2 and 4" in record["error"]
    assert result.stats["extracts_held"] == [{"extract_id": twice, "reason": "duplicate-keys"}]


def test_as_of_seq_far_ahead_of_the_table_is_held(ctx: MergeContext, raw: RawWriter, engine: str) -> None:
    """A full extract that deletes nothing but sets the floor past every future change: the table would freeze."""
    ctx.store.put_settings({"max_as_of_seq_ahead": 1_000})
    rows = [customer(i) for i in range(1, 11)]
    events = [ev("c", 100 + i, r) for i, r in enumerate(rows)]
    raw.write("customers", events)
    oracle = Oracle("customers", ("customer_id",))
    oracle.stream(events)
    merge(ctx, "customers", engine)  # the highest seq seen is 109
    ahead = land_extract(ctx.lake, ctx.registry, "customers", rows, as_of_seq=1_110, mode="full",
                         extract_id="1110-20261121T000000Z-ahead")
    keyed = land_extract(ctx.lake, ctx.registry, "customers", [customer(1, name="Zed")], as_of_seq=1_200,
                         mode="incremental", extract_id="1200-20261121T000000Z-ahead")
    result = merge(ctx, "customers", engine)
    assert_matches(ctx, oracle)
    figures = held_record(ctx, "suspicious-extract", "customers", ahead)["figures"]
    assert (figures["as_of_seq"], figures["highest_seq_seen"], figures["seq_ahead"]) == (1_110, 109, 1_001)
    assert (figures["rows_to_delete"], figures["rows_live"]) == (0, 10)
    keyed_figures = held_record(ctx, "suspicious-extract", "customers", keyed)["figures"]
    assert keyed_figures["seq_ahead"] == 1_091
    assert "rows_to_delete" not in keyed_figures
    assert len(result.stats["extracts_held"]) == 2
    within = land_extract(ctx.lake, ctx.registry, "customers", rows, as_of_seq=1_109, mode="full",
                          extract_id="1109-20261121T000000Z-within")
    oracle.full_extract(1_109, rows)
    result = merge(ctx, "customers", engine)
    assert result.stats["extracts"] == [within]
    assert_matches(ctx, oracle)


def test_the_highest_seq_is_read_from_the_rows_when_footers_lack_statistics(ctx: MergeContext, raw: RawWriter,
                                                                             engine: str) -> None:
    ctx.store.put_settings({"max_as_of_seq_ahead": 100})
    raw.write("customers", [ev("c", 500, customer(1)), ev("c", 400, customer(3))], statistics=False)
    ahead = land_extract(ctx.lake, ctx.registry, "customers", [customer(1)], as_of_seq=601, mode="incremental",
                         extract_id="601-20261121T000000Z-ahead")
    within = land_extract(ctx.lake, ctx.registry, "customers", [customer(2)], as_of_seq=600, mode="incremental",
                          extract_id="600-20261121T000000Z-within")
    result = merge(ctx, "customers", engine)
    assert held_record(ctx, "suspicious-extract", "customers", ahead)["figures"]["highest_seq_seen"] == 500
    assert result.stats["extracts"] == [within]


def test_allow_mass_delete_in_the_manifest_is_honoured(ctx: MergeContext, engine: str) -> None:
    rows = [customer(1), customer(2), customer(3)]
    land_extract(ctx.lake, ctx.registry, "customers", rows, as_of_seq=5, mode="full")
    merge(ctx, "customers", engine)
    emptied = land_extract(ctx.lake, ctx.registry, "customers", [], as_of_seq=9, mode="full",
                           allow_mass_delete=True)
    oracle = Oracle("customers", ("customer_id",))
    oracle.full_extract(9, [])
    result = merge(ctx, "customers", engine)
    assert result.stats["full_extract_deletes"] == 3
    assert_matches(ctx, oracle)
    assert result.stats["extracts_overridden"] == [{"extract_id": emptied, "by": "manifest"}]


def test_a_first_snapshot_at_an_lsn_is_not_held(ctx: MergeContext, engine: str) -> None:
    """A new table has nothing to delete and no seq to be ahead of: a source's first snapshot goes through."""
    rows = [customer(i) for i in range(1, 6)]
    lsn = 0x16B_3748_0000
    land_extract(ctx.lake, ctx.registry, "customers", rows, as_of_seq=lsn, mode="full")
    oracle = Oracle("customers", ("customer_id",))
    oracle.full_extract(lsn, rows)
    result = merge(ctx, "customers", engine)
    assert result.stats["extracts_held"] == []
    assert_matches(ctx, oracle)


def test_release_merges_a_held_extract_with_the_override_recorded(ctx: MergeContext, engine: str,
                                                                   cli: Runner) -> None:
    rows = [customer(i) for i in range(1, 11)]
    land_extract(ctx.lake, ctx.registry, "customers", rows, as_of_seq=5, mode="full")
    merge(ctx, "customers", engine)
    shrunk = land_extract(ctx.lake, ctx.registry, "customers", rows[:2], as_of_seq=9, mode="full")
    merge(ctx, "customers", engine)
    held_record(ctx, "suspicious-extract", "customers", shrunk)

    code, out, err = cli("status")
    assert code == 0, err
    assert f"customers  {shrunk}  suspicious-extract" in out
    assert "would delete 8 of 10 live rows" in out

    code, out, err = cli("bulk", "release", "customers", shrunk)  # no override: judged again, held again
    assert code == 0, err
    again = merge(ctx, "customers", engine)
    assert again.stats["extracts_held"] == [{"extract_id": shrunk, "reason": "suspicious-extract"}]

    code, out, err = cli("bulk", "release", "customers", shrunk, "--allow-mass-delete")
    assert code == 0, err
    assert "released" in out
    assert "allow_mass_delete" in out
    assert not ctx.lake.exists(layout.dlq_file("merge", "suspicious-extract", f"customers-{shrunk}.json"))
    result = merge(ctx, "customers", engine)
    assert result.stats["extracts"] == [shrunk]
    assert result.stats["extracts_overridden"] == [{"extract_id": shrunk, "by": "release"}]
    assert result.stats["full_extract_deletes"] == 8
    oracle = Oracle("customers", ("customer_id",))
    oracle.full_extract(9, rows[:2])
    assert_matches(ctx, oracle)

    code, _, err = cli("bulk", "release", "customers", shrunk)
    assert code == 1
    assert "not held" in err


def test_a_release_covers_the_manifest_it_was_given_for(ctx: MergeContext, engine: str, cli: Runner) -> None:
    """The override is bound to the manifest's digest: editing the manifest after the release voids it."""
    rows = [customer(i) for i in range(1, 11)]
    land_extract(ctx.lake, ctx.registry, "customers", rows, as_of_seq=5, mode="full")
    merge(ctx, "customers", engine)
    shrunk = land_extract(ctx.lake, ctx.registry, "customers", rows[:5], as_of_seq=9, mode="full")
    ctx.store.put_settings({"max_full_extract_delete_fraction": 0.2})
    merge(ctx, "customers", engine)
    code, _, err = cli("bulk", "release", "customers", shrunk, "--allow-mass-delete")
    assert code == 0, err
    edit_manifest(ctx, "customers", shrunk, as_of_seq=10)
    result = merge(ctx, "customers", engine)
    assert result.stats["extracts_held"] == [{"extract_id": shrunk, "reason": "suspicious-extract"}]
    assert count(ctx, "customers") == 10
