"""Relation messages to relation plans: the registered schema, evolved when the source table grew.

The I/O half of ``producers.postgres.relations``: it asks the registry for the
table's latest version and, when the stream's columns differ from it, reads the
table's current catalog entry: new columns must be nullable without a default
before the evolution is registered (the registry then checks the table's
compatibility mode, and refuses with exit 1 what breaks it); registered columns
the stream lacks must still exist (the stream is older than the evolution, as
after a restart), or they were dropped, which stops the source.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from hybrid_ingest.errors import SourceError
from hybrid_ingest.registry import Registry
from producers.postgres import pgoutput as pg
from producers.postgres.catalog import TableRef, read_table
from producers.postgres.relations import (
    RelationPlan,
    added_columns,
    evolved_schema,
    plan_for,
    relation_columns,
)

log = logging.getLogger(__name__)


class Resolver:
    """Callable ``(relation, type names) -> RelationPlan`` for the source's tables."""

    def __init__(self, tables: list[TableRef], registry: Registry, cursor: Any) -> None:
        self.refs = {(t.schema, t.name): t for t in tables}
        self.registry = registry
        self.cursor = cursor
        self.evolutions = 0

    def __call__(self, relation: pg.Relation, type_names: Mapping[int, str]) -> RelationPlan:
        ref = self.refs.get((relation.namespace, relation.name))
        if ref is None:
            raise SourceError(f"the change stream carries table {relation.namespace}.{relation.name}, which this "
                              "source does not capture (was the publication altered?)")
        columns = relation_columns(ref, relation, type_names)
        version = self.registry.latest(ref.table)
        added = added_columns(ref, version, columns)
        missing = [f["name"] for f in version.spec.schema["fields"][len(columns):]]
        if missing:
            now = read_table(self.cursor, ref)
            gone = [name for name in missing if now.column(name) is None]
            if gone:
                raise SourceError(f"table {ref.qualified}: incompatible schema change: column(s) {gone} were "
                                  "dropped; stopping")
        if added:
            schema = evolved_schema(version, added, read_table(self.cursor, ref))
            version = self.registry.register(version.spec.with_schema(schema)).version
            self.evolutions += 1
            log.warning("table %s gained column(s) %s: registered %s v%d", ref.qualified,
                        [c.name for c in added], ref.table, version.version)
        return plan_for(ref, version, columns)
