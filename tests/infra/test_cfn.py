"""CFN/seed.yaml: cfn-lint clean, no wildcard IAM actions, the parameters and outputs the build relies on."""

from __future__ import annotations

from typing import Any

import pytest
from cfnlint.api import lint_file
from cfnlint.decode import decode

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
    assert {"ProjectName", "ProjectArn"} <= set(template["Outputs"])


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
                 "-backend-config=\"dynamodb_table=", "terraform -chdir=terraform plan", "apply"):  # fmt: skip
        assert step in text, step
