"""Athena's metadata tables ``"<table>$snapshots"`` and ``"<table>$history"``, from pyiceberg's metadata.

pyiceberg's ``Table.inspect`` builds both with Athena's (Trino's) columns and
rows: ``$snapshots`` one row per snapshot the metadata keeps (committed_at,
snapshot_id, parent_id, operation, manifest_list, summary as a map without the
operation), ``$history`` one row per snapshot-log entry (made_current_at,
snapshot_id, parent_id, is_current_ancestor). What is ours: the times become
``timestamp(3) with time zone`` in UTC, as Athena types them (pyiceberg leaves
them without a zone), and a snapshot without a summary has a null operation
(pyiceberg writes the text ``None``).
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.table import Table

UTC_MS = pa.timestamp("ms", tz="UTC")
KINDS = ("snapshots", "history")


def snapshots(table: Table) -> pa.Table:
    built = _zoned(table.inspect.snapshots(), "committed_at")
    index = built.schema.get_field_index("operation")
    operation = pc.if_else(pc.is_null(built["summary"]), pa.scalar(None, pa.string()), built["operation"])
    return built.set_column(index, built.schema.field(index), operation)


def history(table: Table) -> pa.Table:
    return _zoned(table.inspect.history(), "made_current_at")


BUILDERS: dict[str, Callable[[Table], pa.Table]] = {"snapshots": snapshots, "history": history}


def _zoned(built: pa.Table, column: str) -> pa.Table:
    index = built.schema.get_field_index(column)
    field = built.schema.field(index)
    return built.set_column(index, field.with_type(UTC_MS), built[column].cast(UTC_MS))
