"""Faults during apply: a failing step, a SIGKILL between two steps (issue: apply engine).

Whatever happens, the state file stays a valid state document whose serial only grows;
an apply that did not finish leaves its journal (``pending``) for ``apply --resume`` or
``apply --rollback``, and both converge: afterwards ``plan --detailed-exitcode`` is 0.

Every test starts from the example applied on the seed's 42-row table, with migration
003's performance validation removed (it only passes on a large table; the apply engine
tests cover it), so that the starting point is a clean, converged environment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.helpers import REPO, copy_example, drop_performance_check, edit, run

M004 = "migrations/004_add_surface.yaml"
M004_TEXT = """apiVersion: honua.io/v1
kind: Migration
metadata:
  id: "004"
  description: "Add surface and width columns"
  environments: ["dev", "staging", "production"]
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
    - name: Analyze table
      type: sql
      content: |
        ANALYZE bike_lanes;
  down:
    - name: Drop width column
      type: sql
      content: |
        ALTER TABLE bike_lanes DROP COLUMN IF EXISTS width_m;
    - name: Drop surface column
      type: sql
      content: |
        ALTER TABLE bike_lanes DROP COLUMN IF EXISTS surface;
"""
BROKEN = "ALTER TABLE nosuch ADD COLUMN x int;"
FIXED = "ALTER TABLE bike_lanes ADD COLUMN width_m real;"

M005 = "migrations/005_slow.yaml"
M005_TEXT = """apiVersion: honua.io/v1
kind: Migration
metadata:
  id: "005"
  description: "Add surface and width columns, slowly"
spec:
  dependencies: ["001_create_bike_lanes"]
  up:
    - name: Add surface column
      type: sql
      content: |
        ALTER TABLE bike_lanes ADD COLUMN surface varchar(20);
    - name: Wait for the replicas
      type: sql
      content: |
        SELECT pg_sleep(2);
    - name: Add width column
      type: sql
      content: |
        ALTER TABLE bike_lanes ADD COLUMN width_m real;
  down:
    - name: Drop width column
      type: sql
      content: |
        ALTER TABLE bike_lanes DROP COLUMN IF EXISTS width_m;
    - name: Drop surface column
      type: sql
      content: |
        ALTER TABLE bike_lanes DROP COLUMN IF EXISTS surface;
