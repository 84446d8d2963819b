"""The structural checks fail when they should: each is fed a small broken snippet."""

from __future__ import annotations

from tests.infra.infra_checks import (
    find_cfn_wildcard_actions,
    find_star_resources,
    find_undefined_references,
    find_untyped_variables,
    find_wildcard_actions,
    parse_hcl,
    resolve,
)

POLICY = """
data "aws_iam_policy_document" "p" {
  statement {
    sid       = "Data"
    actions   = [%s]
    resources = [%s]
  }
}
"""


def _policy(actions: str, resources: str = '"arn:aws:s3:::b/*"') -> dict[str, dict[str, object]]:
    return {"iam.tf": parse_hcl(POLICY % (actions, resources))}


def test_catches_star_action() -> None:
    assert len(find_wildcard_actions(_policy('"*"'))) == 1


def test_catches_service_wildcard_and_partial_wildcard() -> None:
    findings = find_wildcard_actions(_policy('"s3:GetObject", "s3:*", "kms:Describe*"'))
    assert sorted(f.what for f in findings) == ["wildcard action 'kms:Describe*'", "wildcard action 's3:*'"]


def test_accepts_named_actions() -> None:
    assert find_wildcard_actions(_policy('"s3:GetObject", "s3:PutObject"')) == []


def test_catches_wildcard_in_dynamic_statement() -> None:
    text = """
data "aws_iam_policy_document" "p" {
  dynamic "statement" {
    for_each = [1]
    content {
      actions   = ["dynamodb:*"]
      resources = ["arn:aws:dynamodb:eu-west-1:1:table/t"]
    }
  }
}
"""
    assert len(find_wildcard_actions({"iam.tf": parse_hcl(text)})) == 1


def test_catches_inline_jsonencode_policy() -> None:
    text = """
resource "aws_iam_role_policy" "p" {
  role = "r"
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = ["glue:*"], Resource = "*" }]
  })
}
"""
    findings = find_wildcard_actions({"iam.tf": parse_hcl(text)})
    assert findings
    assert "glue:*" in findings[0].what


def test_catches_not_actions() -> None:
    text = POLICY.replace("actions   = [%s]", "not_actions = [%s]") % ('"s3:GetObject"', '"*"')
    assert [f.what for f in find_wildcard_actions({"iam.tf": parse_hcl(text)})] == ["uses not_actions"]


def test_catches_star_resource_for_scopable_action() -> None:
    assert len(find_star_resources(_policy('"s3:GetObject"', '"*"'))) == 1
    assert find_star_resources(_policy('"cloudwatch:PutMetricData"', '"*"')) == []


def test_catches_untyped_and_undescribed_variables() -> None:
    text = """
variable "ok" {
  type        = string
  description = "fine"
}
variable "untyped" {
  description = "no type"
}
variable "undescribed" {
  type = number
}
"""
    findings = find_untyped_variables({"variables.tf": parse_hcl(text)})
    assert sorted(str(f) for f in findings) == [
        "variables.tf: variable.undescribed: has no description",
        "variables.tf: variable.untyped: has no type",
    ]


def test_catches_undefined_references() -> None:
    text = """
variable "prefix" {
  type        = string
  description = "p"
}
resource "aws_sns_topic" "t" {
  name = "${var.prefix}-${var.missing}"
}
resource "aws_sns_topic_policy" "p" {
  arn    = aws_sns_topic.t.arn
  policy = data.aws_iam_policy_document.nowhere.json
}
output "o" {
  value = aws_sqs_queue.q.arn
}
"""
    parsed = {"main.tf": parse_hcl(text)}
    whats = sorted(f.what for f in find_undefined_references(parsed))
    assert whats == [
        "undefined reference aws_sqs_queue.q",
        "undefined reference data.aws_iam_policy_document.nowhere",
        "undefined reference var.missing",
    ]
    assert [f.what for f in find_undefined_references(parsed, frozenset({"aws_sqs_queue.q"}))] == [
        "undefined reference data.aws_iam_policy_document.nowhere",
        "undefined reference var.missing",
    ]


def test_resolve_detects_a_renamed_resource() -> None:
    text = """
variable "name_prefix" {
  type        = string
  description = "p"
  default     = "hybrid-ingest"
}
locals {
  db = replace(var.name_prefix, "-", "_")
  names = { stream = "${var.name_prefix}-change-stream", curated = "${local.db}_curated" }
}
"""
    parsed = {"main.tf": parse_hcl(text)}
    assert resolve("${local.names.stream}", parsed) == "hybrid-ingest-change-stream"  # != Names().stream
    assert resolve("${local.names.curated}", parsed) == "hybrid_ingest_curated"


def test_catches_cfn_wildcards() -> None:
    template = {
        "Resources": {
            "Role": {
                "Properties": {
                    "Policies": [
                        {"PolicyDocument": {"Statement": [{"Action": ["s3:*"], "Resource": "*"}]}},
                        {"PolicyDocument": {"Statement": [{"Action": "*", "Resource": "*"}]}},
                        {"PolicyDocument": {"Statement": [{"NotAction": "iam:PassRole", "Resource": "*"}]}},
                    ]
                }
            }
        }
    }
    assert len(find_cfn_wildcard_actions(template)) == 3
