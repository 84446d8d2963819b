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
