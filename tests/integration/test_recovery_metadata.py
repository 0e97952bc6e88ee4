"""Recovery brings back the data *and* the metadata as deployed (issue 26, items 3, 4, 8, 9, 10).

Production of a copy of the example repository in a git repository, on a real PostGIS:
migration 003's metadata step adds ``spec.storage.indexes`` to the layer file, so the
files as deployed are not the files of the deployed commit. Every recovery option must end
with the rows (and their md5) as before the damage, the layer files identical to the
deployed ones, ``plan`` and ``drift`` empty and, where a pygeoapi serves the layer, /items
serving exactly the declared fields.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from honua_plan.providers.embedded.pgserver import pg_dump_available
from honua_plan.workflows.sample import seed_bike_lanes
from tests.helpers import copy_example, drop_performance_check, edit, run
from tests.integration.test_recovery import commit_all, contents, git

pytestmark = pytest.mark.skipif(not pg_dump_available(), reason="pg_dump is not installed")

ROWS = 300
LAYER_FILE = "environments/production/layers/bike-lanes.yaml"
CID = "transportation::bike-lanes"
DECLARED = {"name", "lane_type", "width_ft", "last_updated"}  # id is the feature's id, geom its geometry
POLICY = """apiVersion: honua.io/v1
kind: Policy
metadata:
  name: production-policy
  environment: production
spec:
  production: true
  requireBackup: true
  backupRetention: 30d
