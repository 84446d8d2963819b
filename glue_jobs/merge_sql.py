"""The merge rules as SQL text, generated once and executed unchanged by both engine kernels.

Writing the rules once is how the DuckDB and PySpark kernels keep identical
semantics: each kernel only registers its inputs under the relation names below
(``raw_in``, ``ext_in``, ``cur_keys``, ``tomb``; ``cur_rows``/``cur_all`` for the
output), runs these statements in order, and writes their output
(``merge_output_sql``). The SQL uses the subset both engines share; type names,
literals and a few functions differ through ``merge_dialect.Dialect``.

Every decision is made per key, on narrow records (keys, seqs, positions), by a
hash aggregate: the decisions ``d`` are one row per key that has a change or a
tombstone. Rows are never carried through the decision: a winner's row is
joined back by its key when it is its key's only change, else by its row number
(``inserted``), and the stored rows are matched by key (``removed``). So the
changes need no number, nor a materialisation to keep one stable, except those
of keys with several changes. On DuckDB an aggregate costs a fraction of a
window over the same records, and one per input (changes, stored keys,
tombstones) joined by key less than one over their union
(``aggregate_apart``); on Spark only narrow records are shuffled for the
decision, once, and the decisions are small enough to broadcast.

The rules (DESIGN.md "Merge semantics"):

* Candidates are raw changes above the per-shard watermark (``_kpos`` greater than
  the shard's merged position) plus the rows of landed extracts, each at its
  extract's ``as_of_seq`` as a snapshot read (op ``r``).
* Per key the change with the highest ``_seq`` wins. **Tie rule** (equal seq, same
  key, same run): a full extract beats an incremental extract beats the stream;
  between extracts the later one (by ``as_of_seq``, then ``extract_id``) wins;
  between stream changes the *earliest* Kinesis position wins. Across runs the
  table's stored row always wins a tie (a change must be strictly newer), so "the
  first delivered wins" holds whether two equal-seq changes arrive in one batch or
  two. Legitimate ties are duplicates of one commit, which are equal anyway.
* A winner is applied only if its seq is above both the key's stored seq (the
  maximum over its rows, in case a crashed run left a moved key in two partitions)
  and the key's tombstone; otherwise it is stale and changes nothing.
* Applied deletes leave tombstones ``(key, _seq, deleted_at)``; tombstones older
  than the retention cutoff are purged, tombstones of keys that got a newer change
  are dropped.
* A full extract at ``as_of_seq = N`` raises the table's *floor* to N: the table
  equals the extract as of N, so every other change with seq <= N is stale, and
  every stored key absent from the extract whose seq is <= N gets a delete at N
  (a "virtual delete", which also leaves a tombstone).
* A key whose partition value changes is removed from its old partition and
  inserted into its new one; every stored copy but the surviving row is removed.

How the winner is found without sorting: a key with one change needs no
order at all, the aggregate just keeps that change (if eligible). The keys
with several changes, where the tie rule's full order (seq, source, extract,
Kinesis position) decides and where a redelivered record must count once, are
decided again by a window over their changes alone (``mw``), which overrides
the aggregate's pick. Most keys change once between two runs, so the window
sorts few records, and when no key has several changes (``dk`` counts them as
it is materialised) the aggregate's decisions are the run's: ``d`` is ``dk``.

Partitions: ``_part`` is a row's Iceberg partition value (the transform of its
partition column, typed; see ``hybrid_ingest.iceberg.partition_type``), null for
a null column and for every row of an unpartitioned table. Partition values are
always compared null-safely. Every column name and literal in the text goes
through ``hybrid_ingest.sqltext`` (``Dialect.ident``/``Dialect.string``), so a
column called ``order`` or a value holding quotes round-trips.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from glue_jobs.merge_dialect import Dialect
from glue_jobs.merge_projection import FULL, RAW_META_TYPES, STREAM, TOMB_META_TYPES
from hybrid_ingest.iceberg import partition_type
from hybrid_ingest.tables import TableSpec

# Relations as large as the run's changes and tombstones, not as the table (unless a full extract
# deletes the keys it lacks, see ``KernelJob.decision_rows``): an engine may broadcast them to the joins.
DECISIONS = frozenset({"chg_keys", "multi", "mw", "d", "removed"})


@dataclass(frozen=True)
class MergeParams:
    """Plain values a merge run decides before any engine work."""

    watermark: Mapping[str, str]  # shard -> the text of the position already merged
    floor: int  # the table's full-extract floor after this run (-1: none)
    full_rank: int  # _xrank of the full extract that set ``floor`` in this run (-1: none)
    merged_at: dt.datetime
    tombstone_cutoff: dt.datetime


@dataclass(frozen=True)
class MergeSql:
    """The statements of one merge, in execution order, for one table and dialect."""

    spec: TableSpec
    dialect: Dialect
    params: MergeParams
    narrow_stored: bool = False  # read only the stored keys that have a change (a cheap semi-join)
    aggregate_apart: bool = False  # ``dk`` from an aggregate per input joined by key (``_per_key_apart``)
    row_ids: bool = False  # raw_in and ext_in carry a stable, unique ``_rid`` (see ``Engine.row_ids``)

    @property
    def keys(self) -> list[str]:
        """The primary key columns, quoted."""
        return [self.dialect.ident(k) for k in self.spec.primary_key]

    @property
    def row_columns(self) -> list[str]:
        """The row's columns, quoted."""
        return [self.dialect.ident(name) for name in self.spec.field_names]

    @property
    def part_type(self) -> pa.DataType:
        """The SQL type of ``_part`` (an int, always null, when unpartitioned)."""
        return partition_type(self.spec) or pa.int32()

    def part_literal(self, value: Any) -> str:
        return self.dialect.literal(value, self.part_type)

    @property
    def merged_at(self) -> str:
        """This run's merge time as a literal: the ``_merged_at`` of new rows and the time of new tombstones."""
        return self.dialect.literal(self.params.merged_at, TOMB_META_TYPES["deleted_at"])

    def key_eq(self, a: str, b: str) -> str:
        return " AND ".join(f"{a}.{k} = {b}.{k}" for k in self.keys)

    def key_cols(self, alias: str) -> str:
        return ", ".join(f"{alias}.{k}" for k in self.keys)

    def partition_expr(self, alias: str = "") -> str:
        """A row's partition value: Iceberg's transform of the partition column (null stays null)."""
        part = self.spec.partition
        if part is None:
            return self.part_literal(None)
        column = self.dialect.ident(part.column)
        column = f"{alias}.{column}" if alias else column
        return column if part.granularity == "identity" else self.dialect.transform(column, part.granularity)

    def in_parts(self, expr: str, values: Sequence[Any]) -> str:
        """Null-safe: whether ``expr`` is one of the partition ``values``."""
        listed = [self.part_literal(v) for v in values if v is not None]
        # never NULL itself: ``x IN (...)`` is NULL for a null x, and NOT NULL would hide a new null partition
        tests = [f"({expr} IS NOT NULL AND {expr} IN ({', '.join(listed)}))"] if listed else []
        if any(v is None for v in values):
            tests.append(f"{expr} IS NULL")
        return f"({' OR '.join(tests)})" if tests else "FALSE"

    def watermark_expr(self) -> str:
        if not self.params.watermark:
            return "''"
        cases = " ".join(f"WHEN {self.dialect.string(shard)} THEN {self.dialect.string(pos)}"
                         for shard, pos in sorted(self.params.watermark.items()))
        return f"CASE _shard {cases} ELSE '' END"

    def cols(self, alias: str = "") -> str:
        """The row's columns, quoted, each prefixed with ``alias``."""
        prefix = f"{alias}." if alias else ""
        return ", ".join(f"{prefix}{c}" for c in self.row_columns)

    @property
    def _full(self) -> str:
        """A change is a row of the full extract that set this run's floor."""
        return f"_src = {FULL} AND _xrank = {self.params.full_rank}"

    @property
    def _full_flag(self) -> str:
        """1 for a row of the full extract that set this run's floor, else 0 (a change's ``_full``)."""
        return f"CASE WHEN {self._full} THEN 1 ELSE 0 END"

    @property
    def _elig(self) -> str:
        """A change is eligible if above the floor, or a row of the full extract that set it."""
        return f"CASE WHEN _seq > {self.params.floor} OR ({self._full}) THEN 1 ELSE 0 END"

    def _changes(self) -> str:
        """The candidate changes: raw changes above the per-shard watermark and the extracts' rows.

        A view, read again by each statement. With ``row_ids`` each change carries
        the inputs' own number, ``_rid``; without, only the changes of keys with
        several changes get one, when they are materialised (``multi``): a key's
        only change is found by its key.
        """
        ts, text = self.dialect.literal(None, RAW_META_TYPES["_op_ts"]), self.dialect.literal(None, pa.string())
        rid = ", _rid" if self.row_ids else ""
        return (f"SELECT {self.cols()}, _op, _seq, _op_ts, {STREAM} AS _src, -1 AS _xrank, _kpos, _shard{rid}"
                f" FROM raw_in WHERE _kpos > {self.watermark_expr()}"
                f" UNION ALL SELECT {self.cols()}, 'r' AS _op, _seq, {ts} AS _op_ts, _src, _xrank,"
                f" '' AS _kpos, {text} AS _shard{rid} FROM ext_in")

    @staticmethod
    def _del(alias: str) -> str:
        """1 for a delete, else 0."""
        return f"CASE WHEN {alias}._op = 'd' THEN 1 ELSE 0 END"

    def _pick(self, alias: str) -> str:
        """A numbered change's row number and whether it is a delete, as one number (``mw``'s ``_wpick``): one
        aggregate finds both."""
        return f"{alias}._rid * 2 + {self._del(alias)}"

    def _records(self) -> str:
        """Every record that bears on a key's decision, narrow: changes, stored keys, tombstones.

        ``_kind`` says which (0 change, 1 stored row, 2 tombstone).
        """
        d = self.dialect
        keys = ", ".join(self.keys)
        ts = d.literal(None, RAW_META_TYPES["_op_ts"])
        full = f", {self._full_flag} AS _full" if self.params.full_rank >= 0 else ""
        small = d.literal(None, pa.int32())
        rest = f"0 AS _elig{', 0 AS _full' if full else ''}, {small} AS _src, {small} AS _del"
        return (f"SELECT {keys}, 0 AS _kind, _seq, {self._elig} AS _elig{full}, _src, {self._del('c')} AS _del,"
                f" {ts} AS _deleted_at FROM chg c UNION ALL SELECT {keys}, 1 AS _kind, _seq, {rest}, {ts} AS _deleted_at"
                f" FROM {self._stored()} s UNION ALL SELECT {keys}, 2 AS _kind, _seq, {rest},"
                " deleted_at AS _deleted_at FROM tomb")

    @property
    def _narrowed(self) -> bool:
        return self.narrow_stored and self.params.full_rank < 0

    def _stored(self) -> str:
        """The stored keys and seqs the decision reads: all of them, or with ``narrow_stored`` those that have a
        change, which is exact unless a full extract deletes absent keys (then all are needed)."""
        if not self._narrowed:
            return "cur_keys"
        return (f"(SELECT {self.key_cols('c')}, c._seq FROM cur_keys c {self.dialect.semi_join} chg_keys x"
                f" ON {self.key_eq('x', 'c')})")

    def _per_key(self) -> str:
        """``dk``: one row per key from a hash aggregate over its records.

        ``_adel``: whether its change is a delete, if that is eligible (a key with
        several changes is decided by ``_multi``); ``_nchg``/``_nstream``:
        its changes and stream changes; ``_maxseq``/``_tseq``: the highest stored
        and tombstone seqs; ``_ntomb``: its tombstones inside the retention window.
        Keys with only stored rows decide nothing and are left out, unless a full
        extract may delete them.
        """
        d, p = self.dialect, self.params
        cutoff = d.literal(p.tombstone_cutoff, TOMB_META_TYPES["deleted_at"])
        floor = (" min(CASE WHEN _kind = 1 THEN _seq END) AS _minseq, max(_full) AS _infull,"
                 if p.full_rank >= 0 else "")
        # narrowed, every stored record has a change beside it
        having = "" if p.full_rank >= 0 or self._narrowed else " HAVING max(_kind) <> 1 OR min(_kind) <> 1"
        return (f"SELECT {', '.join(self.keys)}, max(CASE WHEN _elig = 1 THEN _seq END) AS _eligseq,"
                " max(CASE WHEN _elig = 1 THEN _del END) AS _adel,"
                f" sum(CASE WHEN _kind = 0 THEN 1 ELSE 0 END) AS _nchg,"
                f" sum(CASE WHEN _kind = 0 AND _src = {STREAM} THEN 1 ELSE 0 END) AS _nstream,{floor}"
                f" max(CASE WHEN _kind = 1 THEN _seq END) AS _maxseq, max(CASE WHEN _kind = 2 THEN _seq END) AS _tseq,"
                f" sum(CASE WHEN _kind = 2 AND _deleted_at >= {cutoff} THEN 1 ELSE 0 END) AS _ntomb"
                f" FROM ({self._records()}) r GROUP BY {', '.join(self.keys)}{having}")

    def _per_key_apart(self) -> str:
        """``dk`` as ``_per_key`` has it, from one aggregate per input joined by key instead of one over their union.

        The same columns and keys: those with a change or a tombstone, and with a
        full extract every stored key (a tombstone's key with no change may lack
        ``_maxseq``, which decides nothing without a winner). On DuckDB this costs
        well under the union's aggregate, which updates each of its aggregates for
        every record of every input; on Spark each aggregate and join would be a
        shuffle of its own.
        """
        d, p = self.dialect, self.params
        keys = ", ".join(self.keys)
        cutoff = d.literal(p.tombstone_cutoff, TOMB_META_TYPES["deleted_at"])
        full = p.full_rank >= 0
        changes = (f"SELECT {keys}, max(CASE WHEN _elig = 1 THEN _seq END) AS _eligseq,"
                   " max(CASE WHEN _elig = 1 THEN _del END) AS _adel, count(*) AS _nchg,"
                   f" sum(CASE WHEN _src = {STREAM} THEN 1 ELSE 0 END) AS _nstream"
                   f"{', max(_full) AS _infull' if full else ''} FROM (SELECT {keys}, _seq, _src, {self._elig} AS _elig,"
                   f" {self._del('c')} AS _del{f', {self._full_flag} AS _full' if full else ''}"
                   f" FROM chg c) c GROUP BY {keys}")
        stored = (f"SELECT {keys}, max(_seq) AS _maxseq{', min(_seq) AS _minseq' if full else ''}"
                  f" FROM {self._stored()} s GROUP BY {keys}")
        tombs = (f"SELECT {keys}, max(_seq) AS _tseq, sum(CASE WHEN deleted_at >= {cutoff} THEN 1 ELSE 0 END)"
                 f" AS _ntomb FROM tomb GROUP BY {keys}")
        floor = " s._minseq, coalesce(c._infull, 0) AS _infull," if full else ""
        return (f"SELECT {keys}, c._eligseq, c._adel, coalesce(c._nchg, 0) AS _nchg,"
                f" coalesce(c._nstream, 0) AS _nstream,{floor} s._maxseq, t._tseq, coalesce(t._ntomb, 0) AS _ntomb"
                f" FROM ({changes}) c {'FULL' if full else 'LEFT'} JOIN ({stored}) s USING ({keys})"
                f" FULL JOIN ({tombs}) t USING ({keys})")

    def _multi(self) -> str:
        """``mw``: the keys with several changes, decided by the tie rule in full and their duplicates found.

        A window over those keys' changes alone: the first in the tie rule's order
        wins, and a stream change whose predecessor in that order has its shard
        and position is a redelivery of the same Kinesis record (``_dup``), so it
        counts once in ``_raw``.
        """
        ordered = (f"PARTITION BY {', '.join(self.keys)} ORDER BY _elig DESC, _seq DESC, _src DESC NULLS LAST,"
                   " _xrank DESC NULLS LAST, _kpos ASC NULLS LAST, _shard ASC NULLS LAST")
        changes = (f"SELECT {self.key_cols('c')}, {self._pick('c')} AS _pick, c._src, c._xrank, c._seq, c._kpos,"
                   " c._shard FROM mchg c")
        windowed = (f"SELECT {', '.join(self.keys)}, _pick, _src, row_number() OVER ({ordered}) AS _rn,"
                    f" CASE WHEN lag(_shard) OVER ({ordered}) = _shard AND lag(_kpos) OVER ({ordered}) = _kpos"
                    f" THEN 1 ELSE 0 END AS _dup FROM (SELECT *, {self._elig} AS _elig FROM ({changes}) c) e")
        return (f"SELECT {', '.join(self.keys)}, 1 AS _m, max(CASE WHEN _rn = 1 THEN _pick END) AS _wpick,"
                f" sum(CASE WHEN _src = {STREAM} AND _dup = 0 THEN 1 ELSE 0 END) AS _raw"
                f" FROM ({windowed}) w GROUP BY {', '.join(self.keys)}")

    def prelude(self) -> list[tuple[str, str, bool]]:
        """(name, select, materialise) before the decisions: the changes and their keys."""
        keys = ", ".join(self.keys)
        return [("chg", self._changes(), False), ("chg_keys", f"SELECT {keys} FROM chg", False)]

    def per_key(self) -> str:
        """``dk``: the per-key aggregate with every key decided as if it had at most one change.

        That is the decision itself for all keys unless some have several changes
        (``merge_metrics_sql.multi_keys`` counts them while ``dk`` is materialised): then ``multi``
        and ``decisions`` decide again with the tie rule in full, else ``d`` is ``dk``
        and the run saves a pass.
        """
        return self._decide(f"({self._per_key_apart() if self.aggregate_apart else self._per_key()})", multi=False)

    def multi(self) -> list[tuple[str, str, bool]]:
        """The relations that decide the keys with several changes: their changes (``mchg``, numbered if the
        inputs do not number them) and ``mw``, read by ``decisions`` and ``inserted``."""
        changes = f"SELECT c.* FROM chg c {self.dialect.semi_join} multi m ON {self.key_eq('m', 'c')}"
        return [("multi", f"SELECT {', '.join(self.keys)} FROM dk WHERE _nchg > 1", False),
                ("mchg", changes if self.row_ids else self.dialect.numbered(changes), not self.row_ids),
                ("mw", self._multi(), False)]

    def decisions(self) -> str:
        """``d`` when some keys have several changes: ``dk``'s flags decided again, ``mw`` overriding them."""
        return self._decide("dk", multi=True)

    def _aggregates(self) -> list[str]:
        """The columns of the per-key aggregate (``_per_key``) that the decision reads."""
        floor = ["_minseq", "_infull"] if self.params.full_rank >= 0 else []
        return [*self.keys, "_eligseq", "_adel", "_nchg", "_nstream", *floor, "_maxseq", "_tseq", "_ntomb"]

    def _decide(self, source: str, multi: bool) -> str:
        """Every key's decision, one row per key, as flags every later statement reads (with the aggregates).

        ``_wseq`` is the winning seq (a virtual delete's floor when no change is
        eligible), ``_applied`` whether it beats the stored row and the tombstone,
        ``_upsert``/``_delete`` what the key's winner does, ``_raw`` its stream
        changes counted once. With ``multi`` the keys in ``mw`` take its pick and count.
        """
        p = self.params
        virtual = (f"CASE WHEN k._infull = 0 AND k._minseq <= {p.floor} THEN CAST({p.floor} AS BIGINT) END"
                   if p.full_rank >= 0 else "CAST(NULL AS BIGINT)")
        rid, wdel, raw, join = self.dialect.literal(None, pa.int64()), "k._adel", "k._nstream", ""
        if multi:
            rid = f"CASE WHEN m._m IS NOT NULL THEN {self.dialect.div('m._wpick', '2')} END"
            wdel = "CASE WHEN m._m IS NULL THEN k._adel ELSE m._wpick % 2 END"
            raw = "CASE WHEN m._m IS NULL THEN k._nstream ELSE m._raw END"
            join = f" LEFT JOIN mw m ON {self.key_eq('m', 'k')}"
        joined = (f"SELECT {', '.join(f'k.{c}' for c in self._aggregates())}, {rid} AS _wrid, {wdel} AS _wdel,"
                  f" {raw} AS _raw, coalesce(k._eligseq, {virtual}) AS _wseq,"
                  f" CASE WHEN k._eligseq IS NULL AND {virtual} IS NOT NULL THEN 1 ELSE 0 END AS _vdel"
                  f" FROM {source} k{join}")
        applied = (f"SELECT *, CASE WHEN _wseq > coalesce(_maxseq, -1) AND _wseq > coalesce(_tseq, -1)"
                   f" THEN 1 ELSE 0 END AS _applied FROM ({joined}) j")
        return (f"SELECT *, CASE WHEN _applied = 1 AND _eligseq IS NOT NULL AND _wdel = 0 THEN 1 ELSE 0 END"
                " AS _upsert, CASE WHEN _applied = 1 AND ((_eligseq IS NOT NULL AND _wdel = 1) OR _vdel = 1)"
                f" THEN 1 ELSE 0 END AS _delete FROM ({applied}) a")

    @staticmethod
    def goes(stored: str, decision: str) -> str:
        """Whether a stored row goes, given its key's decision: every copy when the key's winner applies, else
        the stale duplicates of a key that a crashed run left in two partitions. Never NULL (no decision: it
        stays)."""
        return (f"coalesce({decision}._wseq IS NOT NULL AND ({decision}._applied = 1"
                f" OR {stored}._seq < {decision}._maxseq), FALSE)")

    def removed(self) -> str:
        """The stored rows that go, as (key, partition)."""
        return (f"SELECT {self.key_cols('c')}, c._part FROM cur_keys c JOIN d ON {self.key_eq('d', 'c')}"
                f" WHERE {self.goes('c', 'd')}")

    def views(self, multi: bool) -> list[tuple[str, str, bool]]:
        """The decisions as the relations the output reads: ``removed``, ``inserted``, ``tomb_next``."""
        return [("removed", self.removed(), False), ("inserted", self.inserted(multi), False),
                ("tomb_next", self.tomb_next(), False)]

    def inserted(self, multi: bool) -> str:
        """The rows the applied upserts write: a key's only change by its key, the winner among several (with
        ``multi``) by its row number."""
        select = f"SELECT {self.cols('c')}, c._seq, c._op_ts, {self.partition_expr('c')} AS _part"
        by_key = f"{select} FROM d JOIN chg c ON {self.key_eq('d', 'c')} WHERE d._upsert = 1 AND d._nchg = 1"
        if not multi:
            return by_key
        return f"{by_key} UNION ALL {select} FROM d JOIN mchg c ON c._rid = d._wrid WHERE d._upsert = 1 AND d._nchg > 1"

    def tomb_next(self) -> str:
        """The tombstones after the run: the applied deletes', and the kept ones of keys whose winner did not
        apply (those that did apply replace or drop theirs)."""
        p = self.params
        cutoff = self.dialect.literal(p.tombstone_cutoff, TOMB_META_TYPES["deleted_at"])
        return (f"SELECT {', '.join(self.keys)}, CASE WHEN _vdel = 1 THEN CAST({p.floor} AS BIGINT) ELSE _wseq END"
                f" AS _seq, {self.merged_at} AS deleted_at FROM d WHERE _delete = 1"
                f" UNION ALL SELECT {self.key_cols('t')}, t._seq, t.deleted_at FROM tomb t JOIN d"
                f" ON {self.key_eq('d', 't')} WHERE t.deleted_at >= {cutoff} AND d._applied = 0")

    def stage1(self) -> list[tuple[str, str, bool]]:
        """Every statement up to the decisions' views, for a reader that wants the views only (the live view)."""
        return [*self.prelude(), ("dk", self.per_key(), True), *self.multi(), ("d", self.decisions(), True),
                *self.views(multi=True)]

    def positions(self) -> str:
        """Per shard the highest merged position and newest source time: ``(shard, position, op_ts)``."""
        return (f"SELECT _shard, max(_kpos), max(_op_ts) FROM raw_in WHERE _kpos > {self.watermark_expr()}"
                " GROUP BY _shard")
