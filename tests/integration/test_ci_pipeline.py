"""``honua ci plan|deploy|drift`` on a fresh copy of the example repository (issue 20).

Each environment has its own database (the throwaway PostGIS) and its own pygeoapi (the
default server; its layer tests run against it), as in a city's setup.
The production policy's deployment window and cooldown are taken out so the test does
not depend on the day of the week; its approval rule stays.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from honua_plan.workflows.ci import COMMENT_LIMIT, marker, report_markdown
from honua_plan.workflows.sample import seed_bike_lanes
from tests.helpers import copy_example, drop_performance_check, run
from tests.integration.test_remote_state import NewDb
from tests.integration.test_remote_state import new_db as new_db

pytestmark = pytest.mark.integration

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "ci_plan.md"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def repo_and_env(tmp_path: Path, new_db: NewDb) -> tuple[Path, dict[str, str]]:
    repo = copy_example(tmp_path / "repo")
    server = repo / "providers/gis-server.yaml"
    ports = {name: free_port() for name in ("dev", "staging", "production")}
    text, n = re.subn(r"environmentPorts: \{[^}]*\}", "environmentPorts: {" + ", ".join(
        f"{k}: {v}" for k, v in ports.items()) + "}", server.read_text())
    assert n == 1
    server.write_text(text.replace("workers: 2", "workers: 1"))
    drop_performance_check(repo)
    policy = repo / "policies/production-policy.yaml"
    text, n = re.subn(r"  deploymentWindows:\n(?:    .*\n)+  cooldown:\n(?:    .*\n)+", "", policy.read_text())
    assert n == 1
    policy.write_text(text)
    env = {"CI": "true", "GITHUB_OUTPUT": str(tmp_path / "github_output")}
    for name in ("dev", "staging", "production"):
        dsn = new_db()
        with psycopg.connect(dsn, autocommit=True) as conn:
            seed_bike_lanes(conn, 42)
        env[f"HONUA_PG_DSN_{name.upper()}"] = dsn
    return repo, env


def normalised(markdown: str) -> str:
    """The report without what changes from run to run (ids, times, digests, database)."""
    out = re.sub(r"[0-9a-f]{32}", "<id>", markdown)
    out = re.sub(r"sha256:[0-9a-f]+…?", "sha256:<digest>", out)
    out = re.sub(r"digest `[^`]+`", "digest `<digest>`", out)
    out = re.sub(r"created \S+", "created <time>", out)
    out = re.sub(r"database `[^`]+`", "database `<db>`", out)
    out = re.sub(r"honua-plan \d+\.\d+\.\d+\S*", "honua-plan <version>", out)
    out = re.sub(r"\(by \S+\)|by (human|ci) \([^)]*\)", "by <actor>", out)
    return re.sub(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(\+00:00|Z)?", "<time>", out)


@pytest.fixture
def served(tmp_path: Path, new_db: NewDb) -> Iterator[tuple[Path, dict[str, str]]]:
    pytest.importorskip("pygeoapi", reason="pygeoapi is not installed: pip install 'honua-plan[server]'")
    repo, env = repo_and_env(tmp_path, new_db)
    try:
        yield repo, env
    finally:
        for name in ("dev", "staging", "production"):
            run(repo, "serve", "--env", name, "--stop", env=env)


def test_ci_plan_deploy_and_drift(tmp_path: Path, served: tuple[Path, dict[str, str]]) -> None:
    repo, env = served
    out = tmp_path / "ci"

    # pull request: migration 003's metadata edit rendered into the layer files (ci plan
    # refuses a pending migration's edit that is not), every environment planned, a report
    # for the comment, exit 2 (changes)
    rendered = run(repo, "migrate", "render", env=env)
    assert rendered.exit_code == 0 and rendered.output.count(": spec.storage.indexes set") == 3, rendered.output
    planned = run(repo, "ci", "plan", "--out-dir", str(out), env=env)
    assert planned.exit_code == 2, planned.output
    assert sorted(p.name for p in out.glob("plan-*.json")) == ["plan-dev.json", "plan-production.json",
                                                               "plan-staging.json"]
    report = (out / "plan.md").read_text()
    assert report.startswith("<!-- honua-plan -->\n# honua plan")
    for name in ("dev", "staging", "production"):
        assert marker(name) in report
    assert "```mermaid" in report and "<details>" in report
    if not GOLDEN.exists():  # first run writes it; review the file, then commit it
        GOLDEN.write_text(normalised(report))
    assert normalised(report) == GOLDEN.read_text()
    as_json = run(repo, "ci", "plan", "--out-dir", str(out), "--format", "json", env=env)
    assert as_json.exit_code == 2
    data = json.loads(as_json.output)
    assert [e["environment"] for e in data["environments"]] == ["dev", "staging", "production"]
    assert {e["status"] for e in data["environments"]} == {"changes"}

    # merge to main: dev and staging applied, production waits for its approval
    deployed = run(repo, "ci", "deploy", "--out-dir", str(out), env=env)
    assert deployed.exit_code == 0, deployed.output
    assert "dev: applied" in deployed.output and "staging: applied" in deployed.output
    assert "production: awaiting-approval" in deployed.output
    saved = out / "plan-production.json"
    assert saved.is_file()
    outputs = Path(env["GITHUB_OUTPUT"]).read_text()
    assert f"plan={saved.resolve()}" in outputs and "environment=production" in outputs
    for name in ("dev", "staging"):
        assert run(repo, "plan", "--env", name, "--detailed-exitcode", env=env).exit_code == 0
    # the approval job: approve the saved plan and apply it
    approved = run(repo, "approve", str(saved), "--by", "john@city.gov", env=env)
    assert approved.exit_code == 0, approved.output
    applied = run(repo, "apply", "--env", "production", str(saved), env=env)
    assert applied.exit_code == 0, applied.output
    again = run(repo, "ci", "deploy", "--out-dir", str(out), env=env)
    assert again.exit_code == 0 and again.output.count(": no-changes") == 3, again.output

    # scheduled drift: clean, then a column changed out of band in staging
    clean = run(repo, "ci", "drift", "--out-dir", str(out), env=env)
    assert clean.exit_code == 0, clean.output
    with psycopg.connect(env["HONUA_PG_DSN_STAGING"], autocommit=True) as conn:
        conn.execute("ALTER TABLE bike_lanes ADD COLUMN out_of_band int")
    drifted = run(repo, "ci", "drift", "--out-dir", str(out), env=env)
    assert drifted.exit_code == 2, drifted.output
    assert "staging: drift" in drifted.output and "dev: clean" in drifted.output
    assert "out\\_of\\_band" in (out / "drift.md").read_text()  # Markdown-escaped data


def test_usage_errors_exit_1_not_2(tmp_path: Path) -> None:
    """A pipeline reads 2 as "changes present": a mistyped option must not look like that."""
    repo = copy_example(tmp_path / "repo", server=False)
    for args in (["plan", "--bogus"], ["ci", "plan", "--nope"], ["nosuchcommand"], ["plan"]):
        result = run(repo, *args)
        assert result.exit_code == 1, (args, result.exit_code, result.output)


def test_the_report_fits_a_comment() -> None:
    big = [(f"env{i}", f"## env{i}\n\n<details>\n\n```sql\n" + "SELECT 1;\n" * 4000 + "```\n</details>\n")
           for i in range(3)]
    text = report_markdown("honua plan", big)
    assert len(text) <= COMMENT_LIMIT
    assert "**Truncated:**" in text and marker("env0") in text
    assert text.count("```") % 2 == 0
