"""Bulk extracts: a CSV or Parquet file in, validated Parquet parts plus a manifest in landing/ out.

The input is streamed in record batches (pyarrow's CSV streaming reader or
``ParquetFile.iter_batches``), each checked against the table's schema and cast
to its curated Arrow types, and parts are cut every ``rows_per_part`` rows, so
memory is bounded by a part, not by the file. Parts go first, the manifest last
(``hybrid_ingest.manifest``); if validation fails half-way, the parts already
written are removed, so landing/ never holds a half extract with a manifest.

The extract guard's part at push: an ``as_of_seq`` no signed 64-bit seq can
hold is refused before anything is read, and an extract that holds a primary
key twice is refused once its parts are written, before its manifest (the key
columns of the parts are queried by DuckDB, ``hybrid_ingest.extract_keys``),
naming the key and its rows. A full extract that is meant to delete most of its
table says so with ``allow_mass_delete`` (the merge holds it otherwise).

Values follow ``hybrid_ingest.convert``'s rules, as JSON lines do: a timestamp
without a zone offset is UTC, a UUID is the 8-4-4-4-12 hex form (stored
lower-case), a decimal must fit its precision and scale exactly. A bad value is
reported with the file, its row (counted from 1 after the CSV header) and its
column. In CSV only an unquoted empty field is null: ``NA`` or ``null`` are text.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from hybrid_ingest.convert import (
    LOCAL_TIMESTAMPS,
    TIMESTAMP,
    UUID_RULE,
    UUID_TEXT,
    arrow_schema,
    json_timestamp,
)
from hybrid_ingest.errors import DuplicateKeyError, ValidationError
from hybrid_ingest.extract_keys import first_duplicate
from hybrid_ingest.lake import PARQUET_COMPRESSION, Lake
from hybrid_ingest.layout import landing_dir
from hybrid_ingest.manifest import Manifest, Mode, PartEntry, new_extract_id, seq_range_error, write_manifest
from hybrid_ingest.registry import SchemaVersion
from hybrid_ingest.tables import TableSpec, required_fields

DEFAULT_ROWS_PER_PART = 1_000_000
DEFAULT_BATCH_ROWS = 64 * 1024
CSV_BLOCK_BYTES = 1024 * 1024  # 4 MiB blocks raised peak RSS ~2x on a 370 MB file

_CSV_COLUMN = re.compile(r"CSV column #(\d+)")

Progress = Callable[[int], None]


@dataclass
class Source:
    """An input file, its format, and its size in progress units (rows for Parquet, bytes for CSV)."""

    path: Path
    kind: str
    total: int


def detect_kind(path: Path) -> str:
    with path.open("rb") as f:
        if f.read(4) == b"PAR1":
            return "parquet"
    if path.suffix.lower() in (".parquet", ".pq"):
        return "parquet"
    return "csv"


def check_columns(spec: TableSpec, names: list[str]) -> None:
    """The extract must carry exactly the table's columns (in any order)."""
    missing = [n for n in spec.field_names if n not in names]
    if missing:
        raise ValidationError(f"{spec.table}: extract lacks column(s) {missing}")
    unknown = [n for n in names if n not in spec.field_names]
    if unknown:
        raise ValidationError(f"{spec.table}: extract has column(s) not in the schema: {unknown}")
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValidationError(f"{spec.table}: extract repeats column(s) {duplicated}")


CONVERSION_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError)


def conform(spec: TableSpec, target: pa.Schema, batch: pa.RecordBatch, first_row: int) -> pa.RecordBatch:
    """Cast a batch to the table's curated types and check what casting cannot (nulls, symbols, UUIDs, sizes)."""
    columns = [_conform_column(spec.field(field.name)["type"], field, batch.column(field.name), first_row)
               for field in target]
    out = pa.RecordBatch.from_arrays(columns, schema=target)
    for name in required_fields(spec):
        column = out.column(name)
        if column.null_count:
            raise _cell(first_row + pc.index(pc.is_null(column), True).as_py(), name, "must not be empty")
    return out


