"""The security checks fail when they should: each is fed a small broken snippet (or the real seed template
with one protection taken out)."""

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
from tests.infra.infra_checks import CFN_DIR, find_star_resources, find_wildcard_actions, parse_hcl
from tests.infra.terraform_security import (
    find_buckets_without_policy_denies,
    find_landing_writes_not_per_table,
    find_roles_without_boundary,
    find_service_principals_without_source,
    find_writes_outside,
)

# ---------------------------------------------------------------- terraform snippets

BOUNDARY_VARIABLE = """
variable "permissions_boundary_arn" {
  type        = string
  description = "b"
}
"""
TRUST = """
data "aws_iam_policy_document" "trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["glue.amazonaws.com"]
    }
%s
  }
}
"""
SOURCE_ACCOUNT = """
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = ["111122223333"]
    }
"""
SOURCE_ARN = """
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:aws:glue:eu-west-1:111122223333:*"]
    }
"""


def _tf(*texts: str) -> dict[str, Any]:
    return {"main.tf": parse_hcl("\n".join(texts))}


def test_catches_role_without_boundary() -> None:
    roles = """
resource "aws_iam_role" "ok" {
  name                 = "a"
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  permissions_boundary = var.permissions_boundary_arn
}
resource "aws_iam_role" "bad" {
  name               = "b"
  assume_role_policy = data.aws_iam_policy_document.trust.json
}
"""
    assert [f.where for f in find_roles_without_boundary(_tf(BOUNDARY_VARIABLE, roles))] == [
        "main.tf: aws_iam_role.bad"
    ]
    optional = BOUNDARY_VARIABLE.replace('description = "b"', 'description = "b"\n  default     = null')
    assert [f.what for f in find_roles_without_boundary(_tf(optional))] == [
        "has a default: a role could be created without the boundary"
    ]
    assert [f.what for f in find_roles_without_boundary(_tf(""))] == ["is not declared"]


def test_catches_service_principal_without_source_arn() -> None:
    assert find_service_principals_without_source(_tf(TRUST % (SOURCE_ACCOUNT + SOURCE_ARN))) == []
    assert [f.what for f in find_service_principals_without_source(_tf(TRUST % SOURCE_ACCOUNT))] == [
        "service principal without aws:SourceArn"
    ]
    assert len(find_service_principals_without_source(_tf(TRUST % ""))) == 2
    inline = 'resource "aws_iam_role" "r" {\n  name = "r"\n  assume_role_policy = jsonencode({})\n}\n'
    assert [f.what for f in find_service_principals_without_source(_tf(inline))] == [
        "trust policy is not an aws_iam_policy_document"
    ]


def test_accepts_the_logs_encryption_context_form_on_a_key() -> None:
    logs = """
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:aws:logs:eu-west-1:111122223333:log-group:*"]
    }
"""
    assert find_service_principals_without_source(_tf(TRUST % logs)) == []


BUCKETS = """
resource "aws_s3_bucket" "lake" {
  bucket = "x-lake"
}
resource "aws_s3_bucket_policy" "lake" {
  bucket = aws_s3_bucket.lake.id
  policy = data.aws_iam_policy_document.lake.json
}
data "aws_iam_policy_document" "lake" {
  statement {
    effect    = "Deny"
    actions   = [%(tls_actions)s]
    resources = [aws_s3_bucket.lake.arn, "${aws_s3_bucket.lake.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
  statement {
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.lake.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    %(guard)s
    condition {
      test     = "StringNotEquals"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["aws:kms"]
    }
  }
  %(key)s
}
"""
GUARD = """condition {
      test     = "Null"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["false"]
    }"""
KEY = """
  statement {
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.lake.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Null"
      variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
      values   = ["false"]
    }
    condition {
      test     = "StringNotEquals"
      variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
      values   = ["arn:aws:kms:eu-west-1:111122223333:key/k"]
    }
  }
  statement {
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.lake.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Null"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["false"]
    }
    condition {
      test     = "Null"
      variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
      values   = ["true"]
    }
  }
"""


def _buckets(**changes: str) -> dict[str, Any]:
    return _tf(BUCKETS % {"tls_actions": '"s3:*"', "guard": GUARD, "key": KEY, **changes})


