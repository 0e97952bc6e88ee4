"""The day-2 risk rules (issue 21) against a real PostGIS: each rule fires on a positive
case and stays silent on a negative one, with the row counts, invalid geometries, EXPLAIN
estimates and vertex samples read from the live database by ``honua plan``."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from honua_plan.workflows.sample import seed_bike_lanes
from tests.conftest import TEMPLATE_DB
from tests.helpers import copy_example, drop_performance_check, edit, run

MIGRATION = """apiVersion: honua.io/v1
kind: Migration
metadata:
  id: "004"
  description: "Day-2 change under test"
  environments: ["dev"]
spec:
  dependencies: ["003"]
  up:
    - name: Change under test
      type: sql
      content: |
{sql}
  down:
    - name: Nothing to undo
      type: sql
      content: SELECT 1;
"""

SETUP = """
INSERT INTO parcels (parcel_no, geom) VALUES
  ('P-1', ST_Multi(ST_GeomFromText('POLYGON((0 0,1 0,1 1,0 1,0 0))', 4326))),
  ('P-2', ST_Multi(ST_GeomFromText('POLYGON((0 0,1 1,1 0,0 1,0 0))', 4326)));  -- a bow-tie: invalid
CREATE TABLE trails3d (id int PRIMARY KEY, geom geometry(LineStringZ, 4326));
INSERT INTO trails3d SELECT i, ST_SetSRID(ST_MakeLine(ST_MakePoint(i, 0, 10), ST_MakePoint(i, 1, 20)), 4326)
  FROM generate_series(1, 50) i;
CREATE TABLE detailed (id int PRIMARY KEY, geom geometry(LineString, 4326));
INSERT INTO detailed SELECT i, ST_SetSRID(ST_MakeLine(ARRAY(SELECT ST_MakePoint(i + j / 1000.0, j)
  FROM generate_series(1, 300) j)), 4326) FROM generate_series(1, 200) i;
