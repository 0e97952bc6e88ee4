"""Small CLI defects a new user hits first (issue 13 item 4, issue 15's last lines).

A closed pipe (`honua … | head`) ends quietly with 141; `dev db stop` says it stopped the
cluster; `--version` names the engine, Python, PostgreSQL, PostGIS and pygeoapi it would
use; shell completion; `approve` of a plan that needs no approval says so.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, copy_example, run

BASE_ENV = {**{k: v for k, v in os.environ.items() if k != "CI"}, "PYTHONPATH": str(REPO)}  # as on a developer's machine


def _honua(*args: str, env: dict[str, str] | None = None, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "honua_plan", *args], text=True, capture_output=True,
                          env={**BASE_ENV, **(env or {})}, timeout=120, **kwargs)  # type: ignore[call-overload]


# --------------------------------------------------------------------------- broken pipe


def _into_closed_pipe(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run honua with stdout a pipe whose reader is gone (``honua … | true``, always)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "honua_plan", *args], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, env={**BASE_ENV, **env}, timeout=120)
    finally:
        os.close(write_end)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", proc.stderr)


QUIET_COMMANDS = [
    ["--help"],
    ["--version"],
    ["plan", "--help"],
    ["validate"],                       # the quick-exit path (os._exit)
    ["validate", "--format", "json"],
    ["schema", "export", "--out", "{tmp}/schemas"],  # runs to the end, then the exit flush
    ["completion", "bash"],
]


@pytest.mark.parametrize("args", QUIET_COMMANDS, ids=" ".join)
def test_closed_pipe_ends_quietly(tmp_path: Path, args: list[str]) -> None:
    repo = copy_example(tmp_path / "repo", server=False)
    proc = _into_closed_pipe(["-C", str(repo), *(a.replace("{tmp}", str(tmp_path)) for a in args)], {})
    assert proc.stderr == "", proc.stderr
    assert proc.returncode == 141


def test_plan_into_closed_pipe_and_head(tmp_path: Path, pg_dsn: str) -> None:
    repo = copy_example(tmp_path / "repo", server=False)
    env = {"HONUA_PG_DSN": pg_dsn}
    for fmt in ("text", "json"):
        proc = _into_closed_pipe(["-C", str(repo), "plan", "--env", "dev", "--format", fmt], env)
        assert proc.stderr == "" and proc.returncode == 141, (fmt, proc.returncode, proc.stderr)
    # the real thing: a shell pipeline into head -1
    cmd = f"{sys.executable} -m honua_plan -C {repo} plan --env dev | head -1; echo \"status ${{PIPESTATUS[0]}}\""
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env={**BASE_ENV, **env}, timeout=120)
    assert proc.stdout.startswith("Plan for dev"), proc.stdout
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert re.search(r"status (0|141)\n", proc.stdout), proc.stdout  # 0 when all was written before head left


# --------------------------------------------------------------------------- dev db stop


def test_db_stop_says_what_it_did(pg_root: Path) -> None:
    repo = copy_example(pg_root / "repo")
    started = run(repo, "dev", "db", "start")
    assert started.exit_code == 0, started.output
    pid = re.search(r"running \(pid (\d+)\)", started.output)
    assert pid, started.output
    stopped = run(repo, "dev", "db", "stop")
    assert stopped.exit_code == 0, stopped.output
    assert f"Stopped the embedded PostGIS (pid {pid.group(1)}" in stopped.output
    assert "not running" not in stopped.output
    assert run(repo, "dev", "db", "status").exit_code == 3
    again = run(repo, "dev", "db", "stop")
    assert again.exit_code == 0 and "Embedded PostGIS is not running" in again.output
    assert "Stopped" not in again.output
    as_json = run(repo, "dev", "db", "stop", "--format", "json")
    assert '"stopped": false' in as_json.output and '"running": false' in as_json.output


# --------------------------------------------------------------------------- --version


def test_version_names_what_is_installed() -> None:
    from importlib.metadata import version

    from honua_plan import __version__
    from honua_plan.providers.embedded.pgserver import find_bindir

    proc = _honua("--version")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"honua {__version__}"
    assert lines[1].startswith(f"Python {sys.version.split()[0]} (")
    bindir = find_bindir()
    initdb = subprocess.run([str(bindir / "initdb"), "--version"], capture_output=True, text=True).stdout
    pg_version = re.search(r"\(PostgreSQL\) (\S+)", initdb).group(1)  # type: ignore[union-attr]
    assert f"PostgreSQL {pg_version} ({bindir})" in lines
    control = next(Path("/usr/share/postgresql").glob(f"{pg_version.split('.')[0]}/extension/postgis.control"))
    default = re.search(r"default_version\s*=\s*'([^']+)'", control.read_text()).group(1)  # type: ignore[union-attr]
    assert f"PostGIS {default} ({control})" in lines
    assert f"pygeoapi {version('pygeoapi')}" in lines
    assert len(lines) == 5


def test_version_says_not_found(tmp_path: Path) -> None:
    proc = _honua("--version", env={"HONUA_PG_BINDIR": str(tmp_path), "PYTHONNOUSERSITE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "PostgreSQL: not found" in proc.stdout and "PostGIS: not found" in proc.stdout


def test_version_is_fast_and_imports_nothing_heavy() -> None:
    code = ("import sys\nfrom click.testing import CliRunner\nfrom honua_plan.cli import main\n"
            "r = CliRunner().invoke(main, ['--version'])\nassert r.exit_code == 0, r.output\n"
            "print('\\n'.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=BASE_ENV).stdout
    loaded = {m.split(".")[0] for m in out.split()}
    assert not loaded & {"pygeoapi", "pydantic", "psycopg", "sqlglot", "jinja2", "rich"}, loaded


# --------------------------------------------------------------------------- completion


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script(shell: str) -> None:
    proc = _honua("completion", shell)
    assert proc.returncode == 0, proc.stderr
    assert "_HONUA_COMPLETE" in proc.stdout and len(proc.stdout) > 200
    # the same as click's own env-var protocol prints
    assert proc.stdout == _honua(env={"_HONUA_COMPLETE": f"{shell}_source"}).stdout


def test_completion_offers_commands() -> None:
    proc = _honua(env={"_HONUA_COMPLETE": "bash_complete", "COMP_WORDS": "honua pl", "COMP_CWORD": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "plain,plan" in proc.stdout.splitlines()
    proc = _honua(env={"_HONUA_COMPLETE": "bash_complete", "COMP_WORDS": "honua completion ", "COMP_CWORD": "2"})
    assert {"plain,bash", "plain,zsh", "plain,fish"} <= set(proc.stdout.splitlines())


# --------------------------------------------------------------------------- approve


@pytest.mark.parametrize("required,expected", [
    (0, "Recorded the approval by ann@city.gov; this plan requires no approval (it can be applied without one)"),
    (2, "Approved by ann@city.gov (1 of 2 required)"),
])
def test_approve_reports_what_the_plan_needs(tmp_path: Path, required: int, expected: str) -> None:
    from honua_plan.plan.store import load_plan, save_plan
    from tests.unit.plan_fixtures import sample_plan

    repo = copy_example(tmp_path / "repo", server=False)  # approve reads the plan's policy
    path = tmp_path / "plan.json"
    save_plan(sample_plan().model_copy(update={"approvals_required": required}), path)
    result = run(repo, "approve", str(path), "--by", "ann@city.gov")
    assert result.exit_code == 0, result.output
    assert expected in result.output
    assert "of 0 required" not in result.output
    assert [a.by for a in load_plan(path).approvals] == ["ann@city.gov"]
