"""Security rules over CFN/seed.yaml as decoded by cfn-lint: the deploy role and the seed's buckets.

The deploy role writes IAM roles only under the permissions boundary the template
creates, attaches only the project's policies, passes each role only to its own
service, cannot reach its own role, the boundary or its own policies, holds no
unconditioned write on every resource; the boundary allows no IAM; the seed's
buckets deny plaintext requests and foreign encryption.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any

from tests.infra.infra_checks import Finding, as_list, is_deny
from tests.infra.terraform_security import bucket_policy_problems

# Role-writing IAM actions: each supports the iam:PermissionsBoundary condition key.
ROLE_WRITES = frozenset({
    "iam:CreateRole", "iam:DeleteRole", "iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:AttachRolePolicy",
    "iam:DetachRolePolicy", "iam:PutRolePermissionsBoundary", "iam:DeleteRolePermissionsBoundary",
    "iam:UpdateAssumeRolePolicy", "iam:UpdateRole", "iam:UpdateRoleDescription",
})  # fmt: skip
# Managed-policy writes: no boundary key exists for them; they must stay on the project's own policies.
POLICY_WRITES = frozenset({
    "iam:CreatePolicy", "iam:CreatePolicyVersion", "iam:DeletePolicy", "iam:DeletePolicyVersion",
    "iam:SetDefaultPolicyVersion", "iam:TagPolicy", "iam:UntagPolicy",
})  # fmt: skip
SEED_POLICY_PATH = "/seed/"


def _cfn_statements(document: Any) -> list[dict[str, Any]]:
    return [st for st in as_list((document or {}).get("Statement")) if isinstance(st, dict)]


def cfn_role_statements(template: Mapping[str, Any], role: str) -> list[dict[str, Any]]:
    """Every statement that applies to a role: its inline policies and the managed policies attached to it."""
    resources = template["Resources"]
    out = [st for p in as_list(resources[role]["Properties"].get("Policies"))
           for st in _cfn_statements(p.get("PolicyDocument"))]  # fmt: skip
    for body in resources.values():
        props = body.get("Properties", {})
        if body.get("Type") == "AWS::IAM::ManagedPolicy" and {"Ref": role} in as_list(props.get("Roles")):
            out += _cfn_statements(props.get("PolicyDocument"))
    return out


def _cfn_actions(statement: Mapping[str, Any]) -> set[str]:
    return {str(a) for a in as_list(statement.get("Action"))}


def _cfn_condition(statement: Mapping[str, Any], operator: str, key: str) -> Any:
    return (statement.get("Condition") or {}).get(operator, {}).get(key)


def _sub_text(value: Any) -> str:
    """The text of a ``!Sub`` (or a plain string); other intrinsics as their repr."""
    if isinstance(value, Mapping) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return str(sub[0] if isinstance(sub, list) else sub)
    return str(value)


def cfn_boundary(template: Mapping[str, Any], role: str) -> str | None:
    """The managed policy the role's CreateRole permission requires as boundary, if any."""
    for st in cfn_role_statements(template, role):
        if not is_deny(st) and "iam:CreateRole" in _cfn_actions(st):
            ref = _cfn_condition(st, "StringEquals", "iam:PermissionsBoundary")
            if isinstance(ref, Mapping) and "Ref" in ref:
                return str(ref["Ref"])
    return None