ALTER TABLE bike_lanes ADD COLUMN internal_note text;
ANALYZE;
"""


@pytest.fixture(scope="module")
def live(pg_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """The example applied to a database with 42 bike lanes, a parcel that is invalid, a
    3-D table and a table of 300-vertex lines; each case adds its own migration 004."""
    name = f"t_{uuid.uuid4().hex[:8]}"
    dsn = pg_cluster.create_database(name, template=TEMPLATE_DB)
    try:
        repo = copy_example(tmp_path_factory.mktemp("risk") / "repo", server=False)
        drop_performance_check(repo)
        with psycopg.connect(dsn, autocommit=True) as conn:
            seed_bike_lanes(conn, 42)
        env = {"HONUA_PG_DSN": dsn, "CI": ""}
        applied = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
        assert applied.exit_code == 0, applied.output
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(SETUP)
        # plans simulate their migrations on a schema-only copy in the test cluster
        env["HONUA_SCRATCH_DSN"] = pg_cluster.dsn_for("postgres")
        yield repo, env
    finally:
        pg_cluster.drop_database(name)


def plan_004(live: tuple[Path, dict[str, str]], sql: str) -> dict[str, Any]:
    repo, env = live
    body = "\n".join("        " + line for line in sql.strip().splitlines())
    (repo / "migrations/004_under_test.yaml").write_text(MIGRATION.format(sql=body))
    try:
        result = run(repo, "plan", "--env", "dev", "--format", "json", env=env)
    finally:
        (repo / "migrations/004_under_test.yaml").unlink()
    if result.exit_code == 1 and "cannot be built" in result.output:
        # a finding that is an error stops the plan: it is reported at the migration's file
        found = re.findall(r"^migrations/004_under_test\.yaml:\d+:\d+: ([A-Z]+\d+) (.*)$", result.output, re.M)
        assert found, result.output
        return {"findings": [{"code": c, "message": m, "error": True} for c, m in found], "operations": []}
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    return next(a for a in doc["actions"] if a["address"] == "migration.004")


# (rule, SQL of migration 004, fires?)
CASES = [
    ("PG204", "ALTER TABLE bike_lanes ADD COLUMN owner int NOT NULL;", True),
    ("PG204", "ALTER TABLE bike_lanes ADD COLUMN owner int NOT NULL DEFAULT 0;", False),
    ("PG401", "ALTER EXTENSION postgis UPDATE;", True),
    ("PG401", "CREATE EXTENSION IF NOT EXISTS postgis;", False),
    ("DS104", "UPDATE bike_lanes SET name = upper(name);", True),
    ("DS104", "UPDATE bike_lanes SET name = upper(name) WHERE id > 0;", True),  # EXPLAIN: every row
    ("DS104", "UPDATE bike_lanes SET name = upper(name) WHERE id = 7;", False),
    ("DS105", "UPDATE trails3d SET geom = ST_Force2D(geom);", True),
    ("DS105", "UPDATE bike_lanes SET geom = ST_SnapToGrid(geom, 0.001);", True),
    ("DS105", "UPDATE bike_lanes SET geom = ST_Force2D(geom);", False),  # already 2-D
    ("GEO102", "ALTER TABLE parcels ADD CONSTRAINT parcels_valid CHECK (ST_IsValid(geom));", True),
    ("GEO102", "ALTER TABLE bike_lanes ADD CONSTRAINT lanes_valid CHECK (ST_IsValid(geom));", False),
    ("GEO103", "ALTER TABLE parcels ADD CONSTRAINT parcels_valid CHECK (ST_IsValid(geom)) NOT VALID;", True),
    ("GEO103", "ALTER TABLE bike_lanes ADD CONSTRAINT lanes_valid CHECK (ST_IsValid(geom)) NOT VALID;", False),
    ("SVC101", "ALTER TABLE bike_lanes RENAME COLUMN internal_note TO note;", False),  # not published
]


@pytest.mark.parametrize(("code", "sql", "fires"), CASES,
                         ids=[f"{c[0]}-{'pos' if c[2] else 'neg'}-{i}" for i, c in enumerate(CASES)])
def test_rule_against_live_postgis(live: tuple[Path, dict[str, str]], code: str, sql: str, fires: bool) -> None:
    action = plan_004(live, sql)
    codes = [f["code"] for f in action["findings"]]
    assert (code in codes) is fires, action["findings"]


def test_invalid_geometries_are_counted_with_a_reason(live: tuple[Path, dict[str, str]]) -> None:
    action = plan_004(live, "ALTER TABLE parcels ADD CONSTRAINT parcels_valid CHECK (ST_IsValid(geom));")
    (f,) = [f for f in action["findings"] if f["code"] == "GEO102"]
    assert "1 rows are invalid now" in f["message"] and "Self-intersection" in f["message"], f
    assert f["error"] is True  # the plan cannot be built: the statement would fail


def test_bulk_update_is_rated_by_the_explain_estimate(live: tuple[Path, dict[str, str]]) -> None:
    action = plan_004(live, "UPDATE bike_lanes SET name = upper(name) WHERE id > 0;")
    (f,) = [f for f in action["findings"] if f["code"] == "DS104"]
    assert "(EXPLAIN estimate)" in f["message"] and "~42 rows" in f["message"], f
    assert f["level"] == "MEDIUM"  # 42 rows reached: fewer than 1,000


def test_spatial_index_build_reports_the_sampled_vertices_per_geometry(live: tuple[Path, dict[str, str]]) -> None:
    simple = plan_004(live, "CREATE INDEX trails3d_geom ON trails3d USING gist (geom);")
    detailed = plan_004(live, "CREATE INDEX detailed_geom ON detailed USING gist (geom);")
    (f,) = [f for f in detailed["findings"] if f["code"] == "PG101"]
    assert "~200 rows, ~300 vertices per geometry" in f["message"], f
    assert "~2 vertices per geometry" in next(f["message"] for f in simple["findings"] if f["code"] == "PG101")
    # (how the vertices scale the estimate: tests/unit/test_risk.py)


def test_renaming_a_published_column_breaks_clients(live: tuple[Path, dict[str, str]]) -> None:
    repo, _ = live
    layer = repo / "environments/dev/layers/bike-lanes.yaml"
    before = layer.read_text()
    edit(layer, "name: width_ft", "name: width_feet")  # the layer follows, clients still break
    try:
        action = plan_004(live, "ALTER TABLE bike_lanes RENAME COLUMN width_ft TO width_feet;")
    finally:
        layer.write_text(before)
    svc = [f for f in action["findings"] if f["code"] == "SVC101"]
    assert svc and "RENAME COLUMN public.bike_lanes.width_ft to width_feet" in svc[0]["message"], action["findings"]
    assert svc[0]["level"] == "HIGH"


# ---------------------------------------------------------------- plan --simulate


def _plan(live: tuple[Path, dict[str, str]], sql: str, *args: str, env: dict[str, str] | None = None) -> Any:
    repo, base = live
    body = "\n".join("        " + line for line in sql.strip().splitlines())
    (repo / "migrations/004_under_test.yaml").write_text(MIGRATION.format(sql=body))
    try:
        return run(repo, "plan", "--env", "dev", *args, env={**base, **(env or {})})
    finally:
        (repo / "migrations/004_under_test.yaml").unlink()


def test_a_rename_that_breaks_a_layer_fails_at_the_layer_on_the_simulated_schema(
        live: tuple[Path, dict[str, str]]) -> None:
    result = _plan(live, "ALTER TABLE bike_lanes RENAME COLUMN lane_type TO kind;")
    assert result.exit_code == 1
    assert re.search(r"^environments/dev/layers/bike-lanes\.yaml:\d+:\d+: layer bike-lanes: field lane_type does "
                     r"not exist in public\.bike_lanes \(after migration 004, simulated\)$", result.output, re.M), \
        result.output


def test_a_step_that_fails_on_the_copy_fails_the_plan_at_the_step(live: tuple[Path, dict[str, str]]) -> None:
    result = _plan(live, "ALTER TABLE bike_lanes DROP COLUMN no_such_column;")
    assert result.exit_code == 1
    assert re.search(r"^migrations/004_under_test\.yaml:\d+:\d+: migration 004 step 'Change under test' fails on a "
                     r"schema-only copy of the database \(plan --simulate\): column \"no_such_column\" of relation "
                     r"\"bike_lanes\" does not exist$", result.output, re.M), result.output


def test_a_published_column_retyped_is_svc101_and_the_plan_says_it_simulated(
        live: tuple[Path, dict[str, str]]) -> None:
    result = _plan(live, "ALTER TABLE bike_lanes ALTER COLUMN width_ft TYPE numeric(6,2);")
    assert result.exit_code == 0, result.output
    assert re.search(r"^Simulation: migration 004 ran on a schema-only copy \(HONUA_SCRATCH_DSN [^)]*\d\.\ds\); "
                     r"layers checked against the result$", result.output, re.M), result.output
    doc = json.loads(_plan(live, "ALTER TABLE bike_lanes ALTER COLUMN width_ft TYPE numeric(6,2);",
                           "--format", "json").output)
    assert doc["simulation"]["status"] == "simulated" and doc["simulation"]["migrations"] == ["004"]
    action = next(a for a in doc["actions"] if a["address"] == "migration.004")
    svc = [f["message"] for f in action["findings"] if f["code"] == "SVC101"]
    assert svc == ["column public.bike_lanes.width_ft changes type double precision → numeric(6,2): breaks "
                   "clients of collection transportation::bike-lanes"], action["findings"]


def test_simulated_migrations_run_without_privileges(live: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    """A migration is untrusted: on the copy it cannot run programs or read files."""
    marker = tmp_path / "pwned"
    result = _plan(live, f"COPY (SELECT 1) TO PROGRAM 'touch {marker}';", "--format", "json")
    assert not marker.exists()
    doc = json.loads(result.output)
    assert doc["simulation"]["status"] == "partial", doc["simulation"]
    assert "privilege" in doc["simulation"]["summary"]


def test_without_a_scratch_database_the_plan_says_it_did_not_simulate(live: tuple[Path, dict[str, str]]) -> None:
    result = _plan(live, "ALTER TABLE bike_lanes ADD COLUMN note text;", env={"HONUA_SCRATCH_DSN": ""})
    assert result.exit_code == 0, result.output
    assert "Simulation: skipped: no scratch database: set HONUA_SCRATCH_DSN" in result.output
    off = _plan(live, "ALTER TABLE bike_lanes ADD COLUMN note text;", "--no-simulate", "--format", "json")
    assert "simulation" not in json.loads(off.output)


def test_a_precondition_cannot_change_the_database_at_plan_time(live: tuple[Path, dict[str, str]]) -> None:
    """A pull request's sql-check precondition runs at plan time: read-only, rolled back."""
    repo, env = live
    text = MIGRATION.format(sql="        SELECT 1;").replace(
        "  up:", "  preConditions:\n    - type: sql-check\n      query: DELETE FROM bike_lanes RETURNING 1\n"
                 "      expected: \"0 rows\"\n  up:")
    (repo / "migrations/004_under_test.yaml").write_text(text)
    try:
        result = run(repo, "plan", "--env", "dev", env=env)
    finally:
        (repo / "migrations/004_under_test.yaml").unlink()
    assert result.exit_code == 1
    # refused by validation, before anything is sent (issue 25); the read path refuses it too
    assert "query is not read-only: DELETE is not a read-only query" in result.output, result.output
    with psycopg.connect(env["HONUA_PG_DSN"]) as conn:
        assert conn.execute("SELECT count(*) FROM bike_lanes").fetchone() == (42,)


