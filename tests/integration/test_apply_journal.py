"""What an apply changed, and what resume and rollback may do about it (issue 15, items 1, 2, 7).

The apply is killed with SIGKILL at deterministic points through the test hook
``HONUA_TEST_KILL_AT=<step>:<point>`` (``<step>`` is ``migration.<id>#<n>``, the n-th up
step, 1-based, with ``<point>`` ``before``, ``after-commit`` or ``after-journal``; or an
action's address with ``after-journal``, a boundary between actions), read only by the
executor. Every case starts from tables that already hold rows and a state that
knows nothing of them, and checks afterwards that the state loads, that no row that
existed before is lost, that nothing ran twice and that ``plan`` converges.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest

from honua_plan.errors import HonuaError
from honua_plan.providers.postgis.effects import KILL_ENV
from tests.helpers import REPO, copy_example, edit, run

if TYPE_CHECKING:
    from honua_plan.providers.embedded.pgserver import EmbeddedCluster

ROWS = 2_000

# 002 also counts its runs (a counter and a row with a unique key: a second run would
# make the counter 2 and fail the INSERT with 23505); 003 builds its index CONCURRENTLY
COUNT_UP = """    - name: Update the counter
      type: sql
      content: |
        UPDATE ctr SET n = n + 1;
        INSERT INTO ctr_log (id) VALUES (1);

"""
COUNT_DOWN = """    - name: Revert the counter
      type: sql
      content: |
        DELETE FROM ctr_log WHERE id = 1;
        UPDATE ctr SET n = n - 1;

"""

# every up step of the 3-migration plan, by its step id
STEPS = ["migration.001#1", "migration.002#1", "migration.002#2",
         "migration.003#1", "migration.003#2", "migration.003#3"]
POINTS = ["before", "after-commit", "after-journal"]
# inside each step (before it, after its COMMIT, after its journal write) and at the
# boundaries between actions (after an action's journal says done)
BOUNDARIES = ["migration.001", "migration.002", "service.transportation", "migration.003"]
KILL_POINTS = [f"{s}:{p}" for s in STEPS for p in POINTS] + [f"{a}:after-journal" for a in BOUNDARIES]


def make_repo(root: Path) -> Path:
    r = copy_example(root, server=False)
    m3 = r / "migrations/003_optimize_bike_lanes.yaml"
    text, n = re.subn(r"      - type: performance\n(?:.*\n)*?(?=\n    post-down:)", "", m3.read_text())
    assert n == 1
    m3.write_text(text.replace("CREATE INDEX idx_bike_lanes_geom", "CREATE INDEX CONCURRENTLY idx_bike_lanes_geom"))
    m2 = r / "migrations/002_add_parcels_layer.yaml"
    edit(m2, "\n  down:\n", COUNT_UP.rstrip("\n") + "\n\n  down:\n")
    edit(m2, "  down:\n", "  down:\n" + COUNT_DOWN)
    return r


def seed(dsn: str) -> None:
    from honua_plan.workflows.sample import seed_bike_lanes

    with psycopg.connect(dsn, autocommit=True) as conn:
        seed_bike_lanes(conn, ROWS)
        conn.execute("CREATE TABLE ctr (n int NOT NULL); INSERT INTO ctr VALUES (0);"
                     "CREATE TABLE ctr_log (id int PRIMARY KEY)")


def fingerprint(dsn: str) -> tuple[int, str]:
    """Row count and an md5 over every row of bike_lanes in key order."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*), md5(coalesce(string_agg(b::text, '|' ORDER BY id), ''))"
                           " FROM bike_lanes b").fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def scalar(dsn: str, query: str) -> object:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query).fetchone()
    return None if row is None else row[0]


def kill_apply(repo: Path, dsn: str, at: str, *extra: str) -> str:
    """``honua apply`` in a child process that SIGKILLs itself at ``at``."""
    proc = subprocess.run(
        [sys.executable, "-m", "honua_plan", "-C", str(repo), "apply", "--env", "dev", "--auto-approve", *extra],
        env={**os.environ, "HONUA_PG_DSN": dsn, "HONUA_TEST_KILL_AT": at}, cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120, check=False,
    )
    out = proc.stdout.decode()
    assert proc.returncode == -signal.SIGKILL, f"apply was not killed at {at}:\n{out}"
    return out


