"""Metadata edits belong in the pull request (issue 26 item 14).

Migration 003's ``Update metadata`` step adds ``spec.storage.indexes`` to the layer file.
Made at deploy, that edit lives only on the machine that ran the apply: in CI the file is
never committed and every later plan from a fresh clone proposes a layer update. Here:

* ``honua migrate render`` writes the edit into the working tree (idempotently); committed,
  applied under CI, a fresh ``git clone`` sharing the postgres state plans nothing;
* ``honua ci plan`` with 003 pending and its edit not rendered fails naming the command;
* renaming the layer file after 003 was applied is not a validation error;
* the dev loop (no CI, no render) still edits the file and says to commit it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest

from tests.helpers import run
from tests.integration.test_remote_state import NewDb, example
from tests.integration.test_remote_state import new_db as new_db

pytestmark = pytest.mark.integration

LAYER = "environments/dev/layers/bike-lanes.yaml"
RENDERED = f"✓ {LAYER}: spec.storage.indexes set\n"


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
                         check=True, capture_output=True, text=True)
    return out.stdout


def init_repo(repo: Path) -> None:
    (repo / ".gitignore").write_text("/state/\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "example")


def test_rendered_and_committed_edit_leaves_a_fresh_clone_with_nothing_to_plan(
        tmp_path: Path, new_db: NewDb) -> None:
    data, state = new_db(), new_db()
    repo = example(tmp_path / "repo", data, postgres_state=True)
    init_repo(repo)
    env = {"HONUA_PG_DSN": data, "HONUA_STATE_DSN": state, "CI": ""}

    rendered = run(repo, "migrate", "render", "--env", "dev", env=env)
    assert rendered.exit_code == 0, rendered.output
    assert rendered.output == RENDERED  # the files it changed, nothing else
    layer = (repo / LAYER).read_text()
    assert "indexes:" in layer and "name: idx_bike_lanes_geom" in layer and "type: gist" in layer
    assert layer.startswith("# yaml-language-server")  # comments kept
    assert "staging" not in git(repo, "status", "--porcelain")  # --env dev: only dev's file
    again = run(repo, "migrate", "render", "--env", "dev", env=env)
    assert again.exit_code == 0 and again.output.startswith("Nothing to render"), again.output
    assert (repo / LAYER).read_text() == layer

    git(repo, "commit", "-q", "-am", "Render migration 003's metadata")
    ci = {**env, "CI": "true"}  # the deploy job: rendered, so allowed under CI
    applied = run(repo, "apply", "--env", "dev", "--auto-approve", env=ci)
    assert applied.exit_code == 0, applied.output
    assert f"✓ {LAYER} already holds the migration's metadata" in applied.output
    assert "commit environments" not in applied.output
    assert git(repo, "status", "--porcelain") == ""  # the apply wrote nothing
    with psycopg.connect(data) as conn:
        assert conn.execute("SELECT 1 FROM pg_indexes WHERE indexname = 'idx_bike_lanes_geom'").fetchone()

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    planned = run(clone, "plan", "--env", "dev", "--detailed-exitcode", env=ci)
    assert planned.exit_code == 0, planned.output


def test_ci_plan_fails_when_a_pending_migrations_edit_is_not_rendered(tmp_path: Path, new_db: NewDb) -> None:
    data = new_db()
    repo = example(tmp_path / "repo", data)
    for ci in ("true", ""):  # the plan refuses under CI; ci plan checks the files in any case
        out = tmp_path / f"ci-{ci or 'none'}"
        result = run(repo, "ci", "plan", "--out-dir", str(out), env={"HONUA_PG_DSN": data, "CI": ci})
        assert result.exit_code == 1, result.output
        assert "honua migrate render" in result.output and LAYER in result.output, result.output
        assert "honua migrate render" in (out / "plan.md").read_text()
        assert "Traceback" not in result.output

    rendered = run(repo, "migrate", "render", env={"HONUA_PG_DSN": data, "CI": ""})  # every environment
    assert rendered.output.splitlines() == [f"✓ environments/{e}/layers/bike-lanes.yaml: spec.storage.indexes set"
                                            for e in ("dev", "staging", "production")], rendered.output
    result = run(repo, "ci", "plan", "--out-dir", str(tmp_path / "ci"), env={"HONUA_PG_DSN": data, "CI": "true"})
    assert result.exit_code in (2, 3) and ": error" not in result.output, result.output  # changes (production: blocked)


def test_renaming_the_layer_file_after_003_was_applied_validates_and_plans_clean(
        tmp_path: Path, new_db: NewDb) -> None:
    data = new_db()
    repo = example(tmp_path / "repo", data)
    env = {"HONUA_PG_DSN": data, "CI": ""}
    applied = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)  # the dev loop edits the file
    assert applied.exit_code == 0, applied.output
    (repo / LAYER).rename(repo / "environments/dev/layers/bike-lanes-network.yaml")

    validated = run(repo, "validate", env=env)
    assert validated.exit_code == 0, validated.output
    planned = run(repo, "plan", "--env", "dev", "--detailed-exitcode", env=env)
    assert planned.exit_code == 0, planned.output
    # a pending migration's step is still judged: staging's file gone, its plan names it
    (repo / "environments/staging/layers/bike-lanes.yaml").rename(
        repo / "environments/staging/layers/bike-lanes-network.yaml")
    staged = run(repo, "plan", "--env", "staging", env=env)
    assert staged.exit_code == 1
    assert ("metadata step of migration 003 edits 'environments/staging/layers/bike-lanes.yaml', which does not "
            "exist for environment staging") in staged.output, staged.output


def test_the_dev_loop_without_render_edits_the_file_and_says_to_commit_it(tmp_path: Path, new_db: NewDb) -> None:
    data = new_db()
    repo = example(tmp_path / "repo", data)
    env = {"HONUA_PG_DSN": data, "CI": ""}
    before = (repo / LAYER).read_text()
    applied = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
    assert applied.exit_code == 0, applied.output
    assert f"commit {LAYER}: this apply wrote the migration's metadata into it" in applied.output
    assert "already holds" not in applied.output
    assert "name: idx_bike_lanes_geom" in (repo / LAYER).read_text() != before
    assert run(repo, "plan", "--env", "dev", "--detailed-exitcode", env=env).exit_code == 0
