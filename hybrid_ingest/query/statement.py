"""The one read statement ``query`` accepts, checked before anything runs, and what it reads.

``parse`` reads the text as Trino (Athena's dialect) with sqlglot and refuses,
with one line naming what and where, anything but exactly one read statement:
a SELECT, WITH, VALUES or a set operation of them. Inside it, every relation
read by name must be a plain (possibly qualified) name: a table function
(``read_csv_auto(...)``, ``TABLE(...)``, ``query(...)``) or a string where a
name goes (DuckDB reads ``FROM '/etc/passwd'`` as a file; no curated table has
such a name) is refused, and so is
any statement kind nested anywhere (``SELECT ... INTO``, DML in a WITH). Which
names exist is the catalog's business (``resolve``); this module only says what
the statement names: a ``Reference`` per relation, with its qualifier and its
``FOR VERSION AS OF`` / ``FOR TIMESTAMP AS OF`` clause. Names defined by the
statement's own WITH are not references.

The check is an allow-list of shapes, not a deny-list of functions: whatever a
statement can do in DuckDB beyond reading the views ``query`` defines needs a
table function, a path in a table's place or a statement other than a query,
and those are refused here. The engine's own lock-down (``local.lock_down``)
is the second wall behind it.

``ReadStatement.to_duckdb`` writes the statement for DuckDB with each reference
replaced by the name of the view that holds it.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import sqlglot
import sqlglot.errors
from sqlglot import exp
from sqlglot.optimizer.scope import traverse_scope

from hybrid_ingest import sqltext
from hybrid_ingest.errors import QueryError
from hybrid_ingest.logs import quieted

ATHENA_CATALOG = "awsdatacatalog"  # Athena's name for the Glue Data Catalog, accepted as a qualifier
_READS = "query reads only the curated tables, their $snapshots and $history tables and their _live views"
_REF = "hybrid_ingest_ref"  # key in a Table node's meta: the index of its Reference
# the shape of every relation name the catalog can hold (table names are [a-z][a-z0-9_]{0,62})
_RELATION_NAME = re.compile(r"[a-z][a-z0-9_]*(\$[a-z_]+)?")

# statement kinds that may not appear anywhere inside a read (sqlglot's classes)
_NOT_READS: tuple[type[exp.Expr], ...] = (
    exp.DDL, exp.DML, exp.Command, exp.Into, exp.Set, exp.Pragma, exp.Drop, exp.Alter, exp.Describe, exp.Use,
    exp.Show, exp.Transaction, exp.Commit, exp.Rollback, exp.Attach, exp.Detach, exp.Install, exp.Export,
    exp.LoadData, exp.Cache, exp.Uncache, exp.Grant, exp.Kill, exp.Refresh, exp.Analyze, exp.Summarize,
    exp.Declare,
)


@dataclass(frozen=True)
class Reference:
    """A relation the statement reads by name: a table, a metadata table or a live view, maybe at a version."""

    name: str  # lower-cased, as Athena resolves names
    database: str | None  # the qualifier, lower-cased; None when unqualified
    version: exp.Version | None = field(default=None, compare=False)
    where: str = field(default="", compare=False)  # " (line 1, column 15)", for messages

    @property
    def text(self) -> str:
        return f"{self.database}.{self.name}" if self.database else self.name


@dataclass
class ReadStatement:
    """A checked statement: its text, its tree (Trino) and the relations it reads."""

    sql: str
    tree: exp.Expr
    references: list[Reference]

    def to_duckdb(self, views: Mapping[int, str], database: str) -> str:
        """DuckDB SQL reading ``views[i]`` where the statement names ``references[i]``.

        A replaced reference keeps the user's alias, or gets its own name as one,
        so ``orders.status`` still binds when ``orders`` reads a view of another
        name; a column qualified with the database (``db.orders.status``) loses
        the database, as the views are not in one.
        """
        def rewrite(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Table) and _REF in node.meta:
                original = node.this
                node.set("this", sqltext.identifier(views[node.meta[_REF]]))
                for part in ("db", "catalog", "version"):
                    node.set(part, None)
                if not node.args.get("alias"):
                    node.set("alias", exp.TableAlias(this=original))
            elif isinstance(node, exp.Column) and node.args.get("db") is not None:
                catalog = node.args.get("catalog")
                if node.args["db"].name.lower() == database and (catalog is None or
                                                                 catalog.name.lower() == ATHENA_CATALOG):
                    node.set("db", None)
                    node.set("catalog", None)
            return node

        try:
            return self.tree.copy().transform(rewrite, copy=False).sql(dialect="duckdb")
        except sqlglot.errors.SqlglotError as exc:  # a Trino construct with no DuckDB form
            raise QueryError(f"cannot run this statement locally: {_first_line(exc)}") from exc


def parse(sql: str) -> ReadStatement:
    """The one read statement in ``sql``, or a QueryError saying what was refused and where."""
    if not sql.strip():
        raise QueryError("no SQL statement given")
    with quieted("sqlglot", logging.ERROR):  # the refusal says it in one line
        try:
            statements = [s for s in sqlglot.parse(sql, read="trino") if s is not None]
        except sqlglot.errors.SqlglotError as exc:  # ParseError, and TokenError (e.g. an unterminated string)
            raise QueryError(f"cannot parse the SQL as Trino/Athena SQL: {_first_line(exc)}") from exc
    if not statements:
        raise QueryError("no SQL statement given")
    if len(statements) > 1:
        raise QueryError(f"query runs exactly one SQL statement, got {len(statements)}")
    tree = statements[0]
    if not isinstance(tree, exp.Query | exp.Values):
        raise QueryError(f"query runs one read statement (SELECT, WITH, VALUES), not {_kind(sql, tree)}")
    for node in tree.walk():
        if isinstance(node, _NOT_READS):
            what = "SELECT ... INTO (it writes a table)" if isinstance(node, exp.Into) else _kind(node.sql("trino"), node)
            raise QueryError(f"query runs one read statement (SELECT, WITH, VALUES): it may not contain {what}")
    return ReadStatement(sql, tree, list(_references(tree)))


def _references(tree: exp.Expr) -> Iterator[Reference]:
    """Every relation read by name, in the order of the text; each Table node is marked with its index."""
    ctes = _cte_references(tree)
    tables = sorted(tree.find_all(exp.Table), key=_position)
    index = 0
    for node in tables:
        this = node.this
        where = _where(node)
        if not isinstance(this, exp.Identifier):
            name = this.name if isinstance(this, exp.Anonymous) else this.sql(dialect="trino").split("(", 1)[0]
            raise QueryError(f"{name.lower()}(...) is a table function{where}: {_READS}")
        catalog = node.args.get("catalog")
        if catalog is not None and catalog.name.lower() != ATHENA_CATALOG:
            raise QueryError(f"no catalog {catalog.name!r}: query reads the Glue Data Catalog "
                             f"({ATHENA_CATALOG}){where}")
        version = node.args.get("version")
        if id(node) in ctes:
            if version is not None:
                raise QueryError(f"{this.name} is a WITH query of this statement: it has no versions{where}")
            continue
        if version is not None and (version.args.get("kind") or "").upper() != "AS OF":
            raise QueryError(f"only FOR VERSION AS OF and FOR TIMESTAMP AS OF are supported{where}")
        if not _RELATION_NAME.fullmatch(this.name.lower()):
            raise QueryError(f"{this.name!r} is not a table name (a path or text where a table goes?){where}: "
                             f"{_READS}")
        db = node.args.get("db")
        node.meta[_REF] = index
        index += 1
        yield Reference(this.name.lower(), db.name.lower() if db is not None else None, version, where)


def _cte_references(tree: exp.Expr) -> set[int]:
    """The Table nodes that name a WITH query in their scope (sqlglot's scope analysis).

    A node the analysis does not reach stays a reference, which must then name a
    catalog relation: the safe way to be wrong.
    """
    out: set[int] = set()
    try:
        for scope in traverse_scope(tree):
            out.update(id(t) for t in scope.tables if not t.args.get("db") and t.name in scope.cte_sources)
    except sqlglot.errors.SqlglotError:
        return set()
    return out


def _position(node: exp.Table) -> tuple[int, int]:
    """(line, column) where the name starts (sqlglot's token meta gives the column where it ends)."""
    meta = node.this.meta if isinstance(node.this, exp.Expression) else {}
    if "line" not in meta:
        return (0, 0)
    return (int(meta["line"]), int(meta["col"]) - (int(meta["end"]) - int(meta["start"])))


def _where(node: exp.Table) -> str:
    line, col = _position(node)
    return f" (line {line}, column {col})" if line else ""


def _kind(sql: str, node: exp.Expr) -> str:
    """The kind of a statement that is not a read, for the refusal: ``INSERT``, ``COPY``, ``LOAD`` ..."""
    if isinstance(node, exp.Command):  # a statement sqlglot keeps as text: its first word
        return str(node.name).upper()
    if isinstance(node, exp.Expression) and not isinstance(node, exp.Alias | exp.Column | exp.Identifier):
        return node.key.upper()
    with quieted("sqlglot", logging.ERROR), contextlib.suppress(sqlglot.errors.SqlglotError):  # e.g. INSTALL x reads as an alias
        tokens = sqlglot.tokenize(sql, read="trino")
        if tokens:
            return tokens[0].text.upper()
    return node.key.upper()


def _first_line(exc: Exception) -> str:
    # the first line says what and where; sqlglot's next ones repeat the SQL with terminal underlining
    return (str(exc).splitlines() or [""])[0]