def state_doc(repo: Path) -> dict:
    from honua_plan.state.model import StateDocument

    data = json.loads((repo / "state" / "dev.json").read_text())
    StateDocument.model_validate(data)  # the state file is valid
    return data


def plan_actions(repo: Path, env: dict[str, str]) -> list[tuple[str, str]]:
    result = run(repo, "plan", "--env", "dev", "--format", "json", env=env)
    assert result.exit_code == 0, result.output
    return [(a["address"], a["action"]) for a in json.loads(result.output)["actions"] if a["action"] != "no-op"]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


@pytest.fixture
def env(pg_dsn: str) -> dict[str, str]:
    seed(pg_dsn)
    return {"HONUA_PG_DSN": pg_dsn}


# --------------------------------------------------------------------------- the kill matrix

_ORIGINAL: list[list[tuple[str, str]]] = []  # the plan on the seeded tables: the same for every case


def fork_apply(repo: Path, dsn: str, at: str) -> None:
    """``honua apply`` in a forked child that SIGKILLs itself at ``at`` (no interpreter start-up)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.environ[KILL_ENV] = at
            run(repo, "apply", "--env", "dev", "--auto-approve", env={"HONUA_PG_DSN": dsn})
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"apply was not killed at {at}"


def clone_database(cluster: EmbeddedCluster, dsn: str) -> str:
    """A copy of the killed apply's database (for the rollback half of the case)."""
    source = re.search(r"dbname=(\S+)", dsn)
    assert source is not None
    name = f"{source.group(1)}_rb"
    deadline = time.monotonic() + 10
    while True:  # the killed child's sessions end a moment after it
        try:
            return cluster.create_database(name, template=source.group(1))
        except HonuaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def check_resumed(repo: Path, dsn: str, before: tuple[int, str]) -> None:
    result = run(repo, "apply", "--env", "dev", "--resume", "--auto-approve", env={"HONUA_PG_DSN": dsn})
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert state_doc(repo)["pending"] is None
    assert fingerprint(dsn) == before, "rows that existed before the apply were lost"
    assert scalar(dsn, "SELECT n FROM ctr") == 1, "a step ran twice (or not at all)"
    assert scalar(dsn, "SELECT count(*) FROM ctr_log") == 1
    assert scalar(dsn, "SELECT count(*) FROM pg_index WHERE indexrelid = to_regclass('idx_bike_lanes_geom')"
                       " AND indisvalid") == 1
    converged = run(repo, "plan", "--env", "dev", "--detailed-exitcode", env={"HONUA_PG_DSN": dsn})
    assert converged.exit_code == 0, converged.output


def check_rolled_back(repo: Path, dsn: str, before: tuple[int, str]) -> None:
    result = run(repo, "apply", "--env", "dev", "--rollback", "--auto-approve", env={"HONUA_PG_DSN": dsn})
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert state_doc(repo)["pending"] is None
    assert fingerprint(dsn) == before, "rows that existed before the apply were lost"
    assert scalar(dsn, "SELECT n FROM ctr") == 0, "a down step ran for an up step that did not"
    assert scalar(dsn, "SELECT count(*) FROM ctr_log") == 0
    assert scalar(dsn, "SELECT to_regclass('parcels') IS NULL") is True
    assert scalar(dsn, "SELECT to_regclass('idx_bike_lanes_geom') IS NULL") is True
    assert plan_actions(repo, {"HONUA_PG_DSN": dsn}) == _ORIGINAL[0]  # the original plan again


@pytest.mark.parametrize("at", KILL_POINTS)
def test_kill_matrix(repo: Path, env: dict[str, str], pg_dsn: str, pg_cluster: EmbeddedCluster, at: str) -> None:
    """SIGKILL at ``at``, then --resume (this database) and --rollback (a copy of it)."""
    before = fingerprint(pg_dsn)
    assert before[0] == ROWS
    if not _ORIGINAL:
        _ORIGINAL.append(plan_actions(repo, env))
        assert [a for a, _ in _ORIGINAL[0] if a.startswith("migration.")] == [
            "migration.001", "migration.002", "migration.003"]
    fork_apply(repo, pg_dsn, at)
    assert state_doc(repo)["pending"] is not None
    copy_dsn = clone_database(pg_cluster, pg_dsn)
    copy = repo.parent / "copy"
    shutil.copytree(repo, copy)
    try:
        check_resumed(repo, pg_dsn, before)
        check_rolled_back(copy, copy_dsn, before)
    finally:
        pg_cluster.drop_database(re.search(r"dbname=(\S+)", copy_dsn).group(1))  # type: ignore[union-attr]


