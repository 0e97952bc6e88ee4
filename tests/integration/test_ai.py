"""``honua-ai`` against a real PostGIS: propose, migrate plan, explain, schedule, chat, recovery.

All offline: litellm is never imported (checked after every test of this module).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml

from honua_plan.config.models import Layer
from tests.helpers import copy_example, run

ENVS = ("dev", "staging", "production")


@pytest.fixture(autouse=True)
def _never_litellm() -> Iterator[None]:
    yield
    assert "litellm" not in sys.modules


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = copy_example(tmp_path / "repo", server=False)
    return r


@pytest.fixture
def env(pg_dsn: str) -> dict[str, str]:
    # dev, staging and production all read HONUA_PG_DSN (no HONUA_PG_DSN_<ENV> set); CI is
    # cleared so a plan by a person is "human" on a CI runner too (CI=true makes it "ci")
    return {"HONUA_PG_DSN": pg_dsn, "HONUA_AI_MODEL": "", "CI": ""}


def seed(pg_dsn: str, table: str = "bike_lanes", rows: int = 42) -> None:
    from honua_plan.workflows.sample import seed_bike_lanes

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert seed_bike_lanes(conn, rows, table=table) == rows


def layer(path: Path) -> Layer:
    return Layer.model_validate(yaml.safe_load(path.read_text()))


def git(root: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-c", "user.name=Test", "-c", "user.email=test@example.org", "-C", str(root), *args],
                          capture_output=True, text=True, check=True)
    return proc.stdout


# --------------------------------------------------------------------------- propose layer


def test_propose_layer_for_a_second_table(repo: Path, env: dict[str, str], pg_dsn: str) -> None:
    seed(pg_dsn)
    seed(pg_dsn, "bike_paths")
    result = run(repo, "ai", "propose", "layer", "--table", "public.bike_paths", "--service", "transportation", env=env)
    assert result.exit_code == 0, result.output
    out = result.output
    for line in ("Analyzing current metadata...", "Creating deployment plan...", "Validating configuration...",
                 "Created proposal: layer transportation::bike-paths", "Files changed:",
                 "  - environments/dev/layers/bike-paths.yaml (new)",
                 "  - environments/staging/layers/bike-paths.yaml (new)",
                 "  - environments/production/layers/bike-paths.yaml (new)"):
        assert line in out, out
    assert out.index("Analyzing current metadata") < out.index("Creating deployment plan") < \
        out.index("Validating configuration") < out.index("Created proposal")
    assert "GEO301" in out  # the plan's finding: no spatial index on the new table
    for e in ENVS:
        path = repo / f"environments/{e}/layers/bike-paths.yaml"
        text = path.read_text()
        assert text.startswith("# yaml-language-server: $schema=../../../schemas/layer.schema.json\n")
        generated = layer(path)
        assert generated.metadata.environment == e and generated.metadata.createdBy == "ai-consultant"
        assert generated.spec.storage.table == "bike_paths"
    assert run(repo, "validate", env=env).exit_code == 0
    plan = run(repo, "plan", "--env", "dev", "--format", "json", "--provenance", "ai", env=env)
    addresses = [a["address"] for a in json.loads(plan.output)["actions"]]
    assert "layer.transportation::bike-paths" in addresses
    # the proposal does not refuse silently a second time: the files exist now
    again = run(repo, "ai", "propose", "layer", "--table", "public.bike_paths", "--service", "transportation", env=env)
    assert again.exit_code == 1 and "already exists" in again.output


def test_proposed_layer_for_bike_lanes_equals_the_example(repo: Path, env: dict[str, str], pg_dsn: str) -> None:
    seed(pg_dsn)
    result = run(repo, "ai", "propose", "layer", "--table", "bike_lanes", "--service", "transportation",
                 "--name", "bike-lanes-copy", "--environments", "dev", env=env)
    assert result.exit_code == 0, result.output
    assert "public.bike_lanes is already published as transportation::bike-lanes" in result.output
    generated = layer(repo / "environments/dev/layers/bike-lanes-copy.yaml").spec
    example = layer(repo / "environments/dev/layers/bike-lanes.yaml").spec
    assert [(f.name, f.type, f.maxLength, f.nullable) for f in generated.fields] == \
        [(f.name, f.type, f.maxLength, f.nullable) for f in example.fields]
    assert generated.storage == example.storage
    for key in ("geometryType", "idField", "displayField", "geometryField", "crs", "ogc", "validation"):
        assert getattr(generated, key) == getattr(example, key), key
    assert not (repo / "environments/staging/layers/bike-lanes-copy.yaml").exists()


def test_propose_refusals_leave_nothing_behind(repo: Path, env: dict[str, str], pg_dsn: str) -> None:
    seed(pg_dsn, "bike_paths")
    missing = run(repo, "ai", "propose", "layer", "--table", "public.bike_paths", "--service", "parks", env=env)
    assert missing.exit_code == 1
    assert "service 'parks' does not exist in dev, staging, production" in missing.output
    no_table = run(repo, "ai", "propose", "layer", "--table", "public.nothere", "--service", "transportation", env=env)
    assert no_table.exit_code == 1
    assert "table public.nothere does not exist in the dev database (spatial tables: public.bike_paths)" in no_table.output
    no_git = run(repo, "ai", "propose", "layer", "--table", "public.bike_paths", "--service", "transportation",
                 "--branch", env=env)
    assert no_git.exit_code == 1 and "is not a git repository" in no_git.output
    assert "Traceback" not in missing.output + no_table.output + no_git.output
    assert not list(repo.glob("environments/*/layers/bike-paths.yaml"))


def test_propose_on_a_git_branch(repo: Path, env: dict[str, str], pg_dsn: str) -> None:
    seed(pg_dsn, "bike_paths")
    (repo / ".gitignore").write_text("state/\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "config")
    result = run(repo, "ai", "propose", "layer", "--table", "public.bike_paths", "--service", "transportation",
                 "--branch", env=env)
    assert result.exit_code == 0, result.output
    branch = "feature/add-bike-paths-layer"
    assert f"Created proposal: {branch}" in result.output
    assert f"Push with: git push origin {branch}" in result.output
    assert "Pull Request" not in result.output
    # the branch holds the three files; the checkout is untouched
    assert git(repo, "log", "-1", "--format=%an <%ae>", branch).strip() == \
        "honua ai-consultant <ai-consultant@honua.invalid>"
    files = git(repo, "diff", "--name-only", "main", branch).split()
    assert files == [f"environments/{e}/layers/bike-paths.yaml" for e in ("dev", "production", "staging")]
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    assert git(repo, "status", "--porcelain").strip() == ""
    git(repo, "checkout", "-q", branch)
    assert layer(repo / "environments/dev/layers/bike-paths.yaml").metadata.name == "bike-paths"
    # provenance survives the proposal: the commit's trailer makes a person's plan of the
    # branch an AI plan (so `aiProposals: required` applies), and main's plans stay human
    assert "Honua-Provenance: ai; model=offline" in git(repo, "log", "-1", "--format=%B", branch)
    plan = run(repo, "plan", "--env", "production", "--format", "json", env=env)
    assert plan.exit_code in (0, 2), plan.output
    assert json.loads(plan.output)["provenance"] == {"kind": "ai", "actor": env.get("HONUA_ACTOR", json.loads(
        plan.output)["provenance"]["actor"]), "tool": "honua", "model": "offline"}
    git(repo, "checkout", "-q", "main")
    plan = run(repo, "plan", "--env", "production", "--format", "json", env=env)
    assert json.loads(plan.output)["provenance"]["kind"] == "human"


# --------------------------------------------------------------------------- migrate plan


def test_migrate_plan_prints_the_seed_block(repo: Path, env: dict[str, str]) -> None:
    result = run(repo, "ai", "migrate", "plan", env=env)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Analyzing migration: 003_optimize_bike_lanes" in out
    assert "Dependencies: ✓ All satisfied" in out
    assert "Pre-conditions: ✓ All met" in out
    assert "Deployment Plan:\n─────────────────────────────────────────────\nEnvironment: dev\n" in out
    for step in ("Create spatial index (estimated:", "Analyze table (estimated:", "Update metadata (estimated:"):
        assert step in out
    assert "  Rollback Plan:\n    - Drop spatial index\n    - Revert metadata\n" in out
    assert "Environment: staging\n  [Same as dev]\n  Risk Level: LOW\n" in out
    assert ("Environment: production\n  [Same as dev]\n  Risk Level: MEDIUM (production environment)\n"
            "  Approval Required: YES") in out
    # no terminal: nothing deployed
    assert "nothing was deployed" in out
    status = json.loads(run(repo, "migrate", "status", "--env", "dev", "--format", "json", env=env).output)
    assert {m["status"] for m in status["migrations"]} == {"pending"}


def test_migrate_plan_yes_deploys_to_the_first_environment_only(repo: Path, env: dict[str, str]) -> None:
    as_json = run(repo, "ai", "migrate", "plan", "002", "--format", "json", env=env)
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    assert [e["environment"] for e in data["environments"]] == list(ENVS)
    assert [e["same_as"] for e in data["environments"]] == [None, "dev", "dev"]
    assert data["environments"][2]["plan"]["approvals_required"] == 1
    result = run(repo, "ai", "migrate", "plan", "002", "--yes", env=env)
    assert result.exit_code == 0, result.output
    assert "Next: honua-ai promote dev staging --migration 002" in result.output

    def statuses(e: str) -> dict[str, str]:
        out = run(repo, "migrate", "status", "--env", e, "--format", "json", env=env).output
        return {m["id"]: m["status"] for m in json.loads(out)["migrations"]}

    assert statuses("dev") == {"001": "applied", "002": "applied", "003": "pending"}
    assert statuses("staging") == {"001": "pending", "002": "pending", "003": "pending"}
    again = run(repo, "ai", "migrate", "plan", "002", env=env)
    assert "Environment: dev\n  Nothing to do: 002_add_parcels_layer already applied" in again.output


def test_migrate_plan_goes_on_after_an_unreachable_environment(repo: Path, env: dict[str, str]) -> None:
    bad = {**env, "HONUA_PG_DSN_STAGING": "host=/nonexistent-honua-socket port=1 dbname=nope connect_timeout=1"}
    result = run(repo, "ai", "migrate", "plan", env=bad)
    assert result.exit_code == 0, result.output
    assert "Environment: staging\n  ✗ could not connect to datasource" in result.output
    assert "Environment: production\n  [Same as dev]" in result.output
    # the first environment of the promotion order cannot be planned: nothing is deployed anywhere
    no_dev = {**env, "HONUA_PG_DSN_DEV": bad["HONUA_PG_DSN_STAGING"]}
    result = run(repo, "ai", "migrate", "plan", "--yes", env=no_dev)
    assert result.exit_code == 1
    assert "Environment: dev\n  ✗ could not connect" in result.output
    assert "Environment: production\n  [Same as staging]" in result.output
    assert "dev could not be planned: nothing was deployed." in result.output
    assert not json.loads(run(repo, "state", "list", "--env", "staging", "--format", "json", env=env).output)["resources"]


# --------------------------------------------------------------------------- explain, schedule


def test_explain_offline_mentions_pg101(repo: Path, env: dict[str, str], pg_dsn: str, tmp_path: Path) -> None:
    seed(pg_dsn)
    plan_file = tmp_path / "plan.json"
    assert run(repo, "plan", "--env", "dev", "--out", str(plan_file), env=env).exit_code == 0
    result = run(repo, "ai", "explain", str(plan_file), env=env)
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.splitlines()[0].startswith("Mode: offline")
    assert "HIGH PG101 (migration 003)" in out
    assert "Suggestion: Consider creating index with CONCURRENTLY option" in out
    assert "migration 003: automatic if a step, validation or health check fails: Drop spatial index, Revert metadata" in out
    assert "After apply, check:" in out


def test_schedule_records_the_event(repo: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(repo, "ai", "schedule", "migration", "003", "--environment", "production",
                 "--window", "next-tuesday 10:00-12:00", "--approval-required", env=env)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Scheduled deployment for migration 003:\n  Environment: production\n  Date: Tuesday, " in out
    assert "  Time: 10:00 AM P" in out  # PDT or PST, by the date
    for line in ("  Duration: Up to 2 hours", "  Approval: Required from gis-ops team", "  Pre-deployment checklist:",
                 "    - Health check: ✓ Automated", "    - Rollback plan: ✓ Ready (automatic)",
                 "    - ✗ Notifications: not configured"):
        assert line in out, out
    from honua_plan.context import Context
    from honua_plan.providers.embedded.pgserver import pg_dump_available

    if pg_dump_available():
        assert "    - Backup database: ✓ Automated" in out
    monkeypatch.setenv("HONUA_PG_DSN", env["HONUA_PG_DSN"])  # the serial guard reads the database (never an embedded one under CI)
    doc = Context(repo).recorded("production")
    event = doc.events[-1]
    assert event.kind == "schedule" and doc.serial == 1
    assert event.details["migration"] == "003" and event.details["within_policy"] is True
    assert event.details["approvers"] == ["gis-ops"] and event.details["start"].endswith(("-07:00", "-08:00"))
    outside = run(repo, "ai", "schedule", "migration", "003", "-e", "production", "--window",
                  "next-monday 10:00-12:00", env=env)
    assert outside.exit_code == 0 and "outside the deployment windows" in outside.output
    bad = run(repo, "ai", "schedule", "migration", "003", "-e", "production", "--window", "soon", env=env)
    assert bad.exit_code == 1 and "cannot read the window 'soon'" in bad.output


# --------------------------------------------------------------------------- chat


def test_chat_one_request_from_stdin_makes_a_proposal(repo: Path, env: dict[str, str], pg_dsn: str) -> None:
    seed(pg_dsn)
    seed(pg_dsn, "bike_paths")
    request = ("We need to add bike paths data from our PostGIS database.\n"
               "       The table is public.bike_paths and has a geometry column.\n")
    # offline, the proposal waits for Continue? as the model's does: no terminal, no --yes, nothing kept
    declined = run(repo, "ai", "chat", env=env, input=request)
    assert declined.exit_code == 2, declined.output
    assert "Continue? (yes/no): stdin is not a terminal" in declined.output
    assert not (repo / "environments/dev/layers/bike-paths.yaml").exists()
    result = run(repo, "ai", "chat", "--yes", env=env, input=request)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "AI: I'll help you add the bike paths layer. Let me create a proposal." in out
    assert "AI: I'll put it in the service 'transportation' (the only service)." in out
    assert "Created proposal: layer transportation::bike-paths" in out
    assert all((repo / f"environments/{e}/layers/bike-paths.yaml").exists() for e in ENVS)
    # the seed's own request: the example already publishes public.bike_lanes
    seed_request = ("We need to add bike lanes data from our PostGIS database.\n"
                    "       The table is public.bike_lanes and has a geometry column.\n")
    again = run(repo, "ai", "chat", env=env, input=seed_request)
    assert again.exit_code == 0
    assert "public.bike_lanes is already published as transportation::bike-lanes in dev" in again.output


def test_chat_free_text_offline_lists_what_it_can_do(repo: Path, env: dict[str, str]) -> None:
    result = run(repo, "ai", "chat", env=env, input="why is production slow?\n")
    assert result.exit_code == 2  # nothing was done
    assert "AI: I did not act on this request: it is a question." in result.output
    assert "AI: I'm working offline" in result.output and "honua-ai migrate plan" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("request_text", [
    "Remove the layer for table public.parcels",
    "Do not publish public.street_trees yet, it has private data",
    "What SRID is the geometry column of gis.fire_hydrants?",
    "Please publish the parks table as a layer, but not yet",
])
def test_chat_never_does_the_opposite_of_a_request(repo: Path, env: dict[str, str], pg_dsn: str,
                                                    request_text: str) -> None:
    """The issue's reproductions: each used to commit a branch or write a layer file."""
    seed(pg_dsn, "parcels")
    seed(pg_dsn, "street_trees")
    before = sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*.yaml"))
    result = run(repo, "ai", "chat", env=env, input=request_text + "\n")
    assert result.exit_code == 2, result.output
    assert "I did not act on this request" in result.output
    assert "Created proposal" not in result.output
    assert sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*.yaml")) == before