def find_cfn_unbounded_role_writes(template: Mapping[str, Any], role: str) -> list[Finding]:
    """Role writes allowed without ``iam:PermissionsBoundary`` = the template's boundary; user/group writes;
    attachments without an ``iam:PolicyARN`` limit; PassRole without ``iam:PassedToService``;
    policy writes beyond ``policy/<NamePrefix>-*``; managed policies given to the role (PowerUserAccess)."""
    findings = []
    boundary = cfn_boundary(template, role)
    if boundary is None:
        findings.append(
            Finding(role, "CreateRole is not conditioned on a permissions boundary of the template")
        )
    props = template["Resources"][role]["Properties"]
    if props.get("ManagedPolicyArns"):
        findings.append(
            Finding(role, "has ManagedPolicyArns (e.g. PowerUserAccess): list the actions instead")
        )
    for st in cfn_role_statements(template, role):
        if is_deny(st):
            continue
        where, actions = f"{role} statement {st.get('Sid', '?')}", _cfn_actions(st)
        if actions & ROLE_WRITES and _cfn_condition(st, "StringEquals", "iam:PermissionsBoundary") != {
            "Ref": boundary
        }:
            findings.append(Finding(where, f"{sorted(actions & ROLE_WRITES)} without the boundary condition"))
        if actions & {"iam:AttachRolePolicy", "iam:DetachRolePolicy"} and not _cfn_condition(
            st, "ArnLike", "iam:PolicyARN"
        ):
            findings.append(Finding(where, "attaches policies without an iam:PolicyARN limit"))
        if any(a.startswith("iam:") and ("User" in a or "Group" in a) and not a.startswith(("iam:Get", "iam:List"))
               for a in actions):  # fmt: skip
            findings.append(Finding(where, "writes IAM users or groups"))
        if "iam:PassRole" in actions and not _cfn_condition(st, "StringEquals", "iam:PassedToService"):
            findings.append(Finding(where, "PassRole without iam:PassedToService"))
        if actions & POLICY_WRITES and any(not _sub_text(r).endswith(":policy/${NamePrefix}-*")
                                           for r in as_list(st.get("Resource"))):  # fmt: skip
            findings.append(Finding(where, "writes managed policies beyond policy/${NamePrefix}-*"))
        if any(a.startswith("iam:") for a in actions) and "*" in as_list(st.get("Resource")):
            findings.append(Finding(where, "IAM actions on every resource"))
    return findings


def _denies_on(statements_: list[dict[str, Any]], resource: str, needed: AbstractSet[str]) -> set[str]:
    """Which of ``needed`` the Deny statements on exactly ``resource`` (a ``!Sub`` text) cover."""
    covered: set[str] = set()
    for st in statements_:
        if is_deny(st) and resource in {_sub_text(r) for r in as_list(st.get("Resource"))}:
            covered |= _cfn_actions(st) & needed
    return covered


def find_cfn_missing_self_protection(template: Mapping[str, Any], role: str) -> list[Finding]:
    """The explicit denies that keep the deploy role, its boundary and its own policies out of its reach."""
    findings = []
    sts = cfn_role_statements(template, role)
    resources = template["Resources"]
    own_arn = "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/" + _sub_text(
        resources[role]["Properties"]["RoleName"]
    )
    own_needed = (set(ROLE_WRITES) - {"iam:CreateRole"}) | {"iam:TagRole", "iam:UntagRole", "iam:PassRole"}
    missing = own_needed - _denies_on(sts, own_arn, own_needed)
    if missing:
        findings.append(Finding(role, f"no explicit deny of {sorted(missing)} on its own role"))
    seed = [n for n, b in resources.items() if b.get("Type") == "AWS::IAM::ManagedPolicy"
            and b["Properties"].get("Path") != SEED_POLICY_PATH]  # fmt: skip
    findings += [Finding(n, f"managed policy of the seed outside path {SEED_POLICY_PATH}") for n in seed]
    seed_arns = (
        "arn:${AWS::Partition}:iam::${AWS::AccountId}:policy"
        + SEED_POLICY_PATH
        + "${NamePrefix}-${Environment}-*"
    )
    needed = POLICY_WRITES - {"iam:CreatePolicy"}
    if needed - _denies_on(sts, seed_arns, needed):
        findings.append(Finding(role, f"no explicit deny of {sorted(needed - _denies_on(sts, seed_arns, needed))} "
                                      "on the seed's policies (boundary included)"))  # fmt: skip
    attach = [st for st in sts if is_deny(st) and "iam:AttachRolePolicy" in _cfn_actions(st)
              and _sub_text(_cfn_condition(st, "ArnLike", "iam:PolicyARN")) == seed_arns]  # fmt: skip
    if not attach:
        findings.append(
            Finding(role, "no explicit deny of attaching the seed's policies (the boundary) to a role")
        )
    boundary = cfn_boundary(template, role)
    if not any(is_deny(st) and "iam:DeleteRolePermissionsBoundary" in _cfn_actions(st) and "*" in as_list(st.get("Resource"))
               and not st.get("Condition") for st in sts):  # fmt: skip
        findings.append(Finding(role, "no explicit deny of removing a permissions boundary"))
    if not any(is_deny(st) and "iam:PutRolePermissionsBoundary" in _cfn_actions(st)
               and _cfn_condition(st, "StringNotEquals", "iam:PermissionsBoundary") == {"Ref": boundary}
               for st in sts):  # fmt: skip
        findings.append(Finding(role, "no explicit deny of swapping a role's boundary for another"))
    return findings