"""


def make_repo(dest: Path, dsn: str, *, served: bool) -> tuple[Path, str | None]:
    repo = copy_example(dest, server=served)
    drop_performance_check(repo)  # 300 rows: the planner would not choose the index
    (repo / "policies/production-policy.yaml").write_text(POLICY)  # no window, no cooldown, no approval
    base = None
    if served:
        from tests.helpers import free_port

        port = free_port()
        text, n = re.subn(r"production: \d+\}", f"production: {port}}}", (repo / "providers/gis-server.yaml").read_text())
        assert n == 1
        (repo / "providers/gis-server.yaml").write_text(text.replace("workers: 2", "workers: 1"))
        base = f"http://localhost:{port}/ogc"
    (repo / ".gitignore").write_text("state/\n")
    git(repo, "init", "-q")
    with psycopg.connect(dsn, autocommit=True) as conn:
        seed_bike_lanes(conn, ROWS)
    return repo, base


@pytest.fixture
def prod(tmp_path: Path, pg_dsn: str) -> Iterator[Path]:
    repo, _ = make_repo(tmp_path / "repo", pg_dsn, served=False)
    yield repo


def env_of(dsn: str) -> dict[str, str]:
    return {"HONUA_PG_DSN_PRODUCTION": dsn, "HONUA_AI_MODEL": ""}


def cli(repo: Path, dsn: str, *args: str, code: int | None = 0) -> str:
    result = run(repo, *args, env=env_of(dsn))
    if code is not None:
        assert result.exit_code == code, result.output
    return result.output


def deploy_003(repo: Path, dsn: str) -> tuple[str, str]:
    """Commit, deploy production (003's metadata step edits the layer file), commit the edit,
    take a backup. Returns (the deployed commit, the commit of the edited file)."""
    deployed = commit_all(repo, "deployed")
    out = cli(repo, dsn, "apply", "--env", "production", "--auto-approve")
    assert "idx_bike_lanes_geom" in (repo / LAYER_FILE).read_text(), out
    edited = commit_all(repo, "003 added the index to the layer file")
    cli(repo, dsn, "backup", "create", "--env", "production")
    return deployed, edited


def drop(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE bike_lanes")


def state(repo: Path) -> dict:
    return json.loads((repo / "state/production.json").read_text())


def converged(repo: Path, dsn: str) -> None:
    """plan has nothing to do, drift finds nothing, git has nothing to commit."""
    plan = run(repo, "plan", "--env", "production", "--detailed-exitcode", env=env_of(dsn))
    assert plan.exit_code == 0, plan.output
    drift = run(repo, "drift", "--env", "production", env=env_of(dsn))
    assert drift.exit_code == 0, drift.output


# --------------------------------------------------------------------------- item 3: options 1 and 2


@pytest.mark.parametrize("option", ["1", "2"])
def test_options_1_and_2_restore_the_metadata_as_deployed(prod: Path, pg_dsn: str, option: str) -> None:
    deploy_003(prod, pg_dsn)
    expected = contents(pg_dsn)
    deployed_layer = (prod / LAYER_FILE).read_text()
    drop(pg_dsn)
    out = cli(prod, pg_dsn, "ai", "disaster-recovery", "--environment", "production", "--option", option, "--yes",
              "--what", "The table was dropped.")
    assert "Recovery completed successfully!" in out, out
    assert contents(pg_dsn) == expected
    assert (prod / LAYER_FILE).read_text() == deployed_layer  # the index 003 declared is still declared
    assert git(prod, "status", "--porcelain", "--", "environments") == ""
    converged(prod, pg_dsn)


# --------------------------------------------------------------------------- item 4: option 3


def test_option_3_records_what_it_published_and_says_what_to_commit(prod: Path, pg_dsn: str) -> None:
    _, good = deploy_003(prod, pg_dsn)
    expected = contents(pg_dsn)
    good_layer = (prod / LAYER_FILE).read_text()
    edit(prod / LAYER_FILE, 'title: "Bike Lanes"', 'title: "BROKEN"')
    bad = commit_all(prod, "broken title")
    cli(prod, pg_dsn, "apply", "--env", "production", "--auto-approve")
    assert state(prod)["resources"][f"layer.{CID}"]["attributes"]["spec"]["title"] == "BROKEN"

    out = cli(prod, pg_dsn, "ai", "disaster-recovery", "--environment", "production", "--option", "3",
              "--commit", good, "--yes", "--what", "A bad layer was deployed.")
    assert "Recovery completed successfully!" in out, out
    assert (prod / LAYER_FILE).read_text() == good_layer
    assert contents(pg_dsn) == expected
    # the state records what was published: the commit's files
    assert state(prod)["resources"][f"layer.{CID}"]["attributes"]["spec"]["title"] == "Bike Lanes"
    # the repository's HEAD still says BROKEN: the output says how to make git agree
    assert f"HEAD ({bad[:12]})" in out and LAYER_FILE in out, out
    assert f"git revert --no-edit {good[:12]}..HEAD" in out, out
    converged(prod, pg_dsn)


# --------------------------------------------------------------------------- item 8: S3 on a fresh machine


def test_backups_record_commit_snapshot_and_sha256_in_state_and_manifest(prod: Path, pg_dsn: str) -> None:
    from honua_plan.apply.backup import sha256_file

    deployed, _ = deploy_003(prod, pg_dsn)
    backups = state(prod)["backups"]
    assert [b["migration_id"] for b in backups] == ["001", "003", None]  # before migrations, `backup create`
    assert backups[0]["commit"] is None  # nothing was deployed before the first apply: said, not guessed
    assert backups[-1]["commit"] == deployed
    for rec in backups:
        assert rec["metadata_path"] and rec["metadata_sha256"] == sha256_file(prod / "state" / rec["metadata_path"])
        manifest = json.loads((prod / "state/backups" / f"{rec['id']}.manifest.json").read_text())
        for key in ("id", "commit", "sha256", "metadata_path", "metadata_sha256", "tables"):
            assert manifest[key] == rec[key], key


# --------------------------------------------------------------------------- item 9: the backup restored


def test_the_record_names_the_backup_that_was_restored(prod: Path, pg_dsn: str) -> None:
    deploy_003(prod, pg_dsn)
    older = state(prod)["backups"][-1]["id"]
    cli(prod, pg_dsn, "backup", "create", "--env", "production")
    newer = state(prod)["backups"][-1]["id"]
    assert newer != older
    drop(pg_dsn)
    out = cli(prod, pg_dsn, "ai", "disaster-recovery", "--environment", "production", "--option", "1",
              "--backup", older, "--yes", "--what", "dropped")
    assert f"Database restored from backup {older}" in out, out
    report = next((prod / "state/incidents").glob("REC-*.md")).read_text()
    option = next(line for line in report.splitlines() if line.startswith("- **Option:**"))
    assert option.startswith(f"- **Option:** 1: Restore from backup {older} (taken ") and "not the latest" in option
    assert newer not in option, option
    assert f"- **Backup restored:** {older}" in report, report
    listed = cli(prod, pg_dsn, "incidents", "list", "--env", "production")
    assert f"backup {older}" in listed and f"({newer})" not in listed, listed


# --------------------------------------------------------------------------- item 10: a migration's backup


def test_a_backup_before_a_migration_records_its_commit_and_metadata(prod: Path, pg_dsn: str) -> None:
    (prod / "migrations/003_optimize_bike_lanes.yaml").unlink()
    first = commit_all(prod, "first")
    cli(prod, pg_dsn, "apply", "--env", "production", "--auto-approve")
    before = (prod / LAYER_FILE).read_text()
    git(prod, "checkout", "-q", "HEAD~0", "--", ".")
    (prod / "migrations/003_optimize_bike_lanes.yaml").write_text(
        (Path(__file__).resolve().parents[2] / "migrations/003_optimize_bike_lanes.yaml").read_text())
    drop_performance_check(prod)
    commit_all(prod, "003")
    out = cli(prod, pg_dsn, "apply", "--env", "production", "--auto-approve")
    assert "Backup created: production-backup-" in out, out
    rec = next(b for b in state(prod)["backups"] if b["migration_id"] == "003")
    assert rec["commit"] == first and rec["metadata_path"] and rec["metadata_sha256"], rec
    drop(pg_dsn)
    out = cli(prod, pg_dsn, "recover", "--env", "production", "--backup", rec["id"], "--yes", code=None)
    assert f"Metadata restored from Git ({first[:12]})" in out, out
    assert "Metadata: unchanged" not in out, out
    assert (prod / LAYER_FILE).read_text() == before  # the layer as it was before 003
    assert "Migrations newer than the backup are pending again: 003" in out, out


# --------------------------------------------------------------------------- the seed's Example 4, served


def served_fields(base: str) -> set[str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{base}/collections/{CID}/items?limit=50&f=json", timeout=15) as resp:
        items = json.loads(resp.read())
    return set().union(*(f["properties"].keys() for f in items["features"]))


@pytest.mark.parametrize("option", ["1", "2", "3"])
def test_example_4_served_each_option(tmp_path: Path, pg_dsn: str, option: str) -> None:
    pytest.importorskip("pygeoapi", reason="the served tests need the 'server' extra")
    repo, base = make_repo(tmp_path / "repo", pg_dsn, served=True)
    assert base is not None
    try:
        _, edited = deploy_003(repo, pg_dsn)
        expected = contents(pg_dsn)
        deployed_layer = (repo / LAYER_FILE).read_text()
        assert served_fields(base) == DECLARED
        drop(pg_dsn)
        extra = ["--commit", edited] if option == "3" else []
        out = cli(repo, pg_dsn, "ai", "disaster-recovery", "--environment", "production", "--option", option, *extra,
                  "--yes", "--what", "Database corruption detected in production.")
        for line in ("✗ Database health: CRITICAL", "✓ Database restored from backup production-backup-",
                     "Recovery completed successfully!", "Database: HEALTHY", "Services: HEALTHY"):
            assert line in out, out
        assert contents(pg_dsn) == expected
        assert (repo / LAYER_FILE).read_text() == deployed_layer
        converged(repo, pg_dsn)
        assert served_fields(base) == DECLARED
    finally:
        run(repo, "serve", "--env", "production", "--stop", env=env_of(pg_dsn))
