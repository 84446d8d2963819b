"""Schema registry: registration, evolution under each compatibility mode, fingerprint lookups."""

from __future__ import annotations

import copy
import threading
from typing import Any

import pytest

from hybrid_ingest.errors import (
    ConditionFailedError,
    SchemaIncompatibleError,
    SpecError,
    UnknownFingerprintError,
    UnknownTableError,
)
from hybrid_ingest.registry import Registry
from hybrid_ingest.tables import Partitioning, TableSpec
from hybrid_ingest.wire import fingerprint

BASE: dict[str, Any] = {
    "type": "record", "name": "accounts",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "name", "type": "string"},
        {"name": "score", "type": "int"},
        {"name": "nickname", "type": ["null", "string"], "default": None},
    ],
}


def spec(mode: str, schema: dict[str, Any] | None = None) -> TableSpec:
    return TableSpec("accounts", ("id",), copy.deepcopy(schema or BASE), None, mode)


def evolve(change: str) -> dict[str, Any]:
    """Named schema changes, each with a known verdict per mode."""
    s = copy.deepcopy(BASE)
    fields = s["fields"]
    if change == "add_with_default":
        fields.append({"name": "region", "type": "string", "default": "eu"})
    elif change == "add_without_default":
        fields.append({"name": "region", "type": "string"})
    elif change == "drop_without_default":
        s["fields"] = [f for f in fields if f["name"] != "score"]
    elif change == "drop_with_default":
        s["fields"] = [f for f in fields if f["name"] != "nickname"]
    elif change == "widen_int_to_long":
        fields[2]["type"] = "long"
    elif change == "narrow_to_string":
        fields[2]["type"] = "string"
    else:
        raise AssertionError(change)
    return s


# change -> modes that accept it (Avro resolution rules; FULL = both directions)
VERDICTS = {
    "add_with_default": {"BACKWARD", "FORWARD", "FULL", "NONE"},
    "add_without_default": {"FORWARD", "NONE"},
    "drop_without_default": {"BACKWARD", "NONE"},
    "drop_with_default": {"BACKWARD", "FORWARD", "FULL", "NONE"},
    "widen_int_to_long": {"BACKWARD", "NONE"},
    "narrow_to_string": {"NONE"},
}


@pytest.mark.parametrize("mode", ["BACKWARD", "FORWARD", "FULL", "NONE"])
@pytest.mark.parametrize("change", sorted(VERDICTS))
def test_each_mode_accepts_and_refuses(registry: Registry, mode: str, change: str) -> None:
    registry.register(spec(mode))
    new = spec(mode, evolve(change))
    if mode in VERDICTS[change]:
        reg = registry.register(new)
        assert reg.created
        assert reg.version.version == 2
        assert registry.latest("accounts").spec.schema == new.schema
    else:
        with pytest.raises(SchemaIncompatibleError) as info:
            registry.register(new)
        assert info.value.mode == mode
        assert registry.latest("accounts").version == 1


def test_refusal_names_field_and_rule(registry: Registry) -> None:
    registry.register(spec("BACKWARD"))
    with pytest.raises(SchemaIncompatibleError) as info:
        registry.register(spec("BACKWARD", evolve("add_without_default")))
    message = str(info.value)
    assert "region" in message
    assert "reader_field_missing_default_value" in message
    assert "BACKWARD" in message


@pytest.mark.parametrize("mode", ["BACKWARD", "BACKWARD_TRANSITIVE"])
def test_transitive_mode_checks_every_version(registry: Registry, mode: str) -> None:
    registry.register(spec(mode))
    registry.register(spec(mode, evolve("drop_without_default")))  # v2: no score
    v3 = evolve("drop_without_default")
    v3["fields"].append({"name": "score", "type": "string", "default": "n/a"})  # reads v2, not v1's int
    if mode == "BACKWARD":
        assert registry.register(spec(mode, v3)).version.version == 3
    else:
        with pytest.raises(SchemaIncompatibleError, match="version 1") as info:
            registry.register(spec(mode, v3))
        assert "version 2" not in str(info.value)


def test_registering_the_same_schema_is_idempotent(registry: Registry) -> None:
    first = registry.register(spec("BACKWARD"))
    again = registry.register(spec("BACKWARD"))
    assert first.created
    assert not again.created
    assert again.version.version == 1


def test_key_and_partition_changes_are_refused(registry: Registry) -> None:
    registry.register(spec("BACKWARD"))
    with pytest.raises(SpecError, match="primary key"):
        registry.register(TableSpec("accounts", ("id", "name"), copy.deepcopy(BASE)))
    with pytest.raises(SpecError, match="partitioning"):
        registry.register(TableSpec("accounts", ("id",), copy.deepcopy(BASE), Partitioning("name")))


def test_fingerprint_lookup_is_cached(registry: Registry) -> None:
    reg = registry.register(spec("BACKWARD")).version
    calls: list[str] = []
    registry._ddb.meta.events.register("before-call.dynamodb.GetItem", lambda **kw: calls.append("get"))
    found = registry.by_fingerprint(reg.fingerprint)
    first_calls = len(calls)
    again = registry.by_fingerprint(reg.fingerprint)
    assert found.version == again.version == 1
    assert first_calls > 0
    assert len(calls) == first_calls
    assert found.fingerprint == fingerprint(found.envelope)


def test_unknown_lookups_fail_clearly(registry: Registry) -> None:
    with pytest.raises(UnknownFingerprintError):
        registry.by_fingerprint(b"\x00" * 8)
    with pytest.raises(UnknownTableError, match="not registered"):
        registry.latest("nope")


def test_concurrent_registrations_have_one_winner(registry: Registry) -> None:
    registry.register(spec("NONE"))
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def register(change: str) -> None:
        barrier.wait()
        try:
            registry.register(spec("NONE", evolve(change)))
            outcomes.append("won")
        except ConditionFailedError:
            outcomes.append("lost")

    threads = [threading.Thread(target=register, args=(c,)) for c in ("add_with_default", "widen_int_to_long")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    versions = registry.versions("accounts")
    assert [v.version for v in versions] == list(range(1, len(versions) + 1))
    assert outcomes.count("won") == len(versions) - 1
    assert sorted(outcomes) in (["lost", "won"], ["won", "won"])


def test_demo_tables_are_registered(registry: Registry) -> None:
    assert registry.tables() == ["customers", "order_items", "orders"]
