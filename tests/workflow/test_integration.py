"""The workflow with the real plan job (sizing) and the real merge job: landed data becomes queryable."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from hybrid_ingest import workflow
from hybrid_ingest.aws import Clients
from hybrid_ingest.cli import cli
from hybrid_ingest.lake import Lake
from hybrid_ingest.registry import Registry
from hybrid_ingest.state import StateStore
from producers.bulk import push_extract

CSV = """customer_id,email,full_name,country,tier,credit_limit,is_active,signup_date,updated_at,phone
1,a@example.com,Ann,DE,gold,100.50,true,2024-01-02,2024-05-01T10:00:00Z,
2,b@example.com,Bob,FR,silver,20.00,false,2023-03-04,2024-05-01T11:00:00Z,+33123
"""


def test_batch_run_merges_a_landed_extract_with_the_real_jobs(
        initialized: Clients, registry: Registry, store: StateStore, lake: Lake, tmp_path: Path) -> None:
    source = tmp_path / "customers.csv"
    source.write_text(CSV)
    push_extract(lake, registry.latest("customers"), source, as_of_seq=10, mode="full")
    workflow.deploy(initialized)
    s = initialized.settings
    env = {"HYBRID_INGEST_HOME": str(s.home), "AWS_ENDPOINT_URL": str(s.endpoint_url),
           "HYBRID_INGEST_LAKE_URI": s.lake_uri, "AWS_REGION": s.region}

    ran = CliRunner().invoke(cli, ["batch", "run"], env=env)

    assert ran.exit_code == 0, ran.output
    assert store.lease("batch") is None
    assert len(store.watermark("customers").extracts) == 1
    queried = CliRunner().invoke(cli, ["query", "SELECT customer_id, full_name FROM customers ORDER BY 1",
                                       "--format", "csv"], env=env)
    assert queried.exit_code == 0, queried.output
    assert queried.output.strip().splitlines()[-2:] == ["1,Ann", "2,Bob"]


def test_a_half_export_is_held_by_the_real_jobs_and_released_from_the_shell(
        initialized: Clients, lake: Lake, store: StateStore, tmp_path: Path) -> None:
    """The guard inside the real merge job, driven as an operator would from a shell: exit codes included."""
    from tests.foundation.test_exit_codes import shell, stack_env

    env = stack_env(initialized)
    workflow.deploy(initialized)
    lines = CSV.splitlines()
    rows = [f"{i},c{i}@example.com,N{i},DE,gold,1.00,true,2024-01-02,2024-05-01T10:00:00Z," for i in range(3, 11)]
    full, half = tmp_path / "full.csv", tmp_path / "half.csv"
    full.write_text("\n".join([*lines, *rows]) + "\n")
    half.write_text("\n".join(lines[:2]) + "\n")  # the header and one row of ten: the export died
    pushed = shell(env, "bulk", "push", "customers", "--input", str(full), "--as-of-seq", "10", "--mode", "full")
    assert pushed.returncode == 0, pushed.stderr
    assert shell(env, "batch", "run").returncode == 0
    pushed = shell(env, "bulk", "push", "customers", "--input", str(half), "--as-of-seq", "20", "--mode", "full")
    assert pushed.returncode == 0, pushed.stderr
    extract_id = pushed.stdout.split("extract ", 1)[1].split(":", 1)[0]

    ran = shell(env, "batch", "run")
    assert ran.returncode == 0, ran.stdout + ran.stderr  # the run did its work: holding an extract is no failure
    assert f"held: customers extract {extract_id} (suspicious-extract)" in ran.stdout
    status = shell(env, "status")
    assert f"customers  {extract_id}  suspicious-extract" in status.stdout
    assert "would delete 9 of 10 live rows" in status.stdout

    released = shell(env, "bulk", "release", "customers", extract_id, "--allow-mass-delete")
    assert released.returncode == 0, released.stderr
    assert shell(env, "batch", "run").returncode == 0
    assert extract_id in store.watermark("customers").extracts
    counted = shell(env, "query", "SELECT count(*) AS n FROM customers", "--format", "csv")
    assert counted.stdout.strip().splitlines()[-1] == "1"
