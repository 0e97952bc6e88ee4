"""The catalog read that starts before the repository is loaded (``connections.early_dsn``).

What it read is used only when the DSN resolved after loading is the same one; any other
case must plan exactly as if there had been no early read.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from honua_plan import connections
from honua_plan.context import Context
from honua_plan.providers.sqlexec import StatementLog
from tests.helpers import copy_example, edit


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "repo", server=False)


def test_early_dsn_follows_the_datasource(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HONUA_PG_DSN", raising=False)
    monkeypatch.setenv("HONUA_PG_DSN_STAGING", "dbname=staging_db")
    monkeypatch.setenv("HONUA_PG_DSN_DEV", "dbname=dev_db")
    assert connections.early_dsn(repo, "staging") == "dbname=staging_db"
    assert connections.early_dsn(repo, "dev") == "dbname=dev_db"
    assert connections.early_dsn(repo, "qa") is None  # not an environment of honua.yaml
    # the same answer as the loaded models give
    assert Context(repo).resolve_dsn("staging", start_embedded=False).dsn == "dbname=staging_db"


@pytest.mark.parametrize("damage", [
    ("providers/postgis-primary.yaml", "kind: Datasource", "kind: [Datasource"),  # not YAML
    ("providers/postgis-primary.yaml", "kind: Datasource", "kind: Datasourze"),   # no datasource
    ("honua.yaml", "kind: Project", "kind: Project\n---\nkind: Project"),         # two projects
])
def test_early_dsn_gives_up_on_anything_unexpected(repo: Path, monkeypatch: pytest.MonkeyPatch,
                                                   damage: tuple[str, str, str]) -> None:
    monkeypatch.setenv("HONUA_PG_DSN_DEV", "dbname=dev_db")
    path, old, new = damage
    edit(repo / path, old, new)
    assert connections.early_dsn(repo, "dev") is None


def test_plan_uses_the_early_read(repo: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HONUA_PG_DSN_DEV", pg_dsn)
    asked: list[str] = []
    real = connections.early_dsn
    monkeypatch.setattr(connections, "early_dsn", lambda root, env: asked.append(env) or real(root, env))
    log = StatementLog()
    plan = Context(repo).plan("dev", log=log)
    assert asked == ["dev"]
    assert plan.has_changes
    texts = [e.text.split()[0] for e in log]
    assert texts.count("BEGIN") == 1  # one catalog read, the early one, merged into the log


def test_an_early_read_of_another_database_is_not_used(repo: Path, pg_dsn: str, pg_cluster: object,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """early_dsn guessing wrong costs time, never correctness."""
    from honua_plan.pgserver import EmbeddedCluster
    from honua_plan.providers.sqlexec import connect, execute

    assert isinstance(pg_cluster, EmbeddedCluster)
    other = pg_cluster.create_database("t_prefetch_other", template="honua_template", exist_ok=True)
    try:
        with connect(other) as conn:
            execute(conn, "CREATE TABLE decoy (id int PRIMARY KEY)", fetch=False)
        monkeypatch.setenv("HONUA_PG_DSN_DEV", pg_dsn)
        monkeypatch.setattr(connections, "early_dsn", lambda root, env: other)
        seen: list[object] = []
        real_refresh = Context.refresh

        def spy(self: Context, *args: object, **kw: object) -> object:
            seen.append(kw["opened"][1])  # type: ignore[index]
            return real_refresh(self, *args, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(Context, "refresh", spy)
        log = StatementLog()
        Context(repo).plan("dev", log=log)
        [facts] = seen
        assert facts.table("decoy") is None  # type: ignore[attr-defined]
        assert [e.text.split()[0] for e in log].count("BEGIN") == 1  # the decoy read was dropped
    finally:
        pg_cluster.drop_database("t_prefetch_other")


def test_a_failed_early_read_is_not_an_error(repo: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HONUA_PG_DSN_DEV", pg_dsn)
    monkeypatch.setattr(connections, "early_dsn", lambda root, env: "host=/nonexistent dbname=x")
    assert Context(repo).plan("dev").has_changes