"""

BASE_COLUMNS = ["id", "name", "lane_type", "width_ft", "last_updated", "geom"]


class StateWatch:
    """Reads ``state/dev.json``: always a valid state document, its serial never going down."""

    def __init__(self, repo: Path) -> None:
        self.path = repo / "state" / "dev.json"
        self.serials: list[int] = []

    def read(self) -> dict:
        from honua_plan.state.model import StateDocument

        data = json.loads(self.path.read_text())
        StateDocument.model_validate(data)
        if self.serials:
            assert data["serial"] >= self.serials[-1], f"serial went down: {self.serials[-1]} → {data['serial']}"
        self.serials.append(data["serial"])
        return data


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = copy_example(tmp_path / "repo", server=False)
    drop_performance_check(r)
    return r


@pytest.fixture
def env(pg_dsn: str) -> dict[str, str]:
    return {"HONUA_PG_DSN": pg_dsn}


@pytest.fixture
def applied(repo: Path, env: dict[str, str], pg_dsn: str) -> StateWatch:
    """The example applied on the 42-row table: a converged starting point."""
    from honua_plan.workflows.sample import seed_bike_lanes

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        seed_bike_lanes(conn, 42)
    result = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
    assert result.exit_code == 0, result.output
    watch = StateWatch(repo)
    assert watch.read()["pending"] is None
    return watch


def columns(pg_dsn: str) -> list[str]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT column_name FROM information_schema.columns "
                            "WHERE table_schema = 'public' AND table_name = 'bike_lanes' "
                            "ORDER BY ordinal_position").fetchall()
    return [r[0] for r in rows]


def latest(doc: dict, migration_id: str) -> dict:
    return [m for m in doc["migrations"] if m["id"] == migration_id][-1]


def assert_converged(repo: Path, env: dict[str, str], watch: StateWatch) -> dict:
    doc = watch.read()
    assert doc["pending"] is None
    result = run(repo, "plan", "--env", "dev", "--detailed-exitcode", env=env)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return doc


def fail_004(repo: Path, env: dict[str, str], watch: StateWatch) -> str:
    (repo / M004).write_text(M004_TEXT)
    result = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return result.output


# --------------------------------------------------------------------------- a failing step


def test_a_failing_step_leaves_a_journal_and_the_next_apply_refuses(
        repo: Path, env: dict[str, str], pg_dsn: str, applied: StateWatch) -> None:
    out = fail_004(repo, env, applied)
    assert "[1/3] Adding surface column... ✓" in out
    assert 'relation "nosuch" does not exist' in out
    assert "--resume" in out and "--rollback" in out
    assert "[3/3]" not in out  # nothing after the failed step ran
    doc = applied.read()
    assert latest(doc, "004")["status"] == "failed"
    assert "nosuch" in latest(doc, "004")["error"]
    journal = doc["pending"]
    assert journal is not None, "a failed migration without automatic rollback must leave its journal"
    step = {s["id"]: s for s in journal["steps"]}["migration.004"]
    assert step["status"] == "failed"
    assert columns(pg_dsn) == [*BASE_COLUMNS, "surface"]  # step 1 committed, step 2 did not

    status = run(repo, "migrate", "status", "--env", "dev", "--format", "json", env=env)
    assert {r["id"]: r["status"] for r in json.loads(status.output)["migrations"]}["004"] == "failed"

    again = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
    assert again.exit_code == 1, again.output
    assert "Traceback" not in again.output
    assert "did not finish" in again.output
    assert "--resume" in again.output and "--rollback" in again.output
    after = applied.read()
    assert after["serial"] == doc["serial"]  # refused before writing anything
    assert after["pending"] == journal

    # the other commands that change things refuse too
    up = run(repo, "migrate", "up", "-e", "dev", "--yes", env=env)
    assert up.exit_code == 1 and "--resume" in up.output, up.output
    # --resume and --rollback exclude each other
    both = run(repo, "apply", "--env", "dev", "--resume", "--rollback", env=env)
    assert both.exit_code != 0 and applied.read()["serial"] == doc["serial"]


def test_resume_after_fixing_the_cause_in_the_database_converges(
        repo: Path, env: dict[str, str], pg_dsn: str, applied: StateWatch) -> None:
    fail_004(repo, env, applied)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE nosuch (id int)")
    result = run(repo, "apply", "--env", "dev", "--resume", env=env)
    assert result.exit_code == 0, result.output
    assert "[1/3] Adding surface column (already done)" in result.output  # not run twice
    assert "Migration 004 completed successfully on dev" in result.output
    assert columns(pg_dsn) == [*BASE_COLUMNS, "surface"]
    doc = assert_converged(repo, env, applied)
    assert latest(doc, "004")["status"] == "applied"
    nothing = run(repo, "apply", "--env", "dev", "--resume", env=env)
    assert nothing.exit_code == 1 and "nothing to resume" in nothing.output, nothing.output


def test_resume_after_fixing_the_sql_converges(
        repo: Path, env: dict[str, str], pg_dsn: str, applied: StateWatch) -> None:
    fail_004(repo, env, applied)
    checksum = latest(applied.read(), "004")["checksum"]
    edit(repo / M004, BROKEN, FIXED)
    # a failed migration may be edited: its checksum is not pinned like an applied one's
    valid = run(repo, "validate", "--env", "dev", env=env)
    assert valid.exit_code == 0, valid.output
    result = run(repo, "apply", "--env", "dev", "--resume", env=env)
    assert result.exit_code == 0, result.output
    assert "Migration 004 completed successfully on dev" in result.output
    assert columns(pg_dsn) == [*BASE_COLUMNS, "surface", "width_m"]
    doc = assert_converged(repo, env, applied)
    assert latest(doc, "004")["status"] == "applied"
    assert latest(doc, "004")["checksum"] != checksum  # the fixed spec is what is recorded


def test_rollback_of_a_failed_apply_converges(
        repo: Path, env: dict[str, str], pg_dsn: str, applied: StateWatch) -> None:
    fail_004(repo, env, applied)
    result = run(repo, "apply", "--env", "dev", "--rollback", env=env)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "Dropping surface column... ✓" in result.output
    assert columns(pg_dsn) == BASE_COLUMNS
    doc = applied.read()
    assert doc["pending"] is None
    assert latest(doc, "004")["status"] == "rolled_back"
    assert [latest(doc, m)["status"] for m in ("001", "002", "003")] == ["applied"] * 3
    nothing = run(repo, "apply", "--env", "dev", "--rollback", env=env)
    assert nothing.exit_code == 1 and "nothing to roll back" in nothing.output, nothing.output

    # the rolled-back migration is planned again; fixed, it applies and the plan is empty
    planned = run(repo, "plan", "--env", "dev", "--format", "json", env=env)
    assert [a["address"] for a in json.loads(planned.output)["actions"] if a["action"] != "no-op"] == [
        "migration.004"]
    edit(repo / M004, BROKEN, FIXED)
    again = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
    assert again.exit_code == 0, again.output
    assert columns(pg_dsn) == [*BASE_COLUMNS, "surface", "width_m"]
    assert latest(assert_converged(repo, env, applied), "004")["status"] == "applied"


def test_a_failing_step_of_a_migration_with_automatic_rollback_is_undone_at_once(
        repo: Path, env: dict[str, str], pg_dsn: str, applied: StateWatch) -> None:
    (repo / M004).write_text(M004_TEXT + "  rollback:\n    automatic: true\n    triggers: [step-failure]\n")
    result = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "Automatic rollback initiated" in result.output
    assert "Status: ROLLED BACK" in result.output
    assert columns(pg_dsn) == BASE_COLUMNS
    doc = applied.read()
    assert doc["pending"] is None  # nothing left to resume
    assert latest(doc, "004")["status"] == "rolled_back"
    assert list((repo / "state" / "incidents").glob("004-*.md"))
    # the next apply is not refused: it plans migration 004 again
    again = run(repo, "plan", "--env", "dev", "--detailed-exitcode", env=env)
    assert again.exit_code == 2, again.output
    assert "did not finish" not in again.output


# --------------------------------------------------------------------------- SIGKILL


def kill_during_the_slow_step(repo: Path, env: dict[str, str], watch: StateWatch) -> str:
    """Start ``honua apply`` in a child process and SIGKILL it while step 2 of 3 sleeps."""
    (repo / M005).write_text(M005_TEXT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "honua_plan", "-C", str(repo), "apply", "--env", "dev", "--auto-approve"],
        env={**os.environ, **env}, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"apply ended before it was killed:\n{proc.stdout.read().decode()}"  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the slow step never started"
            doc = watch.read()
            steps = {s["id"]: s for s in (doc["pending"] or {}).get("steps", [])}
            step = steps.get("migration.005")
            if step and step["status"] == "running" and step["details"].get("ops_done") == [0]:
                break  # step 1 committed and journaled; step 2 (pg_sleep) is running
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        out = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == -signal.SIGKILL, out
    assert "[1/3] Adding surface column... ✓" in out
    assert "Migration 005 completed" not in out
    return out


def test_sigkill_between_steps_then_resume_converges(
        repo: Path, env: dict[str, str], pg_dsn: str, applied: StateWatch) -> None:
    kill_during_the_slow_step(repo, env, applied)
    doc = applied.read()
    assert doc["pending"] is not None
    assert columns(pg_dsn) == [*BASE_COLUMNS, "surface"]
    refused = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)  # the lock died with the process
    assert refused.exit_code == 1 and "--resume" in refused.output, refused.output

    result = run(repo, "apply", "--env", "dev", "--resume", env=env)
    assert result.exit_code == 0, result.output
    assert "[1/3] Adding surface column (already done)" in result.output
    assert "Migration 005 completed successfully on dev" in result.output
    assert columns(pg_dsn) == [*BASE_COLUMNS, "surface", "width_m"]
    doc = assert_converged(repo, env, applied)
    assert latest(doc, "005")["status"] == "applied"
    assert doc["resources"]["table.public.bike_lanes"]["attributes"]  # the new shape is recorded
    drift = run(repo, "drift", "--env", "dev", env=env)
    assert drift.exit_code == 0, drift.output


def test_sigkill_between_steps_then_rollback_converges(
        repo: Path, env: dict[str, str], pg_dsn: str, applied: StateWatch) -> None:
    before = applied.read()
    kill_during_the_slow_step(repo, env, applied)
    result = run(repo, "apply", "--env", "dev", "--rollback", env=env)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert columns(pg_dsn) == BASE_COLUMNS
    doc = applied.read()
    assert doc["pending"] is None
    assert latest(doc, "005")["status"] == "rolled_back"
    assert doc["resources"] == before["resources"]
    drift = run(repo, "drift", "--env", "dev", env=env)
    assert drift.exit_code == 0, drift.output

    # without the migration the environment is as it was: nothing to do
    (repo / M005).unlink()
    assert_converged(repo, env, applied)
    assert applied.serials == sorted(applied.serials)
