"""Structural checks of terraform/ with python-hcl2: conventions, names, IAM hygiene."""

from __future__ import annotations

from typing import Any

import pytest

from hybrid_ingest.config import Names
from tests.infra.infra_checks import (
    TERRAFORM_DIR,
    Parsed,
    blocks,
    find_star_resources,
    find_undefined_references,
    find_untyped_variables,
    find_wildcard_actions,
    local_values,
    parse_dir,
    resolve,
    resource,
    variable_defaults,
)

CONCERN_FILES = {
    "versions.tf", "variables.tf", "main.tf", "output.tf", "glue_jobs.tf", "kinesis.tf", "dynamodb.tf",
    "s3.tf", "glue_catalog.tf", "athena.tf", "datasync.tf", "monitoring.tf", "iam.tf", "network.tf",
    "kms.tf", "scheduler.tf",
}  # fmt: skip
STEPFUNCTIONS = "stepfunctions.tf"  # the workflow engineer's file


@pytest.fixture(scope="module")
def parsed() -> Parsed:
    return parse_dir(TERRAFORM_DIR)


def _external(parsed: Parsed) -> frozenset[str]:
    """Addresses another file provides: the state machine until stepfunctions.tf exists."""
    return frozenset() if STEPFUNCTIONS in parsed else frozenset({"aws_sfn_state_machine.batch"})


def test_standard_module_files(parsed: Parsed) -> None:
    assert set(parsed) >= CONCERN_FILES


def test_versions_pinned(parsed: Parsed) -> None:
    (terraform,) = parsed["versions.tf"]["terraform"]
    assert terraform["required_version"] == ">= 1.6"
    aws = terraform["required_providers"][0]["aws"]
    assert aws["source"] == "hashicorp/aws"
    assert aws["version"].startswith("~> 5.")
    assert "s3" in terraform["backend"][0], "remote state: partial s3 backend configured by -backend-config"


def test_every_variable_typed_and_described(parsed: Parsed) -> None:
    assert find_untyped_variables(parsed) == []


def test_no_wildcard_iam_actions(parsed: Parsed) -> None:
    assert find_wildcard_actions(parsed) == []


def test_star_resources_only_for_unscopable_actions(parsed: Parsed) -> None:
    assert find_star_resources(parsed) == []


def test_references_resolve(parsed: Parsed) -> None:
    assert find_undefined_references(parsed, _external(parsed)) == []


def test_every_output_described(parsed: Parsed) -> None:
    for fname, doc in parsed.items():
        for entry in doc.get("output", []):
            for name, body in entry.items():
                if not name.startswith("__"):
                    assert str(body.get("description", "")).strip(), f"{fname}: output.{name}"


def test_outputs_cover_what_the_cli_needs(parsed: Parsed) -> None:
    outputs = {n for e in parsed["output.tf"]["output"] for n in e if not n.startswith("__")}
    assert {
        "region", "stream_name", "stream_arn", "registry_table_name", "state_table_name", "runs_table_name",
        "lake_bucket_name", "lake_uri", "scripts_bucket_name", "athena_results_bucket_name",
        "curated_database_name", "raw_database_name", "state_machine_arn", "merge_job_name",
        "streaming_job_name", "athena_workgroup", "alerts_topic_arn",
    } <= outputs  # fmt: skip


# ---------------------------------------------------------------- names agree with hybrid_ingest.config


def _name(parsed: Parsed, template: str, prefix: str | None = None) -> str:
    return resolve(template, parsed, None if prefix is None else {"name_prefix": prefix})


@pytest.mark.parametrize("prefix", [None, "acme-ingest"], ids=["default", "custom-prefix"])
def test_names_match_code(parsed: Parsed, prefix: str | None) -> None:
    names = Names() if prefix is None else Names(prefix=prefix)
    locs: dict[str, Any] = local_values(parsed)["names"]
    expected = {
        "stream": names.stream,
        "registry_table": names.registry_table,
        "state_table": names.state_table,
        "runs_table": names.runs_table,
        "curated_database": names.curated_database,
        "raw_database": names.raw_database,
        "state_machine": names.state_machine,
        "merge_job": names.merge_job,
        "streaming_job": names.streaming_job,
        "alerts_topic": names.alerts_topic,
        "athena_workgroup": names.athena_workgroup,
    }
    assert {k: _name(parsed, locs[k], prefix) for k in expected} == expected


