"""The terraform security checks fail when they should: each is fed a small broken snippet."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.infra_checks import find_star_resources, find_wildcard_actions, parse_hcl
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
