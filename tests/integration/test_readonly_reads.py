"""Plan-time reads are read-only by construction (issue 25, reproductions 1 and 2).

A precondition's or check's query is a configuration's text, untrusted until approved:
``honua validate`` refuses one that is not a single read-only SELECT (at its
``file:line:col``), and the one read path (``sqlexec.read_rolled_back``) refuses it again,
unsent, runs what passes in a READ ONLY transaction, by the extended protocol (one
statement at most).
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest

from honua_plan.errors import NotReadOnlyError
from honua_plan.providers.postgis.sqlexec import (
    Session,
    StatementError,
    connect,
    execute,
    read_rolled_back,
)
from tests.helpers import copy_example, edit, run

pytestmark = pytest.mark.integration

MIG3 = "migrations/003_optimize_bike_lanes.yaml"
LAYER = "environments/dev/layers/bike-lanes.yaml"


def table_exists(dsn: str, name: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{name}",)).fetchone()
        return bool(row and row[0])


@pytest.fixture
def keepme(pg_dsn: str) -> str:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE keepme (id int)")
        conn.execute("INSERT INTO keepme VALUES (1), (2)")
    return pg_dsn


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "repo", server=False)


def add_precondition(repo: Path, query: str, expected: str = "0 rows") -> int:
    """Add a sql-check precondition to migration 003; the line of its ``query:``."""
    path = repo / MIG3
    edit(path, "    - type: column-exists\n      table: bike_lanes\n      column: geom\n",
         "    - type: column-exists\n      table: bike_lanes\n      column: geom\n"
         f"    - type: sql-check\n      query: {query!r}\n      expected: {expected!r}\n")
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if "query: " + repr(query) in line)


# ----------------------------------------------------------------- the read path


def test_extended_protocol_runs_one_statement_at_most(keepme: str) -> None:
    with connect(keepme) as conn:
        with pytest.raises(StatementError) as err:
            execute(conn, "SELECT 1; SELECT 2", extended=True)
        assert err.value.sqlstate == "42601"  # cannot insert multiple commands
        with pytest.raises(StatementError):
            execute(conn, "SELECT 1; COMMIT; DROP TABLE keepme", extended=True)
        # other callers keep the simple protocol (a migration step sends several statements)
        execute(conn, "SELECT 1; SET application_name = 'both_ran'", fetch=False)
        assert execute(conn, "SHOW application_name") == [("both_ran",)]
        assert execute(conn, "SELECT count(*) FROM keepme", extended=True) == [(2,)]
    assert table_exists(keepme, "keepme")


@pytest.mark.parametrize("query", [
    "COMMIT; DROP TABLE keepme",
    "SELECT 1; COMMIT; DROP TABLE keepme",
    "WITH gone AS (DELETE FROM keepme RETURNING *) SELECT count(*) FROM gone",
    "SELECT set_config('default_transaction_read_only', 'off', false)",
    "SELECT pg_terminate_backend(pg_backend_pid())",
])
def test_read_rolled_back_refuses_unsent(keepme: str, query: str) -> None:
    with connect(keepme) as conn:
        session = Session(conn)
        with pytest.raises(NotReadOnlyError, match="not read-only"):
            read_rolled_back(session, query, 5.0)
        assert session.log.count == 0  # nothing was sent
        assert read_rolled_back(session, "SELECT count(*) FROM keepme", 5.0) == [(2,)]
    assert table_exists(keepme, "keepme")
    with psycopg.connect(keepme) as conn:
        assert conn.execute("SELECT count(*) FROM keepme").fetchone() == (2,)


def test_read_only_connection_refuses_writes(keepme: str) -> None:
    dsn = keepme + " options='-c search_path=public'"
    with connect(dsn, read_only=True) as conn:
        assert execute(conn, "SHOW default_transaction_read_only") == [("on",)]
        assert execute(conn, "SHOW search_path") == [("public",)]  # the DSN's options kept
        with pytest.raises(StatementError) as err:
            execute(conn, "DROP TABLE keepme")
        assert err.value.sqlstate == "25006"  # read_only_sql_transaction
    assert table_exists(keepme, "keepme")


# ------------------------------------------------------------- reproduction 1


def test_plan_does_not_run_a_writing_precondition(repo: Path, keepme: str) -> None:
    line = add_precondition(repo, "COMMIT; DROP TABLE keepme")
    result = run(repo, "validate", "--env", "dev")
    assert result.exit_code == 1, result.output
    assert re.search(rf"{re.escape(MIG3)}:{line}:\d+: .*not read-only.*2 statements", result.output), result.output
    result = run(repo, "plan", "--env", "dev", "--no-simulate", env={"HONUA_PG_DSN": keepme})
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert table_exists(keepme, "keepme")
    result = run(repo, "ci", "plan", "--out-dir", str(repo / "out"),
                 env={"HONUA_PG_DSN": keepme, "CI": "true"})
    assert result.exit_code == 1, result.output
    assert table_exists(keepme, "keepme")


def test_plan_does_not_terminate_another_session(repo: Path, keepme: str) -> None:
    with psycopg.connect(keepme, autocommit=True) as other:
        pid = other.info.backend_pid
        add_precondition(repo, f"SELECT pg_terminate_backend({pid})", "1 row")
        result = run(repo, "plan", "--env", "dev", "--no-simulate", env={"HONUA_PG_DSN": keepme})
        assert result.exit_code == 1, result.output
        assert "pg_terminate_backend stops another session" in result.output
        assert other.execute("SELECT 1").fetchone() == (1,)  # still alive


def test_precondition_that_slipped_past_validation_is_refused_at_the_read(keepme: str) -> None:
    from honua_plan.checks.preconditions import query_preconditions
    from honua_plan.config.models import Migration

    migration = Migration.model_validate({
        "apiVersion": "honua.io/v1", "kind": "Migration", "metadata": {"id": "009"},
        "spec": {"preConditions": [{"type": "sql-check", "query": "COMMIT; DROP TABLE keepme",
                                    "expected": "0 rows"}],
                 "up": [{"name": "noop", "type": "sql", "content": "SELECT 1"}]},
    })
    with connect(keepme) as conn:
        found = query_preconditions(Session(conn), migration, {})
    ok, message = found["009#0"]
    assert not ok and "not read-only" in message
    assert table_exists(keepme, "keepme")


# ------------------------------------------------------------- reproduction 2

_LONG = "/* " + "the number of bike lanes, counted for the health check " * 2 + "*/"
BAD_CHECK = f"SELECT COUNT(*) FROM bike_lanes {_LONG}; COMMIT; CREATE TABLE pwned (id int)"


def test_writing_health_check_is_a_validate_error(repo: Path) -> None:
    edit(repo / LAYER, 'query: "SELECT COUNT(*) FROM bike_lanes"', f"query: {BAD_CHECK!r}")
    line = next(i for i, text in enumerate((repo / LAYER).read_text().splitlines(), 1) if "pwned" in text)
    result = run(repo, "validate", "--env", "dev")
    assert result.exit_code == 1, result.output
    assert re.search(rf"{re.escape(LAYER)}:{line}:\d+: .*not read-only", result.output), result.output


def test_check_label_shows_the_whole_query() -> None:
    from honua_plan.config.models import Check, Precondition

    assert "CREATE TABLE pwned" in Check(type="query", query=BAD_CHECK, expected="> 0").label
    pre = Precondition(type="sql-check", query=BAD_CHECK, expected="1 row", message="lanes exist")
    assert "CREATE TABLE pwned" in pre.label and pre.label.startswith("lanes exist")


def test_check_that_slipped_past_validation_is_refused_at_apply_time(keepme: str) -> None:
    from honua_plan.checks.validate import run_check
    from honua_plan.plan.model import CheckRecord

    with psycopg.connect(keepme, autocommit=True) as conn:
        conn.execute("CREATE TABLE bike_lanes (id int)")
    with connect(keepme) as conn:
        session = Session(conn)
        for kind in ("query", "performance"):
            result = run_check(session, CheckRecord(name="count", type=kind, query=BAD_CHECK,
                                                    expected="> 0" if kind == "query" else "Seq Scan"))
            assert not result.ok and "not read-only" in result.message, result
        good = run_check(session, CheckRecord(name="count", type="query",
                                              query="SELECT COUNT(*) FROM bike_lanes", expected="= 0"))
        assert good.ok, good
    assert not table_exists(keepme, "pwned")