@pytest.fixture
def view_layer(live: tuple[Path, dict[str, str]]) -> Iterator[Path]:
    """A layer served from a view, applied; removed again afterwards."""
    repo, env = live
    with psycopg.connect(env["HONUA_PG_DSN"], autocommit=True) as conn:
        conn.execute("CREATE VIEW bike_lanes_public AS SELECT id, name, lane_type, width_ft, geom FROM bike_lanes")
    src = (repo / "environments/dev/layers/bike-lanes.yaml").read_text()
    text = src.replace("name: bike-lanes", "name: bike-lanes-public", 1).replace("table: bike_lanes", "table: bike_lanes_public")
    text = re.sub(r"\n    - name: last_updated\n(?:      .*\n)*", "\n", text)
    path = repo / "environments/dev/layers/bike-lanes-public.yaml"
    path.write_text(text)
    applied = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
    assert applied.exit_code == 0, applied.output
    try:
        yield path
    finally:
        path.unlink()
        run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
        with psycopg.connect(env["HONUA_PG_DSN"], autocommit=True) as conn:
            conn.execute("DROP VIEW IF EXISTS bike_lanes_public")


def test_a_view_recreated_without_a_served_column_is_svc101(live: tuple[Path, dict[str, str]], view_layer: Path) -> None:
    before = view_layer.read_text()
    view_layer.write_text(re.sub(r"\n    - name: lane_type\n(?:      .*\n)*", "\n", before))  # the layer follows
    try:
        action = plan_004(live, "DROP VIEW bike_lanes_public;\n"
                                "CREATE VIEW bike_lanes_public AS SELECT id, name, width_ft, geom FROM bike_lanes;")
    finally:
        view_layer.write_text(before)
    svc = [f["message"] for f in action["findings"] if f["code"] == "SVC101"]
    assert any("view public.bike_lanes_public no longer has published column lane_type" in m for m in svc), svc


