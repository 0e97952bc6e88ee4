"""Promotion between environments and disaster recovery, on real databases (one per environment)."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from honua_plan.providers.embedded.pgserver import EmbeddedCluster
from honua_plan.workflows.sample import seed_bike_lanes
from tests.helpers import copy_example, edit, run

LAYER = "layer.transportation::bike-lanes"


@pytest.fixture
def dbs(pg_cluster: EmbeddedCluster) -> Iterator[dict[str, str]]:
    names = {env: f"t_{env}_{uuid.uuid4().hex[:6]}" for env in ("dev", "staging", "production")}
    dsns = {env: pg_cluster.create_database(name, template="honua_template") for env, name in names.items()}
    for dsn in dsns.values():
        with psycopg.connect(dsn, autocommit=True) as conn:
            seed_bike_lanes(conn, 42)
    try:
        yield dsns
    finally:
        for name in names.values():
            pg_cluster.drop_database(name)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = copy_example(tmp_path / "repo", server=False)
    (r / "migrations/003_optimize_bike_lanes.yaml").unlink()  # 42 rows: it would roll back
    return r


def env_of(dbs: dict[str, str]) -> dict[str, str]:
    return {f"HONUA_PG_DSN_{e.upper()}": dsn for e, dsn in dbs.items()}


def state(repo: Path, env: str) -> dict:
    return json.loads((repo / "state" / f"{env}.json").read_text())


def test_promote_dev_to_staging_then_a_modified_layer(repo: Path, dbs: dict[str, str]) -> None:
    env = env_of(dbs)
    assert run(repo, "apply", "--env", "dev", "--auto-approve", env=env).exit_code == 0
    result = run(repo, "promote", "dev", "staging", "--allow-untested", "--yes", env=env)
    assert result.exit_code == 0, result.output
    for line in ("Comparing environments...",
                 "dev health unknown: no `honua test` recorded since its last change", "Changes to be promoted:", "Migrations:", "+ 001_create_bike_lanes (new)",
                 "Applied in dev, not yet in staging:", f"+ {LAYER}", "Safety Checks:", "✓ No drift in dev",
                 "Deployment Plan:", "Promotion completed successfully!"):
        assert line in result.output, result.output
    assert LAYER in state(repo, "staging")["resources"]
    assert run(repo, "plan", "--env", "staging", "--detailed-exitcode", env=env).exit_code == 0

    # a change proven in dev travels as a file change
    edit(repo / "environments/dev/layers/bike-lanes.yaml", 'title: "Bike Lanes"', 'title: "Bicycle Lanes"')
    assert run(repo, "apply", "--env", "dev", "--auto-approve", env=env).exit_code == 0
    result = run(repo, "promote", "dev", "staging", "--yes", env=env)
    assert result.exit_code == 1 and "dev health unknown: no `honua test` recorded since its last change" \
        in result.output, result.output  # the new apply is not proven yet
    result = run(repo, "promote", "dev", "staging", "--allow-untested", "--yes", env=env)
    assert result.exit_code == 0, result.output
    assert "~ layers/bike-lanes.yaml (modified)" in result.output
    staged = (repo / "environments/staging/layers/bike-lanes.yaml").read_text()
    assert 'title: "Bicycle Lanes"' in staged and "environment: staging" in staged
    assert run(repo, "promote", "dev", "staging", "--allow-untested", "--yes", env=env).output.strip().endswith(
        "Nothing to promote: staging already has what dev has.")


def test_promotion_to_production_needs_approval(repo: Path, dbs: dict[str, str]) -> None:
    env = env_of(dbs)
    policy = repo / "policies/production-policy.yaml"
    text = policy.read_text()
    text = text[:text.index("  deploymentWindows:")] + "  requireBackup: true\n"  # keep approval only
    policy.write_text(text)
    assert run(repo, "apply", "--env", "staging", "--auto-approve", env=env).exit_code == 0
    result = run(repo, "promote", "staging", "production", "--allow-untested", "--yes", env=env)
    assert result.exit_code == 1
    assert "Approval requirement" in result.output
    assert "needs 1 approval(s) from gis-ops" in result.output
    saved = next((repo / "state" / "plans").glob("promote-staging-production-*.json"))
    assert run(repo, "approve", str(saved), "--by", "john@city.gov", env=env).exit_code == 0
    applied = run(repo, "apply", "--env", "production", str(saved), env=env)
    assert applied.exit_code == 0, applied.output
    assert "✓ Approval verified (approved by: john@city.gov)" in applied.output
    assert LAYER in state(repo, "production")["resources"]


def test_promotion_stops_on_source_drift(repo: Path, dbs: dict[str, str]) -> None:
    env = env_of(dbs)
    assert run(repo, "apply", "--env", "dev", "--auto-approve", env=env).exit_code == 0
    with psycopg.connect(dbs["dev"], autocommit=True) as conn:
        conn.execute("ALTER TABLE bike_lanes ADD COLUMN oops int")
    result = run(repo, "promote", "dev", "staging", "--allow-untested", "--yes", env=env)
    assert result.exit_code == 1
    assert "✗ dev drifted" in result.output and "stopped by its safety checks" in result.output
    assert "staging.json" not in {p.name for p in (repo / "state").iterdir()} or \
        LAYER not in state(repo, "staging")["resources"]


def test_recover_from_the_latest_backup(repo: Path, dbs: dict[str, str]) -> None:
    env = env_of(dbs)
    (repo / "migrations/004_add_surface.yaml").write_text(
        'apiVersion: honua.io/v1\nkind: Migration\nmetadata:\n  id: "004"\n  environments: [dev]\n'
        "spec:\n  up:\n    - name: Add surface\n      type: sql\n      content: |\n"
        "        ALTER TABLE bike_lanes ADD COLUMN surface text;\n"
        "  down:\n    - name: Drop surface\n      type: sql\n      content: |\n"
        "        ALTER TABLE bike_lanes DROP COLUMN surface;\n")
    result = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
    assert result.exit_code == 0, result.output
    assert "✓ Backup created: dev-backup-" in result.output
    with psycopg.connect(dbs["dev"], autocommit=True) as conn:
        conn.execute("DELETE FROM bike_lanes")  # the disaster
    recovered = run(repo, "recover", "--env", "dev", "--latest-backup", "--yes", "--reason", "rows deleted", env=env)
    assert recovered.exit_code == 0, recovered.output
    for line in ("Recovery Plan:", "- Maintenance mode: nothing to stop", "✓ Database restored from backup dev-backup-",
                 "✓ Data integrity validated", "Recovery completed successfully!", "Database: HEALTHY",
                 "Migrations newer than the backup are pending again: 004"):
        assert line in recovered.output, recovered.output
    with psycopg.connect(dbs["dev"]) as conn:
        assert conn.execute("SELECT count(*) FROM bike_lanes").fetchone() == (42,)
    events = [e["kind"] for e in state(repo, "dev")["events"]]
    assert events[-1] == "recover"


def test_recover_metadata_from_a_git_commit(repo: Path, dbs: dict[str, str]) -> None:
    env = env_of(dbs)
    git = ["git", "-C", str(repo), "-c", "user.email=t@example.org", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "good"], check=True)
    sha = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    layer = repo / "environments/dev/layers/bike-lanes.yaml"
    good = layer.read_text()
    layer.write_text(good.replace('title: "Bike Lanes"', 'title: "Broken"'))
    result = run(repo, "recover", "--env", "dev", "--commit", sha, "--yes", env=env)
    assert result.exit_code == 0, result.output
    assert f"✓ Metadata restored from Git ({sha[:12]})" in result.output
    assert layer.read_text() == good


def test_recover_needs_a_source(repo: Path, dbs: dict[str, str]) -> None:
    result = run(repo, "recover", "--env", "dev", "--yes", env=env_of(dbs))
    assert result.exit_code == 1 and "--latest-backup, --backup ID, --last-deployment or --commit SHA" in result.output
    result = run(repo, "recover", "--env", "dev", "--latest-backup", "--yes", env=env_of(dbs))
    assert result.exit_code == 1 and "no backup at all for dev" in result.output


# --------------------------------------------------------------------------- promotion writes only when confirmed


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` (config, state, plans, backups) → sha256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run_tty(repo: Path, env: dict[str, str], *args: str, answer: str) -> tuple[int, str]:
    """The real CLI in a child process whose stdin is a terminal (a pty), answering ``answer``."""
    master, slave = pty.openpty()
    child_env = {**os.environ, **env, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "honua_plan", "-C", str(repo), *args], stdin=slave,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=child_env)
    os.close(slave)
    os.write(master, answer.encode() + b"\n")
    out, _ = proc.communicate(timeout=120)
    os.close(master)
    return proc.returncode, out.decode()


def test_promote_answered_no_changes_no_file(repo: Path, dbs: dict[str, str]) -> None:
    env = env_of(dbs)
    assert run(repo, "apply", "--env", "dev", "--auto-approve", env=env).exit_code == 0
    edit(repo / "environments/dev/layers/bike-lanes.yaml", 'title: "Bike Lanes"', 'title: "Bicycle Lanes"')
    assert run(repo, "apply", "--env", "dev", "--auto-approve", env=env).exit_code == 0
    before = tree_digest(repo)

    code, out = run_tty(repo, env, "promote", "dev", "staging", "--allow-untested", answer="no")
    assert code == 1, out
    assert "~ layers/bike-lanes.yaml (modified)" in out and "Proceed with promotion? (yes/no)" in out, out
    assert "cancelled: nothing was changed" in out, out
    assert tree_digest(repo) == before  # the line is true: not one byte changed

    result = run(repo, "promote", "dev", "staging", "--allow-untested", env=env)  # no terminal, no --yes
    assert result.exit_code == 1 and "stdin is not a terminal" in result.output, result.output
    assert tree_digest(repo) == before

    # confirmed: now the file is written, and the plan saw exactly it
    result = run(repo, "promote", "dev", "staging", "--allow-untested", "--yes", env=env)
    assert result.exit_code == 0, result.output
    assert 'title: "Bicycle Lanes"' in (repo / "environments/staging/layers/bike-lanes.yaml").read_text()
    assert run(repo, "plan", "--env", "staging", "--detailed-exitcode", env=env).exit_code == 0


# --------------------------------------------------------------------------- --migration and metadata steps


@pytest.fixture
def repo003(tmp_path: Path, dbs: dict[str, str]) -> Path:
    """The example with migration 003; dev holds enough rows for its index scan check, staging 42 (it rolls back)."""
    with psycopg.connect(dbs["dev"], autocommit=True) as conn:
        seed_bike_lanes(conn, 5000)
    return copy_example(tmp_path / "repo003", server=False)


def test_promote_one_migration_carries_its_dependencies_and_no_file(repo003: Path, dbs: dict[str, str]) -> None:
    env = env_of(dbs)
    edit(repo003 / "environments/dev/layers/bike-lanes.yaml", 'title: "Bike Lanes"', 'title: "Bicycle Lanes"')
    applied = run(repo003, "apply", "--env", "dev", "--auto-approve", env=env)
    assert applied.exit_code == 0, applied.output
    staging_files = tree_digest(repo003 / "environments/staging")

    result = run(repo003, "promote", "dev", "staging", "--migration", "002", "--allow-untested", "--yes", env=env)
    assert result.exit_code == 0, result.output
    assert "Metadata Changes:\n  (none)" in result.output, result.output
    # the metadata backup is promised with the database snapshot that holds it
    assert "  - Database snapshot of public.bike_lanes\n  - Metadata backup (" in result.output, result.output
    assert "+ 001_create_bike_lanes (new)" in result.output and "+ 002_add_parcels_layer (new)" in result.output
    assert "003_optimize" not in result.output
    assert tree_digest(repo003 / "environments/staging") == staging_files  # "only this migration": no file
    migrations = {m["id"]: m["status"] for m in state(repo003, "staging")["migrations"]}
    assert migrations == {"001": "applied", "002": "applied"}
    assert LAYER not in state(repo003, "staging")["resources"]

    result = run(repo003, "promote", "dev", "staging", "--migration", "nope", "--allow-untested", "--yes", env=env)
    assert result.exit_code == 1 and "no migration 'nope'" in result.output, result.output


def test_promoted_migration_rolls_back_and_leaves_no_declared_index(repo003: Path, dbs: dict[str, str]) -> None:
    env = env_of(dbs)
    applied = run(repo003, "apply", "--env", "dev", "--auto-approve", env=env)
    assert applied.exit_code == 0, applied.output
    dev_layer = (repo003 / "environments/dev/layers/bike-lanes.yaml").read_text()
    assert "idx_bike_lanes_geom" in dev_layer  # 003's metadata step wrote it in dev

    result = run(repo003, "promote", "dev", "staging", "--allow-untested", "--yes", env=env)
    assert result.exit_code == 1 and "stopped before apply: VAL001" in result.output, result.output  # predicted
    result = run(repo003, "promote", "dev", "staging", "--allow-untested", "--yes", "--allow-predicted-failure", env=env)
    assert result.exit_code != 0, result.output  # 003 rolls back on staging's 42 rows
    staged = repo003 / "environments/staging/layers/bike-lanes.yaml"
    assert "idx_bike_lanes_geom" not in staged.read_text()  # 003 makes (and undoes) that change itself
    statuses = [m["status"] for m in state(repo003, "staging")["migrations"] if m["id"] == "003"]
    assert statuses and statuses[-1] != "applied"
    with psycopg.connect(dbs["staging"]) as conn:
        assert conn.execute("SELECT count(*) FROM pg_indexes WHERE indexname = 'idx_bike_lanes_geom'").fetchone() == (0,)

    # a layer that declares the missing index while 003 (which creates it) is pending is
    # 003's edit rendered for review (honua migrate render): the plan shows 003, drift is
    # clean; once 003 is recorded as applied without the index, it is drift
    assert run(repo003, "migrate", "render", "--env", "staging", env=env).exit_code == 0
    assert "idx_bike_lanes_geom" in staged.read_text()
    drift = run(repo003, "drift", "--env", "staging", env=env)
    assert drift.exit_code == 0, drift.output
    baseline = run(repo003, "migrate", "baseline", "003", "--env", "staging", "--reason", "test", env=env)
    assert baseline.exit_code == 0, baseline.output
    drift = run(repo003, "drift", "--env", "staging", env=env)
    assert drift.exit_code != 0 and "idx_bike_lanes_geom" in drift.output, drift.output


# --------------------------------------------------------------------------- health: recorded tests and failures


def write_events(repo: Path, environment: str, events: list[tuple[timedelta, str, bool | None]]) -> None:
    """Record events at controlled times (``now - delta``) through the state backend."""
    from honua_plan.context import Context
    from honua_plan.state.model import Event, utcnow

    now = utcnow()
    with Context(repo).backend(environment) as backend, backend.lock("test") as writer:
        doc = writer.read()
        serial = doc.serial
        for delta, kind, ok in events:
            doc = doc.with_event(Event(at=now - delta, kind=kind, details={} if ok is None else {"ok": ok}))
        writer.write(doc, expected_serial=serial)


def test_honua_test_results_are_recorded_and_a_failure_stops_promotion(repo: Path, dbs: dict[str, str]) -> None:
    env = env_of(dbs)
    assert run(repo, "apply", "--env", "staging", "--auto-approve", env=env).exit_code == 0
    tested = run(repo, "test", "--env", "staging", env=env)  # no server: the OGC checks fail
    assert tested.exit_code != 0
    last = state(repo, "staging")["events"][-1]
    assert last["kind"] == "test" and last["details"]["ok"] is False, last
    result = run(repo, "promote", "staging", "production", "--allow-untested", "--yes", env=env)
    assert result.exit_code == 1
    assert "✗ staging failed" in result.output and "has not passed a test since" in result.output, result.output
    assert "Staging healthy for" not in result.output


@pytest.mark.parametrize("events,line", [
    ([(timedelta(hours=72), "apply", None), (timedelta(hours=71), "test", True)],
     "✓ Cooldown period: Satisfied (staging healthy for 72h)"),
    ([(timedelta(hours=72), "apply", None), (timedelta(hours=71), "test", True), (timedelta(hours=10), "test", False),
      (timedelta(hours=9), "test", True)],
     "✗ Cooldown period: staging healthy for 10h, needs 48h"),
    ([(timedelta(hours=72), "apply", None)],
     "✗ Cooldown period: staging health unknown: no `honua test` recorded since its last change (72h ago)"),
])
def test_cooldown_counts_from_the_last_recorded_failure(repo: Path, dbs: dict[str, str],
                                                        events: list[tuple[timedelta, str, bool | None]],
                                                        line: str) -> None:
    write_events(repo, "staging", events)
    result = run(repo, "plan", "--env", "production", env=env_of(dbs))
    assert line in result.output, result.output