def test_default_prefix_matches_code(parsed: Parsed) -> None:
    assert variable_defaults(parsed)["name_prefix"] == Names().prefix
    assert local_values(parsed)["metrics_namespace"] == Names().metrics_namespace


def test_resources_use_the_names(parsed: Parsed) -> None:
    n = Names()
    assert _name(parsed, resource(parsed, "aws_kinesis_stream", "changes")["name"]) == n.stream
    assert (
        _name(parsed, resource(parsed, "aws_glue_catalog_database", "curated")["name"]) == n.curated_database
    )
    assert _name(parsed, resource(parsed, "aws_glue_catalog_database", "raw")["name"]) == n.raw_database
    assert _name(parsed, resource(parsed, "aws_glue_job", "merge")["name"]) == n.merge_job
    assert _name(parsed, resource(parsed, "aws_glue_job", "stream")["name"]) == n.streaming_job
    assert _name(parsed, resource(parsed, "aws_sns_topic", "alerts")["name"]) == n.alerts_topic
    assert _name(parsed, resource(parsed, "aws_athena_workgroup", "this")["name"]) == n.athena_workgroup
    tables = local_values(parsed)["dynamodb_tables"]
    assert {_name(parsed, t["name"]) for t in tables.values()} == {
        n.registry_table,
        n.state_table,
        n.runs_table,
    }
    if STEPFUNCTIONS in parsed:
        sfn = resource(parsed, "aws_sfn_state_machine", "batch")
        assert _name(parsed, sfn["name"]) == n.state_machine
        assert sfn["role_arn"] == "${aws_iam_role.workflow.arn}"


def test_lake_bucket_default_name(parsed: Parsed) -> None:
    assert local_values(parsed)["lake_bucket_name"] == (
        '${coalesce(var.lake_bucket_name, "${var.name_prefix}-lake-${local.account_id}")}'
    )


# ---------------------------------------------------------------- resource contracts


def test_dynamodb_tables(parsed: Parsed) -> None:
    table = resource(parsed, "aws_dynamodb_table", "this")
    assert (table["hash_key"], table["range_key"]) == ("pk", "sk")
    assert {(a["name"], a["type"]) for a in table["attribute"]} == {("pk", "S"), ("sk", "S")}
    assert table["billing_mode"] == "PAY_PER_REQUEST"
    assert table["point_in_time_recovery"][0]["enabled"] is True
    assert table["server_side_encryption"][0]["kms_key_arn"] == "${aws_kms_key.main.arn}"
    (ttl,) = [d["ttl"] for d in table["dynamic"] if "ttl" in d]
    assert ttl["content"][0]["attribute_name"] == "ttl"
    assert local_values(parsed)["dynamodb_tables"]["state"]["ttl"] is True


def test_glue_jobs(parsed: Parsed) -> None:
    merge = resource(parsed, "aws_glue_job", "merge")
    stream = resource(parsed, "aws_glue_job", "stream")
    for job, command, script in (
        (merge, "glueetl", "/glue_jobs/merge_job.py"),
        (stream, "gluestreaming", "/streaming_consumer/glue_streaming_job.py"),
    ):
        assert job["glue_version"] == "5.0"
        (cmd,) = job["command"]
        assert (cmd["name"], cmd["python_version"]) == (command, "3")
        assert cmd["script_location"].endswith(script)
        assert job["security_configuration"] == "${aws_glue_security_configuration.jobs.name}"
    common = local_values(parsed)["glue_common_arguments"]
    assert common["--extra-py-files"] == "${local.library_wheel_uri}"
    modules = variable_defaults(parsed)["glue_additional_python_modules"]
    for module in ("fastavro", "aws-kinesis-agg", "duckdb", "sqlglot", "pyiceberg", "pyiceberg-core"):
        assert any(m.split("==")[0] == module for m in modules), module
    defaults = variable_defaults(parsed)
    assert defaults["merge_max_concurrent_runs"] >= defaults["workflow_map_concurrency"]
    assert merge["execution_property"][0]["max_concurrent_runs"] == "${var.merge_max_concurrent_runs}"


