"""Laws of the read path (issue 25), checked with hypothesis against a real PostGIS.

* ``check_read_only`` refuses every query that combines a harmless SELECT with a write
  (``;``-joined statements, a data-modifying WITH, ``FOR UPDATE``, ``COPY … TO PROGRAM``)
  or a function that acts outside the transaction (``set_config``,
  ``pg_terminate_backend``, ``lo_export``, ``dblink``…), wherever the call sits;
* running such a query through ``read_rolled_back`` changes nothing: the victim table's
  rows, the list of relations, the client sessions (another session stays alive);
* even with the parser out of the way, the extended protocol in a READ ONLY transaction
  runs no second statement and no write.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from honua_plan.errors import DatabaseError, NotReadOnlyError
from honua_plan.providers.postgis.sqlexec import Session, connect, execute, read_rolled_back
from honua_plan.sql.readonly import check_read_only

pytestmark = pytest.mark.integration

SETTINGS = settings(max_examples=60, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

PWNED_FILE = Path("/tmp/honua-readonly-law-pwned")

HARMLESS = ("SELECT count(*) FROM victim", "SELECT id FROM victim WHERE id > 0", "SELECT 1",
            "SELECT max(id) FROM victim", "SELECT ST_IsValid(geom) FROM victim LIMIT 10")
WRITES = ("DELETE FROM victim", "DROP TABLE victim", "COMMIT; DROP TABLE victim",
          "CREATE TABLE pwned (id int)", "INSERT INTO victim (id) VALUES (99)",
          "UPDATE victim SET id = 0", "TRUNCATE victim", "ROLLBACK; DELETE FROM victim",
          "SET default_transaction_read_only = off; DELETE FROM victim",
          f"COPY victim TO PROGRAM 'touch {PWNED_FILE}'")
DML = ("DELETE FROM victim", "UPDATE victim SET id = id + 100", "INSERT INTO victim (id) VALUES (77)")
SEPARATORS = (";", "; ", ";\n", "; /* next */ ", ";--\n", " ;\t")


@dataclass
class World:
    dsn: str
    other_pid: int


def functions(pid: int) -> tuple[str, ...]:
    return (
        "set_config('default_transaction_read_only', 'off', false)",
        f"pg_terminate_backend({pid})",
        f"pg_cancel_backend({pid})",
        f"lo_export(lo_from_bytea(0, 'x'), '{PWNED_FILE}')",
        "dblink('dbname=postgres', 'DROP TABLE victim')",
        "pg_advisory_lock(42)",
        "nextval('victim_seq')",
        "PG_TERMINATE_BACKEND(1)",
        "pg_catalog.set_config('search_path', 'x', false)",
    )


@st.composite
def attacks(draw: st.DrawFn, pid: int) -> str:
    harmless = draw(st.sampled_from(HARMLESS))
    kind = draw(st.sampled_from(("joined", "cte", "lock", "function", "copy")))
    if kind == "joined":
        write = draw(st.sampled_from(WRITES))
        first = draw(st.booleans())
        sep = draw(st.sampled_from(SEPARATORS))
        return f"{harmless}{sep}{write}" if first else f"{write}{sep}{harmless}"
    if kind == "cte":
        dml = draw(st.sampled_from(DML))
        nested = draw(st.booleans())
        cte = f"WITH w AS ({dml} RETURNING 1) "
        return f"SELECT * FROM ({cte}{harmless}) s" if nested else cte + harmless
    if kind == "lock":
        strength = draw(st.sampled_from(("UPDATE", "NO KEY UPDATE", "SHARE", "KEY SHARE")))
        inner = f"SELECT id FROM victim FOR {strength}"
        return draw(st.sampled_from((inner, f"SELECT count(*) FROM ({inner}) s",
                                     f"SELECT 1 WHERE EXISTS ({inner})")))
    if kind == "copy":
        target = draw(st.sampled_from((f"PROGRAM 'touch {PWNED_FILE}'", f"'{PWNED_FILE}'")))
        return f"COPY ({harmless}) TO {target}"
    call = draw(st.sampled_from(functions(pid)))
    place = draw(st.sampled_from(("target", "where", "subquery", "from", "cte")))
    if place == "target":
        return f"SELECT {call}, x.* FROM ({harmless}) x"
    if place == "where":
        return f"SELECT * FROM ({harmless}) x WHERE {call} IS NOT NULL"
    if place == "subquery":
        return f"SELECT * FROM ({harmless}) x WHERE EXISTS (SELECT {call})"
    if place == "from":
        return f"SELECT * FROM {call} AS f(v text)"
    return f"WITH c AS (SELECT {call} AS v) SELECT * FROM ({harmless}) x, c"


def snapshot(dsn: str) -> tuple[object, ...]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT count(*), coalesce(sum(id), 0) FROM victim").fetchone()
        relations = conn.execute(
            "SELECT array_agg(relname ORDER BY relname) FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = 'public'").fetchone()
        objects = conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()
        sessions = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'").fetchone()
        return rows, relations, objects, sessions, PWNED_FILE.exists()


@pytest.fixture
def world(pg_dsn: str) -> Iterator[World]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE victim_seq")
        conn.execute("CREATE TABLE victim (id int PRIMARY KEY, geom geometry(Point, 4326))")
        conn.execute("INSERT INTO victim SELECT i, ST_SetSRID(ST_MakePoint(i, i), 4326) "
                     "FROM generate_series(1, 20) i")
    PWNED_FILE.unlink(missing_ok=True)
    with psycopg.connect(pg_dsn, autocommit=True) as other:
        yield World(pg_dsn, other.info.backend_pid)
        assert other.execute("SELECT 1").fetchone() == (1,)  # the other session survived
    assert not PWNED_FILE.exists()


@given(data=st.data())
@SETTINGS
def test_attacks_are_refused_and_change_nothing(world: World, data: st.DataObject) -> None:
    query = data.draw(attacks(world.other_pid), label="query")
    assert check_read_only(query), query
    before = snapshot(world.dsn)
    with connect(world.dsn) as conn:
        session = Session(conn)
        with pytest.raises(NotReadOnlyError):
            read_rolled_back(session, query, 5.0)
        assert session.log.count == 0  # refused unsent
        assert read_rolled_back(session, "SELECT count(*) FROM victim", 5.0) == [(20,)]
    assert snapshot(world.dsn) == before


@given(data=st.data())
@SETTINGS
def test_without_the_parser_protocol_and_read_only_mode_still_hold(world: World, data: st.DataObject) -> None:
    """Defence in depth: what the parser refuses, the transaction and the protocol stop too."""
    harmless = data.draw(st.sampled_from(HARMLESS), label="harmless")
    sep = data.draw(st.sampled_from(SEPARATORS), label="separator")
    write = data.draw(st.sampled_from(WRITES + tuple(f"WITH w AS ({d} RETURNING 1) {harmless}" for d in DML)),
                      label="write")
    query = write if write.startswith("WITH") else f"{harmless}{sep}{write}"
    before = snapshot(world.dsn)
    with connect(world.dsn) as conn, pytest.raises(DatabaseError), conn.transaction(force_rollback=True):
        execute(conn, "SET TRANSACTION READ ONLY", fetch=False)
        execute(conn, query, extended=True)
    assert snapshot(world.dsn) == before
