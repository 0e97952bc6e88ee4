"""A plan reads with the read-only ``HONUA_PG_PLAN_DSN_<ENV>`` and never opens the write DSN.

The example is applied with the owner's DSN; then ``plan``, ``ci plan`` and ``drift`` run
as a role that has only ``SELECT`` on the tables and ``USAGE`` on the schemas, given as
``HONUA_PG_PLAN_DSN_<ENV>``, while every write DSN points at a loopback listener started
here: a connection to it would be recorded (and fail).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from honua_plan.context import Context
from honua_plan.workflows.sample import seed_bike_lanes
from tests.helpers import copy_example, drop_performance_check, run
from tests.integration.test_secret_slots import Listener

pytestmark = pytest.mark.integration

PENDING = """apiVersion: honua.io/v1
kind: Migration
metadata:
  id: "004"
  environments: [dev, staging, production]
spec:
  dependencies: ["003_optimize_bike_lanes"]
  preConditions:
    - type: table-exists
      table: bike_lanes
    - type: sql-check
      query: SELECT count(*) > 0 FROM bike_lanes
      expected: all true
  up:
    - name: a column
      type: sql
      content: ALTER TABLE bike_lanes ADD COLUMN surface text;
  down:
    - name: no column
      type: sql
      content: ALTER TABLE bike_lanes DROP COLUMN surface;
"""


@pytest.fixture
def listener() -> Iterator[Listener]:
    lst = Listener()
    yield lst
    lst.sock.close()


def planner_dsn(owner_dsn: str) -> str:
    """``owner_dsn``'s database as role ``planner``: SELECT on every table, USAGE on the schemas."""
    with psycopg.connect(owner_dsn, autocommit=True) as conn:
        conn.execute("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'planner') THEN "
                     "CREATE ROLE planner LOGIN PASSWORD 'pl4nner-Pass-9'; END IF; END $$")
        for schema in ("public", "honua_plan"):
            conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO planner")
            conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO planner")
    params = {k: v for k, v in conninfo_to_dict(owner_dsn).items() if v is not None}
    params.update(user="planner", password="pl4nner-Pass-9")
    return make_conninfo(**params)


def test_plan_ci_plan_and_drift_read_only_with_the_plan_dsn(tmp_path: Path, pg_dsn: str,
                                                           listener: Listener) -> None:
    repo = copy_example(tmp_path / "repo", server=False)
    drop_performance_check(repo)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        seed_bike_lanes(conn, 42)
    applied = run(repo, "apply", "--env", "dev", "--auto-approve",
                  env={"HONUA_PG_DSN_DEV": pg_dsn, "HONUA_PG_DSN": None, "CI": ""})
    assert applied.exit_code == 0, applied.output
    (repo / "migrations/004_surface.yaml").write_text(PENDING)

    planner = planner_dsn(pg_dsn)
    closed = f"host=127.0.0.1 port={listener.port} dbname=x user=x connect_timeout=2"
    env: dict[str, str | None] = {"HONUA_PG_DSN": None, "CI": "true"}
    for e in ("DEV", "STAGING", "PRODUCTION"):
        env[f"HONUA_PG_PLAN_DSN_{e}"] = planner
        env[f"HONUA_PG_DSN_{e}"] = closed

    plan = run(repo, "plan", "--env", "dev", "--format", "json", env=env)
    assert plan.exit_code == 0, plan.output
    data = json.loads(plan.output)
    assert [a["address"] for a in data["actions"]] == ["migration.004"]
    # its preconditions ran as planner: one that failed (or could not be read) is a plan error

    assert run(repo, "migrate", "render", env=env).exit_code == 0  # staging's and production's 003, pending
    ci = run(repo, "ci", "plan", "--out-dir", str(tmp_path / "out"), env=env)
    assert ci.exit_code == 3, ci.output  # every environment planned, production blocked by its policy
    report = json.loads((tmp_path / "out/plan.json").read_text())
    assert [e["status"] for e in report["environments"]] == ["changes", "changes", "blocked"], report

    drift = run(repo, "drift", "--env", "dev", env=env)
    assert drift.exit_code == 0, drift.output

    assert listener.connections == 0  # the write DSN was never opened
    assert "pl4nner-Pass-9" not in plan.output + ci.output + drift.output

    # apply writes with the write DSN (here: the listener, which is not a database)
    apply = run(repo, "apply", "--env", "dev", "--auto-approve", env={**env, "CI": ""})
    assert apply.exit_code == 1
    assert listener.connections > 0


def test_a_plan_session_starts_read_only_transactions(tmp_path: Path, pg_dsn: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    repo = copy_example(tmp_path / "repo", server=False)
    monkeypatch.delenv("HONUA_PG_PLAN_DSN_DEV", raising=False)
    monkeypatch.delenv("HONUA_PG_DSN", raising=False)
    monkeypatch.setenv("HONUA_PG_DSN_DEV", pg_dsn)
    ctx = Context(repo)
    with psycopg.connect(ctx.database("dev", read_only=True).dsn) as conn:  # the write DSN, for a plan
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE plan_wrote (id int)")
    with psycopg.connect(ctx.database("dev").dsn) as conn:  # apply's
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("off",)
    assert ctx.resolve_dsn("dev", read_only=True).origin == "env HONUA_PG_DSN_DEV"
    monkeypatch.setenv("HONUA_PG_PLAN_DSN_DEV", pg_dsn)
    assert Context(repo).resolve_dsn("dev", read_only=True).origin == "env HONUA_PG_PLAN_DSN_DEV"
