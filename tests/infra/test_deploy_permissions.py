"""The deploy role holds exactly what terraform/ and buildspec.yml need (deploy_actions.json), and the
boundary exactly what terraform's roles use."""

from __future__ import annotations

import json
from typing import Any

import botocore.session
import pytest
from cfnlint.decode import decode

from tests.infra.cfn_security import (
    cfn_allowed_actions,
    cfn_boundary,
    cfn_managed_policies_of,
    cfn_role_statements,
)
from tests.infra.deploy_actions import (
    buildspec_calls,
    buildspec_commands,
    grant_problems,
    load_mapping,
    mapping_problems,
    needed_actions,
    terraform_types,
)
from tests.infra.infra_checks import CFN_DIR, TERRAFORM_DIR, Parsed, as_list, local_values, parse_dir, resolve
from tests.infra.terraform_security import document_actions, identity_policy_documents

ROLE = "BuildRole"
# IAM actions that are permissions only, not API operations of their service.
PERMISSION_ONLY = frozenset({
    "iam:PassRole", "dynamodb:ConditionCheckItem", "logs:CreateLogDelivery", "logs:GetLogDelivery",
    "logs:UpdateLogDelivery", "logs:DeleteLogDelivery", "logs:ListLogDeliveries",
})  # fmt: skip
BOTOCORE_NAMES = {"states": "stepfunctions"}
MANAGED_POLICY_MAX_CHARS = 6144  # IAM's limit, whitespace not counted


@pytest.fixture(scope="module")
def parsed() -> Parsed:
    return parse_dir(TERRAFORM_DIR)


@pytest.fixture(scope="module")
def template() -> Any:
    tpl, matches = decode(str(CFN_DIR / "seed.yaml"))
    assert not matches, matches
    return tpl


@pytest.fixture(scope="module")
def used(parsed: Parsed) -> dict[str, set[str]]:
    return {**terraform_types(parsed), "buildspec": buildspec_calls(buildspec_commands())}


def test_every_terraform_type_and_buildspec_call_is_mapped_and_back(used: dict[str, set[str]]) -> None:
    assert mapping_problems(used, load_mapping()) == []
    assert {"aws s3 cp", "aws glue start-job-run"} <= used["buildspec"]


def test_deploy_role_is_granted_exactly_the_mapped_actions(parsed: Parsed, template: Any,
                                                           used: dict[str, set[str]]) -> None:  # fmt: skip
    """CFN's deploy policies plus what the project key's policy grants the deploy role by name."""
    granted = cfn_allowed_actions(template, cfn_managed_policies_of(template, ROLE))
    granted |= set(local_values(parsed)["kms_deploy_actions"])
    assert grant_problems(needed_actions(load_mapping(), used), granted) == []


def test_deploy_role_holds_no_kms_rights_on_existing_keys(template: Any) -> None:
    kms = {a for st in cfn_role_statements(template, ROLE) if st.get("Effect") == "Allow"
           and not str(st.get("Sid")).startswith("SeedKey") for a in as_list(st.get("Action")) if a.startswith("kms:")}  # fmt: skip
    assert kms == {"kms:CreateKey", "kms:TagResource", "kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias",
                   "kms:ListAliases"}  # fmt: skip


def test_mapped_actions_are_real_operations() -> None:
    """A misspelt action would silently grant nothing: each must be an API operation in botocore's models
    (S3's IAM action names differ from its operation names and are not checked here)."""
    session = botocore.session.get_session()
    wrong = []
    for kind in load_mapping().values():
        for actions in kind.values():
            for action in actions:
                service, operation = action.split(":")
                if service == "s3" or action in PERMISSION_ONLY:
                    continue
                model = session.get_service_model(BOTOCORE_NAMES.get(service, service))
                if operation not in model.operation_names:
                    wrong.append(action)
    assert wrong == []


def test_boundary_allows_exactly_what_terraforms_roles_use(parsed: Parsed, template: Any) -> None:
    used = document_actions(parsed, identity_policy_documents(parsed))
    boundary = cfn_allowed_actions(template, [str(cfn_boundary(template, ROLE))])
    assert sorted(used - boundary) == [], "a project role would be refused these by its boundary"
    assert sorted(boundary - used) == [], "the boundary allows more than the project's roles use"


def test_tagged_and_passed_roles_are_terraforms_roles(parsed: Parsed, template: Any) -> None:
    """The deploy role tags and passes exactly terraform's roles, each only to the service that trusts it."""
    prefix = "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${NamePrefix}-"
    roles = {}
    for body in (b for doc in parsed.values() for e in doc.get("resource", [])
                 for t, named in e.items() if t == "aws_iam_role" for b in named.values()):  # fmt: skip
        service = str(body["assume_role_policy"]).split('"')[1]
        roles[resolve(body["name"], parsed).removeprefix("hybrid-ingest-")] = f"{service}.amazonaws.com"
    statements = {st["Sid"]: st for st in cfn_role_statements(template, ROLE)}
    tagged = {str(r["Fn::Sub"]).removeprefix(prefix) for r in statements["TagTerraformsRoles"]["Resource"]}
    assert tagged == set(roles)
    passed = {}
    for st in statements.values():
        if "iam:PassRole" in as_list(st["Action"]) and st["Effect"] == "Allow":
            for r in as_list(st["Resource"]):
                passed[str(r["Fn::Sub"]).removeprefix(prefix)] = st["Condition"]["StringEquals"][
                    "iam:PassedToService"
                ]
    assert passed == roles


def test_deploy_policies_fit_the_managed_policy_size(template: Any) -> None:
    """Each deploy policy stays under IAM's 6,144 characters (estimated with each name parameter at 32 characters)."""
    for name in [*cfn_managed_policies_of(template, ROLE), str(cfn_boundary(template, ROLE))]:
        text = json.dumps(template["Resources"][name]["Properties"]["PolicyDocument"], separators=(",", ":"))
        for placeholder in (
            "${NamePrefix}",
            "${Environment}",
            "${AWS::AccountId}",
            "${AWS::Region}",
            "${Db}",
        ):
            text = text.replace(placeholder, "x" * 32)
        assert len(text) < MANAGED_POLICY_MAX_CHARS, (name, len(text))
