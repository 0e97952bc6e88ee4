"""CLI basics: fast start (heavy modules imported lazily), honua-ai, version, help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import copy_example, run

HEAVY = ("pydantic", "psycopg", "sqlglot", "networkx", "deepdiff", "ruamel", "jinja2", "litellm", "pygeoapi",
         "rich")


def test_help_imports_no_heavy_module() -> None:
    code = "import sys, honua_plan.cli; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = {m.split(".")[0] for m in out.split()}
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_help_and_version() -> None:
    proc = subprocess.run([sys.executable, "-m", "honua_plan", "--help"], capture_output=True, text=True, check=True)
    for command in ("validate", "plan", "apply", "drift", "show", "approve", "migrate", "deploy", "state", "dev"):
        assert command in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "honua_plan", "--version"], capture_output=True, text=True,
                          check=True)
    assert "honua" in proc.stdout


def test_honua_ai_is_the_ai_group(monkeypatch: object) -> None:
    from click.testing import CliRunner

    from honua_plan.cli import main

    result = CliRunner().invoke(main, ["ai", "--help"])
    assert result.exit_code == 0 and "AI assistant" in result.output


def test_environment_option_aliases(tmp_path: Path) -> None:
    repo = copy_example(tmp_path / "r")
    for flag in ("--env", "--environment", "-e"):
        result = run(repo, "validate", flag, "staging")
        assert result.exit_code == 0, result.output
        assert "(staging)" in result.output


def test_no_prompt_without_a_terminal(tmp_path: Path) -> None:
    from honua_plan.cli.base import confirm
    from honua_plan.errors import NotInteractiveError

    try:
        confirm("Continue?", yes=False)
    except NotInteractiveError as exc:
        assert "--auto-approve" in (exc.hint or "")
    else:  # pragma: no cover - pytest never gives the test a terminal on stdin
        raise AssertionError("confirm() prompted without a terminal")