# Writes AWS does not scope to a resource: the only ones a deploy statement may hold on "*" without a condition.
CFN_UNSCOPABLE_WRITES = frozenset({
    "logs:PutResourcePolicy", "logs:DeleteResourcePolicy",
    "glue:CreateSecurityConfiguration", "glue:DeleteSecurityConfiguration",
})  # fmt: skip
_READ_PREFIXES = (":Describe", ":Get", ":List")
_SENSITIVE_READS = frozenset(
    {"s3:GetObject", "s3:GetObjectVersion", "glue:GetConnection", "glue:GetConnections"}
)


def find_cfn_unscoped_writes(template: Mapping[str, Any], role: str) -> list[Finding]:
    """Allowed actions on every resource (``"*"``) that are neither reads, nor conditioned, nor unscopable."""
    findings = []
    for st in cfn_role_statements(template, role):
        if is_deny(st) or "*" not in as_list(st.get("Resource")) or st.get("Condition"):
            continue
        bad = sorted(a for a in _cfn_actions(st) if a not in CFN_UNSCOPABLE_WRITES
                     and (not any(p in a for p in _READ_PREFIXES) or a in _SENSITIVE_READS))  # fmt: skip
        if bad:
            findings.append(Finding(f"{role} statement {st.get('Sid', '?')}", f"{bad} on every resource"))
    return findings


def cfn_bucket_policy_problems(template: Mapping[str, Any]) -> list[Finding]:
    """Buckets of the template without a policy, or whose policy lacks the TLS and encryption denies."""
    resources = template["Resources"]
    findings = []
    policies = {str(b["Properties"]["Bucket"].get("Ref")): b["Properties"]["PolicyDocument"]
                for b in resources.values() if b.get("Type") == "AWS::S3::BucketPolicy"}  # fmt: skip
    for name, body in resources.items():
        if body.get("Type") != "AWS::S3::Bucket":
            continue
        if name not in policies:
            findings.append(Finding(name, "has no bucket policy"))
            continue
        findings += [Finding(name, p) for p in bucket_policy_problems(_as_terraform_document(policies[name]))]
    return findings


def _as_terraform_document(document: Mapping[str, Any]) -> dict[str, Any]:
    """A CloudFormation policy document in the shape of a parsed ``aws_iam_policy_document``."""
    out: list[dict[str, Any]] = []
    for st in _cfn_statements(document):
        conds = [{"test": op, "variable": key, "values": as_list(value)}
                 for op, keys in (st.get("Condition") or {}).items() for key, value in keys.items()]  # fmt: skip
        out.append({"sid": st.get("Sid"), "effect": st.get("Effect", "Allow"), "actions": as_list(st.get("Action")),
                    "resources": [_sub_text(r) if not isinstance(r, Mapping) or "Fn::Sub" in r else "bucket"
                                  for r in as_list(st.get("Resource"))], "condition": conds})  # fmt: skip
    return {"statement": out}


def find_cfn_boundary_grants_iam(template: Mapping[str, Any], role: str) -> list[Finding]:
    """A boundary that allows IAM actions (or any action wildcard) would let bounded roles write roles again."""
    boundary = cfn_boundary(template, role)
    if boundary is None:
        return [Finding(role, "has no permissions boundary to check")]
    document = template["Resources"][boundary]["Properties"]["PolicyDocument"]
    return [Finding(f"{boundary} statement {st.get('Sid', '?')}", f"allows {sorted(a for a in _cfn_actions(st) if a.startswith('iam:') or a == '*')}")
            for st in _cfn_statements(document)
            if not is_deny(st) and any(a.startswith("iam:") or a == "*" for a in _cfn_actions(st))]  # fmt: skip


def cfn_allowed_actions(template: Mapping[str, Any], logical_ids: list[str]) -> set[str]:
    """The actions the Allow statements of the named managed policies grant."""
    out: set[str] = set()
    for name in logical_ids:
        document = template["Resources"][name]["Properties"]["PolicyDocument"]
        out |= {a for st in _cfn_statements(document) if not is_deny(st) for a in _cfn_actions(st)}
    return out


def cfn_managed_policies_of(template: Mapping[str, Any], role: str) -> list[str]:
    return [n for n, b in template["Resources"].items() if b.get("Type") == "AWS::IAM::ManagedPolicy"
            and {"Ref": role} in as_list(b["Properties"].get("Roles"))]  # fmt: skip
