"""A change is judged by the policy it did not write (issue 25, reproduction 8).

The example repository in a git repository of its own: the committed production policy
needs an approval from gis-ops; the working tree (a pull request, or the assistant) turns
it into ``autoApprove: true`` without an approval. Plans must keep asking for the base
policy's approval, show the policy change as a CRITICAL change (POL101), and record which
policy judged them.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers import copy_example, run

pytestmark = pytest.mark.integration

WEAKENED = """apiVersion: honua.io/v1
kind: Policy
metadata:
  name: production-policy
  environment: production
spec:
  autoApprove: true
"""


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(repo), "-c", "user.name=Test", "-c", "user.email=test@city.gov",
                          *args], capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = copy_example(tmp_path / "repo", server=False)
    (r / ".gitignore").write_text("state/\n")
    git(r, "init", "-q", "-b", "main")
    git(r, "add", "-A")
    git(r, "commit", "-q", "-m", "the city's configuration")
    return r


@pytest.fixture
def env(pg_dsn: str) -> dict[str, str]:
    return {"HONUA_PG_DSN": pg_dsn, "CI": "", "GITHUB_BASE_REF": "", "HONUA_POLICY_BASE": ""}


def weaken(repo: Path) -> None:
    (repo / "policies/production-policy.yaml").write_text(WEAKENED)


def plan_json(repo: Path, env: dict[str, str], *args: str) -> dict:
    result = run(repo, "plan", "--env", "production", "--format", "json", *args, env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def record_deployment(repo: Path, environment: str, commit: str) -> None:
    """The state of an environment whose last deployment was of ``commit``."""
    from honua_plan.workspace import Workspace

    ws = Workspace(repo)
    with ws.backend(environment) as backend, backend.lock("test") as writer:
        doc = writer.read()
        writer.write(doc.with_config_commit(commit), expected_serial=doc.serial)


def test_the_working_tree_policy_does_not_judge_its_own_change(repo: Path, env: dict[str, str]) -> None:
    weaken(repo)
    record_deployment(repo, "production", git(repo, "rev-parse", "HEAD"))
    text = run(repo, "plan", "--env", "production", env=env)
    assert text.exit_code == 0, text.output
    assert "Approval Required: YES" in text.output, text.output
    assert "Policy: from the last deployment (commit" in text.output
    assert "policy.production" in text.output and "POL101" in text.output

    plan = plan_json(repo, env)
    assert plan["approvals_required"] == 1 and plan["approvers"] == ["gis-ops"]
    change = next(a for a in plan["actions"] if a["address"] == "policy.production")
    assert change["kind"] == "policy" and change["action"] == "update" and change["risk"] == "CRITICAL"
    assert change["changed_paths"] == ["policies/production-policy.yaml"]
    assert next(f["code"] for f in change["findings"]) == "POL101"
    assert plan["risk"] == "CRITICAL"
    base = plan["policy_base"]
    assert base["revision"] == git(repo, "rev-parse", "HEAD") and base["digest"].startswith("sha256:")
    # the base policy's window and cooldown still apply (the weakened one has none)
    names = {c["name"] for c in plan["policy"]}
    assert {"deployment-window", "cooldown"} <= names


def test_an_unchanged_policy_is_no_change(repo: Path, env: dict[str, str]) -> None:
    record_deployment(repo, "production", git(repo, "rev-parse", "HEAD"))
    plan = plan_json(repo, env)
    assert "policy.production" not in [a["address"] for a in plan["actions"]]
    assert plan["policy_base"]["changed"] == []


def test_policy_base_option_and_env(repo: Path, env: dict[str, str]) -> None:
    """No deployment recorded, but an operator names the base: it judges."""
    weaken(repo)
    plan = plan_json(repo, env, "--policy-base", "HEAD")
    assert plan["approvals_required"] == 1
    assert plan["policy_base"]["source"].startswith("--policy-base HEAD")
    by_env = plan_json(repo, {**env, "HONUA_POLICY_BASE": "main"})
    assert by_env["approvals_required"] == 1
    unknown = run(repo, "plan", "--env", "production", "--policy-base", "no-such-rev", env=env)
    assert unknown.exit_code == 1 and "no-such-rev" in unknown.output and "Traceback" not in unknown.output


def test_first_deployment_uses_the_working_tree_and_says_so(repo: Path, env: dict[str, str]) -> None:
    weaken(repo)
    text = run(repo, "plan", "--env", "production", env=env)
    assert text.exit_code == 0, text.output
    assert "Policy: from the working tree (no deployment recorded)" in text.output
    assert "Approval Required: NO" in text.output
    plan = plan_json(repo, env)
    assert plan["policy_base"]["revision"] is None and plan["policy_base"]["changed"] == []
    assert "policy.production" not in [a["address"] for a in plan["actions"]]


def test_ci_plan_of_a_pull_request_is_judged_by_main(repo: Path, env: dict[str, str], tmp_path: Path) -> None:
    git(repo, "checkout", "-q", "-b", "lower-approvals")
    weaken(repo)
    assert run(repo, "migrate", "render", env=env).exit_code == 0  # the pull request carries 003's edits
    git(repo, "commit", "-q", "-am", "production: no approvals")
    ci_env = {**env, "CI": "true", "GITHUB_BASE_REF": "main"}
    out = tmp_path / "ci"
    planned = run(repo, "ci", "plan", "--out-dir", str(out), "--format", "json", env=ci_env)
    assert planned.exit_code in (2, 3), planned.output
    prod = json.loads((out / "plan-production.json").read_text())
    assert prod["approvals_required"] == 1 and prod["approvers"] == ["gis-ops"]
    assert prod["policy_base"]["revision"] == git(repo, "rev-parse", "main")
    assert prod["policy_base"]["source"].startswith("main (merge base")
    assert any(a["address"] == "policy.production" and a["risk"] == "CRITICAL" for a in prod["actions"])
    # a base the runner cannot see is an error, not a silent fall back to the branch's policy
    missing = run(repo, "ci", "plan", "--out-dir", str(out), env={**ci_env, "GITHUB_BASE_REF": "release"})
    assert missing.exit_code == 1 and "merge base" in missing.output, missing.output


def test_a_saved_plan_is_not_applied_under_another_policy(repo: Path, env: dict[str, str], tmp_path: Path) -> None:
    weaken(repo)
    saved = tmp_path / "plan.json"
    made = run(repo, "plan", "--env", "production", "--out", str(saved), "--policy-base", "HEAD", env=env)
    assert made.exit_code == 0, made.output
    assert json.loads(saved.read_text())["policy_base"]["revision"]
    # applied without the base: the working tree (no deployment recorded) would judge it
    applied = run(repo, "apply", "--env", "production", str(saved), env=env)
    assert applied.exit_code == 1
    assert "judged by the policy from --policy-base HEAD" in applied.output, applied.output


def test_an_unreadable_last_deployment_is_an_error_but_drift_still_runs(repo: Path, env: dict[str, str]) -> None:
    record_deployment(repo, "production", "0123456789abcdef0123456789abcdef01234567")  # a shallow clone's view
    planned = run(repo, "plan", "--env", "production", env=env)
    assert planned.exit_code == 1 and "which this repository does not have" in planned.output, planned.output
    assert "fetch-depth: 0" in planned.output and "Traceback" not in planned.output
    drift = run(repo, "drift", "--env", "production", env=env)  # no policy judges a refresh-only plan
    assert drift.exit_code == 0, drift.output


def test_a_revision_that_looks_like_an_option_is_no_revision(tmp_path: Path) -> None:
    """A base named by an option, a variable or the state is a revision, never a git option."""
    from honua_plan.config.policybase import _commit

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert _commit(tmp_path, "--output=/tmp/x") is None
    assert _commit(tmp_path, "") is None
