"""Validation checks against a real PostGIS: row counts, comparisons, plans, timeouts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from honua_plan.checks.validate import (
    CheckResult,
    measure_query_ms,
    run_check,
    run_checks,
    strip_explain,
)
from honua_plan.console import format_duration
from honua_plan.plan.model import CheckRecord
from honua_plan.providers.postgis.sqlexec import Session, open_session

BBOX_QUERY = (
    "SELECT * FROM bike_lanes\n"
    "WHERE ST_Intersects(geom, ST_MakeEnvelope(-122.5, 45.5, -122.4, 45.6, 4326))"
)
SEED_PERFORMANCE = CheckRecord(
    name="performance", type="performance", query=f"EXPLAIN ANALYZE\n{BBOX_QUERY}\n",
    expected="Index Scan using idx_bike_lanes_geom",
)
INDEX_EXISTS = CheckRecord(
    name="index exists", type="query",
    query="SELECT indexname FROM pg_indexes WHERE tablename = 'bike_lanes' "
          "AND indexname = 'idx_bike_lanes_geom'",
    expected="1 row",
)

# Short LineStrings spread over a square, in ONE statement. (7919 g) and (4729 g)
# mod 50000 are two different permutations of 0..49999, so the start points cover the
# square evenly and deterministically. The square is 4° x 4° around Portland for the
# 50k-row table (the bbox then selects ~0.06%) and the bbox itself for the small one
# (every row matches: a city's few lanes, where a Seq Scan is the right plan).
FILL = """
INSERT INTO bike_lanes (name, geom)
SELECT 'lane ' || g,
       ST_SetSRID(ST_MakeLine(ST_MakePoint(x, y), ST_MakePoint(x + 0.002, y + 0.001)), 4326)
FROM (SELECT g,
             %(x0)s + ((g * 7919) %% 50000) * %(step)s AS x,
             %(y0)s + ((g * 4729) %% 50000) * %(step)s AS y
      FROM generate_series(1, %(rows)s) AS g) AS s
