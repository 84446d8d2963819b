"""The ASL template: renders like terraform's templatefile, passes asl-validator, agrees with stepfunctions.tf."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hybrid_ingest import workflow
from hybrid_ingest.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
VALIDATOR = REPO / "node_modules" / ".bin" / "asl-validator"
SAMPLE = workflow.WorkflowValues(
    state_table="p-state", runs_table="p-runs", plan_job="p-plan", merge_job="p-merge",
    alerts_topic_arn="arn:aws:sns:eu-west-1:111122223333:p-alerts", map_concurrency=4, poll_seconds=30,
    retry_interval_seconds=15, retry_max_attempts=6,
)


def rendered() -> dict[str, object]:
    return workflow.render(workflow.template_path().read_text(), SAMPLE.as_dict())


def test_asl_validator_accepts_rendered_definition(tmp_path: Path) -> None:
    assert shutil.which("node"), "node is needed for asl-validator"
    assert VALIDATOR.exists(), "asl-validator missing: run `npm ci` at the repository root"
    path = tmp_path / "batch.asl.json"
    path.write_text(json.dumps(rendered()))
    proc = subprocess.run([str(VALIDATOR), "--json-path", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_asl_validator_rejects_a_broken_definition(tmp_path: Path) -> None:
    """Guards the test above: the validator really checks (a dangling Next must fail)."""
    doc = rendered()
    doc["States"]["Begin"]["Next"] = "NoSuchState"  # type: ignore[index]
    path = tmp_path / "broken.asl.json"
    path.write_text(json.dumps(doc))
    proc = subprocess.run([str(VALIDATOR), "--json-path", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0


def test_render_substitutes_every_value() -> None:
    doc = rendered()
    text = json.dumps(doc)
    assert "${" not in text
    assert doc["States"]["MergeTables"]["MaxConcurrency"] == 4  # type: ignore[index]
    assert doc["States"]["WaitPlan"]["Seconds"] == 30  # type: ignore[index]
    assert '"JobName": "p-merge"' in text
    assert "arn:aws:sns:eu-west-1:111122223333:p-alerts" in text


def test_render_refuses_missing_values_and_directives() -> None:
    with pytest.raises(ConfigError, match="merge_job"):
        workflow.render('{"a": "${merge_job}"}', {})
    with pytest.raises(ConfigError, match="directives"):
        workflow.render('{"a": "%{ if x }y%{ endif }"}', {})


def test_terraform_passes_exactly_the_template_variables() -> None:
    tf = (REPO / "terraform" / "stepfunctions.tf").read_text()
    block = re.search(r'templatefile\("\$\{path\.module\}/workflow\.asl\.json\.tpl", \{(.*?)\}\)', tf, re.S)
    assert block, "stepfunctions.tf must render workflow.asl.json.tpl with templatefile()"
    passed = set(re.findall(r"^\s*(\w+)\s*=", block.group(1), re.M))
    template = workflow.template_path().read_text()
    assert passed == workflow.placeholders(template) == set(SAMPLE.as_dict())


def resources(node: object) -> list[str]:
    if isinstance(node, dict):
        own = [node["Resource"]] if isinstance(node.get("Resource"), str) else []
        return own + [r for v in node.values() for r in resources(v)]
    if isinstance(node, list):
        return [r for v in node for r in resources(v)]
    return []


def test_glue_runs_are_polled_not_sync() -> None:
    """moto's interpreter crashes on .sync; StartJobRun + GetJobRun polling runs on both."""
    used = resources(rendered())
    assert "arn:aws:states:::glue:startJobRun" in used
    assert "arn:aws:states:::aws-sdk:glue:getJobRun" in used
    assert not [r for r in used if r.endswith(".sync")]
