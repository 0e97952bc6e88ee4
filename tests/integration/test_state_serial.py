"""A state that went backwards is refused (issue 15, item 6).

Every state write also records (environment, lineage, serial) in
``honua_plan.state_serial`` of the target database. A state file whose serial is lower
than that, a missing state file while ``<env>.json.bak`` exists, or a missing state while
the database records one, is refused with an explanation and the command that restores
it (``honua state restore-backup``); plan would otherwise re-run every migration.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg
import pytest

from honua_plan.workflows.sample import seed_bike_lanes
from tests.helpers import copy_example, drop_performance_check, run


@pytest.fixture
def env(pg_dsn: str) -> dict[str, str]:
    return {"HONUA_PG_DSN": pg_dsn}


@pytest.fixture
def repo(tmp_path: Path, pg_dsn: str, env: dict[str, str]) -> Path:
    """The example (without a server) applied on the seed's 42-row table."""
    r = copy_example(tmp_path / "repo", server=False)
    drop_performance_check(r)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        seed_bike_lanes(conn, 42)
    result = run(r, "apply", "--env", "dev", "--auto-approve", env=env)
    assert result.exit_code == 0, result.output
    return r


def recorded_serial(pg_dsn: str) -> tuple[str, int]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        row = conn.execute("SELECT lineage, serial FROM honua_plan.state_serial WHERE environment = 'dev'").fetchone()
    assert row is not None
    return row[0], int(row[1])


def state(repo: Path) -> dict:
    return json.loads((repo / "state/dev.json").read_text())


def test_every_write_records_the_serial_in_the_database(repo: Path, pg_dsn: str) -> None:
    doc = state(repo)
    assert recorded_serial(pg_dsn) == (doc["lineage"], doc["serial"])


def lower_the_serial(repo: Path) -> None:
    path = repo / "state/dev.json"
    doc = json.loads(path.read_text())
    text, n = re.subn(rf'(?m)^  "serial": {doc["serial"]},$', '  "serial": 3,', path.read_text())
    assert n == 1
    path.write_text(text)


def delete_the_state(repo: Path) -> None:
    (repo / "state/dev.json").unlink()


def delete_state_and_backup(repo: Path) -> None:
    (repo / "state/dev.json").unlink()
    (repo / "state/dev.json.bak").unlink()


@pytest.mark.parametrize(("damage", "expected"), [
    (lower_the_serial, "has serial 3, but the database last recorded serial"),
    (delete_the_state, "state/dev.json is missing but state/dev.json.bak"),
    (delete_state_and_backup, "there is no state for 'dev', but the database records serial"),
])
@pytest.mark.parametrize("command", [("plan", "--env", "dev"), ("apply", "--env", "dev", "--auto-approve"),
                                     ("migrate", "status", "--env", "dev")])
def test_a_state_that_went_backwards_is_refused(
        repo: Path, env: dict[str, str], damage, expected: str, command: tuple[str, ...]) -> None:
    damage(repo)
    result = run(repo, *command, env=env)
    assert result.exit_code == 1, result.output
    assert expected in result.output, result.output
    assert "honua state restore-backup --env dev" in result.output
    assert "Traceback" not in result.output and "CREATE TABLE" not in result.output


@pytest.mark.parametrize("damage", [lower_the_serial, delete_the_state])
def test_restore_backup_brings_the_state_back_and_plan_converges(
        repo: Path, env: dict[str, str], pg_dsn: str, damage) -> None:
    before = state(repo)
    damage(repo)
    restored = run(repo, "state", "restore-backup", "--env", "dev", env=env)
    assert restored.exit_code == 0, restored.output
    assert "dev.json.bak" in restored.output
    doc = state(repo)
    assert doc["lineage"] == before["lineage"] and doc["serial"] > before["serial"]
    assert doc["events"][-1]["kind"] == "restore"
    assert recorded_serial(pg_dsn) == (doc["lineage"], doc["serial"])
    # the backup is the version before the last write; here that write was the end of the
    # apply, so the restored state holds it unfinished and says so; finishing it runs no
    # migration again
    assert doc["pending"] is not None and "apply --env dev --resume" in restored.output
    resumed = run(repo, "apply", "--env", "dev", "--resume", env=env)
    assert resumed.exit_code == 0, resumed.output
    assert "Deploying migration" not in resumed.output
    plan = run(repo, "plan", "--env", "dev", "--format", "json", env=env)
    assert plan.exit_code == 0, plan.output
    assert not [a for a in json.loads(plan.output)["actions"] if a["address"].startswith("migration.")]
    applied = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
    assert applied.exit_code == 0, applied.output
    assert run(repo, "plan", "--env", "dev", "--detailed-exitcode", env=env).exit_code == 0


def test_restore_backup_without_a_backup_says_so(repo: Path, env: dict[str, str]) -> None:
    (repo / "state/dev.json.bak").unlink()
    result = run(repo, "state", "restore-backup", "--env", "dev", env=env)
    assert result.exit_code == 1 and "no state/dev.json.bak" in result.output, result.output
