"""The apply engine against a real PostGIS (issue: apply engine, "Done when").

Seed Example 1 (a layer applied and recorded, the plan empty afterwards) and Example 2
(migration 003: success on a populated table, automatic rollback on the 42-row table,
``migrate down`` / ``up``), plus the guards around apply: the state lock, stale saved
plans, production approvals, and secrets kept out of every output and file.

As in ``test_plan_engine.py`` the example's GIS server is switched to ``type: none``: the
served layers are tested elsewhere, here only the database, the files and the state matter.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg
import pytest

from tests.helpers import REPO, copy_example, edit, run

LAYER = "environments/dev/layers/bike-lanes.yaml"
M003 = "migrations/003_optimize_bike_lanes.yaml"
INDEX = "idx_bike_lanes_geom"

# ~50,000 lanes around the seed's envelope: the seed's 42 lanes inside it (from
# seed_bike_lanes) and 50,000 more on a grid just east of it (x from -122.395), so that
# the performance check's envelope selects 42 of 50,042 rows and an index pays off.
OUTER_LANES = """
INSERT INTO bike_lanes (name, lane_type, width_ft, last_updated, geom)
SELECT 'Outer street ' || g, 'painted', 5, timestamptz '2025-10-01 00:00:00+00',
       ST_SetSRID(ST_MakeLine(ST_MakePoint(x, y), ST_MakePoint(x + 0.001, y + 0.001)), 4326)
FROM (SELECT g, -122.395 + (g %% 223) * 0.0004 AS x, 45.505 + ((g / 223) %% 223) * 0.0004 AS y
      FROM generate_series(1, %(rows)s) AS g) s
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = copy_example(tmp_path / "repo", server=False)
    return r


@pytest.fixture
def env(pg_dsn: str) -> dict[str, str]:
    return {"HONUA_PG_DSN": pg_dsn}


def seed(pg_dsn: str, rows: int = 42) -> None:
    from honua_plan.workflows.sample import seed_bike_lanes

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert seed_bike_lanes(conn, rows) == rows


def seed_50k(pg_dsn: str) -> None:
    """The seed's 42 lanes plus 50,000 outside the performance check's envelope."""
    seed(pg_dsn, 42)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(OUTER_LANES, {"rows": 50_000})
        conn.execute("ANALYZE bike_lanes")


def index_exists(pg_dsn: str, name: str = INDEX) -> bool:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT 1 FROM pg_indexes WHERE tablename = 'bike_lanes' AND indexname = %s",
                            (name,)).fetchall()
    return bool(rows)


def state_doc(repo: Path, environment: str = "dev") -> dict:
    """The local state file, checked to be a valid state document."""
    from honua_plan.state.model import StateDocument

    data = json.loads((repo / "state" / f"{environment}.json").read_text())
    StateDocument.model_validate(data)
    return data


def latest_status(doc: dict, migration_id: str) -> str | None:
    recs = [m for m in doc["migrations"] if m["id"] == migration_id]
    return recs[-1]["status"] if recs else None


def without_performance_check(repo: Path) -> None:
    """Drop migration 003's performance validation (it only passes on a large table)."""
    path = repo / M003
    text, n = re.subn(r"      - type: performance\n(?:.*\n)*?(?=\n    post-down:)", "", path.read_text())
    assert n == 1
    path.write_text(text)


def assert_clean_exit(result, code: int) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert "internal error" not in result.output


# --------------------------------------------------------------------------- Example 1