def test_chat_publishes_the_table_a_request_names(repo: Path, env: dict[str, str], pg_dsn: str) -> None:
    seed(pg_dsn, "parks")
    result = run(repo, "ai", "chat", "--yes", env=env, input="Please publish the parks table as a layer\n")
    assert result.exit_code == 0, result.output
    assert "Created proposal: layer transportation::parks" in result.output
    assert (repo / "environments/dev/layers/parks.yaml").exists()
    assert not (repo / "environments/dev/layers/as.yaml").exists()


# --------------------------------------------------------------------------- recovery, promote


def test_disaster_recovery_non_interactive(repo: Path, env: dict[str, str], pg_dsn: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    seed(pg_dsn)
    deployed = run(repo, "deploy", "migration", "002", "--environment", "dev", "--yes", env=env)
    assert deployed.exit_code == 0, deployed.output
    unavailable = run(repo, "ai", "disaster-recovery", "--environment", "dev", "--option", "2", "--yes",
                      "--what", "x", env=env)
    assert unavailable.exit_code == 1 and "option 2 is not available" in unavailable.output
    result = run(repo, "ai", "disaster-recovery", "--environment", "dev", "--option", "1", "--yes", env=env,
                 input="Database corruption detected in dev.\n")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "⚠️  Disaster Recovery Mode Activated" in out
    assert "What happened?\n> Database corruption detected in dev.\n" in out
    for line in ("Analyzing dev state...", "✓ Database health: HEALTHY", "- Service availability: not checked",
                 "✗ Git repository: NOT A GIT REPOSITORY", "✓ Backups available: 1", "Last successful deployment:",
                 "  1. Restore from latest automated backup (", "Initiating recovery from backup..."):
        assert line in out, out
    from honua_plan.context import Context

    monkeypatch.setenv("HONUA_PG_DSN", pg_dsn)  # the serial guard reads the database (never an embedded one under CI)
    event = Context(repo).recorded("dev").events[-1]
    assert event.kind == "recover" and event.details["reason"] == "Database corruption detected in dev."


def test_promote_wrapper(repo: Path, env: dict[str, str], pg_dsn: str) -> None:
    seed(pg_dsn)
    assert run(repo, "deploy", "migration", "002", "--environment", "dev", "--yes", env=env).exit_code == 0
    result = run(repo, "ai", "promote", "dev", "staging", "--migration", "002", "--allow-untested", "--yes", env=env)
    assert result.exit_code == 0, result.output
    assert "Comparing environments..." in result.output
    status = run(repo, "migrate", "status", "--env", "staging", "--format", "json", env=env).output
    assert {m["id"]: m["status"] for m in json.loads(status)["migrations"]}["002"] == "applied"


def test_a_proposal_is_planned_in_every_environment_and_says_where_it_cannot_go(
        repo: Path, env: dict[str, str], pg_dsn: str, pg_cluster) -> None:  # type: ignore[no-untyped-def]
    """Issue 18: the proposal planned dev only and did not say that production lacks the table."""
    from tests.conftest import TEMPLATE_DB

    seed(pg_dsn, "bike_paths")
    name = f"prod_{abs(hash(str(repo))) % 10**8}"
    pg_cluster.drop_database(name)
    prod = pg_cluster.create_database(name, template=TEMPLATE_DB)  # production's database: no such table
    try:
        result = run(repo, "ai", "propose", "layer", "--table", "public.bike_paths", "--service", "transportation",
                     env={**env, "HONUA_PG_DSN_PRODUCTION": prod})
        out = result.output
        assert result.exit_code == 0, out
        assert "Plan for dev:" in out and "Plan for staging:" in out
        assert "Plan for production: not planned:" in out and "bike_paths" in out.split("Plan for production:")[1]
        saved = sorted(p.name for p in (repo / "state" / "plans").glob("ai-*.json"))
        assert [s.split("-")[1] for s in saved] == ["dev", "staging"]
        assert "Plans saved for review: state/plans/ai-dev-" in out
        for path in (repo / "state" / "plans").glob("ai-*.json"):
            assert json.loads(path.read_text())["provenance"]["kind"] == "ai"
    finally:
        pg_cluster.drop_database(name)
