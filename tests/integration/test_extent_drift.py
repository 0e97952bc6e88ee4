"""Extent drift: rows written outside the served bbox make drift, and the plan republishes it.

The served extent (the collection's ``extent.spatial.bbox``) is computed at publish time;
a row inserted later far from the others leaves it stale. ``honua drift`` reports it per
collection, ``honua plan`` plans the server update that republishes it, and afterwards
both are empty and the server serves a bbox holding the row.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.helpers import copy_example, edit, run

pytest.importorskip("pygeoapi", reason="the served-layer tests need the 'server' extra (make test installs it)")

CID = "transportation::bike-lanes"


@pytest.fixture
def served(tmp_path: Path, pg_dsn: str) -> Iterator[tuple[Path, dict[str, str], str]]:
    from tests.helpers import free_port

    repo = copy_example(tmp_path / "repo")
    port = free_port()
    edit(repo / "providers/gis-server.yaml", "{dev: 5555,", f"{{dev: {port},")
    (repo / "migrations/003_optimize_bike_lanes.yaml").unlink()  # Example 1: no spatial index yet
    env = {"HONUA_PG_DSN": pg_dsn}
    try:
        yield repo, env, f"http://localhost:{port}/ogc"
    finally:
        run(repo, "serve", "--env", "dev", "--stop", env=env)


def served_bbox(base: str) -> list[float]:
    from tests.integration.test_served_layers import get

    status, doc = get(f"{base}/collections/{CID}?f=json")
    assert status == 200, doc
    return [float(v) for v in doc["extent"]["spatial"]["bbox"][0]]


def contains(box: list[float], x: float, y: float) -> bool:
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def test_a_row_outside_the_served_extent_is_drift_and_the_plan_republishes_it(
        served: tuple[Path, dict[str, str], str], pg_dsn: str) -> None:
    repo, env, base = served
    assert run(repo, "dev", "seed-data", env=env).exit_code == 0
    applied = run(repo, "dev", "apply", "--environment", "dev", env=env)
    assert applied.exit_code == 0, applied.output
    applied = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)  # the migrations too
    assert applied.exit_code == 0, applied.output
    clean = run(repo, "plan", "--env", "dev", "--detailed-exitcode", env=env)
    assert clean.exit_code == 0, clean.output
    before = served_bbox(base)
    assert not contains(before, 10, 10), before
    assert run(repo, "drift", "--env", "dev", env=env).exit_code == 0

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO bike_lanes (name, geom) VALUES ('far away', "
                     "ST_SetSRID(ST_MakeLine(ST_MakePoint(10, 10), ST_MakePoint(10.001, 10.001)), 4326))")
        conn.execute("ANALYZE bike_lanes")  # autovacuum would, in production

    drift = run(repo, "drift", "--env", "dev", env=env)
    assert drift.exit_code == 2, drift.output
    assert f"collection {CID}: served extent [" in drift.output, drift.output
    assert "does not contain the live extent [" in drift.output and ", 10, 10.001, " in drift.output, drift.output

    plan = json.loads(run(repo, "plan", "--env", "dev", "--format", "json", env=env).output)
    [reload] = [a for a in plan["actions"] if a["kind"] == "server"]
    assert reload["action"] == "reload", reload
    assert f"served extent of {CID} is stale" in reload["reason"], reload

    applied = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
    assert applied.exit_code == 0, applied.output
    after = served_bbox(base)
    assert contains(after, 10, 10) and contains(after, before[0], before[1]), after

    planned = run(repo, "plan", "--env", "dev", "--detailed-exitcode", env=env)
    assert planned.exit_code == 0, planned.output
    drift = run(repo, "drift", "--env", "dev", env=env)
    assert drift.exit_code == 0, drift.output


def test_live_extents_one_estimate_and_exact_only_where_it_cannot_answer(pg_dsn: str) -> None:
    """Indexed columns are read from their index root in one statement (no ANALYZE needed);
    an unindexed column, analyzed or not, is measured exactly (the statistics' sample is
    trimmed of outliers), all such columns in one more statement; 3857 comes back in CRS84."""
    from honua_plan.providers.postgis.catalog import live_extents
    from honua_plan.providers.postgis.sqlexec import Session, StatementLog

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for name, srid, index in (("indexed", 4326, True), ("analyzed", 4326, False),
                                  ("unanalyzed", 4326, False), ("mercator", 3857, True)):
            conn.execute(f"CREATE TABLE {name} (id serial PRIMARY KEY, geom geometry(Point, {srid}))")
            if index:
                conn.execute(f"CREATE INDEX ON {name} USING gist (geom)")
            conn.execute(f"INSERT INTO {name} (geom) SELECT ST_Transform(ST_SetSRID(ST_MakePoint("
                         f"-122.45 + g * 0.001, 45.55 + g * 0.001), 4326), {srid}) FROM generate_series(1, 42) g")
            conn.execute(f"ANALYZE {name}")
            conn.execute(f"INSERT INTO {name} (geom) VALUES (ST_Transform(ST_SetSRID(ST_MakePoint(10, 10), 4326), {srid}))")
        conn.execute("ANALYZE analyzed")  # the sample trims (10, 10): the statistics' box stays near Portland
        estimated = conn.execute("SELECT ST_XMax(ST_EstimatedExtent('public', 'analyzed', 'geom'))").fetchone()
        assert estimated is not None and estimated[0] < 0  # why an unindexed column is measured exactly
        conn.execute("DELETE FROM pg_catalog.pg_statistic WHERE starelid = 'unanalyzed'::regclass")

        log = StatementLog()
        boxes = live_extents(Session(conn, log=log), [
            ("public", "indexed", "geom", 4326, True), ("public", "analyzed", "geom", 4326, False),
            ("public", "unanalyzed", "geom", 4326, False), ("public", "mercator", "geom", 3857, True)])
    for name in ("indexed", "analyzed", "unanalyzed", "mercator"):
        box = boxes[(f"public.{name}", "geom")]
        assert box is not None and box[0] == pytest.approx(-122.449, abs=1e-3), (name, box)
        assert box[1] == pytest.approx(10, abs=1e-4) and box[2] == pytest.approx(10, abs=1e-4), (name, box)
        assert box[3] == pytest.approx(45.592, abs=1e-3), (name, box)
    [estimate] = [e for e in log.entries if "ST_EstimatedExtent" in e.text]
    assert "'indexed'" in estimate.params and "'mercator'" in estimate.params and "analyzed'" not in estimate.params
    scans = [t for t in log.texts if "ST_Extent(" in t]
    assert len(scans) == 1 and "analyzed" in scans[0] and "unanalyzed" in scans[0]