def test_example1_layer_is_applied_recorded_and_the_plan_is_empty_afterwards(
        repo: Path, env: dict[str, str], pg_dsn: str) -> None:
    # Example 1 comes before Example 2 wrote migration 003: the city's table exists already
    (repo / M003).unlink()
    seed(pg_dsn, 42)
    result = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
    assert_clean_exit(result, 0)
    for line in ("✓ Verified table exists: bike_lanes", "✓ Validated geometry column: geom",
                 "✓ Created layer: bike-lanes", "Apply complete:"):
        assert line in result.output

    again = run(repo, "plan", "--env", "dev", "--detailed-exitcode", env=env)
    assert again.exit_code == 0, again.output

    listed = run(repo, "state", "list", "--env", "dev", env=env)
    assert listed.exit_code == 0, listed.output
    lines = listed.output.split()
    for address in ("layer.transportation::bike-lanes", "service.transportation", "datasource.postgis-primary",
                    "migration.001", "migration.002", "table.public.bike_lanes"):
        assert address in lines, listed.output

    shown = run(repo, "state", "show", "--env", "dev", "layer.transportation::bike-lanes", env=env)
    assert shown.exit_code == 0, shown.output
    rec = json.loads(shown.output)
    assert rec["kind"] == "layer"
    assert rec["source_path"] == LAYER
    assert rec["attributes"]["spec"]["title"] == "Bike Lanes"
    assert rec["attributes"]["spec"]["storage"]["table"] == "bike_lanes"

    doc = state_doc(repo)
    assert doc["pending"] is None
    assert doc["events"][-1]["kind"] == "apply"

    # a second apply finds nothing to do and does not write the state
    serial = doc["serial"]
    noop = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
    assert_clean_exit(noop, 0)
    assert "No changes." in noop.output
    assert state_doc(repo)["serial"] == serial


# --------------------------------------------------------------------------- Example 2


def test_migration_003_succeeds_on_a_populated_table(repo: Path, env: dict[str, str], pg_dsn: str) -> None:
    seed_50k(pg_dsn)
    result = run(repo, "deploy", "migration", "003", "--environment", "dev", env=env)
    assert_clean_exit(result, 0)
    out = result.output
    assert "Deploying migration 003 to dev..." in out
    assert "✓ Pre-conditions verified" in out
    assert re.search(r"✓ Backup created: dev-backup-\d{8}-\d{6}", out), out
    assert "[1/3] Creating spatial index... ✓" in out
    assert "[2/3] Analyzing table... ✓" in out
    assert "[3/3] Updating metadata... ✓" in out
    assert "✓ Index exists" in out
    assert "✓ Performance" in out, out
    assert re.search(rf"(Bitmap )?Index Scan (on|using) {INDEX}", out), out
    assert "Migration 003 completed successfully on dev" in out
    assert "rollback" not in out.lower()

    assert index_exists(pg_dsn)
    layer = (repo / LAYER).read_text()
    assert f"name: {INDEX}" in layer and "type: gist" in layer
    doc = state_doc(repo)
    assert doc["pending"] is None
    assert latest_status(doc, "003") == "applied"
    assert [latest_status(doc, m) for m in ("001", "002")] == ["applied", "applied"]
    rec = [m for m in doc["migrations"] if m["id"] == "003"][-1]
    assert rec["backup_id"] and rec["backup_id"].startswith("dev-backup-")
    assert not list((repo / "state").glob("incidents/*"))

    status = run(repo, "migrate", "status", "--env", "dev", "--format", "json", env=env)
    rows = {r["id"]: r["status"] for r in json.loads(status.output)["migrations"]}
    assert rows == {"001": "applied", "002": "applied", "003": "applied"}


def test_migration_003_on_the_42_row_table_is_rolled_back_automatically(
        repo: Path, env: dict[str, str], pg_dsn: str) -> None:
    seed(pg_dsn, 42)
    before = (repo / LAYER).read_bytes()
    result = run(repo, "deploy", "migration", "003", "--environment", "dev", env=env)
    assert_clean_exit(result, 1)
    out = result.output
    assert "[3/3] Updating metadata... ✓" in out  # the metadata step did run …
    assert "✓ Index exists" in out
    assert "✗ Performance test FAILED" in out and "Seq Scan" in out
    assert "Validation failed! Automatic rollback initiated..." in out
    assert "[1/2] Dropping spatial index... ✓" in out
    assert "[2/2] Reverting metadata... ✓" in out
    assert "✓ Index removed" in out
    assert "Rollback completed successfully" in out
    assert "Status: ROLLED BACK" in out
    assert "Migration: 003_optimize_bike_lanes" in out
    assert "CONCURRENTLY" in out  # the seed's recommendation
    assert "Migration 003 completed successfully" not in out

    assert not index_exists(pg_dsn)
    assert (repo / LAYER).read_bytes() == before  # … and was undone byte for byte
    doc = state_doc(repo)
    assert doc["pending"] is None
    assert latest_status(doc, "003") == "rolled_back"
    assert [latest_status(doc, m) for m in ("001", "002")] == ["applied", "applied"]

    reports = sorted((repo / "state" / "incidents").glob("*.md"))
    assert len(reports) == 1, reports
    report = reports[0].read_text()
    assert "ROLLED BACK" in report
    assert "CONCURRENTLY" in report
    assert "003" in report and "dev" in report
    assert str(reports[0]) in out

    # the seed's "Next steps": an incident id that `honua incidents show` finds, and what was
    # not done said as such (no notification is configured)
    incident = re.search(r"- Incident logged: (INC-\d{8}-001) ", out)
    assert incident is not None, out
    assert "Stakeholders: not notified (no notification is configured)" in out
    assert "Database backup retained (no retention policy: kept until deleted)" in out  # dev has no policy
    assert incident.group(1) in report
    assert doc["incidents"][0]["id"] == incident.group(1) and doc["incidents"][0]["kind"] == "rollback"
    shown = run(repo, "incidents", "show", incident.group(1), "--env", "dev", env=env)
    assert shown.exit_code == 0, shown.output
    assert "rollback" in shown.output and "ROLLED BACK" in shown.output
    listed = run(repo, "incidents", "list", "--format", "json", env=env)
    assert [i["id"] for i in json.loads(listed.output)["incidents"]] == [incident.group(1)]

    # the backup taken before the migration is kept and listed
    backups = run(repo, "backup", "list", "--env", "dev", "--format", "json", env=env)
    assert any(b["migration_id"] == "003" for b in json.loads(backups.output))


