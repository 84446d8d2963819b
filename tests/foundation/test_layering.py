"""Layering (DESIGN.md "Top-level layout"): the shared contracts import none of the component packages.

Only the app layer, the CLI (``hybrid_ingest.cli``) and the query engine it runs
(``hybrid_ingest.query``), wires components together.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

COMPONENTS = {"glue_jobs", "producers", "streaming_consumer"}
APP_LAYER = ("cli", "query")


def imported(path: Path) -> set[str]:
    """The top-level packages a module imports, at any depth of its code (lazy imports included)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_shared_contracts_import_no_component() -> None:
    package = REPO / "hybrid_ingest"
    offenders = {str(p.relative_to(REPO)): sorted(imported(p) & COMPONENTS) for p in package.rglob("*.py")
                 if p.relative_to(package).parts[0] not in APP_LAYER and imported(p) & COMPONENTS}
    assert offenders == {}


def test_the_check_sees_a_lazy_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f() -> None:\n    from glue_jobs.merge import run_merge\n")
    assert imported(module) & COMPONENTS == {"glue_jobs"}
