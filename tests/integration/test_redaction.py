"""Redaction against a real PostGIS (issue 14, items 4 and 5).

A password equal to a schema or environment name (``public``, ``dev``) once turned the
state's addresses into ``table.***.bike_lanes`` (apply failed, a journal was left
pending) and every heading into "Plan for ***". Redaction now happens at the output
boundary only, and short values are hidden only in password slots. A malformed DSN is
refused naming its variable, never echoing the password libpq would quote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.helpers import REPO, copy_example, run

M003 = "migrations/003_optimize_bike_lanes.yaml"


def url_dsn(pg_dsn: str, password: str) -> str:
    """``pg_dsn`` (a socket conninfo) as a URL with ``password`` in its user-info."""
    p = conninfo_to_dict(pg_dsn)
    return (f"postgresql://{p['user']}:{quote(password, safe='')}@/{p['dbname']}"
            f"?host={quote(str(p['host']), safe='')}&port={p['port']}")


@pytest.mark.parametrize(("password", "form"), [("public", "url"), ("dev", "conninfo"),
                                                ("Xk7-qZ9w-long", "conninfo")])
def test_a_password_equal_to_a_name_breaks_nothing_and_stays_out_of_state_and_plan(
        password: str, form: str, pg_dsn: str, tmp_path: Path) -> None:
    from honua_plan.state.model import StateDocument
    from honua_plan.workflows.sample import seed_bike_lanes

    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # the example's table, as in Example 1
        seed_bike_lanes(conn, 42)
        conn.execute(f"CREATE ROLE honua_{password.replace('-', '_').lower()} LOGIN PASSWORD '{password}'")
    dsn = url_dsn(pg_dsn, password) if form == "url" else f"{pg_dsn} password={password}"
    repo = copy_example(tmp_path / "repo", server=False)
    (repo / M003).unlink()  # its performance check rolls back on 42 rows: not what is tested here
    env = {"HONUA_PG_DSN": dsn}
    plan_file = tmp_path / "plan.json"
    outputs: dict[str, str] = {}

    def go(code: int, *args: str) -> str:
        result = run(repo, *args, env=env)
        outputs[" ".join(args)] = result.output
        assert result.exit_code == code, result.output
        return result.output

    go(0, "plan", "--env", "dev", "--out", str(plan_file))
    shown = go(0, "show", str(plan_file))
    applied = go(0, "apply", "--env", "dev", "--auto-approve")
    go(0, "plan", "--env", "dev", "--detailed-exitcode")
    go(0, "drift", "--env", "dev")
    listed = go(0, "state", "list", "--env", "dev")
    state_shown = go(0, "state", "show", "--env", "dev", "table.public.bike_lanes")

    assert "Applying changes to dev environment" in applied
    assert "Apply complete:" in applied
    assert "dev" in shown and "bike_lanes" in shown
    assert "table.public.bike_lanes" in listed.split()
    assert json.loads(state_shown)["address"] == "table.public.bike_lanes"
    for command, output in outputs.items():
        assert "***" not in output, f"`honua {command}` mangled its output:\n{output}"
        assert "internal error" not in output and "Traceback" not in output, output

    # the state is whole (no pending journal, addresses intact) and holds no password
    state_text = (repo / "state" / "dev.json").read_text()
    doc = StateDocument.model_validate_json(state_text)
    assert doc.pending is None
    assert "table.public.bike_lanes" in doc.resources
    assert doc.environment == "dev"
    plan_text = plan_file.read_text()
    for name, text in (("state", state_text), ("saved plan", plan_text)):
        assert "***" not in text, f"the {name} was redacted"
        for leak in (f":{quote(password, safe='')}@", f"password={password}", dsn):
            assert leak not in text, f"the {name} holds the password"
        if len(password) >= 8:
            assert password not in text, f"the {name} holds the password"


PW = "Qx7 Zk9W"
MALFORMED = {
    "spaces in the password": f"postgresql://honua:{PW}@127.0.0.1:5432/gis",
    "missing @": "postgresql://honua:Qx7Zk9Wv127.0.0.1:5432/gis",
    "@ in the password": "postgresql://honua:Pa@ss-S3cr3t@127.0.0.1:5432/gis",
    "bad port": "postgresql://honua:Qx7Zk9Wv@127.0.0.1:54x2/gis",
    "garbage": "Qx7Zk9Wv garbage ===",
    "conninfo with spaces": f"host=127.0.0.1 password={PW} dbname=gis",
}


def _fragments(password: str) -> set[str]:
    return {password[i:j].strip() for i in range(len(password)) for j in range(i + 4, len(password) + 1)
            if len(password[i:j].strip()) >= 4}


FRAGMENTS = _fragments(PW) | _fragments("Qx7Zk9Wv") | _fragments("Pa@ss-S3cr3t")


def _plan(root: Path, dsn: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HONUA_PG_DSN")}
    return subprocess.run([sys.executable, "-m", "honua_plan", "-C", str(root), "plan", "--env", "dev"],
                          env={**env, "HONUA_PG_DSN": dsn}, cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_example(tmp_path_factory.mktemp("malformed") / "repo", server=False)


@pytest.mark.parametrize("dsn", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_dsn_names_its_variable_and_never_echoes_the_password(example: Path, dsn: str) -> None:
    proc = _plan(example, dsn)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "Traceback" not in output and "internal error" not in output, output
    assert "HONUA_PG_DSN" in output, output
    assert "***" not in output, output  # nothing was there to hide: the value is never quoted
    assert not {f for f in FRAGMENTS if f in output}, output


def test_an_unreachable_database_never_echoes_the_password(example: Path) -> None:
    proc = _plan(example, "postgresql://honua:Pa%40ss-S3cr3t@/gis?host=/nonexistent-honua-dir&port=1")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "Traceback" not in output and "could not connect" in output, output
    assert not {f for f in _fragments("Pa@ss-S3cr3t") | _fragments("Pa%40ss-S3cr3t") if f in output}, output