def test_migrate_down_then_up_converges(repo: Path, env: dict[str, str], pg_dsn: str) -> None:
    seed_50k(pg_dsn)
    assert_clean_exit(run(repo, "deploy", "migration", "003", "--environment", "dev", env=env), 0)
    assert_clean_exit(run(repo, "apply", "--env", "dev", "--auto-approve", env=env), 0)
    assert run(repo, "plan", "--env", "dev", "--detailed-exitcode", env=env).exit_code == 0
    assert index_exists(pg_dsn)

    down = run(repo, "migrate", "down", "-e", "dev", "003", "--yes", env=env)
    assert_clean_exit(down, 0)
    assert "[1/2] Dropping spatial index... ✓" in down.output
    assert "Migration 003 rolled back successfully on dev" in down.output
    assert not index_exists(pg_dsn)
    assert "indexes: []" in (repo / LAYER).read_text()
    doc = state_doc(repo)
    assert doc["pending"] is None
    assert latest_status(doc, "003") == "rolled_back"
    status = run(repo, "migrate", "status", "--env", "dev", "--format", "json", env=env)
    assert {r["id"]: r["status"] for r in json.loads(status.output)["migrations"]}["003"] == "rolled_back"
    # the down leaves exactly one thing to do: migration 003 again
    planned = run(repo, "plan", "--env", "dev", "--format", "json", env=env)
    assert [a["address"] for a in json.loads(planned.output)["actions"] if a["action"] != "no-op"] == [
        "migration.003"]

    up = run(repo, "migrate", "up", "-e", "dev", "003", "--yes", env=env)
    assert_clean_exit(up, 0)
    assert "Migration 003 completed successfully on dev" in up.output
    assert index_exists(pg_dsn)
    assert f"name: {INDEX}" in (repo / LAYER).read_text()
    assert latest_status(state_doc(repo), "003") == "applied"
    final = run(repo, "plan", "--env", "dev", "--detailed-exitcode", env=env)
    assert final.exit_code == 0, final.output


def test_migrate_down_validation_reports_the_index_removed(repo: Path, env: dict[str, str], pg_dsn: str) -> None:
    without_performance_check(repo)
    seed(pg_dsn, 42)
    assert_clean_exit(run(repo, "apply", "--env", "dev", "--auto-approve", env=env), 0)
    down = run(repo, "migrate", "down", "-e", "dev", "003", "--yes", env=env)
    assert_clean_exit(down, 0)
    assert not index_exists(pg_dsn)
    # the post-down check ("0 rows" from pg_indexes) passed: it must not claim the opposite
    assert "✓ Index exists" not in down.output, down.output
    assert "✓ Index removed" in down.output, down.output


def test_seed_bike_lanes_loads_50000_rows(pg_dsn: str) -> None:
    seed(pg_dsn, 50_000)


