"""The plan engine against a real PostGIS (issue: plan engine, "Done when")."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from tests.helpers import copy_example, edit, run


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = copy_example(tmp_path / "repo", server=False)
    return r


@pytest.fixture
def env(pg_dsn: str) -> dict[str, str]:
    return {"HONUA_PG_DSN": pg_dsn}


def plan_json(repo: Path, env: dict[str, str], *args: str) -> dict:
    result = run(repo, "plan", "--env", "dev", "--format", "json", *args, env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def seed(pg_dsn: str, rows: int = 42) -> None:
    from honua_plan.workflows.sample import seed_bike_lanes

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert seed_bike_lanes(conn, rows) == rows


def test_empty_database_plan_in_dependency_order(repo: Path, env: dict[str, str]) -> None:
    plan = plan_json(repo, env)
    order = [a["address"] for a in plan["actions"]]
    for before, after in [("migration.001", "migration.002"), ("migration.002", "migration.003"),
                          ("migration.001", "layer.transportation::bike-lanes"),
                          ("layer.transportation::bike-lanes", "service.transportation")]:
        assert order.index(before) < order.index(after), order
    layer = next(a for a in plan["actions"] if a["address"] == "layer.transportation::bike-lanes")
    # the layer needs the migration that creates its table, not the one that indexes it
    assert "migration.001" in layer["depends_on"] and "migration.003" not in layer["depends_on"]
    m3 = next(a for a in plan["actions"] if a["address"] == "migration.003")
    # the GIST index goes on the table migration 001 creates in the same plan: empty, so LOW
    assert m3["risk"] == "LOW", m3["findings"]
    assert "PG101" not in [f["code"] for f in m3["findings"]]
    assert [o["name"] for o in m3["operations"]] == ["Create spatial index", "Analyze table", "Update metadata"]
    assert [o["name"] for o in m3["rollback"]] == ["Drop spatial index", "Revert metadata"]
    assert m3["automatic_rollback"] is True
    # the metadata step's exact text diff is in the plan
    diff = m3["operations"][2]["text_diff"]
    assert "+    indexes:" in diff and "idx_bike_lanes_geom" in diff
    # the performance check is predicted to fail on a new table
    assert any(c["predicted_failure"] for c in m3["checks"])


def test_populated_table_makes_the_gist_index_pg101_high(repo: Path, env: dict[str, str], pg_dsn: str) -> None:
    seed(pg_dsn, 42)
    plan = plan_json(repo, env)
    m3 = next(a for a in plan["actions"] if a["address"] == "migration.003")
    codes = {f["code"]: f for f in m3["findings"]}
    assert m3["risk"] == "HIGH"
    assert "CONCURRENTLY" in codes["PG101"]["suggestion"]
    assert m3["backup_tables"] == ["public.bike_lanes"]


def test_saved_plan_renders_like_the_fresh_plan(repo: Path, env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    fresh = run(repo, "plan", "--env", "dev", "--out", str(out), env=env)
    assert fresh.exit_code == 0, fresh.output
    shown = run(repo, "show", str(out), env=env)
    assert shown.exit_code == 0
    fresh_text = fresh.output.split("\nSaved the plan to")[0]
    # show is the plan's view plus the exact SQL of each step and check (issue 14): every
    # line of the fresh plan, in order, with the SQL between them
    from honua_plan.plan.render import render_text
    from honua_plan.plan.store import load_plan

    assert shown.output == render_text(load_plan(out), detailed=True)
    shown_lines = iter(shown.output.splitlines())
    assert all(line in shown_lines for line in fresh_text.rstrip("\n").splitlines())
    assert "CREATE TABLE IF NOT EXISTS bike_lanes (" in shown.output
    assert "CREATE TABLE IF NOT EXISTS bike_lanes (" not in fresh_text
    # and the JSON of the saved file is the JSON render
    assert json.loads(out.read_text())["actions"]


def test_detailed_exitcode(repo: Path, env: dict[str, str]) -> None:
    result = run(repo, "plan", "--env", "dev", "--detailed-exitcode", env=env)
    assert result.exit_code == 2


def test_plan_json_matches_the_shipped_schema(repo: Path, env: dict[str, str], pg_dsn: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    seed(pg_dsn)
    plan = plan_json(repo, env)
    schema = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "plan.schema.json").read_text())
    jsonschema.validate(plan, schema)


def test_target_limits_the_plan(repo: Path, env: dict[str, str]) -> None:
    plan = plan_json(repo, env, "--target", "migration.002")
    assert [a["address"] for a in plan["actions"]] == ["datasource.postgis-primary", "migration.001", "migration.002"]


def test_failing_precondition_fails_the_plan(repo: Path, env: dict[str, str], pg_dsn: str) -> None:
    edit(repo / "migrations/003_optimize_bike_lanes.yaml", "      column: geom\n", "      column: the_geom\n")
    seed(pg_dsn)
    result = run(repo, "plan", "--env", "dev", env=env)
    assert result.exit_code == 1
    assert "precondition failed for migration 003: column bike_lanes.the_geom does not exist" in result.output
    assert "migrations/003_optimize_bike_lanes.yaml:" in result.output


def test_layer_mismatch_is_a_plan_error_with_location(repo: Path, env: dict[str, str], pg_dsn: str) -> None:
    seed(pg_dsn)
    edit(repo / "environments/dev/layers/bike-lanes.yaml", "    srid: 4326", "    srid: 3857")
    result = run(repo, "plan", "--env", "dev", env=env)
    assert result.exit_code == 1
    assert "declares SRID 3857 but public.bike_lanes.geom has SRID 4326" in result.output
    assert "environments/dev/layers/bike-lanes.yaml:" in result.output
    assert "Traceback" not in result.output


def test_password_never_printed_or_saved(repo: Path, pg_dsn: str, tmp_path: Path) -> None:
    secret = "s3cret-pw-plan-77"
    env = {"HONUA_PG_DSN": f"{pg_dsn} password={secret}"}
    out = tmp_path / "plan.json"
    outputs = [
        run(repo, "validate", env=env).output,
        run(repo, "plan", "--env", "dev", "--out", str(out), env=env).output,
        run(repo, "plan", "--env", "dev", "--format", "markdown", env=env).output,
        run(repo, "plan", "--env", "dev", "--format", "json", env=env).output,
        run(repo, "drift", "--env", "dev", env=env).output,
    ]
    assert out.exists()
    assert all(secret not in o for o in outputs)
    assert secret not in out.read_text()


def test_drift_after_out_of_band_changes(repo: Path, env: dict[str, str], pg_dsn: str) -> None:
    seed(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE INDEX idx_lanes_name ON bike_lanes (name)")
    # apply records the tables (003 rolls back on 42 rows; the rest applies)
    result = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
    assert "Applying changes to dev" in result.output
    clean = run(repo, "drift", "--env", "dev", env=env)
    assert clean.exit_code == 0, clean.output
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE bike_lanes ADD COLUMN x int")
    drifted = run(repo, "drift", "--env", "dev", env=env)
    assert drifted.exit_code == 2, drifted.output
    assert "column x added: integer" in drifted.output
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE bike_lanes DROP COLUMN x")
        conn.execute("DROP INDEX idx_lanes_name")
    drifted = run(repo, "drift", "--env", "dev", "--format", "json", env=env)
    assert drifted.exit_code == 2
    data = json.loads(drifted.output)
    assert data["drifted"] and any("index idx_lanes_name removed" in d for d in data["drift"][0]["details"])


def test_changed_applied_migration_fails_validation(repo: Path, env: dict[str, str], pg_dsn: str) -> None:
    seed(pg_dsn)
    run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
    edit(repo / "migrations/002_add_parcels_layer.yaml", "owner_name varchar(200)", "owner_name varchar(250)")
    result = run(repo, "validate", "--env", "dev", env=env)
    assert result.exit_code == 1
    assert "migration 002 was applied to dev" in result.output
    assert "migrations/002_add_parcels_layer.yaml:" in result.output
    plan = run(repo, "plan", "--env", "dev", env=env)
    assert plan.exit_code == 1 and "migration 002 was applied to dev" in plan.output


def test_state_commands(repo: Path, env: dict[str, str], pg_dsn: str) -> None:
    seed(pg_dsn)
    run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
    listed = run(repo, "state", "list", "--env", "dev", env=env)
    assert listed.exit_code == 0 and "layer.transportation::bike-lanes" in listed.output
    assert "migration.001" in listed.output and "table.public.bike_lanes" in listed.output
    shown = json.loads(run(repo, "state", "show", "--env", "dev", "layer.transportation::bike-lanes", env=env).output)
    assert shown["kind"] == "layer" and shown["fingerprint"].startswith("sha256:")
    history = run(repo, "state", "history", "--env", "dev", "--format", "json", env=env)
    kinds = [e["kind"] for e in json.loads(history.output)]
    assert "apply-start" in kinds
    missing = run(repo, "state", "show", "--env", "dev", "layer.nope", env=env)
    assert missing.exit_code == 1 and "no resource layer.nope" in missing.output
    unlocked = run(repo, "state", "unlock", "--env", "dev", env=env)
    assert unlocked.exit_code == 0
