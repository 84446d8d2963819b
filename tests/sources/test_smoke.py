from tests.sources.helpers import Env, assert_tables_equal, execute


def test_smoke(env: Env, pg_dsn: str, slot: str) -> None:
    execute(pg_dsn, "CREATE TABLE t (id bigint PRIMARY KEY, n numeric(10,2), ts timestamptz, tsn timestamp, "
            "b bytea, u uuid, j jsonb, d date, f float8, r real, txt text, ch char(3), v varchar(10), bo boolean, "
            "s smallint, i integer NOT NULL)",
            "INSERT INTO t SELECT g, g * 1.25, now(), '2020-01-01 10:00:00.123456', '\\x00ff', gen_random_uuid(), "
            "'{\"a\": [1, 2]}', '2020-02-29', 1.5e300, 0.1, 'héllo', 'ab', 'x', true, -3, g FROM generate_series(1, 50) g")
    stats = env.capture(pg_dsn, slot, ["public.t"])
    print(stats)
    execute(pg_dsn, "BEGIN", "UPDATE t SET n = 3 WHERE id = 1", "UPDATE t SET id = 200 WHERE id = 1",
            "DELETE FROM t WHERE id = 2", "INSERT INTO t (id, i) VALUES (2, 7)", "UPDATE t SET txt = 'z' WHERE id = 2",
            "COMMIT", "DELETE FROM t WHERE id = 3")
    stats = env.capture(pg_dsn, slot, ["public.t"])
    print(stats)
    env.consume()
    env.merge("t")
    assert assert_tables_equal(pg_dsn, "public.t", env) == 49
