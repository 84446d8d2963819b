"""The CloudFormation security checks and the deploy-action mapping fail when they should: each is fed the
real seed template with one protection taken out, or a small broken mapping."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from cfnlint.decode import decode

from tests.infra.cfn_security import (
    cfn_bucket_policy_problems,
    find_cfn_boundary_grants_iam,
    find_cfn_missing_self_protection,
    find_cfn_unbounded_role_writes,
    find_cfn_unscoped_writes,
)
from tests.infra.deploy_actions import buildspec_calls, grant_problems, mapping_problems
from tests.infra.infra_checks import CFN_DIR

# ---------------------------------------------------------------- the real seed template, one protection removed


@pytest.fixture(scope="module")
def seed() -> Any:
    template, matches = decode(str(CFN_DIR / "seed.yaml"))
    assert not matches
    return template


def _statement(template: Any, policy: str, sid: str) -> dict[str, Any]:
    document = template["Resources"][policy]["Properties"]["PolicyDocument"]
    (st,) = [s for s in document["Statement"] if s.get("Sid") == sid]
    return st  # type: ignore[no-any-return]


def _drop(template: Any, policy: str, sid: str) -> None:
    document = template["Resources"][policy]["Properties"]["PolicyDocument"]
    document["Statement"] = [s for s in document["Statement"] if s.get("Sid") != sid]


def test_catches_role_writes_without_the_boundary(seed: Any) -> None:
    broken = copy.deepcopy(seed)
    del _statement(broken, "DeployIamPolicy", "BoundedProjectRoles")["Condition"]
    findings = find_cfn_unbounded_role_writes(broken, "BuildRole")
    assert any("without the boundary condition" in f.what for f in findings)


def test_catches_powerusers_and_unlimited_iam(seed: Any) -> None:
    broken = copy.deepcopy(seed)
    broken["Resources"]["BuildRole"]["Properties"]["ManagedPolicyArns"] = [
        "arn:aws:iam::aws:policy/PowerUserAccess"
    ]
    del _statement(broken, "DeployIamPolicy", "PassGlueRoles")["Condition"]
    del _statement(broken, "DeployIamPolicy", "ProjectPoliciesOnBoundedRoles")["Condition"]["ArnLike"]
    _statement(broken, "DeployIamPolicy", "ReadProjectIam")["Action"].append("iam:CreateUser")
    _statement(broken, "DeployIamPolicy", "ProjectManagedPolicies")["Resource"] = "*"
    whats = {f.what for f in find_cfn_unbounded_role_writes(broken, "BuildRole")}
    assert {
        "has ManagedPolicyArns (e.g. PowerUserAccess): list the actions instead",
        "PassRole without iam:PassedToService",
        "attaches policies without an iam:PolicyARN limit",
        "writes IAM users or groups",
        "writes managed policies beyond policy/${NamePrefix}-*",
        "IAM actions on every resource",
    } <= whats


@pytest.mark.parametrize("sid", [
    "NeverItsOwnRole", "NeverTheSeedPolicies", "NeverAttachTheSeedPolicies", "NeverRemoveABoundary",
    "NeverAnotherBoundary",
])  # fmt: skip
def test_catches_each_missing_self_protection(seed: Any, sid: str) -> None:
    assert find_cfn_missing_self_protection(seed, "BuildRole") == []
    broken = copy.deepcopy(seed)
    _drop(broken, "DeployIamPolicy", sid)
    assert len(find_cfn_missing_self_protection(broken, "BuildRole")) == 1


def test_catches_a_seed_policy_outside_its_path(seed: Any) -> None:
    broken = copy.deepcopy(seed)
    broken["Resources"]["DeployBoundary"]["Properties"]["Path"] = "/"
    assert [f.where for f in find_cfn_missing_self_protection(broken, "BuildRole")] == ["DeployBoundary"]


def test_catches_a_boundary_that_allows_iam(seed: Any) -> None:
    broken = copy.deepcopy(seed)
    _statement(broken, "DeployBoundary", "WorkflowAndAlerts")["Action"].append("iam:PassRole")
    assert len(find_cfn_boundary_grants_iam(broken, "BuildRole")) == 1


def test_catches_an_unconditioned_write_on_every_resource(seed: Any) -> None:
    broken = copy.deepcopy(seed)
    _statement(broken, "DeployPipelinePolicy", "ReadAlarms")["Action"] = ["cloudwatch:DescribeAlarms", "s3:GetObject",
                                                                          "sns:Publish"]  # fmt: skip
    (finding,) = find_cfn_unscoped_writes(broken, "BuildRole")
    assert "['s3:GetObject', 'sns:Publish']" in finding.what


def test_catches_a_seed_bucket_without_its_denies(seed: Any) -> None:
    broken = copy.deepcopy(seed)
    _drop(broken, "ArtifactBucketPolicy", "DenyKmsWithoutSeedKey")
    _statement(broken, "TerraformStateBucketPolicy", "DenyInsecureTransport")["Action"] = ["s3:GetObject"]
    assert [(f.where, f.what) for f in cfn_bucket_policy_problems(broken)] == [
        ("ArtifactBucket", "no deny of SSE-KMS uploads without a key id (S3 would use the aws/s3 key)"),
        ("TerraformStateBucket", "no deny of s3:* without TLS on the bucket and its objects"),
    ]


# ---------------------------------------------------------------- the deploy mapping, both ways


def test_mapping_catches_unmapped_and_stale_types() -> None:
    findings = mapping_problems({"resource": {"aws_sns_topic", "aws_sqs_queue"}},
                                {"resource": {"aws_sns_topic": [], "aws_lambda_function": []}})  # fmt: skip
    assert [str(f) for f in findings] == [
        "resource aws_sqs_queue: is used but has no entry in deploy_actions.json",
        "resource aws_lambda_function: has an entry in deploy_actions.json but is not used",
    ]


def test_grants_catch_missing_and_excess_actions() -> None:
    assert [f.where for f in grant_problems({"sns:CreateTopic", "sns:DeleteTopic"}, {"sns:CreateTopic", "s3:*"})] == [
        "sns:DeleteTopic", "s3:*",
    ]  # fmt: skip


def test_buildspec_calls_are_found() -> None:
    commands = ['aws s3 cp "dist/x" "s3://b/x"', "RUNNING=$(aws glue get-job-runs --job-name x --query 'a')"]
    assert buildspec_calls(commands) == {"aws s3 cp", "aws glue get-job-runs"}
