"""The oracle and the scenario generator, checked on their own before anything is checked against them."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.history import EVOLVED_FIELD, Scenario, scenarios
from tests.reliability.oracle import Change, Extract, TableOracle, expected_state

KEYS = ("id",)


def row(i: int, v: str) -> dict[str, object]:
    return {"id": i, "v": v}


def live_rows(items: list[Change | Extract]) -> dict[int, tuple[int, str]]:
    return {k[0]: (seq, r["v"]) for k, (seq, r) in expected_state(KEYS, items).items()}


def test_highest_seq_wins_whatever_the_order() -> None:
    items: list[Change | Extract] = [Change("u", 5, row(1, "b")), Change("c", 1, row(1, "a")),
                                     Change("u", 3, row(1, "stale"))]
    assert live_rows(items) == {1: (5, "b")}


def test_duplicates_and_equal_seq_change_nothing() -> None:
    oracle = TableOracle(KEYS)
    assert oracle.apply(Change("c", 2, row(1, "a")))
    assert not oracle.apply(Change("c", 2, row(1, "a")))
    assert not oracle.apply(Change("u", 2, row(1, "other")))
    assert oracle.project({}) == {(1,): (2, row(1, "a"))}


def test_delete_tombstone_blocks_late_older_update() -> None:
    items: list[Change | Extract] = [Change("c", 1, row(1, "a")), Change("d", 4, {"id": 1}),
                                     Change("u", 3, row(1, "late"))]
    assert live_rows(items) == {}
    assert TableOracle(KEYS).apply_all(items).entries[(1,)].row is None


def test_delete_of_unseen_key_still_blocks_its_older_insert() -> None:
    assert live_rows([Change("d", 9, {"id": 2}), Change("c", 3, row(2, "x"))]) == {}


def test_reinsert_after_delete() -> None:
    items: list[Change | Extract] = [Change("c", 1, row(1, "a")), Change("d", 2, {"id": 1}),
                                     Change("c", 3, row(1, "again"))]
    assert live_rows(items) == {1: (3, "again")}


def test_full_extract_deletes_absent_keys_at_or_below_its_seq_only() -> None:
    items: list[Change | Extract] = [
        Change("c", 1, row(1, "a")), Change("c", 2, row(2, "b")), Change("c", 7, row(3, "after")),
        Extract("full", 5, (row(1, "a5"),)),
    ]
    assert live_rows(items) == {1: (5, "a5"), 3: (7, "after")}


def test_full_extract_floor_rejects_late_changes_it_accounts_for() -> None:
    # key 2 was inserted at 3 and deleted at 4 in the source; the extract at 5 lacks it.
    # The insert arrives after the extract, the delete is still in flight: the floor keeps it out.
    items: list[Change | Extract] = [Extract("full", 5, (row(1, "a"),)), Change("c", 3, row(2, "b"))]
    assert live_rows(items) == {1: (5, "a")}


def test_stream_changes_above_the_extract_apply_on_top() -> None:
    items: list[Change | Extract] = [Change("u", 8, row(1, "new")), Extract("full", 5, (row(1, "old"),)),
                                     Change("d", 6, {"id": 2}), Extract("full", 5, (row(2, "x"),))]
    assert live_rows(items) == {1: (8, "new")}


def test_older_full_extract_after_a_newer_one_is_a_no_op() -> None:
    items: list[Change | Extract] = [Extract("full", 9, (row(1, "nine"),)), Extract("full", 4, (row(2, "four"),))]
    assert live_rows(items) == {1: (9, "nine")}


def test_incremental_extract_upserts_as_snapshot_reads() -> None:
    items: list[Change | Extract] = [
        Change("c", 1, row(1, "a")), Change("c", 2, row(2, "b")), Change("u", 9, row(2, "newer")),
        Extract("incremental", 5, (row(1, "a5"), row(2, "b5"), row(3, "c5"))),
    ]
    assert live_rows(items) == {1: (5, "a5"), 2: (9, "newer"), 3: (5, "c5")}


def test_incremental_extract_does_not_resurrect_a_newer_delete() -> None:
    items: list[Change | Extract] = [Change("d", 7, {"id": 1}), Extract("incremental", 5, (row(1, "old"),))]
    assert live_rows(items) == {}


def test_partition_move_is_a_value_change() -> None:
    items: list[Change | Extract] = [Change("c", 1, {"id": 1, "day": "2026-01-01"}),
                                     Change("u", 2, {"id": 1, "day": "2026-03-01"})]
    assert expected_state(KEYS, items) == {(1,): (2, {"id": 1, "day": "2026-03-01"})}


def test_projection_fills_added_field_default_only_where_absent() -> None:
    items: list[Change | Extract] = [Change("c", 1, row(1, "old")), Change("c", 2, {**row(2, "new"), "note": "rush"})]
    got = expected_state(KEYS, items, {"note": "none"})
    assert got[(1,)][1]["note"] == "none"
    assert got[(2,)][1]["note"] == "rush"


def test_rejects_malformed_input() -> None:
    with pytest.raises(ValueError, match="lacks key"):
        TableOracle(KEYS).apply(Change("c", 1, {"v": "no key"}))
    with pytest.raises(ValueError, match="unknown op"):
        TableOracle(KEYS).apply(Change("x", 1, row(1, "a")))
    with pytest.raises(ValueError, match="unknown extract mode"):
        TableOracle(KEYS).apply_extract(Extract("partial", 1, ()))


def _all_items(scenario: Scenario, table: str) -> list[Change | Extract]:
    return scenario.delivered(table, scenario.runs)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_everything_delivered_equals_the_source(scenario: Scenario) -> None:
    """Whatever the wire did, the oracle over all deliveries is the source's final state."""
    for table, history in scenario.tables.items():
        defaults = {EVOLVED_FIELD["name"]: EVOLVED_FIELD["default"]} if history.evolved_at_step is not None else {}
        got = {k: r for k, (_, r) in expected_state(history.spec.primary_key, _all_items(scenario, table),
                                                     defaults).items()}
        assert got == history.truth
        assert scenario.expected(table, scenario.runs - 1) == expected_state(
            history.final_spec.primary_key, _all_items(scenario, table),
            defaults if table in scenario.evolve_before_run else {})


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.randoms(use_true_random=False))
def test_oracle_is_commutative_and_idempotent(scenario: Scenario, rnd: random.Random) -> None:
    """Order, batching and duplication never matter: what lets tests compare after every merge run."""
    for table, history in scenario.tables.items():
        items = _all_items(scenario, table)
        shuffled = items + rnd.sample(items, k=len(items) // 2)
        rnd.shuffle(shuffled)
        keys = history.spec.primary_key
        assert TableOracle(keys).apply_all(shuffled).entries == TableOracle(keys).apply_all(items).entries
