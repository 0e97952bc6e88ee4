"""Schedules that run (issue 20): ``honua schedule run`` with a clock the test controls.

A due entry inside its window runs once; before its window it waits; after its window
it is marked missed; two runners at once execute it once (the state lock).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from honua_plan.context import Context
from honua_plan.workflows.sample import seed_bike_lanes
from honua_plan.workflows.schedule import list_entries, run_due, schedule_apply
from tests.helpers import copy_example, run

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 8, 10, 30, tzinfo=UTC)  # a Tuesday


@pytest.fixture
def repo(tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = copy_example(tmp_path / "repo", server=False)
    path = repo / "migrations/003_optimize_bike_lanes.yaml"  # its performance check needs a large table
    text = path.read_text()
    path.write_text(text[:text.index("      - type: performance")] + text[text.index("\n    post-down:") + 1:])
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        seed_bike_lanes(conn, 42)
    monkeypatch.setenv("HONUA_PG_DSN", pg_dsn)
    monkeypatch.setenv("CI", "")
    return repo


def migrations_applied(ctx: Context) -> list[str]:
    return [m.id for m in ctx.recorded("dev").migrations if m.status == "applied"]


def test_a_due_entry_runs_once_inside_its_window(repo: Path) -> None:
    ctx = Context(repo)
    entry = schedule_apply(ctx, "dev", "2026-12-08 10:00-12:00", now=NOW - timedelta(days=2))
    assert entry.id.startswith("SCH-") and entry.status == "scheduled"

    early = run_due(Context(repo), now=NOW - timedelta(hours=1))
    assert [(o.entry.id, o.outcome) for o in early] == [(entry.id, "waiting")]
    assert migrations_applied(Context(repo)) == []

    done = run_due(Context(repo), now=NOW)
    assert [(o.entry.id, o.outcome) for o in done] == [(entry.id, "applied")], done
    assert migrations_applied(Context(repo)) == ["001", "002", "003"]
    assert run_due(Context(repo), now=NOW + timedelta(minutes=15)) == []  # not again
    assert [e.status for e in list_entries(Context(repo), "dev")] == ["applied"]
    assert run(repo, "plan", "--env", "dev", "--detailed-exitcode").exit_code == 0


def test_a_window_that_ended_is_missed_not_run(repo: Path) -> None:
    entry = schedule_apply(Context(repo), "dev", "2026-12-08 10:00-12:00", now=NOW - timedelta(days=2))
    late = run_due(Context(repo), now=NOW + timedelta(hours=3))
    assert [(o.entry.id, o.outcome) for o in late] == [(entry.id, "missed")]
    assert migrations_applied(Context(repo)) == []
    listed = run(repo, "schedule", "list", "--env", "dev")
    assert f"{entry.id}" in listed.output and "missed" in listed.output


def test_two_runners_at_once_execute_it_once(repo: Path) -> None:
    entry = schedule_apply(Context(repo), "dev", "2026-12-08 10:00-12:00", now=NOW - timedelta(days=2))
    results: list[list[str]] = []
    barrier = threading.Barrier(2)

    def runner() -> None:
        barrier.wait()
        results.append([o.outcome for o in run_due(Context(repo), now=NOW)])

    threads = [threading.Thread(target=runner) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(o for r in results for o in r) in (["applied", "claimed-elsewhere"], ["applied"]), results
    doc = Context(repo).recorded("dev")
    runs = [e for e in doc.events if e.kind == "schedule-run" and e.details.get("schedule") == entry.id]
    assert [e.details["outcome"] for e in runs] == ["started", "applied"]
    assert sum(1 for e in doc.events if e.kind == "apply") == 1


def test_cancel_and_the_cli(repo: Path) -> None:
    made = run(repo, "schedule", "apply", "--env", "dev", "--window", "2026-12-08 10:00-12:00")
    assert made.exit_code == 0, made.output
    sid = made.output.split("Scheduled ", 1)[1].split(":")[0]
    assert run(repo, "schedule", "cancel", sid, "--env", "dev").exit_code == 0
    assert run(repo, "schedule", "run").output.strip() == "Nothing scheduled."
    assert [e.status for e in list_entries(Context(repo), "dev")] == ["cancelled"]
    again = run(repo, "schedule", "cancel", sid, "--env", "dev")
    assert again.exit_code == 1 and "only a waiting one can be cancelled" in again.output
