"""The pgoutput decoder on messages a real server wrote, and on broken ones."""

from __future__ import annotations

import datetime as dt
import struct

import pytest

from hybrid_ingest.errors import SourceError
from producers.postgres import pgoutput as pg
from tests.sources.helpers import execute, fetch


def peek(dsn: str, slot: str) -> list[pg.Message]:
    rows = fetch(dsn, "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL, 'proto_version', '1', "
                      "'publication_names', 'pub')", (slot,))
    return [pg.decode(bytes(r[0])) for r in rows]


def test_decodes_every_message_kind_a_server_sends(pg_dsn: str, slot: str) -> None:
    execute(pg_dsn, "CREATE TYPE mood AS ENUM ('sad', 'happy')",
            "CREATE TABLE t (id int PRIMARY KEY, note text, big text, m mood)",
            "ALTER TABLE t ALTER COLUMN big SET STORAGE EXTERNAL",  # stored out of line, uncompressed
            "CREATE PUBLICATION pub FOR TABLE t")
    execute(pg_dsn, "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", params=(slot,))
    execute(pg_dsn, "INSERT INTO t VALUES (1, 'a''b', repeat('x', 5000), 'happy'), (2, NULL, 'small', NULL)",
            "UPDATE t SET note = 'n' WHERE id = 1",            # big is TOASTed and unchanged
            "UPDATE t SET id = 3 WHERE id = 2",                # a key change sends the old key
            "DELETE FROM t WHERE id = 3",
            "TRUNCATE t")
    messages = peek(pg_dsn, slot)
    kinds = [type(m).__name__ for m in messages]
    assert kinds == ["Begin", "TypeInfo", "Relation", "Insert", "Insert", "Commit",
                     "Begin", "Update", "Commit", "Begin", "Update", "Commit", "Begin", "Delete", "Commit",
                     "Begin", "TypeInfo", "Relation", "Truncate", "Commit"]  # TRUNCATE invalidates the relation
    begin, commit = messages[0], messages[5]
    assert isinstance(begin, pg.Begin)
    assert isinstance(commit, pg.Commit)
    assert begin.final_lsn == commit.commit_lsn < commit.end_lsn
    assert abs(begin.commit_time - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)
    typ, relation = messages[1], messages[2]
    assert isinstance(typ, pg.TypeInfo)
    assert (typ.namespace, typ.name) == ("public", "mood")
    assert isinstance(relation, pg.Relation)
    assert (relation.namespace, relation.name, relation.replica_identity) == ("public", "t", "d")
    assert [(c.name, c.key, c.type_oid) for c in relation.columns] == [
        ("id", True, 23), ("note", False, 25), ("big", False, 25), ("m", False, typ.oid)]
    assert messages[3] == pg.Insert(relation.relid, ("1", "a'b", "x" * 5000, "happy"))
    assert messages[4] == pg.Insert(relation.relid, ("2", None, "small", None))
    assert messages[7] == pg.Update(relation.relid, None, None, ("1", "n", pg.UNCHANGED, "happy"))
    assert messages[10] == pg.Update(relation.relid, "K", ("2", None, None, None), ("3", None, "small", None))
    assert messages[13] == pg.Delete(relation.relid, "K", ("3", None, None, None))
    assert messages[18] == pg.Truncate((relation.relid,), cascade=False, restart_identity=False)


def test_full_replica_identity_sends_the_old_row(pg_dsn: str, slot: str) -> None:
    execute(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY, big text)", "ALTER TABLE t REPLICA IDENTITY FULL",
            "ALTER TABLE t ALTER COLUMN big SET STORAGE EXTERNAL", "CREATE PUBLICATION pub FOR TABLE t",
            "INSERT INTO t VALUES (1, repeat('y', 4000))")
    execute(pg_dsn, "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", params=(slot,))
    execute(pg_dsn, "UPDATE t SET id = 2", "DELETE FROM t")
    update, delete = (m for m in peek(pg_dsn, slot) if isinstance(m, pg.Update | pg.Delete))
    assert update == pg.Update(update.relid, "O", ("1", "y" * 4000), ("2", pg.UNCHANGED))
    assert delete == pg.Delete(update.relid, "O", ("2", "y" * 4000))


def _begin(lsn: int, micros: int, xid: int) -> bytes:
    return b"B" + struct.pack(">QqI", lsn, micros, xid)


def test_fields_are_read_as_the_protocol_lays_them_out() -> None:
    assert pg.decode(_begin(0x1_0000_0010, 1_000_000, 7)) == pg.Begin(
        0x1_0000_0010, dt.datetime(2000, 1, 1, 0, 0, 1, tzinfo=dt.UTC), 7)
    assert pg.decode(b"C\x00" + struct.pack(">QQq", 5, 9, -1)) == pg.Commit(
        5, 9, dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC))
    assert pg.decode(b"T" + struct.pack(">ib", 2, 3) + struct.pack(">II", 10, 11)) == pg.Truncate((10, 11), True, True)
    assert pg.decode(b"M\x01" + struct.pack(">Q", 3) + b"pfx\x00" + struct.pack(">i", 2) + b"hi") == \
        pg.LogicalMessage(True, 3, "pfx", b"hi")
    assert pg.decode(b"I" + struct.pack(">I", 4) + b"N" + struct.pack(">h", 2) + b"n" + b"t" + struct.pack(">i", 3)
                     + "\u00e9a".encode()) == pg.Insert(4, (None, "\u00e9a"))


@pytest.mark.parametrize(("payload", "error"), [
    (b"", "empty pgoutput message"),
    (b"Z\x00", "unknown pgoutput message type 'Z'"),
    (_begin(1, 2, 3)[:-1], "truncated"),
    (_begin(1, 2, 3) + b"\x00", "1 trailing byte"),
    (b"I" + struct.pack(">I", 4) + b"N" + struct.pack(">h", 1) + b"b" + struct.pack(">i", 1) + b"\x01",
     "value kind 'b' is not supported"),
    (b"I" + struct.pack(">I", 4) + b"N" + struct.pack(">h", 1) + b"t" + struct.pack(">i", 9) + b"ab",
     "overruns the message"),
    (b"I" + struct.pack(">I", 4) + b"X", "insert carries 'X'"),
    (b"D" + struct.pack(">I", 4) + b"N", "delete carries 'N'"),
    (b"R" + struct.pack(">I", 4) + b"public", "not terminated"),
])
def test_broken_messages_are_refused_with_the_reason(payload: bytes, error: str) -> None:
    with pytest.raises(SourceError, match=error):
        pg.decode(payload)