def test_catches_bucket_policies_missing_denies() -> None:
    assert find_buckets_without_policy_denies(_buckets()) == []
    assert [
        f.what
        for f in find_buckets_without_policy_denies(_buckets(tls_actions='"s3:GetObject", "s3:PutObject"'))
    ] == ["no deny of s3:* without TLS on the bucket and its objects"]
    assert [f.what for f in find_buckets_without_policy_denies(_buckets(key=""))] == [
        "no deny of uploads naming another KMS key",
        "no deny of SSE-KMS uploads without a key id (S3 would use the aws/s3 key)",
    ]
    extra = 'resource "aws_s3_bucket" "other" {\n  bucket = "x-other"\n}\n'
    complete = BUCKETS % {"tls_actions": '"s3:*"', "guard": GUARD, "key": KEY}
    assert [f.what for f in find_buckets_without_policy_denies(_tf(complete, extra))] == [
        "has no bucket policy"
    ]


def test_catches_the_encryption_deny_that_breaks_default_encryption() -> None:
    """Without the Null guard the deny also refuses uploads that send no header and rely on the bucket default."""
    (finding,) = find_buckets_without_policy_denies(_buckets(guard=""))
    assert "without a Null guard" in finding.what


LAKE_WRITE = """
locals {
  zones = { landing = "landing/", raw = "raw/" }
}
data "aws_iam_policy_document" "p" {
  statement {
    actions   = [%s]
    resources = %s
  }
}
"""


def _lake_write(resources: str, actions: str = '"s3:PutObject"') -> dict[str, Any]:
    return _tf(LAKE_WRITE % (actions, resources))


@pytest.mark.parametrize("resources", [
    '["${aws_s3_bucket.lake.arn}/${local.zones.landing}*"]',
    '["${aws_s3_bucket.lake.arn}/*"]',
    '[for p in [local.zones.raw, local.zones.landing] : "${aws_s3_bucket.lake.arn}/${p}*"]',
    '["${aws_s3_bucket.lake.arn}/landing/*/part-*"]',
], ids=["landing-star", "bucket-wide", "zone-list", "any-table"])  # fmt: skip
def test_catches_writes_to_every_tables_landing(resources: str) -> None:
    assert len(find_landing_writes_not_per_table(_lake_write(resources))) == 1


@pytest.mark.parametrize("resources", [
    '[for t in var.tables : "${aws_s3_bucket.lake.arn}/${local.zones.landing}${t}/*"]',
    '["${aws_s3_bucket.lake.arn}/landing/orders/*"]',
    '["${aws_s3_bucket.lake.arn}/${local.zones.raw}*"]',
], ids=["per-table", "one-table", "raw"])  # fmt: skip
def test_accepts_per_table_landing_writes(resources: str) -> None:
    assert find_landing_writes_not_per_table(_lake_write(resources)) == []


def test_reads_of_landing_are_not_writes() -> None:
    assert (
        find_landing_writes_not_per_table(_lake_write('["${aws_s3_bucket.lake.arn}/*"]', '"s3:GetObject"'))
        == []
    )


def test_catches_a_role_writing_outside_its_zones() -> None:
    parsed = _lake_write('["${aws_s3_bucket.lake.arn}/${local.zones.landing}*"]', '"s3:DeleteObject"')
    assert [f.what for f in find_writes_outside(parsed, {"p"}, ("dlq/merge/", "curated/"))] == [
        "writes 'landing/*' outside ['dlq/merge/', 'curated/']"
    ]


def test_catches_log_resource_policy_on_every_resource() -> None:
    parsed = _tf(LAKE_WRITE % ('"logs:PutResourcePolicy"', '["*"]'))
    assert len(find_star_resources(parsed)) == 1


def test_wildcard_only_in_a_deny_is_accepted() -> None:
    deny = LAKE_WRITE.replace("  statement {\n", '  statement {\n    effect    = "Deny"\n') % (
        '"s3:*"',
        '["*"]',
    )
    assert find_wildcard_actions(_tf(deny)) == []
    assert len(find_wildcard_actions(_tf(LAKE_WRITE % ('"s3:*"', '["*"]')))) == 1


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