def _cell(row: int, column: str, reason: str) -> ValidationError:
    """A bad value's place: ``row`` counts data rows from 0 here and from 1 in the message."""
    return ValidationError(f"row {row + 1}, column {column!r}: {reason}")


def _conform_column(avro_type: Any, field: pa.Field, column: pa.Array, first_row: int) -> pa.Array:
    base = avro_type[1] if isinstance(avro_type, list) and len(avro_type) == 2 else avro_type
    logical = base.get("logicalType") if isinstance(base, dict) else None

    def convert(part: pa.Array) -> pa.Array:
        return _cast(part, field.type, logical)

    try:
        converted = convert(column)
    except CONVERSION_ERRORS:
        index = _first_bad(column, convert)
        try:
            convert(column.slice(index, 1))
        except CONVERSION_ERRORS as exc:
            raise _cell(first_row + index, field.name,
                        f"{column[index].as_py()!r} does not convert to {field.type} ({exc})") from exc
        raise
    bad, why = _invalid(base, logical, converted)
    if bad is not None and pc.any(bad).as_py():
        index = pc.index(bad, True).as_py()
        raise _cell(first_row + index, field.name, f"{converted[index].as_py()!r} {why}")
    return pc.utf8_lower(converted) if logical == "uuid" else converted


def _cast(column: pa.Array, target: pa.DataType, logical: str | None) -> pa.Array:
    if pa.types.is_timestamp(target) and pa.types.is_string(column.type):
        return _timestamps(column, logical)
    if pa.types.is_decimal(target) and pa.types.is_floating(column.type):
        exact = column.cast(target, safe=True)
        if not pc.all(pc.equal(exact.cast(column.type), column)).as_py():  # Arrow rounds a float silently
            raise pa.ArrowInvalid(f"a {column.type} value does not fit {target} exactly")
        return exact
    return column if column.type == target else column.cast(target, safe=True)


def _timestamps(column: pa.Array, logical: str | None) -> pa.Array:
    """ISO-8601 text as UTC times: with its zone offset converted, without one taken as UTC (``convert``'s rule).

    Arrow parses a column with offsets or a column without them in one cast each;
    a column mixing both (rare) goes value by value.
    """
    naive = pa.timestamp("us")
    if logical in LOCAL_TIMESTAMPS:  # wall-clock times: an offset is refused, not dropped
        return column.cast(naive).cast(TIMESTAMP)
    for via in (TIMESTAMP, naive):  # all with an offset, or all without one
        try:
            return column.cast(via).cast(TIMESTAMP)
        except pa.ArrowInvalid:
            pass
    base = {"type": "long", "logicalType": logical}
    values = []
    for value in column.to_pylist():
        try:
            values.append(None if value is None else json_timestamp(base, value, "value"))
        except ValidationError as exc:
            raise pa.ArrowInvalid(str(exc)) from exc
    return pa.array(values, TIMESTAMP)


def _first_bad(column: pa.Array, convert: Callable[[pa.Array], pa.Array]) -> int:
    """The first value ``convert`` refuses, by halving: log2(n) conversions of ever smaller slices."""
    low, high = 0, len(column)
    while high - low > 1:
        middle = (low + high) // 2
        try:
            convert(column.slice(low, middle - low))
        except CONVERSION_ERRORS:
            high = middle
            continue
        low = middle
    return low


def _invalid(base: Any, logical: str | None, column: pa.Array) -> tuple[pa.Array | None, str]:
    """A mask of the values a cast lets through but the table refuses, and why."""
    kind = base.get("type") if isinstance(base, dict) else base
    if kind == "enum":
        mask = pc.invert(pc.is_in(column, value_set=pa.array(base["symbols"])))
        why = f"is not one of {base['symbols']}"
    elif logical == "uuid":
        mask = pc.invert(pc.match_substring_regex(column, f"^{UUID_TEXT.pattern}$"))
        why = f"is not {UUID_RULE}"
    elif kind == "fixed":
        mask = pc.not_equal(pc.binary_length(column), base["size"])
        why = f"is not exactly {base['size']} bytes (fixed {base.get('name')!r})"
    else:
        return None, ""
    return pc.and_(mask, pc.is_valid(column)), why


