"""CFN/seed.yaml: cfn-lint clean, no wildcard IAM actions, the parameters and outputs the build relies on,
a deploy role that cannot raise its own rights, and seed buckets that refuse plaintext and foreign encryption."""

from __future__ import annotations

from typing import Any

import pytest
from cfnlint.api import lint_file
from cfnlint.decode import decode

from tests.infra.cfn_security import (
    cfn_bucket_policy_problems,
    find_cfn_boundary_grants_iam,
    find_cfn_missing_self_protection,
    find_cfn_unbounded_role_writes,
    find_cfn_unscoped_writes,
)
from tests.infra.infra_checks import CFN_DIR, ROOT, find_cfn_wildcard_actions

SEED = CFN_DIR / "seed.yaml"


@pytest.fixture(scope="module")
def template() -> Any:
    tpl, matches = decode(str(SEED))
    assert not matches, matches
    return tpl


def test_cfn_lint_clean() -> None:
    matches = lint_file(SEED)
    assert [str(m) for m in matches] == []


def test_no_wildcard_actions(template: Any) -> None:
    assert find_cfn_wildcard_actions(template) == []


def test_parameters_and_outputs(template: Any) -> None:
    assert {"RepositoryUrl", "Branch", "Environment"} <= set(template["Parameters"])
    assert "DeployManagedPolicyArns" not in template["Parameters"], "no managed policies for the deploy role"
    assert {"ProjectName", "ProjectArn", "PermissionsBoundaryArn", "DeployRoleArn"} <= set(template["Outputs"])
    env = {v["Name"]: v["Value"] for v in template["Resources"]["DeployProject"]["Properties"]["Environment"][
        "EnvironmentVariables"]}  # fmt: skip
    assert env["PERMISSIONS_BOUNDARY_ARN"] == template["Outputs"]["PermissionsBoundaryArn"]["Value"]
    assert env["DEPLOY_ROLE_ARN"] == template["Outputs"]["DeployRoleArn"]["Value"]


# ---------------------------------------------------------------- the deploy role cannot escalate


def test_deploy_role_writes_roles_only_under_the_boundary(template: Any) -> None:
    assert find_cfn_unbounded_role_writes(template, "BuildRole") == []


def test_deploy_role_cannot_reach_its_role_boundary_or_policies(template: Any) -> None:
    assert find_cfn_missing_self_protection(template, "BuildRole") == []


def test_deploy_role_has_no_unconditioned_write_on_every_resource(template: Any) -> None:
    assert find_cfn_unscoped_writes(template, "BuildRole") == []


def test_boundary_allows_no_iam(template: Any) -> None:
    assert find_cfn_boundary_grants_iam(template, "BuildRole") == []


def test_build_role_trust_names_the_project(template: Any) -> None:
    (trust,) = template["Resources"]["BuildRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert trust["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Sub"].endswith(
        ":project/${NamePrefix}-${Environment}-deploy")
    assert template["Resources"]["DeployProject"]["Properties"]["Name"]["Fn::Sub"] == "${NamePrefix}-${Environment}-deploy"


def test_seed_buckets_deny_plaintext_and_foreign_encryption(template: Any) -> None:
    assert cfn_bucket_policy_problems(template) == []


def test_resources(template: Any) -> None:
    types = {r["Type"] for r in template["Resources"].values()}
    assert {
        "AWS::CodeBuild::Project", "AWS::IAM::Role", "AWS::Logs::LogGroup", "AWS::S3::Bucket", "AWS::DynamoDB::Table",
    } <= types  # fmt: skip
    project = template["Resources"]["DeployProject"]["Properties"]
    assert project["Source"]["BuildSpec"] == "buildspec.yml"
    lock = template["Resources"]["TerraformLockTable"]["Properties"]
    assert lock["KeySchema"] == [{"AttributeName": "LockID", "KeyType": "HASH"}]
    for name in ("ArtifactBucket", "TerraformStateBucket"):
        bucket = template["Resources"][name]["Properties"]
        assert bucket["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True
        assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
            "ServerSideEncryptionByDefault"
        ]


def test_buildspec_runs_the_pipeline() -> None:
    decoded, problems = decode(str(ROOT / "buildspec.yml"))  # cfn-lint's YAML reader, with line numbers
    assert not problems, problems
    text = "\n".join(c for phase in decoded["phases"].values() for c in phase["commands"])
    for step in ('pip install -e ".[dev]"', "make test", "python -m build --wheel", "aws s3 cp",
                 "-backend-config=\"dynamodb_table=", "terraform -chdir=terraform plan", "apply",
                 '-var="permissions_boundary_arn=${PERMISSIONS_BOUNDARY_ARN}"',
                 '-var="deploy_role_arn=${DEPLOY_ROLE_ARN}"'):  # fmt: skip
        assert step in text, step
