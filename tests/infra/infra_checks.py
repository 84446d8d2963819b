"""Structural checks of the terraform configuration and the CloudFormation seed.

Plain functions over parsed documents, so tests can feed them both the real
configuration and small broken snippets (to prove each check catches what it
is meant to catch). terraform is parsed with python-hcl2 (8.x, string quotes
stripped); CloudFormation with cfn-lint's decoder (it understands ``!Sub`` & co).

The checks stand in for what ``terraform validate`` would catch and more: the
providers cannot be downloaded here, so ``init``/``validate``/``plan`` cannot run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = ROOT / "terraform"
CFN_DIR = ROOT / "CFN"

# Actions AWS does not scope to resources: the only ones allowed with `resources = ["*"]`.
# (cloudwatch:PutMetricData is narrowed by a cloudwatch:namespace condition instead.)
# logs:PutResourcePolicy is account-wide and not here on purpose: no role may hold
# it; terraform puts the delivery policies itself.
RESOURCE_STAR_ACTIONS = frozenset(
    {
        "cloudwatch:PutMetricData",
        "glue:GetSecurityConfiguration",
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeRouteTables",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeSubnets",
        "ec2:DescribeVpcAttribute",
        "ec2:DescribeVpcEndpoints",
    }
)

Parsed = dict[str, Any]  # file name -> hcl2 document


@dataclass(frozen=True)
class Finding:
    """One problem: where (file and block address) and what."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


# ---------------------------------------------------------------- parsing


def parse_hcl(text: str) -> dict[str, Any]:
    options = hcl2.SerializationOptions(strip_string_quotes=True, with_comments=False)
    doc: dict[str, Any] = hcl2.loads(text, serialization_options=options)
    return doc


def parse_dir(path: Path = TERRAFORM_DIR) -> Parsed:
    """Every ``*.tf`` file of one module directory, parsed."""
    return {p.name: parse_hcl(p.read_text()) for p in sorted(path.glob("*.tf"))}


def blocks(parsed: Parsed, kind: str) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(file, type, name, body) of every ``resource``/``data`` block."""
    for fname, doc in parsed.items():
        for entry in doc.get(kind, []):
            for rtype, named in entry.items():
                if rtype.startswith("__"):
                    continue
                for name, body in named.items():
                    if not name.startswith("__"):
                        yield fname, rtype, name, body


def variables(parsed: Parsed) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for fname, doc in parsed.items():
        for entry in doc.get("variable", []):
            for name, body in entry.items():
                if not name.startswith("__"):
                    yield fname, name, body


def local_values(parsed: Parsed) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for doc in parsed.values():
        for entry in doc.get("locals", []):
            out.update({k: v for k, v in entry.items() if not k.startswith("__")})
    return out


def variable_defaults(parsed: Parsed) -> dict[str, Any]:
    return {name: body.get("default") for _, name, body in variables(parsed)}


def resource(parsed: Parsed, rtype: str, name: str) -> dict[str, Any]:
    for _, t, n, body in blocks(parsed, "resource"):
        if (t, n) == (rtype, name):
            return body
    raise KeyError(f"{rtype}.{name} is not declared")


# ---------------------------------------------------------------- variables


def find_untyped_variables(parsed: Parsed) -> list[Finding]:
    """Variables without a ``type`` or without a non-empty ``description``."""
    findings = []
    for fname, name, body in variables(parsed):
        if "type" not in body:
            findings.append(Finding(f"{fname}: variable.{name}", "has no type"))
        if not str(body.get("description", "")).strip():
            findings.append(Finding(f"{fname}: variable.{name}", "has no description"))
    return findings


# ---------------------------------------------------------------- IAM


def statements(body: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Statements of an aws_iam_policy_document, including dynamic ones."""
    yield from body.get("statement", [])
    for dyn in body.get("dynamic", []):
        yield from dyn.get("statement", {}).get("content", [])


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _is_wildcard_action(action: Any) -> bool:
    return isinstance(action, str) and "*" in action


# "Action": "*" / "NotAction": [...] / Action = ["s3:*"] inside jsonencode(...) or heredoc JSON policies.
_INLINE_ACTION = re.compile(r"""["']?(Not)?Action["']?\s*[:=]\s*(\[[^\]]*\]|["'][^"']*["'])""")


def is_deny(statement: Mapping[str, Any]) -> bool:
    return str(statement.get("effect", statement.get("Effect", "Allow"))) == "Deny"