def open_source(path: Path) -> Source:
    kind = detect_kind(path)
    if kind == "csv":
        return Source(path, kind, path.stat().st_size)
    try:
        return Source(path, kind, pq.ParquetFile(path).metadata.num_rows)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValidationError(f"{path}: not a readable Parquet file ({exc})") from exc


def iter_batches(spec: TableSpec, source: Source, progress: Progress | None = None,
                 batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """Validated batches in the table's curated schema; ``progress`` gets rows (Parquet) or bytes (CSV)."""
    target = arrow_schema(spec)
    seen = 0
    if source.kind == "parquet":
        parquet = pq.ParquetFile(source.path)
        check_columns(spec, parquet.schema_arrow.names)
        batches = parquet.iter_batches(batch_size=batch_rows, columns=spec.field_names)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except (pa.ArrowInvalid, OSError) as exc:  # a damaged file whose footer still reads
                raise ValidationError(f"not a readable Parquet file ({exc})") from exc
            yield conform(spec, target, batch, seen)
            seen += batch.num_rows
            if progress:
                progress(batch.num_rows)
        return
    # timestamps are read as text: Arrow's CSV reader takes either all offsets or none (see ``_timestamps``)
    convert = _csv_options({f.name: pa.string() if pa.types.is_timestamp(f.type) else f.type for f in target})
    # a byte that is not UTF-8 makes a header name no column matches; in the rows Arrow's reader refuses it
    with source.path.open(newline="", encoding="utf-8", errors="replace") as text:
        header = next(csv.reader(text), [])
    check_columns(spec, header)
    with source.path.open("rb") as raw:
        try:
            reader = pacsv.open_csv(raw, read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
                                    convert_options=convert)
        except CONVERSION_ERRORS as exc:
            raise _csv_error(spec, target, source.path, header, exc) from exc
        position = 0
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except CONVERSION_ERRORS as exc:
                raise _csv_error(spec, target, source.path, header, exc) from exc
            yield conform(spec, target, batch, seen)
            seen += batch.num_rows
            if progress:
                now = raw.tell()
                progress(max(0, now - position))
                position = now
        if progress:
            progress(max(0, source.total - position))


def _csv_options(column_types: dict[str, pa.DataType], **more: Any) -> pacsv.ConvertOptions:
    """Only an unquoted empty field is null (Arrow's default also nulls NA, null, NaN...); a quoted "" is text."""
    return pacsv.ConvertOptions(column_types=column_types, null_values=[""], strings_can_be_null=True,
                                quoted_strings_can_be_null=False, **more)


def _csv_error(spec: TableSpec, target: pa.Schema, path: Path, header: list[str], exc: Exception
               ) -> ValidationError:
    """Arrow's CSV reader names the column of a bad value but not its row: find the row in a second pass."""
    match = _CSV_COLUMN.search(str(exc))
    if match and int(match.group(1)) < len(header) and header[int(match.group(1))] in target.names:
        name = header[int(match.group(1))]
        found = _locate_in_csv(spec, target.field(name), path)
        if found is not None:
            return found
    return ValidationError(_name_csv_column(str(exc), header))


def _locate_in_csv(spec: TableSpec, field: pa.Field, path: Path) -> ValidationError | None:
    """The first value of one column that does not convert, read as text and converted as a batch is."""
    options = _csv_options({field.name: pa.string()}, include_columns=[field.name])
    seen = 0
    with path.open("rb") as raw:
        try:
            for batch in pacsv.open_csv(raw, read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
                                        convert_options=options):
                try:
                    _conform_column(spec.field(field.name)["type"], field, batch.column(field.name), seen)
                except ValidationError as exc:
                    return exc
                seen += batch.num_rows
        except CONVERSION_ERRORS:  # not even readable as text (invalid UTF-8): no row to name
            return None
    return None


def _name_csv_column(message: str, names: list[str]) -> str:
    """pyarrow numbers CSV columns from 0; users know them by name."""
    def name(match: re.Match[str]) -> str:
        index = int(match.group(1))
        return f"column {names[index]!r}" if index < len(names) else match.group(0)
    return _CSV_COLUMN.sub(name, message)


def _part_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression=PARQUET_COMPRESSION)
    return buf.getvalue()


