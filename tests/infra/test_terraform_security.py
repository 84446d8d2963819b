"""terraform/'s security rules: boundary on every role, confused-deputy conditions, bucket denies,
landing per table, each role's lake writes, and the IAM of the Iceberg commit."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from typing import Any

import pytest
from packaging.requirements import Requirement

from hybrid_ingest import layout, quarantine
from producers import kafka_bridge
from streaming_consumer import sink
from tests.infra.infra_checks import (
    ROOT,
    TERRAFORM_DIR,
    Parsed,
    as_list,
    local_values,
    parse_dir,
    resource,
    statements,
    variable_defaults,
)
from tests.infra.terraform_security import (
    document_actions,
    find_buckets_without_policy_denies,
    find_landing_writes_not_per_table,
    find_roles_without_boundary,
    find_service_principals_without_source,
    find_writes_outside,
    identity_policy_documents,
    lake_writes,
    policy_documents,
)

MERGE_DOCUMENTS = {"glue_merge", "glue_common"}
STREAM_DOCUMENTS = {"glue_stream", "glue_common"}


@pytest.fixture(scope="module")
def parsed() -> Parsed:
    return parse_dir(TERRAFORM_DIR)


def _statement(parsed: Parsed, document: str, sid: str) -> dict[str, Any]:
    (st,) = [s for s in statements(policy_documents(parsed)[document]) if s.get("sid") == sid]
    return st


# ---------------------------------------------------------------- deploy role containment


def test_every_role_carries_the_boundary(parsed: Parsed) -> None:
    assert find_roles_without_boundary(parsed) == []


def test_every_service_principal_checks_source_account_and_arn(parsed: Parsed) -> None:
    assert find_service_principals_without_source(parsed) == []


def test_trust_names_the_resources_that_assume(parsed: Parsed) -> None:
    sources = local_values(parsed)["trusted_sources"]
    assert sources["states"] == [
        "${local.arn_prefix}:states:${local.region}:${local.account_id}:stateMachine:${local.names.state_machine}"
    ]
    assert sources["scheduler"] == ["${aws_scheduler_schedule_group.this.arn}"]
    assert sources["events"] == ["${aws_cloudwatch_event_rule.manifest_landed.arn}"]
    assert set(sources) == {"glue", "states", "scheduler", "events", "datasync"}


# ---------------------------------------------------------------- buckets


def test_every_bucket_policy_denies_plaintext_and_foreign_encryption(parsed: Parsed) -> None:
    assert find_buckets_without_policy_denies(parsed) == []


def test_each_bucket_takes_its_own_encryption(parsed: Parsed) -> None:
    encryption = local_values(parsed)["bucket_encryption"]
    assert set(encryption) == set(local_values(parsed)["buckets"])
    assert encryption["access_logs"] == {
        "algorithm": "AES256",
        "key_arn": None,
    }  # S3 access logging needs SSE-S3
    for name in ("lake", "scripts", "athena_results"):
        assert encryption[name] == {"algorithm": "aws:kms", "key_arn": "${aws_kms_key.main.arn}"}, name


def test_bucket_names_start_with_the_prefix(parsed: Parsed) -> None:
    for name in ("lake", "scripts", "athena_results", "access_logs"):
        (pre,) = resource(parsed, "aws_s3_bucket", name)["lifecycle"][0]["precondition"]
        assert pre["condition"].startswith("${startswith(local."), name


def test_access_log_delivery_names_the_logged_buckets(parsed: Parsed) -> None:
    doc = policy_documents(parsed)["bucket"]
    (delivery,) = [s for s in statements(doc) if s.get("sid") == "S3ServerAccessLogsDelivery"]
    (arn,) = [c for c in delivery["condition"] if c["variable"] == "aws:SourceArn"]
    assert arn["values"] == "${local.logged_bucket_arns}"


# ---------------------------------------------------------------- who writes the lake


def test_landing_is_written_per_table_only(parsed: Parsed) -> None:
    assert find_landing_writes_not_per_table(parsed) == []
    landing = [(doc, key) for doc, _, key in lake_writes(parsed) if key.startswith("landing/")]
    assert sorted(landing) == [("datasync", "landing/${t}/*"), ("producer", "landing/${t}/*")]


def test_producer_policies_follow_var_producers(parsed: Parsed) -> None:
    policy = resource(parsed, "aws_iam_policy", "producer")
    assert policy["for_each"] == "${var.producers}"
    assert local_values(parsed)["landing_tables"] == "${sort(distinct(flatten(values(var.producers))))}"
    (producers,) = [e["producers"] for e in parsed["variables.tf"]["variable"] if "producers" in e]
    (rule,) = [
        m for v in producers["validation"] for m in re.findall(r'regex\("([^"]+)", t\)', v["condition"])
    ]
    assert rule == "^[a-z][a-z0-9_]{0,62}$"
    for table in (
        "orders",
        "a",
        "order_lines_2",
        "t" * 63,
    ):  # such a table's landing folder is landing/<table>/
        assert re.fullmatch(rule, table)
        assert layout.landing_dir(table, "x").startswith(f"landing/{table}/")


def test_merge_never_writes_landing_or_raw(parsed: Parsed) -> None:
    assert find_writes_outside(parsed, MERGE_DOCUMENTS, ("dlq/merge/", "curated/")) == []
    reads = _statement(parsed, "glue_merge", "ReadInputs")
    assert reads["actions"] == "${local.s3_object_read}"


def test_stream_writes_only_raw_its_dead_letters_and_checkpoints(parsed: Parsed) -> None:
    assert find_writes_outside(parsed, STREAM_DOCUMENTS, ("raw/", "dlq/stream/", "_checkpoints/")) == []


def test_dead_letter_prefixes_are_the_codes_stages(parsed: Parsed) -> None:
    locs = local_values(parsed)
    assert locs["dlq_merge"] == "${local.zones.dlq}" + f"{quarantine.STAGE}/"
    assert locs["dlq_stream"] == "${local.zones.dlq}" + f"{sink.DLQ_STAGE}/"
    # what the merge writes for an extract it holds (bad manifest, duplicate keys, suspicious) lies under the
    # prefix it may write
    for reason in quarantine.REASONS:
        record = quarantine.record_path(reason, "orders", "20261130T000000Z-5000")
        assert any(fnmatch.fnmatchcase(record, key) for doc, _, key in lake_writes(parsed, MERGE_DOCUMENTS))


# ---------------------------------------------------------------- the Iceberg commit (#16 item 9)


def test_merge_commits_iceberg_tables_through_the_glue_catalog(parsed: Parsed) -> None:
    catalog = _statement(parsed, "glue_merge", "IcebergCatalog")
    assert set(catalog["actions"]) == {
        "glue:GetDatabase", "glue:GetTable", "glue:GetTables", "glue:CreateTable", "glue:UpdateTable",
    }  # fmt: skip
    merge = document_actions(parsed, MERGE_DOCUMENTS)
    assert not {a for a in merge if "Partition" in a}, "the Iceberg layer uses no catalog partitions"
    assert "glue:DeleteTable" not in merge, "tables are never dropped by the merge"
    assert catalog["resources"] == [
        "${local.glue_catalog_arn}", "${local.glue_curated_db_arn}", "${local.glue_curated_tables_arn}",
    ]  # fmt: skip


def test_merge_reads_writes_and_deletes_the_table_folders(parsed: Parsed) -> None:
    folders = local_values(parsed)["curated_table_folders"]
    assert folders == ["data/", "metadata/", f"{layout.TOMBSTONES}/"]
    files = _statement(parsed, "glue_merge", "IcebergDataAndMetadata")
    assert files["resources"] == "${local.curated_table_objects}"
    keys = {key for doc, sid, key in lake_writes(parsed, MERGE_DOCUMENTS) if sid == "IcebergDataAndMetadata"}
    assert keys == {f"curated/*/{f}*" for f in folders}
    table = layout.curated_table_dir("orders")
    for name in ("data/order_date_month=2026-11/00000-0-a.parquet", "metadata/00001-b.metadata.json",
                 f"{layout.TOMBSTONES}/run-1.parquet"):  # fmt: skip
        assert any(fnmatch.fnmatchcase(f"{table}/{name}", k) for k in keys), name
    assert "s3:DeleteObject" in str(files["actions"])


def test_glue_jobs_install_pinned_pyiceberg(parsed: Parsed) -> None:
    """Every Glue module is pinned (==), and a pin of a project dependency satisfies pyproject.toml's range."""
    pins = {
        Requirement(m).name: Requirement(m)
        for m in variable_defaults(parsed)["glue_additional_python_modules"]
    }
    assert {"pyiceberg", "pyiceberg-core"} <= set(pins)
    assert all(str(r.specifier).startswith("==") for r in pins.values())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in map(Requirement, project):
        if dep.name in pins:
            version = str(pins[dep.name].specifier).removeprefix("==")
            assert dep.specifier.contains(version), (
                f"{dep.name}=={version} is outside pyproject's {dep.specifier}"
            )


