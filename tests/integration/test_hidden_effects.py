"""Hidden effects are rated (issue 25, item 14): a migration that calls a function the
planner cannot see into is at least HIGH, with the finding that says to read it."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from honua_plan.workflows.sample import seed_bike_lanes
from tests.helpers import copy_example, run

pytestmark = pytest.mark.integration

MIGRATION = """apiVersion: honua.io/v1
kind: Migration
metadata:
  id: "004"
  environments: ["dev"]
spec:
  dependencies: ["003"]
  up:
    - name: Tidy the lanes
      type: sql
      content: |
{sql}
"""


def plan_004(tmp_path: Path, dsn: str, sql: str) -> dict:
    repo = copy_example(tmp_path / "repo", server=False)
    body = "\n".join("        " + line for line in sql.strip().splitlines())
    (repo / "migrations/004_tidy.yaml").write_text(MIGRATION.format(sql=body))
    result = run(repo, "plan", "--env", "dev", "--no-simulate", "--format", "json",
                 env={"HONUA_PG_DSN": dsn, "CI": ""})
    assert result.exit_code in (0, 2), result.output
    plan = json.loads(result.output)
    return next(a for a in plan["actions"] if a["address"] == "migration.004")


@pytest.fixture
def lanes(pg_dsn: str) -> str:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        seed_bike_lanes(conn, 5000)
    return pg_dsn


def test_a_function_that_deletes_is_high(tmp_path: Path, lanes: str) -> None:
    action = plan_004(tmp_path, lanes, """
CREATE FUNCTION tidy_lanes() RETURNS void LANGUAGE sql AS 'DELETE FROM bike_lanes';
SELECT tidy_lanes();
""")
    assert action["risk"] in ("HIGH", "CRITICAL"), action
    found = [f for f in action["findings"] if f["code"] == "SQL002"]
    assert found and all("effects unknown: read the function" in f["message"] for f in found)
    assert any("whose body runs DELETE" in f["message"] for f in found)
    assert any("calls tidy_lanes()" in f["message"] for f in found)
    with psycopg.connect(lanes) as conn:  # planning ran nothing
        assert conn.execute("SELECT count(*) FROM bike_lanes").fetchone() == (5000,)


def test_read_only_functions_are_not_flagged(tmp_path: Path, lanes: str) -> None:
    action = plan_004(tmp_path, lanes, """
UPDATE bike_lanes SET geom = ST_MakeValid(geom) WHERE NOT ST_IsValid(geom);
""")
    assert "SQL002" not in [f["code"] for f in action["findings"]], action
