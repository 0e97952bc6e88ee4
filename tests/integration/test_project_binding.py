"""A state's project key is bound to its repository (issue 25, reproduction 9).

Project B set ``spec.state.project`` to A's key and, with the shared state database, read
A's state and removed a layer from it (``state rm``). The key is now bound to the first
repository that took the lock under it (its root commit); another repository is refused on
read and on lock, until ``honua state rebind --yes`` hands the key over, with an event.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from honua_plan.workflows.sample import seed_bike_lanes
from tests.conftest import TEMPLATE_DB
from tests.helpers import copy_example, drop_performance_check, edit, run

if TYPE_CHECKING:
    from honua_plan.providers.embedded.pgserver import EmbeddedCluster

pytestmark = pytest.mark.integration

LAYER = "layer.transportation::bike-lanes"


@pytest.fixture
def new_db(pg_cluster: EmbeddedCluster) -> Iterator[Callable[[], str]]:
    made: list[str] = []

    def make() -> str:
        name = f"t_{uuid.uuid4().hex[:8]}"
        made.append(name)
        return pg_cluster.create_database(name, template=TEMPLATE_DB)

    yield make
    for name in made:
        pg_cluster.drop_database(name)


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@example.org", "-c", "user.name=t", *args],
                          capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def project(dest: Path, dsn: str, name: str, *, key: str | None = None, init: bool = True) -> Path:
    """The example (no server) with its state in HONUA_STATE_DSN, in a git repository of its own."""
    repo = copy_example(dest, server=False)
    drop_performance_check(repo)
    edit(repo / "honua.yaml", "  name: city-gis", f"  name: {name}")
    edit(repo / "honua.yaml", "    backend: local\n",
         "    backend: postgres\n    dsnEnv: HONUA_STATE_DSN\n" + (f"    project: {key}\n" if key else ""))
    with psycopg.connect(dsn, autocommit=True) as conn:
        seed_bike_lanes(conn, 42)
    if init:
        (repo / ".gitignore").write_text("state/\n")
        git(repo, "init", "-q")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", f"{name}: first commit")
    return repo


def rows(state_dsn: str, key: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(state_dsn, autocommit=True) as conn:
        return conn.execute("SELECT environment, serial, document FROM honua_plan.state WHERE project = %s",
                            (key,)).fetchall()


def test_another_repository_claiming_the_key_is_refused_until_rebound(
        tmp_path: Path, pg_dsn: str, new_db: Callable[[], str]) -> None:
    a_db, b_db = new_db(), new_db()
    a = project(tmp_path / "a", a_db, "city-gis")
    b = project(tmp_path / "b", b_db, "parks", key="city-gis")  # B names A's key
    env_a = {"HONUA_STATE_DSN": pg_dsn, "HONUA_PG_DSN": a_db}
    env_b = {"HONUA_STATE_DSN": pg_dsn, "HONUA_PG_DSN": b_db}
    applied = run(a, "apply", "--env", "dev", "--auto-approve", env=env_a)
    assert applied.exit_code == 0, applied.output
    before = rows(pg_dsn, "city-gis")
    assert before and LAYER in before[0][2]["resources"]
    a_root = git(a, "rev-list", "--max-parents=0", "HEAD")

    for args in (("state", "rm", LAYER, "--env", "dev"),
                 ("plan", "--env", "dev"),
                 ("apply", "--env", "dev", "--auto-approve"),
                 ("state", "list", "--env", "dev")):
        result = run(b, *args, env=env_b)
        assert result.exit_code == 1, (args, result.output)
        assert "Traceback" not in result.output
        assert "the state key 'city-gis'" in result.output and "belongs to another repository" in result.output
        assert f"root commit {a_root[:12]}" in result.output
        assert "honua state rebind --env dev --yes" in result.output, result.output
    assert rows(pg_dsn, "city-gis") == before  # A's state unchanged
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        bound = conn.execute("SELECT identity FROM honua_plan.project_binding WHERE project = 'city-gis'").fetchone()
    assert bound is not None and bound[0]["roots"] == a_root
    ok = run(a, "plan", "--env", "dev", "--detailed-exitcode", env=env_a)  # A itself is let through
    assert ok.exit_code == 0, ok.output

    refused = run(b, "state", "rebind", "--env", "dev", env=env_b)
    assert refused.exit_code == 1 and "--yes" in refused.output
    rebound = run(b, "state", "rebind", "--env", "dev", "--yes", env=env_b)
    assert rebound.exit_code == 0, rebound.output
    b_root = git(b, "rev-list", "--max-parents=0", "HEAD")
    assert f"State key 'city-gis' bound to this repository: root commit {b_root[:12]}" in rebound.output
    assert f"(was root commit {a_root[:12]}" in rebound.output
    history = run(b, "state", "history", "--env", "dev", "--format", "json", env=env_b)
    assert history.exit_code == 0, history.output
    last = json.loads(history.output)[0]
    assert last["kind"] == "state-rebind" and last["details"]["identity"]["roots"] == b_root

    now_a = run(a, "plan", "--env", "dev", env=env_a)  # the key is B's now
    assert now_a.exit_code == 1 and "belongs to another repository" in now_a.output
    assert run(b, "state", "list", "--env", "dev", env=env_b).exit_code == 0


def test_a_checkout_without_git_history_binds_nothing(tmp_path: Path, pg_dsn: str,
                                                      new_db: Callable[[], str]) -> None:
    db = new_db()
    repo = project(tmp_path / "plain", db, "city-gis", init=False)
    env = {"HONUA_STATE_DSN": pg_dsn, "HONUA_PG_DSN": db}
    assert run(repo, "apply", "--env", "dev", "--auto-approve", env=env).exit_code == 0
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('honua_plan.project_binding')").fetchone()[0]
        bound = conn.execute("SELECT count(*) FROM honua_plan.project_binding").fetchone()[0] if exists else 0
    assert bound == 0
    refused = run(repo, "state", "rebind", "--env", "dev", "--yes", env=env)
    assert refused.exit_code == 1 and "no git history" in refused.output


def test_the_local_backend_records_the_repository(tmp_path: Path) -> None:
    from honua_plan.state import StateDocument, open_backend
    from honua_plan.state.keys import repository_identity

    a = copy_example(tmp_path / "a", server=False)
    git(a, "init", "-q")
    git(a, "add", "-A")
    git(a, "commit", "-qm", "a")
    backend = open_backend("local", environment="dev", root=a, state_dir=a / "state", project="city-gis")
    with backend.lock("test") as w:
        w.write(StateDocument.new("dev"), expected_serial=0)
    recorded = json.loads((a / "state" / ".binding.json").read_text())
    identity = repository_identity(a.resolve())
    assert identity is not None and recorded["identity"] == identity.to_json()
    assert recorded["identity"]["roots"] == git(a, "rev-list", "--max-parents=0", "HEAD")


def test_remote_urls_lose_their_credentials() -> None:
    from honua_plan.state.keys import clean_remote

    assert clean_remote("https://x-access-token:ghs_SECRET@github.com/City/gis.git") == "github.com/City/gis"
    assert clean_remote("git@github.com:City/gis.git") == "github.com/City/gis"
    assert clean_remote("ssh://git@GitHub.com:22/City/gis") == "github.com/City/gis"


def test_the_serial_guard_row_is_bound_too(tmp_path: Path, pg_dsn: str) -> None:
    """Local state, one target database: B naming A's key is refused by the serial guard
    (bound in the target database) and does not move A's row."""
    a = project(tmp_path / "a", pg_dsn, "city-gis")
    b = project(tmp_path / "b", pg_dsn, "parks", key="city-gis")
    for repo in (a, b):  # the local backend; the example's honua.yaml had backend: postgres set above
        edit(repo / "honua.yaml", "    backend: postgres\n    dsnEnv: HONUA_STATE_DSN\n", "    backend: local\n")
    env = {"HONUA_PG_DSN": pg_dsn}
    applied = run(a, "apply", "--env", "dev", "--auto-approve", env=env)
    assert applied.exit_code == 0, applied.output
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        guard = conn.execute("SELECT lineage, serial FROM honua_plan.state_serial WHERE project = 'city-gis'").fetchall()
        bound = conn.execute("SELECT identity FROM honua_plan.project_binding WHERE project = 'city-gis'").fetchone()
    assert bound is not None and bound[0]["roots"] == git(a, "rev-list", "--max-parents=0", "HEAD")
    result = run(b, "plan", "--env", "dev", env=env)
    assert result.exit_code == 1, result.output
    assert "the state key 'city-gis' (the serial guard in its database) belongs to another repository" \
        in result.output, result.output
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        after = conn.execute("SELECT lineage, serial FROM honua_plan.state_serial WHERE project = 'city-gis'").fetchall()
    assert after == guard
