"""Table specs and the change envelope derived from a table's row schema.

A table is ``<table>.avsc`` (its Avro row schema) plus ``<table>.table.json``
(primary key, partitioning, compatibility mode). The envelope every producer
writes is generated from the row schema rather than hand-written, so a schema
evolution of the row evolves the envelope with it.

In the envelope's ``row`` the non-key fields are made nullable: a delete carries
only its key, and whether an insert/update carries every required field is a
validation step (``validate_event``), not an encoding accident.
"""

from __future__ import annotations

import copy
import json
import re
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import avro.errors
import avro.schema
from fastavro.schema import SchemaParseException as FastavroSchemaError
from fastavro.schema import UnknownType, parse_schema

from hybrid_ingest.errors import SpecError, ValidationError

Granularity = Literal["identity", "day", "month", "year"]
GRANULARITIES: tuple[str, ...] = ("identity", "day", "month", "year")
COMPATIBILITY_MODES: tuple[str, ...] = (
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
)
OPS: tuple[str, ...] = ("c", "u", "d", "r")
ENVELOPE_NAMESPACE = "hybrid_ingest.envelope"
TS_TYPE: list[Any] = ["null", {"type": "long", "logicalType": "timestamp-micros"}]  # the envelope's ``ts``
SEQ_MAX = 2**63 - 1  # ``seq`` is an Avro long
TEMPORAL_LOGICAL_TYPES = ("date", "timestamp-millis", "timestamp-micros", "local-timestamp-millis",
                          "local-timestamp-micros")

AvroSchema = dict[str, Any]

# DESIGN.md "Names": a table name is a safe path segment, catalog and SQL name as it is
TABLE_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
TABLE_NAME_RULE = "[a-z][a-z0-9_]{0,62} (a lower-case letter, then up to 62 lower-case letters, digits or '_')"
AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # the Avro specification's name rule


@dataclass(frozen=True)
class Partitioning:
    column: str
    granularity: Granularity = "identity"

    @property
    def key(self) -> str:
        """The partition column's name in the lake and catalog (never equal to a data column)."""
        return f"{self.column}_{self.granularity}"


@dataclass(frozen=True)
class TableSpec:
    """One table: its row schema and how it is keyed, partitioned and evolved."""

    table: str
    primary_key: tuple[str, ...]
    schema: AvroSchema
    partition: Partitioning | None = None
    compatibility: str = "BACKWARD"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_spec(self)

    @property
    def field_names(self) -> list[str]:
        return [f["name"] for f in self.schema["fields"]]

    @cached_property
    def field_name_set(self) -> frozenset[str]:
        """Computed once per spec: ``validate_event`` runs per event on the producer's hot path."""
        return frozenset(self.field_names)

    @cached_property
    def required_names(self) -> tuple[str, ...]:
        """Non-nullable fields, computed once per spec (see ``field_name_set``)."""
        return tuple(f["name"] for f in self.schema["fields"] if not _is_nullable(f["type"]))

    def field(self, name: str) -> dict[str, Any]:
        for f in self.schema["fields"]:
            if f["name"] == name:
                return f  # type: ignore[no-any-return]
        raise SpecError(f"table {self.table!r} has no field {name!r}")

    def spec_json(self) -> dict[str, Any]:
        """The ``.table.json`` document (without the schema)."""
        part = None
        if self.partition is not None:
            part = {"column": self.partition.column, "granularity": self.partition.granularity}
        return {"table": self.table, "primary_key": list(self.primary_key), "partition": part,
                "compatibility": self.compatibility, **self.extra}

    def with_schema(self, schema: AvroSchema) -> TableSpec:
        return TableSpec(self.table, self.primary_key, schema, self.partition, self.compatibility, self.extra)


def _is_nullable(avro_type: Any) -> bool:
    return isinstance(avro_type, list) and "null" in avro_type


def _logical_type(avro_type: Any) -> str | None:
    if isinstance(avro_type, list):
        non_null = [t for t in avro_type if t != "null"]
        return _logical_type(non_null[0]) if len(non_null) == 1 else None
    if isinstance(avro_type, dict):
        lt = avro_type.get("logicalType")
        return str(lt) if lt else None
    return None


