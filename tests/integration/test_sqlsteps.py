"""SQL steps against a real PostGIS: transactions, CONCURRENTLY, lock-timeout retry, cleanup."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from honua_plan.errors import ApplyError
from honua_plan.plan.model import Operation
from honua_plan.providers.postgis.sqlexec import Session, open_session
from honua_plan.providers.postgis.sqlsteps import (
    SqlStepError,
    drop_invalid_indexes,
    find_invalid_indexes,
    run_sql_operation,
)


@pytest.fixture
def session(pg_dsn: str) -> Iterator[Session]:
    s = open_session(pg_dsn)
    try:
        yield s
    finally:
        s.close()


def _op(sql: str, name: str = "step", **kw: Any) -> Operation:
    return Operation(kind="sql", name=name, sql=sql, **kw)


def _one(session: Session, query: str, params: Any = None) -> Any:
    rows = session.execute(query, params, read=True)
    return rows[0][0] if rows else None


def _index_state(session: Session, name: str) -> tuple[bool, bool] | None:
    """(indisvalid, indisready) of index ``name``, None when it does not exist."""
    rows = session.execute(
        "SELECT i.indisvalid, i.indisready FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname = %s",
        [name],
        read=True,
    )
    return (rows[0][0], rows[0][1]) if rows else None


def _lanes(session: Session, rows: int = 200) -> None:
    session.execute(
        "CREATE TABLE bike_lanes (id bigserial PRIMARY KEY, name text, "
        "geom geometry(LineString, 4326))"
    )
    session.execute(
        "INSERT INTO bike_lanes (name, geom) SELECT 'lane ' || (g %% 50), "
        "ST_SetSRID(ST_MakeLine(ST_MakePoint(-122.6 + g * 0.001, 45.5), "
        "ST_MakePoint(-122.6 + g * 0.001, 45.51)), 4326) FROM generate_series(1, %s) AS g",
        [rows],
    )


# --------------------------------------------------------------------------- transactional


def test_transactional_step_commits_with_local_timeouts(session: Session) -> None:
    op = _op(
        "CREATE TABLE t (id int PRIMARY KEY, v text);\nINSERT INTO t VALUES (1, 'a'), (2, 'b');",
        lock_timeout_s=2, statement_timeout_s=30,
    )
    result = run_sql_operation(session, op)
    assert result.statements == 2
    assert result.retried == 0 and result.cleaned_invalid_indexes == []
    assert _one(session, "SELECT count(*) FROM t") == 2
    texts = session.log.texts
    assert """SET LOCAL "lock_timeout" = '2000ms'""" in texts
    assert """SET LOCAL "statement_timeout" = '30000ms'""" in texts
    # SET LOCAL ended with the transaction: nothing leaks into the session
    assert _one(session, "SHOW lock_timeout") == "0"
    assert _one(session, "SHOW statement_timeout") == "0"


def test_timeouts_omitted_when_none(session: Session) -> None:
    run_sql_operation(session, _op("CREATE TABLE t (id int)"))
    assert not any("timeout" in t for t in session.log.texts)


def test_failing_statement_rolls_back_the_whole_step(session: Session) -> None:
    op = _op(
        "CREATE TABLE a (id int);\nINSERT INTO a VALUES (1);\nINSERT INTO missing_table VALUES (1);",
        name="Create a",
    )
    with pytest.raises(SqlStepError) as info:
        run_sql_operation(session, op)
    err = info.value
    assert isinstance(err, ApplyError)
    assert err.sqlstate == "42P01"
    assert err.step == "Create a"
    assert "Create a" in err.message and "42P01" in err.message and "missing_table" in err.message
    assert _one(session, "SELECT to_regclass('a')") is None  # nothing left behind


def test_error_message_is_redacted(session: Session) -> None:
    op = _op("SELECT 'postgresql://bob:hunter2-secret@db/x'::int")
    with pytest.raises(SqlStepError) as info:
        run_sql_operation(session, op)
    assert "hunter2-secret" not in info.value.message
    assert info.value.sqlstate == "22P02"


def test_step_without_sql_is_an_apply_error(session: Session) -> None:
    with pytest.raises(ApplyError, match="no SQL"):
        run_sql_operation(session, Operation(kind="sql", name="empty", sql="  "))


# --------------------------------------------------------------------------- CONCURRENTLY


def test_cic_runs_outside_a_transaction(session: Session) -> None:
    _lanes(session)
    op = _op(
        "CREATE INDEX CONCURRENTLY idx_bike_lanes_geom ON bike_lanes USING GIST (geom);\n"
        "ANALYZE bike_lanes;",
        transactional=False, lock_timeout_s=0.5, statement_timeout_s=60,
    )
    result = run_sql_operation(session, op)
    assert result.statements == 2
    assert _index_state(session, "idx_bike_lanes_geom") == (True, True)
    texts = session.log.texts
    # statement_timeout for the step, no short lock_timeout for the CIC, ANALYZE gets one
    cic = texts.index(next(t for t in texts if t.startswith("CREATE INDEX CONCURRENTLY")))
    assert """SET "statement_timeout" = '60000ms'""" in texts[:cic]
    assert not any("lock_timeout" in t for t in texts[:cic])
    assert """SET "lock_timeout" = '500ms'""" in texts[cic:]
    assert 'RESET "statement_timeout"' in texts and 'RESET "lock_timeout"' in texts
    assert _one(session, "SHOW statement_timeout") == "0"
    assert _one(session, "SHOW lock_timeout") == "0"


def test_cic_in_a_step_marked_transactional_still_runs(session: Session) -> None:
    _lanes(session)
    op = _op("CREATE INDEX CONCURRENTLY idx_geom ON bike_lanes USING GIST (geom)")
    run_sql_operation(session, op)
    assert _index_state(session, "idx_geom") == (True, True)


def test_failed_unique_cic_leaves_no_invalid_index(session: Session) -> None:
    _lanes(session)  # names repeat: a unique index cannot be built
    op = _op(
        "CREATE UNIQUE INDEX CONCURRENTLY uniq_lane_name ON bike_lanes (name)",
        name="Unique names", transactional=False,
    )
    with pytest.raises(SqlStepError) as info:
        run_sql_operation(session, op)
    err = info.value
    assert err.sqlstate == "23505"
    assert err.cleaned_invalid_indexes == ["public.uniq_lane_name"]
    assert "uniq_lane_name" in err.message
    assert _index_state(session, "uniq_lane_name") is None  # dropped, not left INVALID
    assert any(t.startswith("DROP INDEX CONCURRENTLY IF EXISTS") for t in session.log.texts)


def _leave_invalid_index(dsn: str, name: str) -> None:
    """What a crashed or failed earlier run leaves: an INVALID unique index."""
    with (
        psycopg.connect(dsn, autocommit=True) as conn,
        pytest.raises(psycopg.errors.UniqueViolation),
    ):
        conn.execute(
            sql.SQL("CREATE UNIQUE INDEX CONCURRENTLY {} ON bike_lanes (name)").format(
                sql.Identifier(name)
            )
        )


def test_rerun_after_invalid_leftover_drops_it_and_builds(session: Session, pg_dsn: str) -> None:
    _lanes(session)
    _leave_invalid_index(pg_dsn, "uniq_lane_name")
    assert _index_state(session, "uniq_lane_name") == (False, False)  # INVALID, not ready
    session.execute("UPDATE bike_lanes SET name = 'lane ' || id")  # now unique
    # a plain re-run trips over the leftover (42P07): it is dropped and the CIC retried
    result = run_sql_operation(
        session, _op("CREATE UNIQUE INDEX CONCURRENTLY uniq_lane_name ON bike_lanes (name)")
    )
    assert result.cleaned_invalid_indexes == ["public.uniq_lane_name"]
    assert result.retried == 1
    assert _index_state(session, "uniq_lane_name") == (True, True)


def test_if_not_exists_does_not_accept_an_invalid_leftover(session: Session, pg_dsn: str) -> None:
    _lanes(session)
    _leave_invalid_index(pg_dsn, "uniq_lane_name")
    session.execute("UPDATE bike_lanes SET name = 'lane ' || id")
    result = run_sql_operation(
        session,
        _op("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS uniq_lane_name ON public.bike_lanes (name)"),
    )
    assert result.cleaned_invalid_indexes == ["public.uniq_lane_name"]
    assert _index_state(session, "uniq_lane_name") == (True, True)


def test_drop_invalid_indexes_leaves_valid_ones(session: Session, pg_dsn: str) -> None:
    _lanes(session)
    session.execute("CREATE INDEX valid_idx ON bike_lanes (id)")
    _leave_invalid_index(pg_dsn, "broken_idx")
    assert find_invalid_indexes(session, [(None, "broken_idx"), ("public", "valid_idx")]) == [
        "public.broken_idx"
    ]
    dropped = drop_invalid_indexes(session, ["broken_idx", "public.valid_idx", "no_such_idx"])
    assert dropped == ["public.broken_idx"]
    assert _index_state(session, "broken_idx") is None
    assert _index_state(session, "valid_idx") == (True, True)
    assert drop_invalid_indexes(session, []) == []


# --------------------------------------------------------------------------- lock timeouts


def test_lock_timeout_is_retried_until_the_lock_is_released(session: Session, pg_dsn: str) -> None:
    session.execute("CREATE TABLE t (id int)")
    holder = psycopg.connect(pg_dsn)  # not autocommit: the lock is held until rollback
    holder.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
    release = threading.Timer(1.0, holder.rollback)
    release.start()
    try:
        started = time.perf_counter()
        result = run_sql_operation(
            session,
            _op("ALTER TABLE t ADD COLUMN c int", lock_timeout_s=0.2),
            retries=5,
            backoff=0.2,
        )
        elapsed = time.perf_counter() - started
    finally:
        release.join()
        holder.close()
    assert result.retried >= 1
    assert 0.9 < elapsed < 3.0
    assert _one(session, "SELECT count(*) FROM information_schema.columns "
                         "WHERE table_name = 't' AND column_name = 'c'") == 1


def test_lock_timeout_gives_up_after_retries(session: Session, pg_dsn: str) -> None:
    session.execute("CREATE TABLE t (id int)")
    with psycopg.connect(pg_dsn) as holder:
        holder.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(SqlStepError) as info:
            run_sql_operation(
                session, _op("ALTER TABLE t ADD COLUMN c int", name="Add c", lock_timeout_s=0.05),
                retries=2, backoff=0.01,
            )
        holder.rollback()
    err = info.value
    assert err.sqlstate == "55P03" and err.attempts == 3
    assert "Add c" in err.message and "3 attempt" in err.message


# --------------------------------------------------------------------------- dry run


def test_dry_run_logs_and_runs_nothing() -> None:
    session = Session(None, dry_run=True)
    op = _op("CREATE INDEX CONCURRENTLY i ON t (a); ANALYZE t", transactional=False,
             lock_timeout_s=1, statement_timeout_s=5)
    run_sql_operation(session, op)
    rendered = session.log.render()
    assert "CREATE INDEX CONCURRENTLY i ON t (a);" in rendered
    assert "ANALYZE t;" in rendered
    assert all(not e.executed for e in session.log)


def test_begin_commit_wrapper_is_unwrapped(session: Session) -> None:
    op = _op("BEGIN;\nCREATE TABLE w (id int);\nINSERT INTO w VALUES (1);\nCOMMIT;",
             lock_timeout_s=1)
    result = run_sql_operation(session, op)
    assert result.statements == 2
    assert _one(session, "SELECT count(*) FROM w") == 1
    assert "BEGIN" not in session.log.texts and "COMMIT" not in session.log.texts


def test_transaction_control_inside_a_step_is_refused(session: Session) -> None:
    op = _op("CREATE TABLE w (id int);\nCOMMIT;\nCREATE TABLE v (id int);")
    with pytest.raises(ApplyError, match="COMMIT"):
        run_sql_operation(session, op)
    assert _one(session, "SELECT to_regclass('w')") is None  # refused before running anything
    savepoints = _op("CREATE TABLE w (id int); SAVEPOINT s; INSERT INTO w VALUES (1); "
                     "ROLLBACK TO SAVEPOINT s; INSERT INTO w VALUES (2)")
    run_sql_operation(session, savepoints)
    assert _one(session, "SELECT array_agg(id) FROM w") == [2]


def test_non_autocommit_session(pg_dsn: str) -> None:
    with open_session(pg_dsn, autocommit=False) as s:
        run_sql_operation(s, _op("CREATE TABLE t (id int); INSERT INTO t VALUES (1)"))
        run_sql_operation(s, _op("CREATE INDEX CONCURRENTLY t_id ON t (id)", transactional=False))
        assert s.conn is not None and s.conn.autocommit is False  # restored
    with psycopg.connect(pg_dsn) as other:  # both steps were committed
        assert other.execute("SELECT count(*) FROM t").fetchone() == (1,)
        assert other.execute("SELECT to_regclass('t_id')::text").fetchone() == ("t_id",)


def test_zero_timeout_means_none(session: Session) -> None:
    run_sql_operation(session, _op("CREATE TABLE z (id int)", lock_timeout_s=0))
    assert """SET LOCAL "lock_timeout" = '0'""" in session.log.texts
