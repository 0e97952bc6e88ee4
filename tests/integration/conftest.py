"""Fixtures of the integration tests that serve layers over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import copy_example, edit, free_port, run


@pytest.fixture
def served(tmp_path: Path, pg_dsn: str) -> Iterator[tuple[Path, dict[str, str], str]]:
    repo = copy_example(tmp_path / "repo")
    port = free_port()
    edit(repo / "providers/gis-server.yaml", "{dev: 5555,", f"{{dev: {port},")
    # Example 1 comes before Example 2: the index migration is not part of this story
    (repo / "migrations/003_optimize_bike_lanes.yaml").unlink()
    env = {"HONUA_PG_DSN": pg_dsn}
    base = f"http://localhost:{port}/ogc"
    try:
        yield repo, env, base
    finally:
        run(repo, "serve", "--env", "dev", "--stop", env=env)
