"""Disaster recovery (the seed's Example 4) that restores what it names, on a real PostGIS.

Each option restores a point in time: (1) a backup's data plus the metadata of the
commit recorded with it, (2) the data and commit of the last successful deployment,
(3) a commit's metadata plus the backup taken at it (or, stated, metadata only). The
outcome is checked by row counts and content checksums computed in SQL.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from honua_plan.providers.embedded.pgserver import pg_dump_available
from honua_plan.workflows.sample import seed_bike_lanes
from tests.helpers import copy_example, edit, run

pytestmark = pytest.mark.skipif(not pg_dump_available(), reason="pg_dump is not installed")

ROWS = 1500
LAYER_FILE = "environments/dev/layers/bike-lanes.yaml"


def contents(dsn: str, table: str = "bike_lanes") -> tuple[int, str] | None:
    """(rows, md5 of the rows' md5s in key order), or None when the table is gone."""
    with psycopg.connect(dsn) as conn:
        if conn.execute("SELECT to_regclass(%s)", [table]).fetchone() == (None,):
            return None
        row = conn.execute(f"SELECT count(*), md5(coalesce(string_agg(md5(t::text), '' ORDER BY id), '')) "
                           f"FROM {table} t").fetchone()
        assert row is not None
        return int(row[0]), str(row[1])


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@example.org", "-c", "user.name=t", *args],
                          capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path, pg_dsn: str) -> Iterator[Path]:
    r = copy_example(tmp_path / "repo", server=False)
    (r / "migrations/003_optimize_bike_lanes.yaml").unlink()  # item 10 brings its own index migration
    (r / ".gitignore").write_text("state/\n")
    git(r, "init", "-q")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        seed_bike_lanes(conn, ROWS)
    yield r


def env_of(dsn: str) -> dict[str, str]:
    return {"HONUA_PG_DSN": dsn}


def deploy(repo: Path, dsn: str) -> str:
    """Commit, apply dev, take a backup: the point in time every option must get back to."""
    sha = commit_all(repo, "deployed")
    applied = run(repo, "apply", "--env", "dev", "--auto-approve", env=env_of(dsn))
    assert applied.exit_code == 0, applied.output
    created = run(repo, "backup", "create", "--env", "dev", env=env_of(dsn))
    assert created.exit_code == 0, created.output
    assert "✓ Backup created: dev-backup-" in created.output
    return sha