def test_migration_003_succeeds_on_50000_seeded_rows(repo: Path, env: dict[str, str], pg_dsn: str) -> None:
    seed(pg_dsn, 50_000)
    result = run(repo, "deploy", "migration", "003", "--environment", "dev", env=env)
    assert_clean_exit(result, 0)
    assert "Migration 003 completed successfully on dev" in result.output


# --------------------------------------------------------------------------- guards


def test_a_second_apply_fails_fast_naming_the_lock_holder(repo: Path, env: dict[str, str], pg_dsn: str) -> None:
    import os
    import socket
    import time

    from honua_plan.state import open_backend

    without_performance_check(repo)
    seed(pg_dsn, 42)
    backend = open_backend("local", environment="dev", root=repo)
    with backend.lock("test holder"):
        started = time.monotonic()
        result = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
        took = time.monotonic() - started
    assert_clean_exit(result, 1)
    assert "locked by" in result.output
    assert f"pid {os.getpid()}" in result.output
    assert socket.gethostname() in result.output
    assert "(test holder)" in result.output
    assert took < 10, f"waited {took:.1f}s for the lock"
    # nothing was applied: no table created by migration 002, no state written
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('public.parcels')").fetchone() == (None,)
    assert not (repo / "state" / "dev.json").exists()
    # once the lock is free the same command works
    assert_clean_exit(run(repo, "apply", "--env", "dev", "--auto-approve", env=env), 0)
    assert state_doc(repo)["pending"] is None


def test_a_saved_plan_is_stale_after_an_out_of_band_database_change(
        repo: Path, env: dict[str, str], pg_dsn: str, tmp_path: Path) -> None:
    without_performance_check(repo)
    seed(pg_dsn, 42)
    assert_clean_exit(run(repo, "apply", "--env", "dev", "--auto-approve", env=env), 0)
    edit(repo / LAYER, 'title: "Bike Lanes"', 'title: "Bike lanes"')
    plan_file = tmp_path / "p.json"
    assert run(repo, "plan", "--env", "dev", "--out", str(plan_file), env=env).exit_code == 0
    serial = state_doc(repo)["serial"]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE bike_lanes ADD COLUMN x int")
    result = run(repo, "apply", "--env", "dev", str(plan_file), env=env)
    assert_clean_exit(result, 1)
    assert "stale" in result.output
    assert "bike_lanes" in result.output
    doc = state_doc(repo)
    assert doc["serial"] == serial  # refused before anything was written
    assert doc["resources"]["layer.transportation::bike-lanes"]["attributes"]["spec"]["title"] == "Bike Lanes"


def test_a_saved_plan_is_stale_after_another_apply(
        repo: Path, env: dict[str, str], pg_dsn: str, tmp_path: Path) -> None:
    without_performance_check(repo)
    seed(pg_dsn, 42)
    assert_clean_exit(run(repo, "apply", "--env", "dev", "--auto-approve", env=env), 0)
    edit(repo / LAYER, 'title: "Bike Lanes"', 'title: "Bike lanes"')
    plan_file = tmp_path / "p.json"
    assert run(repo, "plan", "--env", "dev", "--out", str(plan_file), env=env).exit_code == 0
    # someone applies first (the same configuration, from a fresh plan): only the serial moves on
    assert_clean_exit(run(repo, "apply", "--env", "dev", "--auto-approve", env=env), 0)
    serial = state_doc(repo)["serial"]
    result = run(repo, "apply", "--env", "dev", str(plan_file), env=env)
    assert_clean_exit(result, 1)
    assert "stale" in result.output
    assert "serial" in result.output
    assert state_doc(repo)["serial"] == serial


