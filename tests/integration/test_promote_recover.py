"""Promotion between environments and disaster recovery, on real databases (one per environment)."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from honua_plan.pgserver import EmbeddedCluster
from honua_plan.sample import seed_bike_lanes
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
