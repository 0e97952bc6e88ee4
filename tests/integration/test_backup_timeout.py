"""pg_dump before a migration never hangs and never outlives apply (issue 15, item 5).

A table locked by another session makes the backup fail within the datasource's lock
timeout (``pg_dump --lock-wait-timeout``) or the policy's ``backupTimeout``, with a clear
message, no partial file and the state lock released; a ``honua apply`` killed with
SIGKILL during pg_dump takes its pg_dump with it (PR_SET_PDEATHSIG), and the next apply
removes the partial files it left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from honua_plan.providers.embedded.pgserver import pg_dump_available
from honua_plan.state.local import LocalBackend
from tests.helpers import REPO, copy_example, drop_performance_check, run

pytestmark = pytest.mark.skipif(not pg_dump_available(), reason="pg_dump is not installed")

M005 = "migrations/005_surface.yaml"
M005_TEXT = """apiVersion: honua.io/v1
kind: Migration
metadata:
  id: "005"
  description: "Add a surface column"
spec:
  dependencies: ["001_create_bike_lanes"]
  up:
    - name: Add surface column
      type: sql
      content: |
        ALTER TABLE bike_lanes ADD COLUMN surface varchar(20);
  down:
    - name: Drop surface column
      type: sql
      content: |
        ALTER TABLE bike_lanes DROP COLUMN IF EXISTS surface;
"""

DEV_POLICY = """apiVersion: honua.io/v1
kind: Policy
metadata:
  name: dev-policy
  environment: dev
spec:
  backupTimeout: {timeout}
"""


@pytest.fixture
def repo(tmp_path: Path, pg_dsn: str) -> Path:
    """The example (without a server) applied on the seed's 42-row table."""
    from honua_plan.workflows.sample import seed_bike_lanes

    r = copy_example(tmp_path / "repo", server=False)
    drop_performance_check(r)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        seed_bike_lanes(conn, 42)
    result = run(r, "apply", "--env", "dev", "--auto-approve", env={"HONUA_PG_DSN": pg_dsn})
    assert result.exit_code == 0, result.output
    return r


@pytest.fixture
def env(pg_dsn: str) -> dict[str, str]:
    return {"HONUA_PG_DSN": pg_dsn}


def leftovers(repo: Path) -> list[str]:
    """Partial or empty dump files under state/backups."""
    d = repo / "state" / "backups"
    return sorted(p.name for p in d.glob("*") if p.name.endswith(".partial")
                  or (p.suffix == ".dump" and p.stat().st_size == 0)) if d.is_dir() else []


def assert_state_lock_free(repo: Path) -> None:
    b = LocalBackend(repo / "state", "dev")
    assert b.holder() is None
    with b.lock("test", timeout=0):
        pass


def apply_in_child(repo: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "honua_plan", "-C", str(repo), "apply", "--env", "dev", "--auto-approve"],
        env={**os.environ, **env}, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def children(pid: int, name: str) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        if comm == name and int(rest[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


# ALTER SEQUENCE … OWNER TO holds ACCESS EXCLUSIVE on the table's identity sequence: pg_dump
# blocks reading it after its LOCK TABLE phase, where --lock-wait-timeout no longer applies
LOCK_TABLE = "LOCK TABLE bike_lanes IN ACCESS EXCLUSIVE MODE"
LOCK_SEQUENCE = "ALTER SEQUENCE bike_lanes_id_seq OWNER TO CURRENT_USER"


@pytest.mark.parametrize(("blocker", "policy_timeout", "expected"), [
    (LOCK_TABLE, None, "could not lock public.bike_lanes within 2s"),  # the datasource's lockTimeout: 2s
    (LOCK_SEQUENCE, "2s", "pg_dump did not finish within 2s"),
])
def test_a_locked_table_fails_the_backup_in_time(
        repo: Path, env: dict[str, str], pg_dsn: str,
        blocker: str, policy_timeout: str | None, expected: str) -> None:
    (repo / M005).write_text(M005_TEXT)
    if policy_timeout:
        (repo / "policies/dev-policy.yaml").write_text(DEV_POLICY.format(timeout=policy_timeout))
    with psycopg.connect(pg_dsn) as locker:
        locker.execute(blocker)
        t0 = time.monotonic()
        proc = apply_in_child(repo, env)
        try:
            out = proc.communicate(timeout=60)[0].decode()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        took = time.monotonic() - t0
        locker.rollback()
    assert proc.returncode == 1, out
    assert "Backing up 1 table (public.bike_lanes)" in out, out
    assert expected in out, out
    assert "Traceback" not in out
    assert took < 30, f"apply took {took:.1f}s"
    assert leftovers(repo) == []
    assert children(proc.pid, "pg_dump") == []
    assert_state_lock_free(repo)


def test_a_backup_reports_its_progress(repo: Path, env: dict[str, str]) -> None:
    (repo / M005).write_text(M005_TEXT)
    result = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
    assert result.exit_code == 0, result.output
    assert "Backing up 1 table (public.bike_lanes)…" in result.output
    line = next(x for x in result.output.splitlines() if "Backup created: dev-backup-" in x)
    assert " kB" in line or " B" in line or " MB" in line, line


def test_sigkill_during_pg_dump_takes_pg_dump_along_and_the_next_apply_cleans_up(
        repo: Path, env: dict[str, str], pg_dsn: str) -> None:
    (repo / M005).write_text(M005_TEXT)
    with psycopg.connect(pg_dsn) as locker:
        locker.execute(LOCK_SEQUENCE)  # pg_dump starts, then blocks (the policy's timeout: 5m)
        proc = apply_in_child(repo, env)
        try:
            deadline = time.monotonic() + 60
            while not (dumps := children(proc.pid, "pg_dump")):
                assert proc.poll() is None, proc.communicate()[0].decode()
                assert time.monotonic() < deadline, "pg_dump never started"
                time.sleep(0.05)
            time.sleep(0.3)  # pg_dump is connected and waits for the lock
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        deadline = time.monotonic() + 10
        while not gone(dumps[0]):
            assert time.monotonic() < deadline, f"pg_dump {dumps[0]} outlived its parent"
            time.sleep(0.05)
        assert leftovers(repo), "the interrupted backup left nothing to clean up?"
        locker.rollback()
    result = run(repo, "apply", "--env", "dev", "--resume", env=env)
    assert result.exit_code == 0, result.output
    assert "Removed 2 incomplete backup file(s)" in result.output or \
        "Removed 1 incomplete backup file(s)" in result.output, result.output
    assert leftovers(repo) == []