"""


@pytest.fixture
def session(pg_dsn: str) -> Iterator[Session]:
    s = open_session(pg_dsn)
    try:
        yield s
    finally:
        s.close()


def _bike_lanes(session: Session, rows: int, *, spread: bool = True) -> float:
    """Create and fill ``bike_lanes`` with a GiST index, analysed; return the fill time."""
    session.execute(
        "CREATE TABLE bike_lanes (id bigserial PRIMARY KEY, name text, "
        "geom geometry(LineString, 4326))"
    )
    started = time.perf_counter()
    where = {"x0": -124.5, "y0": 43.5, "step": 4 / 50_000} if spread else {
        "x0": -122.5, "y0": 45.5, "step": 0.09 / 50_000}
    session.execute(FILL, {**where, "rows": rows})
    elapsed = time.perf_counter() - started
    session.execute("CREATE INDEX idx_bike_lanes_geom ON bike_lanes USING GIST (geom)")
    session.execute("ANALYZE bike_lanes")
    return elapsed


def _check(query: str, expected: str, type_: str = "query", **kw: Any) -> CheckRecord:
    return CheckRecord(name=kw.pop("name", "check"), type=type_, query=query, expected=expected, **kw)


# --------------------------------------------------------------------------- performance


def test_performance_check_uses_the_gist_index_on_50k_rows(session: Session) -> None:
    fill_s = _bike_lanes(session, 50_000)
    assert fill_s < 10
    assert session.execute("SELECT count(*) FROM bike_lanes", read=True) == [(50_000,)]

    r = run_check(session, SEED_PERFORMANCE)
    assert r.ok, (r.message, r.detail)
    assert r.message in ("Index Scan on idx_bike_lanes_geom",
                         "Bitmap Index Scan on idx_bike_lanes_geom",
                         "Index Only Scan on idx_bike_lanes_geom")
    assert r.observed_ms is not None and r.observed_ms >= 0
    assert r.detail == ""

    # without an EXPLAIN prefix the check adds EXPLAIN (ANALYZE, FORMAT TEXT) itself
    plain = SEED_PERFORMANCE.model_copy(update={"query": BBOX_QUERY})
    r2 = run_check(session, plain)
    assert r2.ok and r2.observed_ms is not None
    assert any(t.startswith("EXPLAIN (ANALYZE, FORMAT TEXT) SELECT") for t in session.log.texts)

    # a time bound on the same plan
    r3 = run_check(session, plain.model_copy(update={"expected": "< 5s"}))
    assert r3.ok, r3.message

    ms = measure_query_ms(session, SEED_PERFORMANCE.query or "")
    assert ms is not None and ms < 5000


def test_performance_check_fails_on_a_small_table_with_seq_scan(session: Session) -> None:
    _bike_lanes(session, 42, spread=False)
    r = run_check(session, SEED_PERFORMANCE)
    assert not r.ok
    assert "Seq Scan" in r.message and "idx_bike_lanes_geom" in r.message
    assert r.observed.startswith("Seq Scan")
    assert "Seq Scan on bike_lanes" in r.detail and "Execution Time" in r.detail


def test_unknown_index_expectation_fails(session: Session) -> None:
    _bike_lanes(session, 42)
    r = run_check(session, SEED_PERFORMANCE.model_copy(
        update={"expected": "Index Scan using no_such_index"}))
    assert not r.ok and "no_such_index" in r.message


# --------------------------------------------------------------------------- timeouts, errors


def test_query_timeout_is_a_failed_check(session: Session) -> None:
    started = time.perf_counter()
    r = run_check(session, _check("SELECT pg_sleep(5)", "1 row", name="slow", timeout_s=0.2))
    assert time.perf_counter() - started < 2
    assert not r.ok
    assert r.message == "Query timeout after 200ms"
    assert r.observed == "timeout"
    assert "57014" in r.detail
    assert format_duration(30) == "30s"  # the seed's "Query timeout after 30s"

    perf = _check("SELECT pg_sleep(5)", "< 100ms", "performance")
    r2 = run_check(session, perf, default_timeout_s=0.2)
    assert not r2.ok and r2.message == "Query timeout after 200ms"
    # the timeout was SET LOCAL: the session is back to no timeout
    assert session.execute("SHOW statement_timeout", read=True) == [("0",)]


def test_query_error_is_a_failed_check(session: Session) -> None:
    r = run_check(session, _check("SELECT * FROM no_such_table", "0 rows"))
    assert not r.ok and r.message.startswith("query failed:") and "no_such_table" in r.message
    assert "42P01" in r.detail


def test_checks_are_read_only(session: Session) -> None:
    r = run_check(session, _check("CREATE TABLE sneaky (id int)", "0 rows"))
    assert not r.ok and "read-only" in r.message
    assert session.execute("SELECT to_regclass('sneaky')", read=True) == [(None,)]
    perf = _check("CREATE TABLE sneaky (id int)", "< 100ms", "performance")
    assert not run_check(session, perf).ok
    assert measure_query_ms(session, "CREATE TABLE sneaky (id int)") is None
    assert session.execute("SELECT to_regclass('sneaky')", read=True) == [(None,)]


def test_bad_expected_and_missing_query(session: Session) -> None:
    r = run_check(session, _check("SELECT 1", "> zero"))
    assert not r.ok and "cannot parse expected" in r.message
    r = run_check(session, CheckRecord(name="x", type="query", query=None, expected="1 row"))
    assert not r.ok and "no query" in r.message


# --------------------------------------------------------------------------- expectations


def test_row_count_and_comparison_checks(session: Session) -> None:
    _bike_lanes(session, 42)
    index_gone = INDEX_EXISTS.model_copy(update={"expected": "0 rows", "name": "index removed"})
    results = run_checks(session, [
        INDEX_EXISTS,
        index_gone,
        _check("SELECT count(*) FROM bike_lanes", "> 0", name="has rows"),
        _check("SELECT count(*) FROM bike_lanes", ">= 43", name="too few"),
        _check("SELECT count(*) FROM bike_lanes WHERE geom IS NULL", "= 0", name="no nulls"),
        _check("SELECT ST_IsValid(geom) FROM bike_lanes", "all true", "geometry", name="valid"),
        _check("SELECT ST_IsEmpty(geom) FROM bike_lanes", "all true", "geometry", name="empty"),
    ])
    assert all(isinstance(r, CheckResult) for r in results)
    by_name = {r.name: r for r in results}
    assert by_name["index exists"].ok and by_name["index exists"].observed == "1"
    assert not by_name["index removed"].ok
    assert by_name["index removed"].message == "1 row (expected 0 rows)"
    assert by_name["index removed"].detail == "idx_bike_lanes_geom"
    assert by_name["has rows"].ok and by_name["has rows"].observed == "42"
    assert not by_name["too few"].ok and by_name["too few"].message == "42 (expected >= 43)"
    assert by_name["no nulls"].ok
    assert by_name["valid"].ok and by_name["valid"].message == "42 of 42 true (expected all true)"
    assert not by_name["empty"].ok and by_name["empty"].observed == "42 not true"
    assert all(r.seconds >= 0 for r in results)

    session.execute("DROP INDEX idx_bike_lanes_geom")
    assert run_check(session, index_gone).ok
    assert not run_check(session, INDEX_EXISTS).ok


def test_strip_explain() -> None:
    assert strip_explain("EXPLAIN ANALYZE\nSELECT 1;") == "SELECT 1"
    assert strip_explain("  -- timing\nexplain (analyze, buffers) SELECT 1") == "SELECT 1"
    assert strip_explain("EXPLAIN ANALYZE VERBOSE SELECT 1") == "SELECT 1"
    assert strip_explain("SELECT explain FROM t") == "SELECT explain FROM t"
    assert strip_explain("EXPLAINED") == "EXPLAINED"