def test_a_view_that_retypes_a_served_column_is_svc101_on_the_simulated_schema(
        live: tuple[Path, dict[str, str]], view_layer: Path) -> None:
    action = plan_004(live, "DROP VIEW bike_lanes_public;\n"
                            "CREATE VIEW bike_lanes_public AS SELECT id, name, lane_type, width_ft::numeric(6,2) AS width_ft,"
                            " geom FROM bike_lanes;")
    svc = [f["message"] for f in action["findings"] if f["code"] == "SVC101"]
    assert svc == ["column public.bike_lanes_public.width_ft changes type double precision → numeric(6,2): breaks "
                   "clients of collection transportation::bike-lanes-public"], action["findings"]


def test_a_postgis_update_names_the_versions_and_what_depends_on_it(live: tuple[Path, dict[str, str]]) -> None:
    _repo, env = live
    with psycopg.connect(env["HONUA_PG_DSN"]) as conn:
        installed, default = conn.execute(
            "SELECT installed_version, default_version FROM pg_available_extensions WHERE name = 'postgis'").fetchone()
    action = plan_004(live, "ALTER EXTENSION postgis UPDATE;")
    (f,) = [f for f in action["findings"] if f["code"] == "PG401"]
    assert f"(postgis {installed} → {default}" in f["message"], f
    assert re.search(r"; \d+ geometry columns in \d+ tables/views depend on it", f["message"]), f
    same = plan_004(live, f"ALTER EXTENSION postgis UPDATE TO '{installed}';")
    (g,) = [f for f in same["findings"] if f["code"] == "PG401"]
    assert "already installed, nothing to update" in g["message"] and g["level"] == "LOW", g