def test_kinesis_stream(parsed: Parsed) -> None:
    stream = resource(parsed, "aws_kinesis_stream", "changes")
    assert stream["encryption_type"] == "KMS"
    assert variable_defaults(parsed)["kinesis_stream_mode"] == "ON_DEMAND"
    assert stream["stream_mode_details"][0]["stream_mode"] == "${var.kinesis_stream_mode}"


def test_kms_rotation(parsed: Parsed) -> None:
    assert resource(parsed, "aws_kms_key", "main")["enable_key_rotation"] is True


def test_buckets_hardened(parsed: Parsed) -> None:
    pab = resource(parsed, "aws_s3_bucket_public_access_block", "this")
    assert all(
        pab[k] is True
        for k in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
    )
    own = resource(parsed, "aws_s3_bucket_ownership_controls", "this")
    assert own["rule"][0]["object_ownership"] == "BucketOwnerEnforced"
    sse = resource(parsed, "aws_s3_bucket_server_side_encryption_configuration", "kms")
    assert sse["rule"][0]["apply_server_side_encryption_by_default"][0]["sse_algorithm"] == "aws:kms"
    policies = {n: b for _, t, n, b in blocks(parsed, "data") if t == "aws_iam_policy_document"}
    tls = policies["bucket"]["statement"][0]
    assert (tls["effect"], tls["actions"]) == ("Deny", ["s3:*"])
    assert tls["condition"][0]["variable"] == "aws:SecureTransport"
    assert resource(parsed, "aws_s3_bucket_notification", "lake")["eventbridge"] is True


def test_lake_lifecycle(parsed: Parsed) -> None:
    rules = {r["id"]: r for r in resource(parsed, "aws_s3_bucket_lifecycle_configuration", "lake")["rule"]}
    assert [t["storage_class"] for t in rules["raw"]["transition"]] == ["STANDARD_IA", "GLACIER"]
    assert "expiration" in rules["dlq"]
    assert "noncurrent_version_expiration" in rules["curated-noncurrent"]
    # Iceberg's snapshot expiry and orphan-file removal replaced the tagged retired-version folders
    assert not any("tags" in str(r.get("filter")) for r in rules.values())


def test_triggers_target_the_state_machine(parsed: Parsed) -> None:
    schedule = resource(parsed, "aws_scheduler_schedule", "batch")
    assert variable_defaults(parsed)["batch_schedule_expression"] == "rate(15 minutes)"
    assert schedule["target"][0]["arn"] == "${aws_sfn_state_machine.batch.arn}"
    rule = resource(parsed, "aws_cloudwatch_event_rule", "manifest_landed")
    assert "_manifest.json" in rule["event_pattern"]
    assert "Object Created" in rule["event_pattern"]
    target = resource(parsed, "aws_cloudwatch_event_target", "manifest_landed")
    assert target["arn"] == "${aws_sfn_state_machine.batch.arn}"


def test_alarms(parsed: Parsed) -> None:
    alarms = {n: b for _, t, n, b in blocks(parsed, "resource") if t == "aws_cloudwatch_metric_alarm"}
    assert alarms["stream_iterator_age"]["metric_name"] == "GetRecords.IteratorAgeMilliseconds"
    assert "DlqRecords" in alarms["dlq_records"]["metric_query"][0]["expression"]
    assert "FreshnessSeconds" in alarms["freshness"]["metric_query"][0]["expression"]
    assert "workflow_failed" in alarms
    assert all(a["alarm_actions"] == "${local.alarm_actions}" for a in alarms.values())
