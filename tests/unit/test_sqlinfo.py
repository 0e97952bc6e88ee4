"""Statement classification: one table of cases, the seed's SQL first."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from honua_plan.sql.analysis import analyze, diagnose, parse_errors, parse_warnings
from honua_plan.sql.locks import (
    ACCESS_EXCLUSIVE,
    ACCESS_SHARE,
    EXCLUSIVE,
    NO_LOCK,
    ROW_EXCLUSIVE,
    ROW_SHARE,
    SHARE,
    SHARE_ROW_EXCLUSIVE,
    SHARE_UPDATE_EXCLUSIVE,
    UNKNOWN_LOCK,
    blocks_reads,
    blocks_writes,
)
from honua_plan.sql.statement import Op
from honua_plan.sql.syntax import geometry_typmod

AE, SUE, SRE = ACCESS_EXCLUSIVE, SHARE_UPDATE_EXCLUSIVE, SHARE_ROW_EXCLUSIVE

# (sql, expected attributes). Keys not given are not checked.
CASES: list[tuple[str, dict[str, Any]]] = [
    # --- the seed's migration 003 and its validation queries
    ("CREATE INDEX idx_bike_lanes_geom\nON bike_lanes\nUSING GIST (geom);",
     dict(op=Op.create_index, table="bike_lanes", index="idx_bike_lanes_geom", method="gist",
          lock=SHARE, concurrently=False, transactional=True, parsed=True, warning=None)),
    ("ANALYZE bike_lanes;", dict(op=Op.analyze, table="bike_lanes", lock=SUE, parsed=True)),
    ("DROP INDEX IF EXISTS idx_bike_lanes_geom;",
     dict(op=Op.drop_index, index="idx_bike_lanes_geom", if_exists=True, lock=AE,
          transactional=True, parsed=True)),
    ("SELECT indexname\nFROM pg_indexes\nWHERE tablename = 'bike_lanes'\nAND indexname = 'idx_bike_lanes_geom'",
     dict(op=Op.select, table="pg_indexes", lock=ACCESS_SHARE, explain=False)),
    ("EXPLAIN ANALYZE\nSELECT * FROM bike_lanes\nWHERE ST_Intersects(geom, ST_MakeEnvelope(-122.5, 45.5, -122.4, 45.6, 4326))",
     dict(op=Op.select, table="bike_lanes", explain=True, executes=True, parsed=True, warning=None)),
    # --- indexes
    ("CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON s.t USING spgist (geom)",
     dict(op=Op.create_index, table="s.t", index="i", method="spgist", lock=SUE,
          concurrently=True, if_not_exists=True, transactional=False)),
    ("CREATE INDEX i ON t USING brin (geom) WITH (pages_per_range = 32)",
     dict(op=Op.create_index, method="brin", lock=SHARE)),
    ("CREATE UNIQUE INDEX i ON t (a)", dict(op=Op.create_index, method="btree", lock=SHARE)),
    ("CREATE INDEX ON t USING gist (geom)", dict(op=Op.create_index, index=None, table="t")),
    ("CREATE INDEX i ON ONLY t (a)",  # sqlglot rejects ON ONLY: token grammar
     dict(op=Op.create_index, table="t", index="i", parsed=False, lock=SHARE)),
    ('create index "MyIdx" on "Public"."Bike" using gist(geom)',
     dict(table="Public.Bike", index="MyIdx")),
    ("DROP INDEX CONCURRENTLY IF EXISTS s.i",
     dict(op=Op.drop_index, index="s.i", lock=SUE, concurrently=True, transactional=False)),
    ("DROP INDEX a, b", dict(op=Op.drop_index, index="a", parsed=False, lock=AE)),
    ("REINDEX INDEX i", dict(op=Op.reindex, index="i", lock=SHARE, transactional=True)),
    ("REINDEX TABLE CONCURRENTLY t",
     dict(op=Op.reindex, table="t", concurrently=True, lock=SUE, transactional=False)),
    ("REINDEX DATABASE d", dict(op=Op.reindex, transactional=False)),
    # --- tables and columns
    ("CREATE TABLE IF NOT EXISTS bike_lanes (id serial PRIMARY KEY, geom geometry(LineString,4326))",
     dict(op=Op.create_table, table="bike_lanes", if_not_exists=True)),
    ("DROP TABLE IF EXISTS a, b CASCADE",
     dict(op=Op.drop_table, table="a", tables=("a", "b"), destructive=True, lock=AE)),
    ("TRUNCATE t", dict(op=Op.truncate, destructive=True, lock=AE)),
    ("ALTER TABLE t ADD COLUMN c int", dict(op=Op.add_column, column="c", rewrites=False,
                                            volatile_default=False, lock=AE)),
    ("ALTER TABLE t ADD COLUMN c uuid DEFAULT gen_random_uuid()",
     dict(op=Op.add_column, volatile_default=True, rewrites=True)),
    ("ALTER TABLE t ADD COLUMN c float DEFAULT random()", dict(volatile_default=True)),
    ("ALTER TABLE t ADD COLUMN c timestamptz DEFAULT clock_timestamp()", dict(volatile_default=True)),
    ("ALTER TABLE t ADD COLUMN c uuid DEFAULT uuid_generate_v4()", dict(volatile_default=True)),
    ("ALTER TABLE t ADD COLUMN c bigint DEFAULT nextval('s')", dict(volatile_default=True)),
    ("ALTER TABLE t ADD COLUMN c bigserial", dict(volatile_default=True, rewrites=True)),
    ("ALTER TABLE t ADD COLUMN c int GENERATED ALWAYS AS IDENTITY", dict(rewrites=True)),
    ("ALTER TABLE t ADD COLUMN c timestamptz DEFAULT now()",
     dict(volatile_default=False, rewrites=False)),
    ("ALTER TABLE t ADD COLUMN c timestamptz DEFAULT current_timestamp", dict(volatile_default=False)),
    ("ALTER TABLE t ADD COLUMN o geometry(Point,4326) DEFAULT ST_SetSRID(ST_MakePoint(0,0),4326)",
     dict(volatile_default=False, rewrites=False, geometry_change=False)),
    ("ALTER TABLE t ADD COLUMN g geometry(Point,3857) GENERATED ALWAYS AS (ST_Transform(geom,3857)) STORED",
     dict(op=Op.add_column, rewrites=True, volatile_default=False)),
    ("ALTER TABLE IF EXISTS t ADD COLUMN IF NOT EXISTS x int",
     dict(if_exists=True, if_not_exists=True)),
    ("ALTER TABLE t DROP COLUMN IF EXISTS a",
     dict(op=Op.drop_column, column="a", if_exists=True, destructive=True)),
    ("ALTER TABLE t ALTER COLUMN a TYPE bigint",
     dict(op=Op.alter_column_type, column="a", rewrites=True, new_type="BIGINT", using=False)),
    ("ALTER TABLE t ALTER COLUMN geom TYPE geometry(Polygon,3857) USING ST_Transform(geom,3857)",
     dict(op=Op.alter_column_type, geometry_change=True, rewrites=True, using=True)),
    ("ALTER TABLE t ALTER COLUMN geom TYPE geometry(MultiPolygon,4326) USING ST_Multi(geom)",
     dict(geometry_change=True, rewrites=True)),
    ("ALTER TABLE t ALTER COLUMN geom TYPE geography USING geom::geography",
     dict(geometry_change=True)),
    ("ALTER TABLE t ALTER COLUMN geom TYPE geometry",  # drop the typmod: catalog-only
     dict(op=Op.alter_column_type, geometry_change=False, rewrites=False)),
    ("SELECT UpdateGeometrySRID('public','parcels','geom',3857)",
     dict(op=Op.alter_column_type, table="public.parcels", column="geom", geometry_change=True,
          rewrites=True, lock=AE)),
    ("SELECT UpdateGeometrySRID('parcels','geom',3857)", dict(table="parcels", column="geom")),
    ("SELECT Populate_Geometry_Columns('raw_geom'::regclass)",
     dict(op=Op.alter_column_type, table="raw_geom", geometry_change=True, rewrites=True)),
    ("SELECT AddGeometryColumn('t','g',4326,'POINT',2)",
     dict(op=Op.add_column, table="t", column="g", lock=AE)),
    ("SELECT DropGeometryColumn('public','t','g')",
     dict(op=Op.drop_column, table="public.t", column="g", destructive=True)),
    ("SELECT DropGeometryTable('t')", dict(op=Op.drop_table, destructive=True)),
    ("ALTER TABLE t ALTER COLUMN a SET NOT NULL", dict(op=Op.set_not_null, scans=True, lock=AE)),
    ("ALTER TABLE t ALTER COLUMN a DROP NOT NULL", dict(op=Op.drop_not_null, scans=False)),
    ("ALTER TABLE t ALTER COLUMN a SET DEFAULT 0", dict(op=Op.set_default)),
    ("ALTER TABLE t ALTER COLUMN a DROP DEFAULT", dict(op=Op.set_default)),
    ("ALTER TABLE t ADD CONSTRAINT c CHECK (ST_IsValid(geom))",
     dict(op=Op.add_constraint, not_valid=False, scans=True, lock=AE, object_name="c")),
    ("ALTER TABLE t ADD CONSTRAINT c CHECK (ST_IsValid(geom)) NOT VALID",
     dict(op=Op.add_constraint, not_valid=True, scans=False)),
    ("ALTER TABLE t ADD CHECK (a > 0) NOT VALID",  # sqlglot: Command
     dict(op=Op.add_constraint, not_valid=True, scans=False, parsed=False)),
    ("ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (o) REFERENCES owners(id)",
     dict(op=Op.add_constraint, lock=SRE, tables=("t", "owners"), scans=True)),
    ("ALTER TABLE t ADD CONSTRAINT u UNIQUE USING INDEX u_idx",
     dict(op=Op.add_constraint, scans=False, lock=AE)),
    ("ALTER TABLE t ADD PRIMARY KEY (id)", dict(op=Op.add_constraint, scans=True)),
    ("ALTER TABLE t VALIDATE CONSTRAINT c",
     dict(op=Op.validate_constraint, table="t", lock=SUE, object_name="c", parsed=False, warning=None)),
    ("ALTER TABLE t DROP CONSTRAINT c", dict(op=Op.drop_constraint, object_name="c")),
    ("ALTER TABLE t RENAME COLUMN a TO b", dict(op=Op.rename, column="a", lock=AE)),
    ("ALTER TABLE t RENAME a TO b", dict(op=Op.rename, column="a")),
    ("ALTER TABLE t RENAME TO u", dict(op=Op.rename, object_name="u")),
    ("ALTER INDEX i RENAME TO j", dict(op=Op.rename, index="i", lock=SUE)),
    ("ALTER TABLE t SET (fillfactor = 70)", dict(op=Op.other, lock=SUE)),
    ("ALTER TABLE t ALTER COLUMN a SET STATISTICS 500", dict(op=Op.other, lock=SUE, column="a")),
    ("ALTER TABLE t SET TABLESPACE fast", dict(op=Op.other, rewrites=True, lock=AE)),
    ("ALTER TABLE t ALTER COLUMN a SET NOT NULL, ADD COLUMN b int",
     dict(op=Op.set_not_null, actions=(Op.set_not_null, Op.add_column), scans=True)),
    ("ALTER TABLE t ADD COLUMN a int, DROP COLUMN b",
     dict(op=Op.drop_column, destructive=True, actions=(Op.add_column, Op.drop_column))),
    ('ALTER TABLE "My Table" ADD COLUMN x int', dict(table="My Table")),
    # --- maintenance
    ("ANALYZE", dict(op=Op.analyze, table=None)),
    ("ANALYZE t (a, b)", dict(op=Op.analyze, table="t")),
    ("VACUUM", dict(op=Op.vacuum, lock=SUE, transactional=False, parsed=False, warning=None)),
    ("VACUUM ANALYZE t", dict(op=Op.vacuum, table="t")),
    ("VACUUM FULL t", dict(op=Op.vacuum_full, table="t", lock=AE, rewrites=True, transactional=False)),
    ("VACUUM (FULL, ANALYZE) t", dict(op=Op.vacuum_full, rewrites=True)),
    ("VACUUM (FULL false) t", dict(op=Op.vacuum)),
    ("CLUSTER t USING t_gix",  # sqlglot raises: token grammar
     dict(op=Op.cluster, table="t", index="t_gix", lock=AE, rewrites=True, parsed=False)),
    ("CLUSTER t", dict(op=Op.cluster, table="t", transactional=True)),
    ("CLUSTER", dict(op=Op.cluster, table=None, transactional=False)),
    ("REFRESH MATERIALIZED VIEW mv", dict(op=Op.refresh_matview, table="mv", lock=AE, rewrites=True)),
    ("REFRESH MATERIALIZED VIEW CONCURRENTLY s.mv WITH DATA",
     dict(op=Op.refresh_matview, table="s.mv", lock=EXCLUSIVE, concurrently=True, rewrites=False)),
    # --- views, triggers, extensions, misc
    ("CREATE OR REPLACE VIEW v AS SELECT 1", dict(op=Op.create_view, table="v", or_replace=True, lock=AE)),
    ("CREATE MATERIALIZED VIEW mv AS SELECT * FROM t", dict(op=Op.create_view, table="mv")),
    ("CREATE VIEW v WITH (security_barrier) AS SELECT 1", dict(op=Op.create_view, parsed=False)),
    ("DROP VIEW v", dict(op=Op.drop_view, table="v", destructive=False)),
    ("DROP MATERIALIZED VIEW mv", dict(op=Op.drop_view, table="mv")),
    ("CREATE TRIGGER trg BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()",
     dict(op=Op.create_trigger, table="t", lock=SRE)),
    ("CREATE EXTENSION IF NOT EXISTS postgis",
     dict(op=Op.create_extension, object_name="postgis", if_not_exists=True, lock=NO_LOCK)),
    ("DROP EXTENSION postgis CASCADE", dict(op=Op.other, destructive=True)),
    ("COMMENT ON TABLE t IS 'x'", dict(op=Op.comment, table="t", lock=SUE)),
    ("COMMENT ON COLUMN t.a IS 'x'", dict(op=Op.comment, table="t", column="a")),
    ("COMMENT ON INDEX i IS 'x'", dict(op=Op.comment, index="i", table=None)),
    ("GRANT SELECT ON t TO public", dict(op=Op.grant, lock=NO_LOCK)),
    ("REVOKE SELECT ON t FROM public", dict(op=Op.grant)),
    ("GRANT ALL ON ALL TABLES IN SCHEMA public TO r", dict(op=Op.grant)),
    ("LOCK TABLE t IN SHARE ROW EXCLUSIVE MODE", dict(op=Op.lock_table, table="t", lock=SRE)),
    ("LOCK t", dict(op=Op.lock_table, lock=AE)),
    ("SET lock_timeout = '1s'", dict(op=Op.set_config, object_name="lock_timeout")),
    ("SET LOCAL lock_timeout TO '1s'", dict(op=Op.set_config, object_name="lock_timeout")),
    ("SELECT set_config('lock_timeout', '1s', true)", dict(op=Op.set_config, object_name="lock_timeout")),
    ("RESET lock_timeout", dict(op=Op.set_config, keyword="RESET")),
    ("BEGIN", dict(op=Op.transaction, keyword="BEGIN")),
    ("START TRANSACTION", dict(op=Op.transaction, keyword="START")),
    ("COMMIT", dict(op=Op.transaction, keyword="COMMIT")),
    ("CREATE DATABASE x", dict(op=Op.other, transactional=False)),
    ("ALTER SYSTEM SET work_mem = '1MB'", dict(op=Op.other, transactional=False)),
    ("DO $$ BEGIN PERFORM 1; END $$", dict(op=Op.other, lock=UNKNOWN_LOCK)),
    # --- DML
    ("INSERT INTO t (a) VALUES (1)", dict(op=Op.insert, table="t", lock=ROW_EXCLUSIVE)),
    ("COPY t FROM stdin", dict(op=Op.insert, table="t")),
    ("UPDATE t SET geom = ST_MakeValid(geom) WHERE NOT ST_IsValid(geom)",
     dict(op=Op.update, table="t", lock=ROW_EXCLUSIVE, destructive=False)),
    ("DELETE FROM t", dict(op=Op.delete, destructive=True)),
    ("DELETE FROM t WHERE id = 1", dict(op=Op.delete, destructive=False)),
    ("WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", dict(op=Op.delete, table="t")),
    ("SELECT * FROM t FOR UPDATE", dict(op=Op.select, lock=ROW_SHARE)),
    ("EXPLAIN SELECT * FROM t", dict(op=Op.select, explain=True, executes=False)),
    ("EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM t", dict(explain=True, executes=True)),
    ("EXPLAIN (ANALYZE false) DELETE FROM t",
     dict(op=Op.delete, explain=True, executes=False, destructive=False)),
    ("EXPLAIN ANALYZE DELETE FROM t", dict(op=Op.delete, executes=True, destructive=True)),
]


@pytest.mark.parametrize(("sql", "expected"), CASES, ids=[c[0][:50] for c in CASES])
def test_classification(sql: str, expected: dict[str, Any]) -> None:
    stmts = analyze(sql)
    assert len(stmts) == 1
    got = {k: getattr(stmts[0], k) for k in expected}
    assert got == expected


def test_every_op_is_covered() -> None:
    seen = {analyze(sql)[0].op for sql, _ in CASES}
    assert seen == set(Op)


def test_seed_migration_splits_into_statements() -> None:
    text = ("CREATE INDEX idx_bike_lanes_geom\nON bike_lanes\nUSING GIST (geom);\n\n"
            "-- then statistics\nANALYZE bike_lanes;\n")
    stmts = analyze(text)
    assert [s.op for s in stmts] == [Op.create_index, Op.analyze]
    assert stmts[0].sql == "CREATE INDEX idx_bike_lanes_geom\nON bike_lanes\nUSING GIST (geom)"
    assert (stmts[1].line, stmts[1].col) == (6, 1)
    assert parse_errors(text) == [] and parse_warnings(text) == []


def test_semicolons_inside_strings_and_bodies_do_not_split() -> None:
    text = "SELECT 'a;b'; CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql; SELECT 2"
    assert [s.op for s in analyze(text)] == [Op.select, Op.other, Op.select]


def test_empty_and_comment_only_text() -> None:
    assert analyze("") == ()
    assert analyze(" ;; -- nothing\n") == ()
    assert parse_errors("/* c */") == []


@pytest.mark.parametrize(("sql", "line", "col"), [
    ("SELEC 1", 1, 7),
    ("CREATE INDEX ON", 1, 15),
    ("SELECT 1;\n  SELECT 2\n  FROM;", 3, 6),
    ("foo bar baz", 1, 11),
    ("EXPLAIN SELEC 1", 1, 15),
    ("CREATE VIEW v AS SELEC 1", 1, 24),
    ("CLUSTER t USING", 1, 15),
    ("SELECT 1;\nSELECT 'oops", 2, 8),
])
def test_parse_errors_are_positioned(sql: str, line: int, col: int) -> None:
    errors = parse_errors(sql)
    assert len(errors) == 1
    assert errors[0][:2] == (line, col)
    assert "Token" not in errors[0][2]  # no sqlglot internals in messages
    bad = [s for s in analyze(sql) if s.op == Op.other and not s.parsed and s.warning]
    assert len(bad) == 1


def _sqlglot_accepts(sql: str) -> bool:
    import sqlglot
    from sqlglot.errors import ParseError

    try:
        sqlglot.parse_one(sql, read="postgres")
    except ParseError:
        return False
    return True


# Statements at the edge of what sqlglot parses; which side of the edge each one is on
# changes between sqlglot versions (30.31 learned SAVEPOINT). The contract holds on both
# sides: never an error; a statement sqlglot cannot parse is one warning; the lock
# analysis is the same either way.
@pytest.mark.parametrize(("sql", "op", "lock"), [
    ("CLUSTER t USING i", Op.cluster, "ACCESS EXCLUSIVE"),
    ("DROP INDEX a, b", Op.drop_index, "ACCESS EXCLUSIVE"),
    ("CHECKPOINT", Op.other, "NONE"),
    ("SAVEPOINT s", Op.transaction, "NONE"),
    ("START TRANSACTION", Op.transaction, "NONE"),
    ("CREATE INDEX i ON ONLY t (a)", Op.create_index, "SHARE"),
    ("CREATE VIEW v WITH (security_barrier) AS SELECT 1", Op.create_view, "ACCESS EXCLUSIVE"),
])
def test_sqlglot_gaps_are_warnings_not_errors(sql: str, op: Op, lock: str) -> None:
    assert parse_errors(sql) == []
    warnings = parse_warnings(sql)
    assert len(warnings) <= 1
    if not _sqlglot_accepts(sql):
        assert len(warnings) == 1
        assert analyze(sql)[0].parsed is False
    statement = analyze(sql)[0]
    assert (statement.op, statement.lock) == (op, lock)


@pytest.mark.parametrize("sql", ["VACUUM FULL t", "REINDEX INDEX i", "EXPLAIN ANALYZE SELECT 1",
                                 "ALTER TABLE t VALIDATE CONSTRAINT c", "CREATE EXTENSION postgis"])
def test_commands_recognized_by_tokens_are_silent(sql: str) -> None:
    assert diagnose(sql) == []


def test_unknown_commands_warn() -> None:
    assert diagnose("ALTER TABLE t FROBNICATE") == [
        (1, 1, "ALTER is not analyzed (sqlglot treats it as an opaque command)", "warning")]
    assert analyze("ALTER TABLE t FROBNICATE")[0].lock == UNKNOWN_LOCK


def test_diagnose_sorts_errors_and_warnings() -> None:
    out = diagnose("DO $$ x $$;\nSELEC 1;")
    assert [d[3] for d in out] == ["warning", "error"]


def test_geometry_typmod() -> None:
    assert geometry_typmod("geometry(Polygon,3857)") == ("POLYGON", 3857)
    assert geometry_typmod("GEOMETRY(MULTIPOLYGON, 4326)") == ("MULTIPOLYGON", 4326)
    assert geometry_typmod("geometry") == ("GEOMETRY", None)
    assert geometry_typmod("bigint") is None
    assert geometry_typmod("((") is None


def test_lock_helpers() -> None:
    assert blocks_writes(SHARE) and not blocks_reads(SHARE)
    assert blocks_reads(AE) and blocks_writes(AE)
    assert not blocks_writes(SUE) and not blocks_writes(ROW_EXCLUSIVE)
    assert analyze("CREATE INDEX i ON t (a)")[0].blocks_writes


def test_analyze_is_cached_and_pure() -> None:
    a = analyze("ANALYZE t")
    assert analyze("ANALYZE t") is a or analyze("ANALYZE t") == a


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_analyze_never_raises(text: str) -> None:
    stmts = analyze(text)
    assert all(isinstance(s.op, Op) for s in stmts)
    for line, col, _ in parse_errors(text) + parse_warnings(text):
        assert line >= 1 and col >= 1


_SQLISH = st.lists(st.sampled_from([
    "SELECT", "CREATE", "INDEX", "CONCURRENTLY", "ON", "t", "(", ")", ",", ";", "'", '"', "$$",
    "ALTER", "TABLE", "ADD", "COLUMN", "DROP", "VACUUM", "FULL", "EXPLAIN", "ANALYZE", "USING",
    "gist", "geom", "--", "/*", "*/", "\n", "1", "CLUSTER", "NOT", "VALID", "REINDEX",
]), max_size=30).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(_SQLISH)
def test_analyze_never_raises_on_sql_like_text(text: str) -> None:
    analyze(text)
    parse_errors(text)
    diagnose(text)
