"""Day-2 state commands (issue 21): `state mv`, `state rm`, `apply --refresh-only`, `ignoreDrift`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg
import pytest

from honua_plan.workflows.sample import seed_bike_lanes
from tests.helpers import copy_example, drop_performance_check, run

pytestmark = pytest.mark.integration

OLD, NEW = "layer.transportation::bike-lanes", "layer.transportation::bike-paths"


@pytest.fixture
def applied(tmp_path: Path, pg_dsn: str) -> tuple[Path, dict[str, str]]:
    repo = copy_example(tmp_path / "repo", server=False)
    drop_performance_check(repo)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        seed_bike_lanes(conn, 42)
    env = {"HONUA_PG_DSN": pg_dsn, "CI": ""}
    assert run(repo, "apply", "--env", "dev", "--auto-approve", env=env).exit_code == 0
    return repo, env


def actions(repo: Path, env: dict[str, str]) -> list[tuple[str, str]]:
    result = run(repo, "plan", "--env", "dev", "--format", "json", env=env)
    return [(a["address"], a["action"]) for a in json.loads(result.output)["actions"]]


def test_a_renamed_layer_moved_in_the_state_is_an_update_not_a_delete_and_create(
        applied: tuple[Path, dict[str, str]]) -> None:
    repo, env = applied
    layer = repo / "environments/dev/layers/bike-lanes.yaml"
    layer.write_text(layer.read_text().replace("name: bike-lanes", "name: bike-paths", 1))
    before = actions(repo, env)
    assert (OLD, "delete") in before and (NEW, "create") in before
    moved = run(repo, "state", "mv", OLD, NEW, "--env", "dev", env=env)
    assert moved.exit_code == 0, moved.output
    after = actions(repo, env)
    assert (NEW, "update") in after and not any(a == OLD for a, _ in after), after
    assert not any(action in ("create", "delete") for _, action in after), after
    again = run(repo, "state", "mv", OLD, NEW, "--env", "dev", env=env)
    assert again.exit_code == 1 and f"{OLD} is not in the dev state" in again.output


def test_a_moved_block_renames_a_layer_without_delete_and_create(applied: tuple[Path, dict[str, str]]) -> None:
    repo, env = applied
    layer = repo / "environments/dev/layers/bike-lanes.yaml"
    layer.write_text(layer.read_text().replace("name: bike-lanes", "name: bike-paths", 1))
    project = repo / "honua.yaml"
    project.write_text(project.read_text() + f"  moved:\n    - from: {OLD}\n      to: {NEW}\n")
    result = run(repo, "plan", "--env", "dev", "--format", "json", env=env)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["moved"] == [{"from_address": OLD, "to_address": NEW}]
    assert (NEW, "update") in [(a["address"], a["action"]) for a in doc["actions"]], doc["actions"]
    assert not any(a["action"] in ("create", "delete") for a in doc["actions"]), doc["actions"]
    update = next(a for a in doc["actions"] if a["address"] == NEW)
    # the collection's URL changes: clients of the old id break, and the plan says so
    assert any("collection transportation::bike-lanes is now served as transportation::bike-paths" in f["message"]
               for f in update["findings"] if f["code"] == "SVC101"), update["findings"]
    text = run(repo, "plan", "--env", "dev", env=env).output
    assert f"Moved: {OLD} → {NEW} (recorded under the new address, not replaced)" in text
    assert "1 to move" in text
    applied_ = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
    assert applied_.exit_code == 0, applied_.output
    state = json.loads((repo / "state/dev.json").read_text())
    assert NEW in state["resources"] and OLD not in state["resources"]
    assert any(e["kind"] == "state-mv" and "moved: in honua.yaml" in e["message"] for e in state["events"]), \
        state["events"][-3:]
    # the block stays in the file for the other environments: here it is done, and harmless
    assert actions(repo, env) == []


def test_a_moved_block_to_an_address_not_configured_is_an_error(applied: tuple[Path, dict[str, str]]) -> None:
    repo, env = applied
    project = repo / "honua.yaml"
    project.write_text(project.read_text() + f"  moved:\n    - from: {OLD}\n      to: {NEW}\n")
    result = run(repo, "plan", "--env", "dev", env=env)
    assert result.exit_code == 1
    assert re.search(r"^honua\.yaml:\d+:\d+: moved: layer\.transportation::bike-paths is not in the configuration "
                     r"of dev$", result.output, re.M), result.output


def test_state_rm_forgets_without_touching_the_database(applied: tuple[Path, dict[str, str]], pg_dsn: str) -> None:
    repo, env = applied
    assert actions(repo, env) == []
    removed = run(repo, "state", "rm", OLD, "--env", "dev", env=env)
    assert removed.exit_code == 0, removed.output
    assert "nothing live was changed" in removed.output
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM bike_lanes").fetchone()[0] == 42
    # the config still has it: unmanaged, left alone (no create, no delete) until imported
    assert actions(repo, env) == []
    plan = json.loads(run(repo, "plan", "--env", "dev", "--format", "json", env=env).output)
    assert any(n["address"] == OLD and n["reason"].startswith("unmanaged (state rm)") for n in plan["no_ops"])
    assert f"{OLD} (unmanaged: state rm)" in run(repo, "state", "list", "--env", "dev", env=env).output
    imported = run(repo, "state", "import", OLD, "--env", "dev", env=env)
    assert imported.exit_code == 0, imported.output
    assert actions(repo, env) == []  # recorded as the configuration declares it
    state = json.loads((repo / "state/dev.json").read_text())
    assert OLD in state["resources"] and state["unmanaged"] == []
    missing = run(repo, "state", "rm", "layer.nope::x", "--env", "dev", env=env)
    assert missing.exit_code == 1 and "not in the dev state" in missing.output


def test_refresh_only_apply_accepts_drift_as_the_baseline(applied: tuple[Path, dict[str, str]], pg_dsn: str,
                                                          tmp_path: Path) -> None:
    repo, env = applied
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE bike_lanes ADD COLUMN out_of_band int")
    assert run(repo, "drift", "--env", "dev", env=env).exit_code == 2
    # a saved refresh-only plan: applying it accepts exactly the drift it showed
    saved = tmp_path / "refresh.json"
    assert run(repo, "plan", "--env", "dev", "--refresh-only", "--out", str(saved), env=env).exit_code == 0
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS parcels_extra (id int)")
        conn.execute("ALTER TABLE parcels ADD COLUMN other_change int")
    stale = run(repo, "apply", "--env", "dev", str(saved), env=env)
    assert stale.exit_code == 1 and "the drift is not the one it showed" in stale.output, stale.output
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE parcels DROP COLUMN other_change")
    accepted = run(repo, "apply", "--env", "dev", str(saved), env=env)
    assert accepted.exit_code == 0, accepted.output
    assert "Accepted the live shape of 1 table(s)" in accepted.output
    assert run(repo, "drift", "--env", "dev", env=env).exit_code == 0
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # nothing live was changed
        cols = [r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns "
                                          "WHERE table_name = 'bike_lanes'").fetchall()]
    assert "out_of_band" in cols
    # and the flag form, with nothing drifted
    again = run(repo, "apply", "--env", "dev", "--refresh-only", "--auto-approve", env=env)
    assert again.exit_code == 0 and "No drift." in again.output


def test_ignored_drift_is_not_reported(applied: tuple[Path, dict[str, str]], pg_dsn: str) -> None:
    repo, env = applied
    layer = repo / "environments/dev/layers/bike-lanes.yaml"
    text = layer.read_text()
    assert "    geometryColumn: geom\n" in text
    layer.write_text(text.replace("    geometryColumn: geom\n",
                                  "    geometryColumn: geom\n    ignoreDrift: [columns.etl_batch, indexes]\n", 1))
    assert run(repo, "apply", "--env", "dev", "--auto-approve", env=env).exit_code == 0  # the layer's config changed
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE bike_lanes ADD COLUMN etl_batch int")
        conn.execute("CREATE INDEX bike_lanes_name_idx ON bike_lanes (name)")
    quiet = run(repo, "drift", "--env", "dev", env=env)
    assert quiet.exit_code == 0, quiet.output
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE bike_lanes ADD COLUMN not_ignored int")
    loud = run(repo, "drift", "--env", "dev", env=env)
    assert loud.exit_code == 2 and "not_ignored" in loud.output and "etl_batch" not in loud.output, loud.output
    bad = repo / "environments/dev/layers/bike-lanes.yaml"
    bad.write_text(bad.read_text().replace("[columns.etl_batch, indexes]", "[rows]"))
    invalid = run(repo, "validate", env=env)
    assert invalid.exit_code == 1 and "bike-lanes.yaml:" in invalid.output and "is not a part of a table" in invalid.output


def test_repair_accepts_an_edited_applied_migration(applied: tuple[Path, dict[str, str]]) -> None:
    repo, env = applied
    path = repo / "migrations/002_add_parcels_layer.yaml"  # its down step gets a comment: the spec changed
    path.write_text(path.read_text().replace("DROP TABLE IF EXISTS parcels;", "DROP TABLE IF EXISTS parcels; -- edited", 1))
    refused = run(repo, "plan", "--env", "dev", env=env)
    assert refused.exit_code == 1 and "must not be edited" in refused.output, refused.output
    repaired = run(repo, "migrate", "repair", "002", "--env", "dev", "--reason", "a comment in the down step", env=env)
    assert repaired.exit_code == 0, repaired.output
    assert run(repo, "validate", env=env).exit_code == 0
    assert run(repo, "plan", "--env", "dev", "--detailed-exitcode", env=env).exit_code == 0
    again = run(repo, "migrate", "repair", "002", "--env", "dev", "--reason", "x", env=env)
    assert again.exit_code == 1 and "nothing to repair" in again.output


def test_baseline_adopts_an_existing_database(tmp_path: Path, pg_dsn: str) -> None:
    repo = copy_example(tmp_path / "repo", server=False)
    env = {"HONUA_PG_DSN": pg_dsn, "CI": ""}
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        seed_bike_lanes(conn, 42)  # the tables exist already: made before honua
    adopted = run(repo, "migrate", "baseline", "002", "--env", "dev", "--reason", "adopting the city database",
                  env=env)
    assert adopted.exit_code == 0, adopted.output
    assert "001, 002" in adopted.output
    status = run(repo, "migrate", "status", "--env", "dev", "--format", "json", env=env)
    rows = {r["id"]: r["status"] for r in json.loads(status.output)["migrations"]}
    assert rows["001"] == rows["002"] == "applied" and rows["003"] != "applied", rows
    unknown = run(repo, "migrate", "baseline", "999", "--env", "dev", "--reason", "x", env=env)
    assert unknown.exit_code == 1 and "no migration 999" in unknown.output


def test_a_step_can_allow_a_hazard_with_its_reason(tmp_path: Path, pg_dsn: str) -> None:
    """squawk/Atlas-style suppression: the finding stays in the plan, at LOW, with the reason."""
    repo = copy_example(tmp_path / "repo", server=False)
    env = {"HONUA_PG_DSN": pg_dsn, "CI": ""}
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        seed_bike_lanes(conn, 42)
        conn.execute("ANALYZE bike_lanes")

    def pg101() -> dict[str, str]:
        plan = json.loads(run(repo, "plan", "--env", "dev", "--format", "json", env=env).output)
        found = [f for a in plan["actions"] if a["address"] == "migration.003" for f in a["findings"]
                 if f["code"] == "PG101"]
        assert len(found) == 1, plan["actions"]
        return found[0]

    assert pg101()["level"] == "HIGH"
    path = repo / "migrations/003_optimize_bike_lanes.yaml"
    text = path.read_text()
    assert "    - name: Create spatial index\n" in text
    path.write_text(text.replace("    - name: Create spatial index\n",
                                 "    - name: Create spatial index\n      allowHazards:\n"
                                 "        - code: PG101\n          reason: the table is written only at night\n", 1))
    allowed = pg101()
    assert allowed["level"] == "LOW" and "allowed by the step: the table is written only at night" in allowed["message"]
    text = path.read_text().replace("reason: the table is written only at night", "reason: ''")
    path.write_text(text)
    invalid = run(repo, "validate", env=env)
    assert invalid.exit_code == 1 and "003_optimize_bike_lanes.yaml:" in invalid.output


M004_RENAME = """apiVersion: honua.io/v1
kind: Migration
metadata:
  id: "004"
  description: "Rename lane_type"
