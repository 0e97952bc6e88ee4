"""Every summary that shows a plan's risk shows the findings ``honua plan`` shows.

Migration 003 on staging's 42 rows: ``honua plan`` finds PG101 (HIGH: the index build
locks the table) and VAL001 (its index-scan validation is predicted to fail, and the
apply to roll back). The assistant's ``migrate plan``, ``honua promote`` and the pull
request comment show both; promote with ``--yes`` stops before the apply, with the
finding and the way to go ahead anyway.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from honua_plan.providers.embedded.pgserver import EmbeddedCluster
from honua_plan.workflows.sample import seed_bike_lanes
from tests.helpers import copy_example, run

MIGRATIONS = ("migration.001", "migration.002", "migration.003")


@pytest.fixture
def setup(tmp_path: Path, pg_cluster: EmbeddedCluster) -> Iterator[tuple[Path, dict[str, str]]]:
    """dev with enough rows for 003's index scan check (applied there), staging with 42."""
    names = {e: f"t_{e}_{uuid.uuid4().hex[:6]}" for e in ("dev", "staging", "production")}
    dsns = {e: pg_cluster.create_database(n, template="honua_template") for e, n in names.items()}
    for e, dsn in dsns.items():
        with psycopg.connect(dsn, autocommit=True) as conn:
            seed_bike_lanes(conn, 5000 if e == "dev" else 42)
    repo = copy_example(tmp_path / "repo", server=False)
    env = {f"HONUA_PG_DSN_{e.upper()}": dsn for e, dsn in dsns.items()} | {"HONUA_AI_MODEL": "", "CI": ""}
    try:
        applied = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
        assert applied.exit_code == 0, applied.output
        yield repo, env
    finally:
        for n in names.values():
            pg_cluster.drop_database(n)


def codes(plan: dict) -> list[str]:
    return sorted({f["code"] for a in plan["actions"] for f in a["findings"]})


def plan_codes(repo: Path, env: dict[str, str], *target: str) -> list[str]:
    args = [a for t in target for a in ("--target", t)]
    result = run(repo, "plan", "--env", "staging", *args, "--format", "json", env=env)
    return codes(json.loads(result.output))


def shown_codes(text: str) -> list[str]:
    """The codes a summary's finding lines show (``⚠ CODE message``)."""
    return sorted(set(re.findall(r"[⚠✗] ([A-Z]+[0-9]{3}) ", text)))


def test_summaries_show_the_plans_findings_and_promote_stops_before_a_predicted_rollback(
        setup: tuple[Path, dict[str, str]]) -> None:
    repo, env = setup
    expected = plan_codes(repo, env, *MIGRATIONS)
    assert "VAL001" in expected and "PG101" in expected, expected

    # the assistant's migration plan: staging's block shows every finding of staging's plan
    planned = run(repo, "ai", "migrate", "plan", env=env)
    assert planned.exit_code == 0, planned.output
    staging = planned.output.split("Environment: staging\n", 1)[1].split("Environment: production\n", 1)[0]
    assert "Risk Level: HIGH (PG101)" in staging, planned.output
    assert "  Findings:\n" in staging and shown_codes(staging) == expected, staging
    assert "VAL001 performance validation on public.bike_lanes expects an index scan, but with ~42 rows" in staging

    # promote with --yes: the same findings, and it stops before the apply it predicts to roll back
    staging_files = sorted((p.name, p.read_bytes()) for p in (repo / "environments/staging").rglob("*.yaml"))
    promoted = run(repo, "promote", "dev", "staging", "--migration", "003", "--allow-untested", "--yes", env=env)
    assert promoted.exit_code == 1, promoted.output
    assert "Risk Level: HIGH" in promoted.output and shown_codes(promoted.output) == expected, promoted.output
    assert "stopped before apply: VAL001 performance validation on public.bike_lanes" in promoted.output
    assert "--allow-predicted-failure to apply anyway" in promoted.output, promoted.output
    assert "Starting promotion" not in promoted.output
    status = json.loads(run(repo, "migrate", "status", "--env", "staging", "--format", "json", env=env).output)
    assert {m["id"]: m["status"] for m in status["migrations"]}["003"] == "pending"
    assert sorted((p.name, p.read_bytes()) for p in (repo / "environments/staging").rglob("*.yaml")) == staging_files

    # the pull request comment renders the plan itself: the same findings as `honua plan`
    out = repo / "ci-out"
    assert run(repo, "migrate", "render", env=env).exit_code == 0  # as a pull request carries 003's edits
    commented = run(repo, "ci", "plan", "--out-dir", str(out), env=env)
    assert commented.exit_code in (2, 3), commented.output  # changes (production: blocked by its window)
    report = (out / "plan.md").read_text()
    section = report.split("staging", 1)[1].split("production", 1)[0]
    comment_codes = sorted(set(re.findall(r"\*\*([A-Z]+[0-9]{3})\*\*", section)))
    assert comment_codes == plan_codes(repo, env), (comment_codes, section)


def test_promote_with_allow_predicted_failure_goes_ahead(setup: tuple[Path, dict[str, str]]) -> None:
    repo, env = setup
    promoted = run(repo, "promote", "dev", "staging", "--migration", "003", "--allow-untested", "--yes",
                   "--allow-predicted-failure", env=env)
    assert "Starting promotion" in promoted.output, promoted.output
    assert promoted.exit_code != 0, promoted.output  # as predicted: the validation fails, 003 rolls back
    status = json.loads(run(repo, "migrate", "status", "--env", "staging", "--format", "json", env=env).output)
    assert {m["id"]: m["status"] for m in status["migrations"]}["003"] != "applied"