# --------------------------------------------------------------------------- item 1


def test_rollback_skips_the_down_step_of_an_up_step_that_changed_nothing(
        repo: Path, env: dict[str, str], pg_dsn: str) -> None:
    before = fingerprint(pg_dsn)
    kill_apply(repo, pg_dsn, "migration.003#2:before")
    result = run(repo, "apply", "--env", "dev", "--rollback", "--auto-approve", env=env)
    assert result.exit_code == 0, result.output
    assert "Dropping bike lanes table" not in result.output
    assert "Skipped: Drop bike lanes table (this apply created or changed nothing it undoes)" in result.output
    assert "Dropping parcels table... ✓" in result.output  # parcels was made by this apply
    assert fingerprint(pg_dsn) == before


def test_the_journal_records_what_each_step_changed(repo: Path, env: dict[str, str], pg_dsn: str) -> None:
    kill_apply(repo, pg_dsn, "migration.003#2:before")
    steps = {s["id"]: s for s in state_doc(repo)["pending"]["steps"]}
    e1 = steps["migration.001"]["details"]["effects"]["1"]
    assert e1["created"] == [] and e1["dropped"] == [] and e1["altered"] == []  # bike_lanes existed
    e2 = steps["migration.002"]["details"]["effects"]
    assert "table:public.parcels" in e2["1"]["created"]
    assert e2["2"]["rows"] == {"public.ctr": 1, "public.ctr_log": 1}
    assert "index:public.idx_bike_lanes_geom" in steps["migration.003"]["details"]["effects"]["1"]["created"]


DESTROY = """apiVersion: honua.io/v1
kind: Migration
metadata:
  id: "004"
  description: "A scratch table with rows, then a failing step"
spec:
  dependencies: ["001_create_bike_lanes"]
  up:
    - name: Create scratch table
      type: sql
      content: |
        CREATE TABLE scratch (id int PRIMARY KEY);
    - name: Fill scratch table
      type: sql
      content: |
        INSERT INTO scratch SELECT generate_series(1, 50);
    - name: Break
      type: sql
      content: |
        ALTER TABLE nosuch ADD COLUMN x int;
  down:
    - name: Drop scratch table
      type: sql
      content: |
        DROP TABLE IF EXISTS scratch;
"""


@pytest.mark.parametrize("automatic", [False, True])
def test_a_down_step_that_destroys_data_needs_allow_destroy_and_takes_a_backup(
        repo: Path, env: dict[str, str], pg_dsn: str, automatic: bool) -> None:
    first = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
    assert first.exit_code == 0, first.output
    (repo / "migrations/004_scratch.yaml").write_text(
        DESTROY + ("  rollback:\n    automatic: true\n    triggers: [step-failure]\n" if automatic else ""))
    failed = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
    assert failed.exit_code == 1, failed.output
    if automatic:
        assert "Automatic rollback initiated" in failed.output
        out = failed.output
    else:
        assert scalar(pg_dsn, "SELECT count(*) FROM scratch") == 50
        stopped = run(repo, "apply", "--env", "dev", "--rollback", "--auto-approve", env=env)
        assert stopped.exit_code == 1, stopped.output
        out = stopped.output
    assert "Traceback" not in out
    assert "Dropping scratch table" not in out
    assert "Stopped before 'Drop scratch table': it would destroy data (public.scratch holds rows)" in out
    assert "--allow-destroy" in out
    assert scalar(pg_dsn, "SELECT count(*) FROM scratch") == 50
    assert "Completed successfully" not in out and "Rollback completed successfully" not in out
    reports = sorted((repo / "state" / "incidents").glob("004-*.md"))
    assert reports, out
    assert "Restore from backup:" in reports[-1].read_text()
    assert state_doc(repo)["pending"] is not None  # still to roll back

    done = run(repo, "apply", "--env", "dev", "--rollback", "--allow-destroy", "--auto-approve", env=env)
    assert done.exit_code == 0, done.output
    assert re.search(r"Backup created: \S+", done.output), done.output
    assert "Dropping scratch table... ✓" in done.output
    assert scalar(pg_dsn, "SELECT to_regclass('scratch') IS NULL") is True
    doc = state_doc(repo)
    assert doc["pending"] is None
    assert any("scratch" in t for b in doc["backups"] for t in b["tables"])


