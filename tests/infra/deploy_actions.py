"""The deploy role's actions, derived from what terraform/ and buildspec.yml use (``deploy_actions.json``).

``deploy_actions.json`` maps each terraform resource and data source type, and
each AWS CLI call of the buildspec, to the IAM actions it needs. These helpers
compare, both ways, what is used with what is mapped, and what is mapped with
what CFN/seed.yaml grants, so either side falling out of step fails a test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tests.infra.infra_checks import ROOT, Finding, Parsed, blocks

MAPPING = Path(__file__).resolve().parent / "deploy_actions.json"
_AWS_CALL = re.compile(r"\baws ([a-z0-9-]+) ([a-z][a-z0-9-]*)")


def load_mapping(path: Path = MAPPING) -> dict[str, dict[str, list[str]]]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return {kind: doc[kind] for kind in ("resource", "data", "buildspec")}


def terraform_types(parsed: Parsed) -> dict[str, set[str]]:
    """The resource and data source types a configuration uses."""
    return {kind: {t for _, t, _, _ in blocks(parsed, kind)} for kind in ("resource", "data")}


def buildspec_calls(commands: Iterable[str]) -> set[str]:
    """``aws <service> <operation>`` calls of the buildspec's commands."""
    return {f"aws {m.group(1)} {m.group(2)}" for c in commands for m in _AWS_CALL.finditer(c)}


def buildspec_commands(path: Path = ROOT / "buildspec.yml") -> list[str]:
    from cfnlint.decode import decode  # cfn-lint's YAML reader, as test_cfn uses

    doc, problems = decode(str(path))
    if problems:
        raise ValueError(f"{path}: {problems}")
    return [str(c) for phase in doc["phases"].values() for c in phase["commands"]]


def mapping_problems(
    used: Mapping[str, set[str]], mapping: Mapping[str, Mapping[str, list[str]]]
) -> list[Finding]:
    """Types or calls used but not mapped (their actions would be missing), and mapped but no longer used."""
    findings = []
    for kind, names in used.items():
        mapped = set(mapping.get(kind, {}))
        findings += [
            Finding(f"{kind} {n}", "is used but has no entry in deploy_actions.json")
            for n in sorted(names - mapped)
        ]
        findings += [
            Finding(f"{kind} {n}", "has an entry in deploy_actions.json but is not used")
            for n in sorted(mapped - names)
        ]
    return findings


def needed_actions(mapping: Mapping[str, Mapping[str, list[str]]], used: Mapping[str, set[str]]) -> set[str]:
    return {a for kind, names in used.items() for n in names for a in mapping.get(kind, {}).get(n, [])}


def grant_problems(needed: set[str], granted: set[str]) -> list[Finding]:
    """Actions needed but not granted (the deploy would fail), and granted but needed by nothing (excess rights)."""
    return ([Finding(a, "is needed by terraform or the buildspec but the deploy role is not granted it") for a in sorted(needed - granted)]
            + [Finding(a, "is granted to the deploy role but nothing in terraform or the buildspec needs it") for a in sorted(granted - needed)])  # fmt: skip
