"""The gate keeps nothing whose plan failed in any environment, and plans as ``honua plan``
does (issue 25): pending migrations simulated on a schema-only copy where a scratch
database is at hand. A real ``honua-ai chat`` process, litellm's real client, the fake
model endpoint of :mod:`tests.integration.test_ai_model`, a real PostGIS.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import copy_example
from tests.integration.test_ai_model import DROP, FakeModel, _seed_table, chat, git, tree


@pytest.fixture(scope="module")
def model() -> Iterator[FakeModel]:
    fake = FakeModel()
    yield fake
    fake.server.shutdown()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = copy_example(tmp_path / "repo", server=False)
    (root / ".gitignore").write_text("state/\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "config")
    return root


def _branches(repo: Path) -> list[str]:
    return git(repo, "branch", "--format=%(refname:short)").split()


def test_a_change_that_cannot_be_planned_in_production_is_not_kept(repo: Path, model: FakeModel, pg_dsn: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _seed_table(pg_dsn, "bike_lanes")
    unreachable = re.sub(r"dbname=\S+", "dbname=no_such_database_here", pg_dsn)
    assert unreachable != pg_dsn
    monkeypatch.setenv("HONUA_PG_DSN_PRODUCTION", unreachable)
    model.mode, model.bodies = "ok", []
    model.calls = [("edit_resource", {"path": "environments/dev/layers/bike-lanes.yaml",
                                      "patch": {"spec": {"title": "Bike Lanes (all)"}}})]
    before = tree(repo)
    proc, _ = chat(repo, model, "Retitle the dev bike lanes layer", pg_dsn, args=("--yes",))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "Plan for dev:" in out and "Plan for production: not planned:" in out
    assert "Not proposed: the change could not be planned in production (" in out
    assert "Created proposal" not in out and "Continue?" not in out
    assert tree(repo) == before and _branches(repo) == ["main"]


def test_the_gate_simulates_pending_migrations_as_honua_plan_does(repo: Path, model: FakeModel, pg_dsn: str,
                                                                   pg_cluster: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _seed_table(pg_dsn, "bike_lanes")
    monkeypatch.setenv("HONUA_SCRATCH_DSN", pg_cluster.dsn_for("postgres"))
    broken = json.loads(json.dumps(DROP))
    broken["name"] = "drop_a_column"
    broken["migration"]["metadata"]["description"] = "Drop a column that is not there"
    broken["migration"]["spec"]["up"][0]["content"] = "ALTER TABLE bike_lanes DROP COLUMN no_such_column;\n"
    model.mode, model.bodies = "ok", []
    model.calls = [("propose_migration", broken)]
    before = tree(repo)
    proc, _ = chat(repo, model, "drop the column no_such_column from bike lanes", pg_dsn, args=("--yes",))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    # honua plan's own simulation error: the step fails on a schema-only copy
    assert "fails on a schema-only copy of the database" in out and "no_such_column" in out, out
    assert "Not proposed: the change could not be planned in dev (" in out
    assert "Created proposal" not in out
    assert tree(repo) == before and _branches(repo) == ["main"]
