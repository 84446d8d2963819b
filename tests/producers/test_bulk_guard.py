"""The extract guard at push (issue #17 item 5): what ``bulk push`` and ``land_batches`` refuse to land.

An ``as_of_seq`` that no signed 64-bit seq can hold, and two rows of one primary
key in one extract, are refused before any manifest is written, so nothing
lands. The command-line checks run the installed console script, as a shell does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from hybrid_ingest.aws import Clients
from hybrid_ingest.convert import arrow_schema
from hybrid_ingest.errors import ValidationError
from hybrid_ingest.lake import Lake
from hybrid_ingest.manifest import list_extracts, read_manifest
from hybrid_ingest.registry import Registry
from producers.bulk import land_batches, push_extract
from tests.foundation.test_exit_codes import assert_fails, shell, stack_env
from tests.producers.test_bulk import CUSTOMER_HEADER, customers_csv

SEQ_MAX = 2**63 - 1


def with_duplicates(path: Path, rows: int, copies: dict[int, int]) -> Path:
    """``customers_csv`` whose data row ``at`` (from 1) repeats the key of data row ``of``: ``{at: of}``."""
    customers_csv(path, rows)
    lines = path.read_text().splitlines()
    for at, of in copies.items():
        cells = lines[at].split(",")
        cells[0] = str(of - 1)  # customers_csv numbers its keys from 0
        lines[at] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("as_of_seq", [SEQ_MAX + 1, -1, 2**64])
def test_as_of_seq_outside_a_long_is_refused(registry: Registry, lake: Lake, tmp_path: Path,
                                             as_of_seq: int) -> None:
    source = customers_csv(tmp_path / "c.csv", 5)
    with pytest.raises(ValidationError, match=rf"as_of_seq must be between 0 and {SEQ_MAX}, got {as_of_seq}"):
        push_extract(lake, registry.latest("customers"), source, as_of_seq=as_of_seq, mode="full")
    assert lake.files("landing/customers") == []


def test_the_largest_long_lands(registry: Registry, lake: Lake, tmp_path: Path) -> None:
    manifest = push_extract(lake, registry.latest("customers"), customers_csv(tmp_path / "c.csv", 3),
                            as_of_seq=SEQ_MAX, mode="incremental")
    assert read_manifest(lake, "customers", manifest.extract_id).as_of_seq == SEQ_MAX


def test_duplicate_keys_are_refused_naming_the_key_and_rows(registry: Registry, lake: Lake, tmp_path: Path) -> None:
    """Rows 3 and 9 share a key across parts (3 rows a part); rows 12 and 14 share another."""
    source = with_duplicates(tmp_path / "c.csv", 20, {9: 3, 14: 12})
    with pytest.raises(ValidationError) as refused:
        push_extract(lake, registry.latest("customers"), source, as_of_seq=1, mode="full", rows_per_part=3,
                     batch_rows=4)
    message = str(refused.value)
    assert message.startswith(f"{source}: ")
    assert "duplicate primary key customer_id=2 at rows 3 and 9" in message
    assert "2 keys repeated" in message
    assert lake.files("landing/customers") == []
    assert list_extracts(lake, "customers") == []


def test_duplicate_composite_keys_are_refused(registry: Registry, lake: Lake) -> None:
    version = registry.latest("order_items")
    target = arrow_schema(version.spec)
    rows = [{"order_id": o, "line_no": n, "sku": "s", "quantity": 1, "unit_price": "2.50", "gift_wrap": False,
             "barcode": None} for o, n in [(1, 1), (1, 2), (2, 1), (1, 2)]]
    from hybrid_ingest.convert import row_from_json

    batch = pa.RecordBatch.from_pylist([row_from_json(version.spec, r) for r in rows], schema=target)
    with pytest.raises(ValidationError, match=r"duplicate primary key order_id=1, line_no=2 at rows 2 and 4"):
        land_batches(lake, version, [batch], 5, "incremental")
    assert lake.files("landing/order_items") == []


def test_allow_mass_delete_is_written_into_the_manifest(registry: Registry, lake: Lake, tmp_path: Path) -> None:
    source = customers_csv(tmp_path / "c.csv", 3)
    manifest = push_extract(lake, registry.latest("customers"), source, as_of_seq=4, mode="full",
                            allow_mass_delete=True)
    assert read_manifest(lake, "customers", manifest.extract_id).allow_mass_delete is True
    plain = push_extract(lake, registry.latest("customers"), source, as_of_seq=5, mode="full")
    assert read_manifest(lake, "customers", plain.extract_id).allow_mass_delete is False


# -- the installed console script ------------------------------------------------------------------


@pytest.mark.parametrize("as_of_seq", [str(SEQ_MAX + 1), "-1"])
def test_push_out_of_range_exits_1(initialized: Clients, lake: Lake, tmp_path: Path, as_of_seq: str) -> None:
    source = customers_csv(tmp_path / "c.csv", 3)
    proc = shell(stack_env(initialized), "bulk", "push", "customers", "--input", str(source),
                 "--as-of-seq", as_of_seq, "--mode", "full")
    assert_fails(proc, 1, "as_of_seq", as_of_seq)
    assert lake.files("landing/customers") == []


def test_push_duplicate_keys_exits_1(initialized: Clients, lake: Lake, tmp_path: Path) -> None:
    source = with_duplicates(tmp_path / "c.csv", 6, {5: 2})
    proc = shell(stack_env(initialized), "bulk", "push", "customers", "--input", str(source),
                 "--as-of-seq", "7", "--mode", "incremental")
    assert_fails(proc, 1, str(source), "customer_id=1", "rows 2 and 5")
    assert lake.files("landing/customers") == []


def test_push_allow_mass_delete_and_release_exit_codes(initialized: Clients, lake: Lake, tmp_path: Path) -> None:
    source = tmp_path / "c.csv"
    source.write_text(CUSTOMER_HEADER + "\n")
    env = stack_env(initialized)
    proc = shell(env, "bulk", "push", "customers", "--input", str(source), "--as-of-seq", "9", "--mode", "full",
                 "--allow-mass-delete")
    assert proc.returncode == 0, proc.stderr
    (extract_id,) = list_extracts(lake, "customers")
    doc = json.loads(Path(lake.path(f"landing/customers/{extract_id}/_manifest.json")).read_text())
    assert doc["allow_mass_delete"] is True
    assert "allow_mass_delete" in proc.stdout
    assert_fails(shell(env, "bulk", "release", "customers", extract_id), 1, "customers", extract_id, "not held")
    assert_fails(shell(env, "bulk", "release", "customers", "no-such-extract"), 1, "no-such-extract")


def test_the_guard_on_an_s3_lake(initialized: Clients, tmp_path: Path) -> None:
    """On s3:// (moto's S3) DuckDB reads the parts through the lake's Arrow filesystem, at push and at merge."""
    from glue_jobs.merge import MergeContext, run_merge
    from hybrid_ingest.quarantine import held
    from hybrid_ingest.state import StateStore

    settings = initialized.settings
    initialized.s3.create_bucket(Bucket="lake", CreateBucketConfiguration={
        "LocationConstraint": settings.region})  # type: ignore[typeddict-item]
    lake = Lake.from_uri("s3://lake/root", settings.endpoint_url, settings.region)
    names = settings.names
    registry = Registry(initialized.dynamodb, names.registry_table)
    version = registry.latest("customers")
    with pytest.raises(ValidationError, match=r"customer_id=1 at rows 2 and 5"):
        push_extract(lake, version, with_duplicates(tmp_path / "dup.csv", 6, {5: 2}), as_of_seq=3, mode="full",
                     rows_per_part=2)
    assert lake.files("landing/customers") == []
    push_extract(lake, version, customers_csv(tmp_path / "all.csv", 10), as_of_seq=5, mode="full")
    ctx = MergeContext(initialized, lake, registry, StateStore(initialized.dynamodb, names.state_table,
                                                               names.runs_table))
    run_merge(ctx, "customers", engine="duckdb")
    shrunk = push_extract(lake, version, customers_csv(tmp_path / "few.csv", 3), as_of_seq=6, mode="full")
    result = run_merge(ctx, "customers", engine="duckdb")
    assert result.stats["extracts_held"] == [{"extract_id": shrunk.extract_id, "reason": "suspicious-extract"}]
    [record] = held(lake, "customers")
    assert (record.figures["rows_live"], record.figures["rows_to_delete"]) == (10, 7)