def check_spec(spec: TableSpec) -> None:
    """Refuse specs that could not be merged correctly, with the reason."""
    if not isinstance(spec.table, str) or not TABLE_NAME.fullmatch(spec.table):
        raise SpecError(f"table name {spec.table!r} is refused: a table name must match {TABLE_NAME_RULE}")
    schema = spec.schema
    if not isinstance(schema, dict) or schema.get("type") != "record" or not isinstance(schema.get("fields"), list):
        raise SpecError(f"{spec.table}: the .avsc must be an Avro record schema")
    if schema.get("name") != spec.table:
        raise SpecError(f"{spec.table}: the record must be named like the table, got {schema.get('name')!r}")
    names = _field_names(spec.table, schema["fields"])
    _check_avro(spec.table, schema)
    reserved = [n for n in names if n.startswith("_")]
    if reserved:
        raise SpecError(f"{spec.table}: field names starting with '_' are reserved for lineage: {reserved}")
    if not spec.primary_key:
        raise SpecError(f"{spec.table}: primary_key must name at least one field")
    for key in spec.primary_key:
        if key not in names:
            raise SpecError(f"{spec.table}: primary key field {key!r} is not in the schema")
        if _is_nullable(spec.field(key)["type"]):
            raise SpecError(f"{spec.table}: primary key field {key!r} must not be nullable")
    if spec.partition is not None:
        p = spec.partition
        if p.column not in names:
            raise SpecError(f"{spec.table}: partition column {p.column!r} is not in the schema")
        if p.granularity not in GRANULARITIES:
            raise SpecError(f"{spec.table}: granularity must be one of {GRANULARITIES}, got {p.granularity!r}")
        if p.granularity != "identity" and _logical_type(spec.field(p.column)["type"]) not in TEMPORAL_LOGICAL_TYPES:
            raise SpecError(
                f"{spec.table}: granularity {p.granularity!r} needs a date or timestamp column; "
                f"{p.column!r} is not one"
            )
        if p.key in names:
            raise SpecError(f"{spec.table}: partition key name {p.key!r} collides with a field")
    if spec.compatibility not in COMPATIBILITY_MODES:
        raise SpecError(f"{spec.table}: compatibility must be one of {COMPATIBILITY_MODES}")


def _field_names(table: str, fields: list[Any]) -> list[str]:
    """Every field's name: a valid Avro name, unique ignoring case (SQL engines and Athena fold case)."""
    names: list[str] = []
    seen: dict[str, str] = {}
    for number, f in enumerate(fields, start=1):
        name = f.get("name") if isinstance(f, dict) else None
        if not isinstance(name, str) or "type" not in f:
            raise SpecError(f"{table}: field #{number} needs a \"name\" and a \"type\"")
        if not AVRO_NAME.fullmatch(name):
            raise SpecError(f"{table}: field name {name!r} is not a valid Avro name ([A-Za-z_][A-Za-z0-9_]*)")
        other = seen.setdefault(name.lower(), name)
        if other == name and name in names:
            raise SpecError(f"{table}: field {name!r} appears twice")
        if other != name:
            raise SpecError(f"{table}: fields {other!r} and {name!r} differ only in case; field names must be "
                            "unique ignoring case")
        names.append(name)
    return names


def _check_avro(table: str, schema: AvroSchema) -> None:
    """The schema parses under both Avro implementations the service uses (types, defaults, names, symbols)."""
    try:
        parse_schema(schema, _write_hint=False)
        with warnings.catch_warnings():  # it warns about logical types it does not know (local-timestamp-*)
            warnings.simplefilter("ignore", avro.errors.IgnoredLogicalType)
            avro.schema.parse(json.dumps(schema))
    except (FastavroSchemaError, avro.errors.AvroException, ValueError, KeyError, TypeError, AttributeError) as exc:
        detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        if isinstance(exc, UnknownType):
            detail = f"unknown type {detail!r}"
        raise SpecError(f"{table}: not a valid Avro schema: {detail}") from exc