# ---------------------------------------------------------------- logs resource policies


def test_no_role_may_put_log_resource_policies(parsed: Parsed) -> None:
    assert "logs:PutResourcePolicy" not in document_actions(parsed, identity_policy_documents(parsed))
    delivery = _statement(parsed, "workflow_logs", "VendedLogDelivery")
    assert delivery["principals"][0]["identifiers"] == ["delivery.logs.amazonaws.com"]
    assert delivery["resources"] == ["${aws_cloudwatch_log_group.workflow.arn}:*"]
    sfn = resource(parsed, "aws_sfn_state_machine", "batch")
    assert sfn["depends_on"] == ["${aws_cloudwatch_log_resource_policy.workflow}"]


def test_project_key_names_the_deploy_role(parsed: Parsed) -> None:
    doc = policy_documents(parsed)["kms"]
    (deploy,) = [s for s in statements(doc) if s.get("sid") == "DeployRoleAdministersThisKey"]
    assert deploy["principals"][0]["identifiers"] == ["${statement.value}"]
    assert resource(parsed, "aws_kms_key", "main")["provider"] == "${aws.project_key}"
    assert resource(parsed, "aws_kms_key", "main")["tags"] == "${local.project_tags}"
    dynamic = next(d["statement"] for d in doc["dynamic"] if "statement" in d)
    assert dynamic["for_each"] == "${var.deploy_role_arn == null ? [] : [var.deploy_role_arn]}"