def test_a_production_plan_needing_approval_is_refused_until_approved(
        repo: Path, env: dict[str, str], pg_dsn: str, tmp_path: Path) -> None:
    # only the approval requirement matters here: no deployment window, no cooldown
    policy = repo / "policies/production-policy.yaml"
    text, n1 = re.subn(r"  deploymentWindows:\n(?:    .*\n)+", "", policy.read_text())
    text, n2 = re.subn(r"  cooldown:\n(?:    .*\n)+", "", text)
    assert (n1, n2) == (1, 1)
    policy.write_text(text)
    without_performance_check(repo)
    seed(pg_dsn, 42)

    fresh = run(repo, "apply", "--env", "production", "--auto-approve", env=env)
    assert_clean_exit(fresh, 1)
    assert "approval" in fresh.output.lower() and "honua approve" in fresh.output
    assert not (repo / "state/production.json").exists() or state_doc(repo, "production")["serial"] == 0

    plan_file = tmp_path / "p.json"
    planned = run(repo, "plan", "--env", "production", "--out", str(plan_file), env=env)
    assert planned.exit_code == 0, planned.output
    assert "Approval Required: YES" in planned.output
    unapproved = run(repo, "apply", "--env", "production", str(plan_file), env=env)
    assert_clean_exit(unapproved, 1)
    assert "approval" in unapproved.output.lower()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('public.parcels')").fetchone() == (None,)

    approved = run(repo, "approve", str(plan_file), "--by", "john@city.gov", env=env)
    assert approved.exit_code == 0, approved.output
    result = run(repo, "apply", "--env", "production", str(plan_file), env=env)
    assert_clean_exit(result, 0)
    assert "✓ Approval verified (approved by: john@city.gov)" in result.output
    assert "Migration 003 completed successfully on production" in result.output
    assert re.search(r"Backup created: production-backup-", result.output)  # requireBackup
    assert index_exists(pg_dsn)
    assert run(repo, "plan", "--env", "production", "--detailed-exitcode", env=env).exit_code == 0
    assert latest_status(state_doc(repo, "production"), "003") == "applied"


SECRET = "s3cret-pw-123"

M004_BROKEN = """apiVersion: honua.io/v1
kind: Migration
metadata:
  id: "004"
  description: "Add a surface column"
spec:
  dependencies: ["001_create_bike_lanes"]
  up:
    - name: Add surface column
      type: sql
      content: |
        ALTER TABLE bike_lanes ADD COLUMN surface varchar(20);
    - name: Add width column
      type: sql
      content: |
        ALTER TABLE nosuch ADD COLUMN x int;
  down:
    - name: Drop surface column
      type: sql
      content: |
        ALTER TABLE bike_lanes DROP COLUMN IF EXISTS surface;
"""


def test_a_dsn_password_never_appears_in_output_plans_state_or_reports(
        repo: Path, pg_dsn: str, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {"HONUA_PG_DSN": f"{pg_dsn} password={SECRET}"}
    seed(pg_dsn, 42)
    plan_file = tmp_path / "p.json"
    outputs: dict[str, str] = {}

    def go(*args: str) -> int:
        result = run(repo, *args, env=env)
        outputs[" ".join(args)] = result.output
        return result.exit_code

    assert go("plan", "--env", "dev", "--out", str(plan_file)) == 0
    assert go("plan", "--env", "dev", "--format", "json") == 0
    assert go("apply", "--env", "dev", "--auto-approve") == 1  # 003 rolls back: an incident report
    assert list((repo / "state" / "incidents").glob("*.md"))
    # a failing step leaves a journal with the error in the state
    (repo / "migrations/004_add_surface.yaml").write_text(M004_BROKEN)
    assert go("apply", "--env", "dev", "--auto-approve") == 1
    assert state_doc(repo)["pending"] is not None
    for args in (("backup", "list", "--env", "dev"), ("backup", "list", "--env", "dev", "--format", "json"),
                 ("state", "show", "--env", "dev"), ("state", "history", "--env", "dev"),
                 ("drift", "--env", "dev"), ("drift", "--env", "dev", "--format", "json"),
                 ("migrate", "status", "--env", "dev"), ("apply", "--env", "dev", "--auto-approve"),
                 ("apply", "--env", "dev", "--rollback")):
        go(*args)
    # a fresh process too: no secret remembered from earlier commands hides a leak
    proc = subprocess.run([sys.executable, "-m", "honua_plan", "-C", str(repo), "plan", "--env", "dev"],
                          env={**os.environ, **env}, cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)
    outputs["subprocess plan"] = proc.stdout + proc.stderr
    assert proc.returncode == 0, outputs["subprocess plan"]

    for command, output in outputs.items():
        assert SECRET not in output, f"`honua {command}` printed the password"
    files = [plan_file, *(p for p in (repo / "state").rglob("*") if p.is_file())]
    assert any(p.suffix == ".dump" for p in files)
    assert any("incidents" in p.parts for p in files)
    assert any("plans" in p.parts for p in files)
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), f"{path} holds the password"