def spec_from_documents(spec_doc: dict[str, Any], schema: AvroSchema) -> TableSpec:
    """Build a spec from the parsed ``.table.json`` and ``.avsc`` documents."""
    try:
        part_doc = spec_doc.get("partition")
        partition = None
        if part_doc:
            partition = Partitioning(part_doc["column"], part_doc.get("granularity", "identity"))
        known = {"table", "primary_key", "partition", "compatibility"}
        table, primary_key = spec_doc["table"], tuple(spec_doc["primary_key"])
        compatibility = spec_doc.get("compatibility", "BACKWARD")
        extra = {k: v for k, v in spec_doc.items() if k not in known}
    except (KeyError, TypeError, AttributeError) as exc:
        raise SpecError(f"malformed .table.json {spec_doc!r}: missing or wrong {exc}") from exc
    return TableSpec(table, primary_key, schema, partition, compatibility, extra)


def load_spec(path: Path) -> TableSpec:
    """Load a table from either of its two files (``x.avsc`` or ``x.table.json``)."""
    name = path.name.removesuffix(".table.json").removesuffix(".avsc")
    spec_path = path.with_name(f"{name}.table.json")
    schema_path = path.with_name(f"{name}.avsc")
    for p in (spec_path, schema_path):
        if not p.exists():
            raise SpecError(f"table {name!r}: {p} is missing (a table is <table>.avsc + <table>.table.json)")
    docs = []
    for p in (spec_path, schema_path):
        try:
            docs.append(json.loads(p.read_text()))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SpecError(f"{p}: invalid JSON: {exc}") from exc
    try:
        spec = spec_from_documents(*docs)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from exc
    if spec.table != name:
        raise SpecError(f"{spec_path}: declares table {spec.table!r} but the files are named {name!r}")
    return spec


def load_specs(paths: list[Path]) -> list[TableSpec]:
    """Load tables from files and folders (a folder contributes every table whose file is in it).

    A folder's ``.avsc`` without its ``.table.json`` (or the reverse) is refused by
    ``load_spec``, naming the missing file, rather than skipped: a table that is
    silently not registered shows up much later as a producer's refusal.
    """
    names: dict[str, Path] = {}
    for path in paths:
        if path.is_dir():
            for p in sorted([*path.glob("*.table.json"), *path.glob("*.avsc")]):
                names.setdefault(p.name.removesuffix(".table.json").removesuffix(".avsc"), p)
        elif path.exists():
            names.setdefault(path.name.removesuffix(".table.json").removesuffix(".avsc"), path)
        else:
            raise SpecError(f"{path} does not exist")
    return [load_spec(p) for p in names.values()]


def envelope_schema(spec: TableSpec) -> AvroSchema:
    """The change-event schema for a table: op, seq, ts and the (key-complete) row."""
    row = copy.deepcopy(spec.schema)
    for f in row["fields"]:
        if f["name"] in spec.primary_key or _is_nullable(f["type"]):
            continue
        f["type"] = ["null", f["type"]]
        f["default"] = None
    return {
        "type": "record",
        "name": f"{spec.table}_change",
        "namespace": ENVELOPE_NAMESPACE,
        "fields": [
            {"name": "op", "type": {"type": "enum", "name": "op", "symbols": list(OPS)}},
            {"name": "seq", "type": "long"},
            {"name": "ts", "type": copy.deepcopy(TS_TYPE), "default": None},
            {"name": "row", "type": row},
        ],
    }


def required_fields(spec: TableSpec) -> list[str]:
    """Fields an insert, update or snapshot row must carry (non-nullable in the row schema)."""
    return list(spec.required_names)


def validate_event(spec: TableSpec, event: dict[str, Any]) -> None:
    """Check what Avro encoding alone cannot: op, seq and the fields each op needs."""
    op = event.get("op")
    if op not in OPS:
        raise ValidationError(f"{spec.table}: op must be one of {OPS}, got {op!r}")
    seq = event.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= SEQ_MAX:
        raise ValidationError(f"{spec.table}: seq must be an integer from 0 to 2^63-1, got {seq!r}")
    row = event.get("row")
    if not isinstance(row, dict):
        raise ValidationError(f"{spec.table}: row must be an object, got {type(row).__name__}")
    needed = spec.primary_key if op == "d" else spec.required_names
    missing = [name for name in needed if row.get(name) is None]
    if missing:
        raise ValidationError(f"{spec.table}: op {op!r} needs non-null {missing}")
    unknown = row.keys() - spec.field_name_set
    if unknown:
        raise ValidationError(f"{spec.table}: row has fields not in the schema: {sorted(unknown)}")


def primary_key_of(spec: TableSpec, row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[k] for k in spec.primary_key)