spec:
  dependencies: ["001_create_bike_lanes"]
  up:
    - name: Rename the column
      type: sql
      content: |
        ALTER TABLE bike_lanes RENAME COLUMN lane_type TO kind;
  down:
    - name: Rename it back
      type: sql
      content: |
        ALTER TABLE bike_lanes RENAME COLUMN kind TO lane_type;
"""


def test_a_rename_that_breaks_a_layer_fails_at_plan_time(applied: tuple[Path, dict[str, str]]) -> None:
    """The column a layer serves renamed by a migration: the plan fails at the layer's
    file:line, naming the migration (it used to be MEDIUM, and only the next plan failed)."""
    repo, env = applied
    (repo / "migrations/004_rename_lane_type.yaml").write_text(M004_RENAME)
    result = run(repo, "plan", "--env", "dev", env=env)
    assert result.exit_code == 1, result.output
    layer = repo / "environments/dev/layers/bike-lanes.yaml"
    line = next(i for i, t in enumerate(layer.read_text().splitlines(), 1) if "name: lane_type" in t)
    assert f"environments/dev/layers/bike-lanes.yaml:{line}:" in result.output, result.output
    assert "migration 004 renames column public.bike_lanes.lane_type" in result.output
    # renaming the field in the same change makes it a plan again
    layer.write_text(layer.read_text().replace("name: lane_type", "name: kind"))
    fixed = run(repo, "plan", "--env", "dev", env=env)
    assert "renames column" not in fixed.output, fixed.output


def test_apply_target_and_exclude(tmp_path: Path, pg_dsn: str) -> None:
    repo = copy_example(tmp_path / "repo", server=False)
    env = {"HONUA_PG_DSN": pg_dsn, "CI": ""}
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        seed_bike_lanes(conn, 42)
    everything = actions(repo, env)
    assert ("migration.003", "apply") in everything
    planned = json.loads(run(repo, "plan", "--env", "dev", "--exclude", "migration.003", "--format", "json",
                             env=env).output)
    kept = {a["address"] for a in planned["actions"]}
    assert "migration.003" not in kept and "migration.001" in kept
    assert planned["exclude"] == ["migration.003"]
    for a in planned["actions"]:
        assert "migration.003" not in a["depends_on"]  # what needs it is left out with it
    unknown = run(repo, "plan", "--env", "dev", "--exclude", "layer.nope::x", env=env)
    assert unknown.exit_code == 1 and "no such address" in unknown.output

    only = run(repo, "apply", "--env", "dev", "--target", "migration.001", "--auto-approve", env=env)
    assert only.exit_code == 0, only.output
    status = json.loads(run(repo, "migrate", "status", "--env", "dev", "--format", "json", env=env).output)
    assert {r["id"]: r["status"] for r in status["migrations"]}["001"] == "applied"
    assert {r["id"]: r["status"] for r in status["migrations"]}["002"] != "applied"
    rest = run(repo, "apply", "--env", "dev", "--exclude", "migration.003", "--auto-approve", env=env)
    assert rest.exit_code == 0, rest.output
    assert [a for a, _ in actions(repo, env) if a.startswith("migration.")] == ["migration.003"]
    refused = run(repo, "apply", "--env", "dev", "--exclude", "migration.003", "--resume", env=env)
    assert refused.exit_code == 1 and "go with a fresh plan" in refused.output


M005_VIEW = """apiVersion: honua.io/v1
kind: Migration
metadata:
  id: "005"
  description: "Lanes by type (a view)"
