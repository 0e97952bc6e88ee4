from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.helpers import copy_example, edit, run


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = copy_example(tmp_path / "repo")
    edit(r / "providers/gis-server.yaml", "  type: pygeoapi", "  type: none")
    return r


def test_explore(repo: Path, pg_dsn: str) -> None:
    env = {"HONUA_PG_DSN": pg_dsn}
    from honua_plan.sample import seed_bike_lanes
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        seed_bike_lanes(conn, 42)
    r = run(repo, "plan", "--env", "dev", env=env)
    print(r.output)
    r = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
    print(r.exit_code, r.output)
    r = run(repo, "plan", "--env", "dev", "--detailed-exitcode", env=env)
    print(r.exit_code, r.output)
    r = run(repo, "state", "list", "--env", "dev", env=env)
    print(r.exit_code, r.output)
    r = run(repo, "migrate", "status", "--env", "dev", env=env)
    print(r.exit_code, r.output)
    print(sorted(p.relative_to(repo) for p in (repo / "state").rglob("*")))
    assert 0