# --------------------------------------------------------------------------- item 2


def test_resume_does_not_run_a_committed_step_again(repo: Path, env: dict[str, str], pg_dsn: str) -> None:
    kill_apply(repo, pg_dsn, "migration.002#2:after-commit")
    assert scalar(pg_dsn, "SELECT n FROM ctr") == 1
    result = run(repo, "apply", "--env", "dev", "--resume", env=env)
    assert result.exit_code == 0, result.output
    assert "[2/2] Updating the counter (already done: committed before the interruption)" in result.output
    assert scalar(pg_dsn, "SELECT n FROM ctr") == 1
    assert scalar(pg_dsn, "SELECT count(*) FROM honua_plan.step_log WHERE step_id = 'migration.002#2'") == 1


VACUUM = """apiVersion: honua.io/v1
kind: Migration
metadata:
  id: "004"
  description: "A step outside a transaction whose effect the catalog cannot show"
spec:
  dependencies: ["001_create_bike_lanes"]
  up:
    - name: Vacuum bike lanes
      type: sql
      content: |
        VACUUM bike_lanes;
  down: []
"""


def test_resume_asks_when_it_cannot_tell_whether_a_non_transactional_step_ran(
        repo: Path, env: dict[str, str], pg_dsn: str) -> None:
    (repo / "migrations/004_vacuum.yaml").write_text(VACUUM)
    kill_apply(repo, pg_dsn, "migration.004#1:after-commit")
    refused = run(repo, "apply", "--env", "dev", "--resume", env=env)
    assert refused.exit_code == 1, refused.output
    assert "Traceback" not in refused.output
    assert "cannot tell whether step migration.004#1 (Vacuum bike lanes) ran" in refused.output
    assert "honua apply --env dev --resume --assume-done migration.004#1" in refused.output
    assert "--assume-not-done migration.004#1" in refused.output
    assert state_doc(repo)["pending"] is not None
    typo = run(repo, "apply", "--env", "dev", "--resume", "--assume-done", "migration.004#9", env=env)
    assert typo.exit_code == 1 and "name no step of this apply: migration.004#9" in typo.output
    result = run(repo, "apply", "--env", "dev", "--resume", "--assume-done", "migration.004#1", env=env)
    assert result.exit_code == 0, result.output
    assert "[1/1] Vacuuming bike lanes (assumed done: --assume-done)" in result.output
    assert state_doc(repo)["pending"] is None


def test_resume_checks_the_catalog_for_a_concurrent_index(repo: Path, env: dict[str, str], pg_dsn: str) -> None:
    kill_apply(repo, pg_dsn, "migration.003#1:after-commit")
    result = run(repo, "apply", "--env", "dev", "--resume", env=env)
    assert result.exit_code == 0, result.output
    assert "[1/3] Creating spatial index (already done: index public.idx_bike_lanes_geom exists and is valid)" \
        in result.output


# --------------------------------------------------------------------------- item 7


@pytest.mark.parametrize("command", ["plan", "drift"])
def test_plan_and_drift_report_an_interrupted_apply(
        repo: Path, env: dict[str, str], pg_dsn: str, command: str) -> None:
    kill_apply(repo, pg_dsn, "migration.002#1:after-journal")
    result = run(repo, command, "--env", "dev", env=env)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "No changes" not in result.output and "No drift" not in result.output
    assert "an apply of dev was interrupted" in result.output
    assert "honua apply --env dev --resume" in result.output and "--rollback" in result.output


@pytest.mark.parametrize("command", ["plan", "drift"])
def test_plan_and_drift_report_an_apply_in_flight(
        repo: Path, env: dict[str, str], pg_dsn: str, command: str) -> None:
    from honua_plan.context import Context

    first = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
    assert first.exit_code == 0, first.output
    with Context(repo).backend("dev") as backend, backend.lock("honua apply --env dev"):
        result = run(repo, command, "--env", "dev", env=env)
    assert result.exit_code == 1, result.output
    assert "No changes" not in result.output and "No drift" not in result.output
    assert "an apply of dev is in flight" in result.output
    assert "honua apply --env dev --resume" in result.output