def push_extract(lake: Lake, version: SchemaVersion, path: Path, as_of_seq: int, mode: Mode, *,
                 progress: Progress | None = None, rows_per_part: int = DEFAULT_ROWS_PER_PART,
                 batch_rows: int = DEFAULT_BATCH_ROWS, now: dt.datetime | None = None,
                 allow_mass_delete: bool = False) -> Manifest:
    """Land one extract file (parts, then manifest) and return its manifest; a refusal names the file."""
    try:
        return land_batches(lake, version, iter_batches(version.spec, open_source(path), progress, batch_rows),
                            as_of_seq, mode, rows_per_part=rows_per_part, now=now,
                            allow_mass_delete=allow_mass_delete)
    except ValidationError as exc:
        raise ValidationError(f"{path}: {exc}") from exc


def land_batches(lake: Lake, version: SchemaVersion, batches: Iterable[pa.RecordBatch], as_of_seq: int, mode: Mode,
                 *, rows_per_part: int = DEFAULT_ROWS_PER_PART, now: dt.datetime | None = None,
                 allow_mass_delete: bool = False) -> Manifest:
    """Land batches already in the table's curated schema (``conform``) as one extract: parts, then manifest.

    The batches are consumed inside, so a failure while producing them (a bad
    row, a lost database connection) removes the parts written so far, as does
    a primary key found twice among them.
    """
    if mode not in ("full", "incremental"):
        raise ValidationError(f"mode must be 'full' or 'incremental', got {mode!r}")
    problem = seq_range_error(as_of_seq)
    if problem:
        raise ValidationError(problem)
    spec = version.spec
    target = arrow_schema(spec)
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    extract_id = new_extract_id(as_of_seq, now)
    base = landing_dir(spec.table, extract_id)
    parts: list[PartEntry] = []
    pending: list[pa.RecordBatch] = []
    pending_rows = 0

    def cut() -> None:
        nonlocal pending, pending_rows
        data = _part_bytes(pa.Table.from_batches(pending, schema=target))
        name = f"part-{len(parts):05d}.parquet"
        lake.write_bytes(f"{base}/{name}", data)
        parts.append(PartEntry(name, pending_rows, len(data), hashlib.sha256(data).hexdigest()))
        pending, pending_rows = [], 0

    try:
        for batch in batches:
            while batch.num_rows:
                take = min(batch.num_rows, rows_per_part - pending_rows)
                pending.append(batch.slice(0, take))
                pending_rows += take
                batch = batch.slice(take)
                if pending_rows >= rows_per_part:
                    cut()
        if pending_rows:
            cut()
        duplicate = first_duplicate(lake, [f"{base}/{p.path}" for p in parts], spec.primary_key, target)
        if duplicate is not None:
            raise DuplicateKeyError(duplicate.message())
    except BaseException:
        lake.delete_dir(base)
        raise
    manifest = Manifest(
        table=spec.table, extract_id=extract_id, mode=mode, as_of_seq=as_of_seq,
        rows=sum(p.rows for p in parts), schema_version=version.version, fingerprint=version.fingerprint.hex(),
        parts=tuple(parts), created_at=now.isoformat().replace("+00:00", "Z"), allow_mass_delete=allow_mass_delete,
    )
    write_manifest(lake, manifest)
    return manifest