spec:
  repeatable: true
  dependencies: ["001_create_bike_lanes"]
  up:
    - name: Create the view
      type: sql
      content: |
        CREATE OR REPLACE VIEW lanes_by_type AS SELECT lane_type, count(*) AS n FROM bike_lanes GROUP BY lane_type;
  down:
    - name: Drop the view
      type: sql
      content: |
        DROP VIEW IF EXISTS lanes_by_type;
"""


def test_a_repeatable_migration_runs_again_exactly_once_after_an_edit(
        applied: tuple[Path, dict[str, str]], pg_dsn: str) -> None:
    repo, env = applied
    path = repo / "migrations/005_lanes_by_type.yaml"
    path.write_text(M005_VIEW)
    assert run(repo, "apply", "--env", "dev", "--auto-approve", env=env).exit_code == 0
    assert actions(repo, env) == []
    path.write_text(M005_VIEW.replace("count(*) AS n", "count(*) AS n, max(id) AS last_id"))
    assert actions(repo, env) == [("migration.005", "apply")]
    again = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
    assert again.exit_code == 0, again.output
    assert actions(repo, env) == []  # once
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        cols = [r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns "
                                          "WHERE table_name = 'lanes_by_type' ORDER BY ordinal_position")]
    assert cols == ["lane_type", "n", "last_id"]
    runs = json.loads(run(repo, "migrate", "status", "--env", "dev", "--format", "json", env=env).output)
    assert {r["id"]: r["status"] for r in runs["migrations"]}["005"] == "applied"


def test_replace_re_derives_an_unchanged_layer_and_refuses_what_it_cannot_replace(
        applied: tuple[Path, dict[str, str]]) -> None:
    repo, env = applied
    assert actions(repo, env) == []
    result = run(repo, "plan", "--env", "dev", "--replace", OLD, "--format", "json", env=env)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["replace"] == [OLD]
    layer = next(a for a in doc["actions"] if a["address"] == OLD)
    assert layer["action"] == "replace" and layer["reason"] == "replacement requested (--replace)"
    assert not [f for f in layer["findings"] if f["code"] == "SVC101"]  # same shape: clients see no change
    applied_ = run(repo, "apply", "--env", "dev", "--replace", OLD, "--auto-approve", env=env)
    assert applied_.exit_code == 0, applied_.output
    assert actions(repo, env) == []
    for address, why in [("service.transportation", "is not a layer (only layers can be replaced)"),
                         ("layer.transportation::nope", "is not in the configuration")]:
        bad = run(repo, "plan", "--env", "dev", "--replace", address, env=env)
        assert bad.exit_code == 1 and f"--replace {address}: {address} {why}" in bad.output, bad.output