def disaster(dsn: str, kind: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        if kind == "delete-rows":
            conn.execute("DELETE FROM bike_lanes WHERE id % 3 = 0")
        else:
            conn.execute("DROP TABLE bike_lanes")


@pytest.mark.parametrize("disaster_kind", ["delete-rows", "drop-table"])
@pytest.mark.parametrize("option", ["latest-backup", "last-deployment", "commit"])
def test_example_4_each_option_restores_its_point_in_time(repo: Path, pg_dsn: str, option: str,
                                                          disaster_kind: str) -> None:
    sha = deploy(repo, pg_dsn)
    expected = contents(pg_dsn)
    assert expected is not None and expected[0] == ROWS
    good_layer = (repo / LAYER_FILE).read_text()
    edit(repo / LAYER_FILE, 'title: "Bike Lanes"', 'title: "Corrupted"')  # metadata damaged too
    disaster(pg_dsn, disaster_kind)
    assert contents(pg_dsn) != expected

    args = {"latest-backup": ["--latest-backup"], "last-deployment": ["--last-deployment"],
            "commit": ["--commit", sha]}[option]
    result = run(repo, "recover", "--env", "dev", *args, "--yes", "--reason", disaster_kind, env=env_of(pg_dsn))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "✓ Database restored from backup dev-backup-" in out, out
    assert f"✓ Metadata restored from Git ({sha[:12]})" in out, out
    assert f"✓ public.bike_lanes: {ROWS:,} rows, checksum {expected[1][:12]}" in out, out
    assert "public.parcels: 0 rows" in out and "match the backup" in out, out
    assert "Database: HEALTHY" in out and "Recovery completed successfully!" in out, out
    assert contents(pg_dsn) == expected
    assert (repo / LAYER_FILE).read_text() == good_layer
    # state matches the database afterwards: nothing to plan, no drift
    assert run(repo, "plan", "--env", "dev", "--detailed-exitcode", env=env_of(pg_dsn)).exit_code == 0
    drift = run(repo, "drift", "--env", "dev", env=env_of(pg_dsn))
    assert drift.exit_code == 0, drift.output


@pytest.mark.parametrize("option", ["1", "2", "3"])
def test_example_4_through_the_assistant(repo: Path, pg_dsn: str, option: str) -> None:
    """The seed's dialogue itself: ``honua-ai disaster-recovery``, each option, after a dropped table."""
    sha = deploy(repo, pg_dsn)
    expected = contents(pg_dsn)
    disaster(pg_dsn, "drop-table")
    extra = ["--commit", sha] if option == "3" else []
    result = run(repo, "ai", "disaster-recovery", "--environment", "dev", "--option", option, *extra, "--yes",
                 "--what", "Database corruption detected in dev.", env=env_of(pg_dsn))
    assert result.exit_code == 0, result.output
    assert "✗ Database health: CRITICAL" in result.output
    assert "Recovery completed successfully!" in result.output and "Database: HEALTHY" in result.output
    assert contents(pg_dsn) == expected


def test_the_assistant_analyzes_real_signals_and_writes_a_numbered_report(repo: Path, pg_dsn: str) -> None:
    """Offline (no model): the analysis shows the deleted rows, then the dropped table; each
    recovery leaves ``REC-YYYYMMDD-NNN`` with what happened and the figures measured."""
    from datetime import UTC, datetime

    env = {**env_of(pg_dsn), "HONUA_AI_MODEL": ""}
    deploy(repo, pg_dsn)
    assert run(repo, "test", "--env", "dev", env=env).exit_code != 0  # nothing serves dev: a recorded failure
    disaster(pg_dsn, "delete-rows")
    result = run(repo, "ai", "disaster-recovery", "--environment", "dev", "--option", "1", "--yes",
                 "--what", "A script deleted every third bike lane.", env=env)
    assert result.exit_code == 0, result.output
    deleted = ROWS // 3
    for line in (f"✗ Rows in public.bike_lanes: {ROWS - deleted:,} ({ROWS:,} in backup dev-backup-",
                 f": {deleted:,} fewer)", "✓ Database health: HEALTHY", "✗ Recent failures: 1 (",
                 "latest: test "):
        assert line in result.output, result.output
    day = datetime.now(UTC).strftime("%Y%m%d")
    first = repo / "state" / "incidents" / f"REC-{day}-001.md"
    assert f"✓ Recovery report generated: REC-{day}-001 (state/incidents/REC-{day}-001.md)" in result.output, \
        result.output
    # the recovery is an incident of the environment, found by `honua incidents show`
    assert f"✓ Incident logged: INC-{day}-001" in result.output, result.output
    shown = run(repo, "incidents", "show", f"INC-{day}-001", "--env", "dev", env=env)
    assert shown.exit_code == 0, shown.output
    assert "recovery" in shown.output and f"# Recovery REC-{day}-001: dev" in shown.output
    report = first.read_text()
    for line in (f"# Recovery REC-{day}-001: dev", "## What happened?\n\nA script deleted every third bike lane.",
                 "- **Result:** SUCCEEDED", "- **Backup restored:** dev-backup-",
                 "- **Incident time:** ", "(first failure recorded since the last deployment: test)",
                 "- **Data-loss window:** ", "are not restored",
                 "- **Downtime:** none: nothing was stopped (nothing is served)",
                 f"Rows in public.bike_lanes: {ROWS - deleted:,}"):
        assert line in report, report

    disaster(pg_dsn, "drop-table")
    result = run(repo, "ai", "disaster-recovery", "--environment", "dev", "--option", "1", "--yes",
                 "--what", "Someone dropped the table.", env=env)
    assert result.exit_code == 0, result.output
    assert "✗ Database health: CRITICAL (tables missing: public.bike_lanes)" in result.output
    assert f"✗ Rows in public.bike_lanes: TABLE MISSING ({ROWS:,} rows in backup dev-backup-" in result.output
    second = (repo / "state" / "incidents" / f"REC-{day}-002.md").read_text()
    assert "Someone dropped the table." in second and "TABLE MISSING" in second
    assert contents(pg_dsn) is not None and contents(pg_dsn)[0] == ROWS  # type: ignore[index]


def test_a_recovery_is_never_the_last_successful_deployment(repo: Path, pg_dsn: str) -> None:
    deploy(repo, pg_dsn)
    first = run(repo, "recover", "--env", "dev", "--last-deployment", "--yes", env=env_of(pg_dsn))
    assert first.exit_code == 0, first.output
    # a new deployment with no backup after it: option 2 cannot restore its data, and says so
    edit(repo / LAYER_FILE, 'title: "Bike Lanes"', 'title: "Bicycle Lanes"')
    commit_all(repo, "retitled")
    assert run(repo, "apply", "--env", "dev", "--auto-approve", env=env_of(pg_dsn)).exit_code == 0
    disaster(pg_dsn, "delete-rows")
    before = contents(pg_dsn)
    result = run(repo, "recover", "--env", "dev", "--last-deployment", "--yes", env=env_of(pg_dsn))
    assert result.exit_code == 1, result.output
    assert "no backup was taken after the deployment" in result.output, result.output
    assert "Maintenance mode activated" not in result.output
    assert contents(pg_dsn) == before


def test_commit_without_a_backup_is_metadata_only_and_says_so(repo: Path, pg_dsn: str) -> None:
    sha = commit_all(repo, "first")
    assert run(repo, "apply", "--env", "dev", "--auto-approve", env=env_of(pg_dsn)).exit_code == 0
    disaster(pg_dsn, "delete-rows")
    kept = contents(pg_dsn)
    result = run(repo, "recover", "--env", "dev", "--commit", sha, "--yes", env=env_of(pg_dsn))
    assert result.exit_code == 0, result.output
    assert "metadata only, data untouched" in result.output
    assert "Database: not restored (metadata only, data untouched)" in result.output, result.output
    assert contents(pg_dsn) == kept

    disaster(pg_dsn, "drop-table")
    result = run(repo, "recover", "--env", "dev", "--commit", sha, "--yes", env=env_of(pg_dsn))
    assert result.exit_code == 1, result.output
    assert "public.bike_lanes is missing" in result.output and "data untouched" in result.output
    assert "Recovery completed successfully!" not in result.output


def test_bad_input_is_refused_before_anything_is_touched(repo: Path, pg_dsn: str) -> None:
    deploy(repo, pg_dsn)
    (repo / LAYER_FILE).write_text((repo / LAYER_FILE).read_text().replace("Bike Lanes", "Edited"))
    edited = (repo / LAYER_FILE).read_text()
    disaster(pg_dsn, "delete-rows")
    damaged = contents(pg_dsn)
    result = run(repo, "recover", "--env", "dev", "--commit", "deadbeef", "--yes", env=env_of(pg_dsn))
    assert result.exit_code == 1
    assert "deadbeef is not a commit" in result.output and "Maintenance mode" not in result.output, result.output

    listed = json.loads(run(repo, "backup", "list", "--env", "dev", "--format", "json", env=env_of(pg_dsn)).output)
    dump = repo / "state" / listed[-1]["path"]
    raw = bytearray(dump.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    dump.write_bytes(bytes(raw))
    result = run(repo, "recover", "--env", "dev", "--latest-backup", "--yes", env=env_of(pg_dsn))
    assert result.exit_code == 1 and "SHA-256" in result.output and "Maintenance mode" not in result.output

    dump.write_bytes(b"PGDMP not really a dump")  # the recorded digest matches, pg_restore cannot read it
    from honua_plan.apply.backup import sha256_file

    state_file = repo / "state/dev.json"
    doc = json.loads(state_file.read_text())
    doc["backups"][-1]["sha256"] = sha256_file(dump)
    state_file.write_text(json.dumps(doc))
    result = run(repo, "recover", "--env", "dev", "--latest-backup", "--yes", env=env_of(pg_dsn))
    assert result.exit_code == 1 and "pg_restore cannot read" in result.output, result.output
    assert "Maintenance mode" not in result.output
    assert contents(pg_dsn) == damaged and (repo / LAYER_FILE).read_text() == edited


def test_a_failure_after_maintenance_mode_says_what_state_things_are_in(
        repo: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sha = deploy(repo, pg_dsn)
    edit(repo / LAYER_FILE, 'title: "Bike Lanes"', 'title: "Edited"')
    edited = (repo / LAYER_FILE).read_text()
    disaster(pg_dsn, "delete-rows")
    damaged = contents(pg_dsn)
    from honua_plan.apply import backup
    from honua_plan.errors import ApplyError

    def broken(*_a: object, **_k: object) -> None:
        raise ApplyError("pg_restore of backup x failed: disk full")

    monkeypatch.setattr(backup, "restore_backup", broken)
    result = run(repo, "recover", "--env", "dev", "--commit", sha, "--yes", env=env_of(pg_dsn))
    assert result.exit_code == 1, result.output
    assert "Maintenance mode: nothing to stop" in result.output
    assert "disk full" in result.output
    assert "database: not restored (unchanged)" in result.output, result.output
    assert "metadata: unchanged" in result.output
    assert "service: nothing is served (server type none)" in result.output
    assert contents(pg_dsn) == damaged and (repo / LAYER_FILE).read_text() == edited


def test_restore_before_a_migration_makes_it_pending_and_plans_the_missing_index(repo: Path, pg_dsn: str) -> None:
    deploy(repo, pg_dsn)
    backups = json.loads(run(repo, "backup", "list", "--env", "dev", "--format", "json", env=env_of(pg_dsn)).output)
    before_index = backups[-1]["id"]
    (repo / "migrations/004_index_bike_lanes.yaml").write_text(
        'apiVersion: honua.io/v1\nkind: Migration\nmetadata:\n  id: "004"\n  environments: [dev]\n'
        "spec:\n  up:\n    - name: Create spatial index\n      type: sql\n      content: |\n"
        "        CREATE INDEX idx_bike_lanes_geom ON bike_lanes USING GIST (geom);\n"
        "    - name: Update metadata\n      type: metadata\n      action: update\n"
        "      path: environments/{{env}}/layers/bike-lanes.yaml\n      changes:\n"
        "        spec.storage.indexes:\n          - name: idx_bike_lanes_geom\n            type: gist\n"
        "            column: geom\n"
        "  down:\n    - name: Drop spatial index\n      type: sql\n      content: |\n"
        "        DROP INDEX IF EXISTS idx_bike_lanes_geom;\n")
    applied = run(repo, "apply", "--env", "dev", "--auto-approve", env=env_of(pg_dsn))
    assert applied.exit_code == 0, applied.output
    head = commit_all(repo, "index")
    # the data from before the index, the metadata of now (which declares it)
    result = run(repo, "recover", "--env", "dev", "--backup", before_index, "--commit", head, "--yes",
                 env=env_of(pg_dsn))
    assert result.exit_code == 0, result.output
    assert "Migrations newer than the backup are pending again: 004" in result.output, result.output
    assert "honua apply --env dev" in result.output
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT to_regclass('idx_bike_lanes_geom')").fetchone() == (None,)
    status = json.loads(run(repo, "migrate", "status", "--env", "dev", "--format", "json", env=env_of(pg_dsn)).output)
    assert {m["id"]: m["status"] for m in status["migrations"]}["004"] != "applied"
    # the file declares the index 004 creates, and 004 is pending: that is the plan's work
    # (it shows 004), not drift
    drift = run(repo, "drift", "--env", "dev", env=env_of(pg_dsn))
    assert drift.exit_code == 0, drift.output
    plan = run(repo, "plan", "--env", "dev", "--detailed-exitcode", env=env_of(pg_dsn))
    assert plan.exit_code == 2 and "004" in plan.output, plan.output
    # re-applying brings the index back and everything converges
    assert run(repo, "apply", "--env", "dev", "--auto-approve", env=env_of(pg_dsn)).exit_code == 0
    assert run(repo, "drift", "--env", "dev", env=env_of(pg_dsn)).exit_code == 0


def test_commit_restore_touches_only_the_environments_files(repo: Path, pg_dsn: str) -> None:
    sha = deploy(repo, pg_dsn)
    edit(repo / "providers/gis-server.yaml", "healthTimeout: 30s", "healthTimeout: 45s")
    edit(repo / "environments/staging/layers/bike-lanes.yaml", 'title: "Bike Lanes"', 'title: "Staging"')
    edit(repo / LAYER_FILE, 'title: "Bike Lanes"', 'title: "Broken"')
    commit_all(repo, "later")
    shared = (repo / "providers/gis-server.yaml").read_text()
    staging = (repo / "environments/staging/layers/bike-lanes.yaml").read_text()
    result = run(repo, "recover", "--env", "dev", "--commit", sha, "--yes", env=env_of(pg_dsn))
    assert result.exit_code == 0, result.output
    assert "Shared files that differ from" in result.output and "providers/gis-server.yaml" in result.output
    assert "--include-shared" in result.output
    assert (repo / "providers/gis-server.yaml").read_text() == shared
    assert (repo / "environments/staging/layers/bike-lanes.yaml").read_text() == staging
    assert 'title: "Bike Lanes"' in (repo / LAYER_FILE).read_text()
    again = run(repo, "recover", "--env", "dev", "--commit", sha, "--include-shared", "--yes", env=env_of(pg_dsn))
    assert again.exit_code == 0, again.output
    assert "healthTimeout: 30s" in (repo / "providers/gis-server.yaml").read_text()
    assert (repo / "environments/staging/layers/bike-lanes.yaml").read_text() == staging


def test_backup_create_and_list(repo: Path, pg_dsn: str) -> None:
    sha = deploy(repo, pg_dsn)
    listed = run(repo, "backup", "list", "--env", "dev", env=env_of(pg_dsn))
    assert listed.exit_code == 0, listed.output
    expected = contents(pg_dsn)
    assert expected is not None
    out = listed.output
    assert "public.bike_lanes" in out and "public.parcels" in out and f"{ROWS:,} rows" in out, out
    assert expected[1][:12] in out and "ago" in out and "KiB" in out and sha[:9] in out
    data = json.loads(run(repo, "backup", "list", "--env", "dev", "--format", "json", env=env_of(pg_dsn)).output)
    rec = data[-1]
    assert rec["commit"] == sha and rec["age_s"] >= 0 and rec["size_bytes"] > 0
    assert rec["contents"]["public.bike_lanes"]["rows"] == ROWS
    assert rec["contents"]["public.bike_lanes"]["checksum"] == expected[1]
    assert "bike_lanes_pkey" in rec["contents"]["public.bike_lanes"]["constraints"]
    assert (repo / "state" / rec["metadata_path"]).is_file()


# --------------------------------------------------------------------------- served (pygeoapi)

CID = "transportation::bike-lanes"


@pytest.fixture
def served(tmp_path: Path, pg_dsn: str) -> Iterator[tuple[Path, str]]:
    pytest.importorskip("pygeoapi", reason="the served tests need the 'server' extra")
    from tests.helpers import free_port

    r = copy_example(tmp_path / "repo")
    port = free_port()
    edit(r / "providers/gis-server.yaml", "{dev: 5555,", f"{{dev: {port},")
    (r / "migrations/003_optimize_bike_lanes.yaml").unlink()
    (r / ".gitignore").write_text("state/\n")
    git(r, "init", "-q")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        seed_bike_lanes(conn, 300)
    try:
        yield r, f"http://localhost:{port}/ogc"
    finally:
        run(r, "serve", "--env", "dev", "--stop", env=env_of(pg_dsn))


def test_served_recovery_is_healthy_only_when_items_answer(served: tuple[Path, str], pg_dsn: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.integration.test_served_layers import get

    repo, base = served
    sha = deploy(repo, pg_dsn)
    assert get(f"{base}/collections/{CID}/items?limit=1&f=json")[0] == 200
    disaster(pg_dsn, "drop-table")
    assert get(f"{base}/collections/{CID}/items?limit=1&f=json")[0] >= 500

    # metadata only: the collection page answers, its /items does not: not healthy
    edit(repo / LAYER_FILE, 'title: "Bike Lanes"', 'title: "Later"')
    later = commit_all(repo, "later")
    result = run(repo, "recover", "--env", "dev", "--commit", later, "--yes", env=env_of(pg_dsn))
    assert result.exit_code == 1, result.output
    assert "✓ Maintenance mode activated" in result.output
    assert f"{CID}: /items answered HTTP 5" in result.output, result.output
    assert "Services: NOT HEALTHY" in result.output
    assert "Recovery completed successfully!" not in result.output

    # a failure after maintenance mode: the previous service comes back, and the output says so
    from honua_plan.apply import backup
    from honua_plan.errors import ApplyError

    def broken(*_a: object, **_k: object) -> None:
        raise ApplyError("pg_restore of backup x failed: disk full")

    with monkeypatch.context() as m:
        m.setattr(backup, "restore_backup", broken)
        failed = run(repo, "recover", "--env", "dev", "--commit", sha, "--yes", env=env_of(pg_dsn))
    assert failed.exit_code == 1, failed.output
    assert "service: previous configuration serving again" in failed.output, failed.output
    assert get(f"{base}/collections/{CID}?f=json")[0] == 200

    result = run(repo, "recover", "--env", "dev", "--commit", sha, "--yes", env=env_of(pg_dsn))
    assert result.exit_code == 0, result.output
    assert "✓ Health checks passed (1 collection(s) serve /items with features)" in result.output, result.output
    assert "Database: HEALTHY" in result.output and "Services: HEALTHY" in result.output
    status, items = get(f"{base}/collections/{CID}/items?limit=1000&f=json")
    assert status == 200 and len(items["features"]) == 300


def test_metadata_that_does_not_load_is_put_back_and_state_follows_the_restored_data(repo: Path, pg_dsn: str) -> None:
    deploy(repo, pg_dsn)
    expected = contents(pg_dsn)
    backup_id = json.loads(run(repo, "backup", "list", "--env", "dev", "--format", "json",
                               env=env_of(pg_dsn)).output)[-1]["id"]
    good = (repo / LAYER_FILE).read_text()
    edit(repo / LAYER_FILE, "geometryType: LineString", "geometryType: Banana")
    bad = commit_all(repo, "broken layer")
    (repo / LAYER_FILE).write_text(good)  # the working tree is fine again
    disaster(pg_dsn, "delete-rows")
    result = run(repo, "recover", "--env", "dev", "--backup", backup_id, "--commit", bad, "--yes",
                 env=env_of(pg_dsn))
    assert result.exit_code == 1, result.output
    assert f"database: restored from backup {backup_id}" in result.output, result.output
    assert "metadata: unchanged (put back as it was)" in result.output
    assert (repo / LAYER_FILE).read_text() == good and contents(pg_dsn) == expected
    drift = run(repo, "drift", "--env", "dev", env=env_of(pg_dsn))
    assert drift.exit_code == 0, drift.output


def test_served_assistant_recovery_measures_the_downtime(served: tuple[Path, str], pg_dsn: str) -> None:
    repo, base = served
    deploy(repo, pg_dsn)
    disaster(pg_dsn, "drop-table")
    result = run(repo, "ai", "disaster-recovery", "--environment", "dev", "--option", "1", "--yes",
                 "--what", "The table is gone.", env={**env_of(pg_dsn), "HONUA_AI_MODEL": ""})
    assert result.exit_code == 0, result.output
    assert f"✗ Service availability: DEGRADED ({CID}: /items answered HTTP 5" in result.output, result.output
    assert "Downtime: " in result.output and "(maintenance start to service back)" in result.output
    report = next((repo / "state" / "incidents").glob("REC-*-001.md")).read_text()
    assert "(maintenance start to service back)" in report and "- **Result:** SUCCEEDED" in report, report
    from tests.integration.test_served_layers import get

    assert get(f"{base}/collections/{CID}/items?limit=1&f=json")[0] == 200
