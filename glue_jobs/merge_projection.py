"""The merge's inputs as SQL: every input file group projected onto the newest schema, or an empty typed relation.

``kernel_inputs`` registers the relations these select under the names the merge
statements read (``raw_in``, ``ext_in``, ``cur_keys``, ``cur_all``, ``tomb``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa

from glue_jobs.merge_dialect import Dialect
from hybrid_ingest.convert import arrow_schema, default_value
from hybrid_ingest.tables import TableSpec

STREAM, INCREMENTAL, FULL = 0, 1, 2  # a change's source (``_src``): the tie rule ranks them in this order
RAW_META = ("_op", "_seq", "_op_ts", "_shard", "_kpos")

RAW_META_TYPES: dict[str, pa.DataType] = {
    "_op": pa.string(), "_seq": pa.int64(), "_op_ts": pa.timestamp("us", tz="UTC"),
    "_shard": pa.string(), "_kpos": pa.string(),
}
EXT_META_TYPES: dict[str, pa.DataType] = {"_seq": pa.int64(), "_src": pa.int32(), "_xrank": pa.int32()}
TOMB_META_TYPES: dict[str, pa.DataType] = {"_seq": pa.int64(), "deleted_at": pa.timestamp("us", tz="UTC")}


def projection(spec: TableSpec, dialect: Dialect, file_schema: pa.Schema, source: str,
               meta: Sequence[str], extra: Mapping[str, str] | None = None) -> str:
    """Select the newest schema's columns from files of any older schema version.

    A column the files lack reads as the field's Avro default (or null), a column
    whose type was promoted (int -> long, float -> double) is cast; columns the
    newest schema dropped are not selected. ``meta`` columns are taken as they are.
    """
    target = arrow_schema(spec)
    present = {f.name: f.type for f in file_schema}
    exprs: list[str] = []
    for field in target:
        name = dialect.ident(field.name)
        if field.name in present:
            if present[field.name] == field.type or _same_time_type(present[field.name], field.type):
                exprs.append(name)
            else:
                exprs.append(f"CAST({name} AS {dialect.type(field.type)}) AS {name}")
        else:
            _, default = default_value(spec.field(field.name))
            exprs.append(f"{dialect.literal(default, field.type)} AS {name}")
    exprs.extend(meta)
    exprs.extend(f"{expr} AS {name}" for name, expr in (extra or {}).items())
    return f"SELECT {', '.join(exprs)} FROM {source}"


def _same_time_type(a: pa.DataType, b: pa.DataType) -> bool:
    return bool(pa.types.is_timestamp(a) and pa.types.is_timestamp(b))


def empty_relation(spec: TableSpec, dialect: Dialect, meta: Mapping[str, pa.DataType],
                   only: Sequence[str] | None = None) -> str:
    """A typed relation with no rows, for inputs that have no files this run."""
    cols = [f"{dialect.literal(None, f.type)} AS {dialect.ident(f.name)}" for f in arrow_schema(spec)
            if only is None or f.name in only]
    cols += [f"{dialect.literal(None, t)} AS {name}" for name, t in meta.items()]
    return f"SELECT {', '.join(cols)} WHERE 1 = 0"
