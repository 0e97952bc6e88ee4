"""The single SQL door: dry run, logging, identifier quoting, redacted errors."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from honua_plan.errors import DatabaseError
from honua_plan.providers.postgis import catalog as postgis
from honua_plan.providers.postgis.sqlexec import (
    Session,
    StatementError,
    StatementLog,
    connect,
    execute,
    ident,
    open_session,
    qualified,
    split_name,
    split_qualified,
)

PASSWORD = "Tr0ub4dor-" + uuid.uuid4().hex[:10]


@pytest.fixture
def conn(pg_dsn: str) -> Iterator[psycopg.Connection]:
    c = connect(pg_dsn)
    try:
        yield c
    finally:
        c.close()


def _exists(conn: psycopg.Connection, name: str) -> bool:
    [(found,)] = execute(conn, "SELECT to_regclass(%s) IS NOT NULL", [name])
    return bool(found)


# --- names (no database) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("bike_lanes", ("bike_lanes",)),
        ("public.bike_lanes", ("public", "bike_lanes")),
        ('"Odd.Schema"."bike ""lanes"""', ("Odd.Schema", 'bike "lanes"')),
        ('bike "lanes"', ('bike "lanes"',)),
        ("db.s.t", ("db", "s", "t")),
        ("CamelCase", ("CamelCase",)),
    ],
)
def test_split_name(name: str, parts: tuple[str, ...]) -> None:
    assert split_name(name) == parts


@pytest.mark.parametrize("bad", ["", "a.", ".a", "a..b", '"open', '"a"b', "a.b.c.d"])
def test_split_name_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        split_name(bad)


def test_identifier_helpers_render_quoted() -> None:
    assert ident("public.bike_lanes").as_string(None) == '"public"."bike_lanes"'
    assert ident("s", "a.b").as_string(None) == '"s"."a.b"'
    assert qualified("bike_lanes").as_string(None) == '"public"."bike_lanes"'
    assert qualified('bike "lanes"', "gis").as_string(None) == '"gis"."bike ""lanes"""'
    assert split_qualified("x.y") == ("x", "y")


def test_dry_run_without_connection_logs_rendered_text() -> None:
    log = StatementLog()
    stmt = sql.SQL("DROP TABLE {}").format(qualified("bike_lanes"))
    assert execute(None, stmt, log=log, dry_run=True) == []
    assert log.count == 1 and not log.entries[0].executed
    assert log.render() == 'DROP TABLE "public"."bike_lanes";'
    with pytest.raises(DatabaseError):
        execute(None, "SELECT 1")


# --- against the database ------------------------------------------------------------


def test_execute_returns_tuples_and_logs(conn: psycopg.Connection) -> None:
    log = StatementLog()
    assert execute(conn, "SELECT %s::int + 1", [41], log=log) == [(42,)]
    assert execute(conn, "CREATE TABLE t (id int)", log=log) == []
    assert execute(conn, "SELECT 1", log=log, fetch=False) == []
    assert log.count == 3
    assert all(e.executed and e.seconds >= 0 for e in log)
    assert log.entries[0].params == "(41,)"


def test_dry_run_does_not_execute(conn: psycopg.Connection) -> None:
    log = StatementLog()
    stmt = sql.SQL("CREATE TABLE {} (id int)").format(qualified("never"))
    assert execute(conn, stmt, log=log, dry_run=True) == []
    assert not _exists(conn, "public.never")
    assert log.texts == ['CREATE TABLE "public"."never" (id int)']

    session = Session(conn, dry_run=True)
    session.execute(stmt, fetch=False)
    assert session.execute("SELECT 7", read=True) == [(7,)]  # reads still run
    assert not _exists(conn, "public.never")
    assert session.log.count == 2
    assert session.log.render() == 'CREATE TABLE "public"."never" (id int);'
    facts = postgis.refresh(session)  # refresh works in a dry-run session
    assert facts.statements >= 2


def test_weird_identifiers_round_trip(conn: psycopg.Connection) -> None:
    table = qualified('bike "lanes"')
    execute(
        conn,
        sql.SQL("CREATE TABLE {} ({} int, geom geometry(Point, 4326))").format(
            table, ident("Lane; DROP TABLE x")
        ),
        fetch=False,
    )
    execute(conn, sql.SQL("INSERT INTO {} VALUES (%s, NULL)").format(table), [5], fetch=False)
    assert execute(
        conn, sql.SQL("SELECT {} FROM {}").format(ident("Lane; DROP TABLE x"), table)
    ) == [(5,)]
    t = postgis.refresh(conn).table('public.bike "lanes"')
    assert t is not None and t.columns[0].name == "Lane; DROP TABLE x"
    assert postgis.count_invalid_geometries(conn, 'bike "lanes"', "geom") == (0, 0, 1)


def test_statement_error_carries_sqlstate(conn: psycopg.Connection) -> None:
    log = StatementLog()
    with pytest.raises(StatementError) as info:
        execute(conn, sql.SQL("SELECT * FROM {}").format(qualified("missing")), log=log)
    err = info.value
    assert isinstance(err, DatabaseError)
    assert err.sqlstate == "42P01"
    assert isinstance(err.__cause__, psycopg.errors.UndefinedTable)
    assert "SQLSTATE 42P01" in str(err) and '"public"."missing"' in str(err)
    assert log.count == 1  # failed statements are logged too
    # the connection stays usable in autocommit mode
    assert execute(conn, "SELECT 1") == [(1,)]


@pytest.fixture
def role_dsn(conn: psycopg.Connection, pg_dsn: str) -> Iterator[str]:
    role = f"r_{uuid.uuid4().hex[:8]}"
    execute(
        conn,
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(PASSWORD)
        ),
        fetch=False,
    )
    parts = [p for p in pg_dsn.split() if not p.startswith("user=")]
    try:
        yield " ".join([*parts, f"user={role}", f"password={PASSWORD}"])
    finally:
        execute(conn, sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)), fetch=False)


def test_errors_and_logs_never_show_the_password(role_dsn: str) -> None:
    log = StatementLog()
    with open_session(role_dsn, log=log) as session:
        assert session.execute("SELECT current_user") != []
        # an error message that echoes the secret back, in a statement that contains it
        with pytest.raises(StatementError) as info:
            session.execute(sql.SQL("SELECT {}::int").format(sql.Literal(PASSWORD)))
        with pytest.raises(StatementError) as info2:
            session.execute("SELECT %s::int", [PASSWORD])
    for text in (
        str(info.value),
        info.value.statement,
        str(info2.value),
        log.render(include_reads=True),
    ):
        assert PASSWORD not in text
    assert info.value.sqlstate == "22P02"
    assert "***" in str(info.value)
    assert all(PASSWORD not in str(e) for e in log)


@pytest.mark.parametrize("style", ["conninfo", "url"])
def test_connect_failure_is_redacted(style: str) -> None:
    if style == "url":
        dsn = f"postgresql://someone:{PASSWORD}@/nowhere?host=/nonexistent-socket-dir&port=1"
    else:
        dsn = f"host=/nonexistent-socket-dir port=1 dbname=nowhere user=someone password={PASSWORD}"
    with pytest.raises(DatabaseError) as info:
        connect(dsn, connect_timeout=2)
    assert str(info.value).startswith("could not connect to datasource: ")
    assert PASSWORD not in str(info.value)
    assert not isinstance(info.value, StatementError)
