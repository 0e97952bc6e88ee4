"""``sql.readonly``: which user-written queries count as read-only, and what a migration
statement does that the planner cannot rate (issue 25, items 1, 2 and 14)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from honua_plan.sql.readonly import check_read_only, function_verdict, hidden_effects

REPO = Path(__file__).resolve().parents[2]


def _example_queries() -> list[str]:
    """Every ``query:`` of the example repository's migrations and layers."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "query" and isinstance(value, str):
                    found.append(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for path in sorted([*REPO.glob("migrations/*.yaml"), *REPO.glob("environments/*/layers/*.yaml")]):
        walk(yaml.safe_load(path.read_text()))
    return found


EXAMPLE_QUERIES = _example_queries()


def test_the_example_has_queries() -> None:
    assert len(EXAMPLE_QUERIES) >= 8


@pytest.mark.parametrize("query", EXAMPLE_QUERIES)
def test_example_queries_are_read_only(query: str) -> None:
    assert check_read_only(query) == ()


@pytest.mark.parametrize("query", [
    "SELECT COUNT(*) FROM bike_lanes",
    "SELECT count(*) FILTER (WHERE NOT ST_IsValid(geom)) FROM bike_lanes;",
    "WITH t AS (SELECT * FROM bike_lanes) SELECT max(id) FROM t",
    "EXPLAIN (ANALYZE, FORMAT TEXT) SELECT * FROM bike_lanes WHERE id = 1",
    "SELECT extract(year FROM now()), substring(name FROM 1 FOR 3), trim(both FROM name) FROM bike_lanes",
    "SELECT coalesce(name, 'x'), greatest(1, 2), nullif(a, b), current_date FROM t",
    "SELECT * FROM bike_lanes TABLESAMPLE SYSTEM (10)",
    "SELECT pg_catalog.count(*) FROM pg_indexes WHERE indexdef LIKE '%gist%'",
    "SELECT ST_AsGeoJSON(ST_Transform(geom, 3857)), ST_SRID(geom), ST_XMin(geom) FROM bike_lanes",
    "SELECT 1 FROM geometry_columns WHERE srid = 4326 UNION ALL SELECT 2",
    "SELECT jsonb_build_object('n', count(*)) FROM bike_lanes",
    "SELECT x FROM (VALUES (1), (2)) AS v(x) WHERE x = ANY(ARRAY[1])",
])
def test_accepted(query: str) -> None:
    assert check_read_only(query) == ()


@pytest.mark.parametrize(("query", "message"), [
    ("COMMIT; DROP TABLE keepme", "holds 2 statements"),
    ("SELECT COUNT(*) FROM bike_lanes /* x */; COMMIT; CREATE TABLE pwned (id int)", "holds 3 statements"),
    ("DELETE FROM bike_lanes", "DELETE is not a read-only query"),
    ("COPY (SELECT 1) TO PROGRAM 'id'", "COPY is not a read-only query"),
    ("DO $$ BEGIN END $$", "DO is not a read-only query"),
    ("CALL p()", "CALL is not a read-only query"),
    ("SET statement_timeout = 0", "SET is not a read-only query"),
    ("WITH gone AS (DELETE FROM t RETURNING *) SELECT count(*) FROM gone", "WITH gone AS (DELETE …) modifies data"),
    ("SELECT * FROM (WITH u AS (UPDATE t SET a = 1 RETURNING a) SELECT * FROM u) s", "modifies data"),
    ("SELECT * FROM bike_lanes FOR UPDATE", "FOR UPDATE/SHARE"),
    ("SELECT * FROM t WHERE id IN (SELECT id FROM u FOR SHARE)", "FOR UPDATE/SHARE"),
    ("SELECT * INTO copy FROM bike_lanes", "SELECT INTO creates a table"),
    ("SELECT set_config('default_transaction_read_only', 'off', false)", "set_config changes a setting"),
    ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity", "pg_terminate_backend stops another session"),
    ("SELECT pg_cancel_backend(1)", "cancels another session"),
    ("SELECT lo_export(1, '/tmp/x')", "lo_export reads or writes the server's files"),
    ("SELECT * FROM dblink('host=x', 'DROP TABLE t') AS r(a text)", "dblink runs SQL on another connection"),
    ("SELECT pg_read_file('/etc/passwd')", "reads or writes the server's files"),
    ("SELECT pg_advisory_lock(1)", "advisory lock"),
    ("SELECT nextval('s')", "advances a sequence"),
    ("SELECT query_to_xml('DELETE FROM t', true, true, '')", "runs SQL text"),
    ("SELECT purge()", "function purge is not known to be read-only"),
    ("SELECT count(*) FROM t WHERE id = (SELECT audit.log_read())", "schema audit"),
    ("SELECT 1 OPERATOR(public.===) 2", "not a built-in operator"),
    ("SELECT * FROM t TABLESAMPLE mysampler (1)", "TABLESAMPLE method mysampler"),
    ("SELECT rolpassword FROM pg_authid", "holds credentials"),
    ("", "empty"),
    ("SELECT FROM WHERE", "not valid PostgreSQL"),
])
def test_refused_with_message(query: str, message: str) -> None:
    problems = check_read_only(query)
    assert problems, query
    assert any(message in p.message for p in problems), problems


def test_problem_positions_are_in_the_query() -> None:
    [problem] = check_read_only("SELECT count(*)\n  FROM t\n WHERE pg_terminate_backend(1)")
    assert (problem.line, problem.col) == (3, 8)
    [problem] = check_read_only("SELECT 1;\nDROP TABLE t")
    assert (problem.line, problem.col) == (2, 1)  # where the second statement starts


def test_explain_only_mode_is_for_the_plan_probe() -> None:
    assert check_read_only("EXPLAIN (FORMAT JSON) UPDATE t SET a = upper(a)", explain_only=True) == ()
    assert check_read_only("EXPLAIN ANALYZE UPDATE t SET a = 1", explain_only=True)
    assert check_read_only("UPDATE t SET a = 1", explain_only=True)
    assert check_read_only("EXPLAIN UPDATE t SET a = purge(a)", explain_only=True)
    assert check_read_only("EXPLAIN UPDATE t SET a = 1")  # a check's query stays a SELECT


def test_function_verdict() -> None:
    assert function_verdict(("st_isvalid",)) is None
    assert function_verdict(("pg_catalog", "count")) is None
    assert function_verdict(("public", "st_area")) is None
    assert "not known" in (function_verdict(("f",)) or "")
    assert "schema evil" in (function_verdict(("evil", "count")) or "")


@pytest.mark.parametrize(("statement", "effects"), [
    ("CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'DELETE FROM bike_lanes'",
     "creates function f, whose body runs DELETE"),
    ("CREATE PROCEDURE p() LANGUAGE plpgsql AS $$BEGIN UPDATE t SET a = 1; END$$",
     "creates procedure p, whose body has UPDATE"),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE plpython3u AS 'return 1'", "written in plpython3u"),
    ("SELECT f()", "calls f()"),
    ("UPDATE bike_lanes SET name = tidy(name)", "calls tidy()"),
    ("CALL archive_lanes()", "calls archive_lanes()"),
    ("SELECT pg_terminate_backend(42)", "calls pg_terminate_backend()"),
])
def test_hidden_effects_found(statement: str, effects: str) -> None:
    assert effects in (hidden_effects(statement) or "")


@pytest.mark.parametrize("statement", [
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT 1'",
    "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.t = now(); RETURN NEW; END$$",
    "SELECT AddGeometryColumn('t', 'g', 4326, 'POINT', 2)",
    "SELECT UpdateGeometrySRID('t', 'g', 3857)",
    "SELECT setval('s', 10)",
    "UPDATE bike_lanes SET geom = ST_MakeValid(geom) WHERE NOT ST_IsValid(geom)",
    "CREATE TABLE t (id int DEFAULT nextval('s'))",
    "EXPLAIN SELECT f()",
])
def test_hidden_effects_not_found(statement: str) -> None:
    assert hidden_effects(statement) is None
