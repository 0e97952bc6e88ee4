"""The console script ends read-only commands with os._exit: output and exit codes must survive."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import copy_example


def _honua(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "honua_plan", "-C", str(repo), *args], capture_output=True,
                          text=True, env={**os.environ, "NO_COLOR": "1", **(env or {})}, timeout=120, check=False)


def test_validate_and_errors_keep_their_output_and_codes(tmp_path: Path) -> None:
    repo = copy_example(tmp_path / "repo", server=False)
    ok = _honua(repo, "validate")
    assert ok.returncode == 0 and "Validated" in ok.stdout
    bad = _honua(repo, "plan", "--env", "qa")
    assert bad.returncode == 1 and "unknown environment 'qa'" in bad.stderr


def test_plan_with_changes_exits_2_with_its_whole_output(tmp_path: Path, pg_dsn: str) -> None:
    repo = copy_example(tmp_path / "repo", server=False)
    done = _honua(repo, "plan", "--env", "dev", "--detailed-exitcode", env={"HONUA_PG_DSN_DEV": pg_dsn})
    assert done.returncode == 2, done.stderr
    assert done.stdout.startswith("Plan for dev") and done.stdout.rstrip().splitlines()[-1].strip()
    as_json = _honua(repo, "plan", "--env", "dev", "--format", "json", env={"HONUA_PG_DSN_DEV": pg_dsn})
    assert as_json.returncode == 0 and as_json.stdout.rstrip().endswith("}")