def find_wildcard_actions(parsed: Parsed) -> list[Finding]:
    """Allowed IAM actions containing ``*`` (``"*"``, ``"s3:*"``, ``"s3:Get*"``) or any NotAction.

    Looks at every ``aws_iam_policy_document`` statement and at policies written
    inline as ``jsonencode({...})`` or JSON text in any resource attribute. A
    wildcard in a Deny statement only widens the deny (``s3:*`` without TLS), so
    it is not a finding.
    """
    findings = []
    for fname, rtype, name, body in blocks(parsed, "data"):
        if rtype != "aws_iam_policy_document":
            continue
        for st in statements(body):
            if is_deny(st):
                continue
            where = f"{fname}: data.{rtype}.{name} statement {st.get('sid', '?')}"
            findings += [
                Finding(where, f"wildcard action {a!r}")
                for a in as_list(st.get("actions"))
                if _is_wildcard_action(a)
            ]
            if st.get("not_actions"):
                findings.append(Finding(where, "uses not_actions"))
    for kind in ("resource", "data"):
        for fname, rtype, name, body in blocks(parsed, kind):
            for text in _strings(body):
                for m in _INLINE_ACTION.finditer(text):
                    where = f"{fname}: {rtype}.{name}"
                    if m.group(1):
                        findings.append(Finding(where, "inline policy uses NotAction"))
                    elif "*" in m.group(2):
                        findings.append(Finding(where, f"inline policy has wildcard action {m.group(2)}"))
    return findings


def find_star_resources(parsed: Parsed) -> list[Finding]:
    """Identity-policy statements with ``resources = ["*"]`` for actions that can be scoped.

    Statements with ``principals`` are resource policies (key, bucket, topic,
    log policies): there "*" means the resource the policy is attached to.
    """
    findings = []
    for fname, rtype, name, body in blocks(parsed, "data"):
        if rtype != "aws_iam_policy_document":
            continue
        for st in statements(body):
            if st.get("principals") or "*" not in as_list(st.get("resources")):
                continue
            scoped = sorted(set(as_list(st.get("actions"))) - RESOURCE_STAR_ACTIONS)
            if scoped:
                where = f"{fname}: data.{rtype}.{name} statement {st.get('sid', '?')}"
                findings.append(Finding(where, f'resources = ["*"] for scopable actions {scoped}'))
    return findings


def find_cfn_wildcard_actions(template: Mapping[str, Any]) -> list[Finding]:
    """The same wildcard-action rule over a CloudFormation template (any Action/NotAction key of an Allow)."""
    findings = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key == "NotAction":
                    findings.append(Finding(path, "uses NotAction"))
                elif key == "Action" and not is_deny(node):
                    findings.extend(
                        Finding(path, f"wildcard action {a!r}")
                        for a in as_list(value)
                        if _is_wildcard_action(a)
                    )
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{path}[{i}]")

    walk(template, "template")
    return findings


# ---------------------------------------------------------------- references


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            if isinstance(key, str) and "${" in key:
                yield key
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


_REF = re.compile(r"(?<![\w.])(?:(data)\.)?(aws_\w+)\.([A-Za-z_][\w-]*)|(?<![\w.])(var|local)\.(\w+)")


def find_undefined_references(parsed: Parsed, external: frozenset[str] = frozenset()) -> list[Finding]:
    """References to resources, data sources, variables or locals that no file declares.

    ``external`` names addresses declared elsewhere (e.g. ``aws_sfn_state_machine.batch``
    when its file is not there yet). This is the part of ``terraform validate``
    that needs no provider.
    """
    declared = {f"{t}.{n}" for _, t, n, _ in blocks(parsed, "resource")}
    declared |= {f"data.{t}.{n}" for _, t, n, _ in blocks(parsed, "data")}
    declared |= {f"var.{n}" for _, n, _ in variables(parsed)}
    declared |= {f"local.{n}" for n in local_values(parsed)}
    declared |= external
    findings = []
    for fname, doc in parsed.items():
        for text in _strings(doc):
            if "${" not in text:
                continue
            for m in _REF.finditer(text):
                if m.group(2):
                    address = f"{'data.' if m.group(1) else ''}{m.group(2)}.{m.group(3)}"
                else:
                    address = f"{m.group(4)}.{m.group(5)}"
                if address not in declared:
                    findings.append(Finding(fname, f"undefined reference {address}"))
    return sorted(set(findings), key=str)


# ---------------------------------------------------------------- a tiny evaluator for names


_INTERP = re.compile(r"\$\{([^{}]*)\}")
_REPLACE = re.compile(r'^replace\(\s*([\w.]+)\s*,\s*"([^"]*)"\s*,\s*"([^"]*)"\s*\)$')


def resolve(text: str, parsed: Parsed, overrides: Mapping[str, Any] | None = None) -> str:
    """Evaluate the interpolations of a name template (``var.x``, ``local.a.b``, ``replace(ref, "a", "b")``).

    Enough for the naming expressions of this configuration; anything else raises.
    """
    defaults = {**variable_defaults(parsed), **(overrides or {})}
    locs = local_values(parsed)

    def ref(path: str) -> Any:
        head, *rest = path.split(".")
        if head == "var":
            value: Any = defaults[rest[0]]
        elif head == "local":
            value = locs[rest[0]]
        else:
            raise ValueError(f"cannot resolve {path!r}")
        for part in rest[1:]:
            value = value[part]
        return resolve(value, parsed, overrides) if isinstance(value, str) else value

    def expr(inner: str) -> str:
        inner = inner.strip()
        m = _REPLACE.match(inner)
        if m:
            return str(ref(m.group(1))).replace(m.group(2), m.group(3))
        return str(ref(inner))

    return _INTERP.sub(lambda m: expr(m.group(1)), text)