# ---------------------------------------------------------------- on-prem sources (bridge kafka, source postgres)


def test_producers_dead_letter_bridge_messages_under_the_bridges_stage(parsed: Parsed) -> None:
    assert local_values(parsed)["dlq_bridge"] == "${local.zones.dlq}" + f"{kafka_bridge.DLQ_STAGE}/"
    writes = {(sid, key) for doc, sid, key in lake_writes(parsed, {"producer"}) if key.startswith("dlq/")}
    assert writes == {("DeadLetterBridgeMessages", f"dlq/{kafka_bridge.DLQ_STAGE}/*")}
    letter = layout.dlq_file(kafka_bridge.DLQ_STAGE, "invalid-row", "erp.orders-0-17.json")
    assert fnmatch.fnmatchcase(letter, f"dlq/{kafka_bridge.DLQ_STAGE}/*")


def test_only_registering_producers_register_and_only_their_tables(parsed: Parsed) -> None:
    register = _statement(parsed, "producer", "RegisterItsTables")
    progress = _statement(parsed, "producer", "KeepSourceProgress")
    gates = {content["sid"]: dyn["statement"]["for_each"]
             for dyn in policy_documents(parsed)["producer"].get("dynamic", [])
             for content in as_list(dyn["statement"]["content"])}
    for sid in ("RegisterItsTables", "KeepSourceProgress"):  # absent from the other producers' policies
        assert gates[sid] == "${contains(var.registering_producers, each.key) ? [1] : []}"
    (keys,) = register["condition"]
    assert (keys["test"], keys["variable"]) == ("ForAllValues:StringLike", "dynamodb:LeadingKeys")
    assert keys["values"] == '${concat([for t in each.value : "table#${t}"], ["fp#*"])}'
    assert register["actions"] == ["dynamodb:PutItem"]
    (source,) = progress["condition"]
    assert (source["test"], source["variable"], source["values"]) == (
        "ForAllValues:StringEquals", "dynamodb:LeadingKeys", ["source"])


def test_the_codes_keys_are_the_ones_iam_allows() -> None:
    """The registry's and the source record's partition keys are what the conditions above name."""
    import inspect

    from hybrid_ingest import registry, state

    assert 'f"table#{spec.table}"' in inspect.getsource(registry.Registry._write_version)
    assert 'f"fp#{fp.hex()}"' in inspect.getsource(registry.Registry._write_version)
    assert '"pk": {"S": "source"}' in inspect.getsource(state.StateStore.put_source)
