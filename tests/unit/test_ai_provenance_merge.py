"""An AI proposal merged into the default branch is still planned with provenance ``ai``
(issue 25): the plan CI makes on main after the merge used to be "human" (the branch's
commits were no longer between the merge base and HEAD)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from honua_plan.config.provenance import ai_model, trailer


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=T", "-c", "user.email=t@example.org", "-C", str(root), *args],
                          capture_output=True, text=True, check=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "environments/dev/layers").mkdir(parents=True)
    (root / "honua.yaml").write_text("x: 1\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "config")
    git(root, "checkout", "-q", "-b", "feature/add-parks-layer")
    (root / "environments/dev/layers/parks.yaml").write_text("kind: Layer\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", f"Add layer parks\n\nProposed by the AI.\n\n{trailer('openai/fake')}\n")
    return root


def test_on_the_branch(repo: Path) -> None:
    assert ai_model(repo) == "openai/fake"


@pytest.mark.parametrize("how", ["--no-ff", "--ff-only"])
def test_after_a_merge(repo: Path, how: str) -> None:
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", how, "-m", "Merge branch 'feature/add-parks-layer'", "feature/add-parks-layer")
    assert ai_model(repo) == "openai/fake"


def test_after_a_squash_merge(repo: Path) -> None:
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--squash", "feature/add-parks-layer")
    body = git(repo, "log", "-1", "--format=%B", "feature/add-parks-layer")
    git(repo, "commit", "-q", "-m", f"Add layer parks (#42)\n\n* {body}\n\nCo-authored-by: someone\n")
    assert ai_model(repo) == "openai/fake"


def test_a_human_change_on_main_is_human(repo: Path) -> None:
    git(repo, "checkout", "-q", "main")
    (repo / "environments/dev/layers").mkdir(parents=True, exist_ok=True)
    (repo / "environments/dev/layers/roads.yaml").write_text("kind: Layer\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Add roads by hand")
    assert ai_model(repo) is None


def test_a_merge_of_a_human_branch_is_human(repo: Path) -> None:
    git(repo, "checkout", "-q", "main")
    git(repo, "checkout", "-q", "-b", "feature/roads")
    (repo / "environments/dev/layers").mkdir(parents=True, exist_ok=True)
    (repo / "environments/dev/layers/roads.yaml").write_text("kind: Layer\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Add roads by hand")
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge roads", "feature/roads")
    assert ai_model(repo) is None
