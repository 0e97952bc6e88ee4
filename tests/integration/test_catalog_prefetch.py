"""The catalog read that starts before the repository is loaded (``connections.early_dsn``).

What it read is used only when the DSN resolved after loading is the same one; any other
case must plan exactly as if there had been no early read.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from honua_plan.context import Context
from honua_plan.providers.postgis import catalog as postgis
from honua_plan.providers.postgis import connections
from honua_plan.providers.postgis.prefetch import Prefetch
from honua_plan.providers.postgis.sqlexec import StatementLog
from honua_plan.state.local import LocalReader
from tests.helpers import copy_example, edit


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "repo", server=False)


def test_early_dsn_follows_the_datasource(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HONUA_PG_DSN", raising=False)
    monkeypatch.setenv("HONUA_PG_DSN_STAGING", "dbname=staging_db")
    monkeypatch.setenv("HONUA_PG_DSN_DEV", "dbname=dev_db")
    ro = connections.read_only_dsn  # a plan's connections start read-only transactions
    assert connections.early_dsn(repo, "staging") == ro("dbname=staging_db")
    assert connections.early_dsn(repo, "dev") == ro("dbname=dev_db")
    assert connections.early_dsn(repo, "qa") is None  # not an environment of honua.yaml
    # the same answer as the loaded models give
    assert Context(repo).resolve_dsn("staging").dsn == "dbname=staging_db"
    assert Context(repo).resolve_dsn("staging", read_only=True).dsn == ro("dbname=staging_db")


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


@pytest.mark.parametrize("fork", [True, False], ids=["process", "thread"])
def test_plan_uses_the_early_reads(repo: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch, fork: bool) -> None:
    monkeypatch.setenv("HONUA_PG_DSN_DEV", pg_dsn)
    ctx = Context(repo)
    with ctx.backend("dev") as b, b.lock("test") as w:  # a state file for the reader to parse
        w.write(w.read().record_event("plan", "earlier"), expected_serial=0)
    real_init = Prefetch.__init__
    monkeypatch.setattr(Prefetch, "__init__", lambda self, root, env, **kw: real_init(self, root, env, fork=fork, **kw))
    monkeypatch.setattr(postgis, "refresh", lambda *a, **k: pytest.fail("the catalog was read again"))
    monkeypatch.setattr(LocalReader, "read", lambda self: pytest.fail("the state was parsed again"))
    log = StatementLog()
    plan = Context(repo).plan("dev", log=log)
    assert plan.has_changes and plan.state_serial == 1
    texts = [e.text.split()[0] for e in log]
    assert texts.count("BEGIN") == 1  # one catalog read, the early one, merged into the log


def test_the_readers_fingerprints_are_the_facts_own(repo: Path, pg_dsn: str) -> None:
    """The forked reader hashes each table's shape; the facts must get the same hash."""
    from honua_plan.providers.postgis.facts import (
        SHAPE_FINGERPRINTS,
        facts_from_rows,
        with_fingerprints,
    )
    from honua_plan.providers.postgis.sqlexec import Session, connect

    with connect(pg_dsn) as conn:
        conn.execute("CREATE TABLE prefetch_shape (id int PRIMARY KEY, geom geometry(Point, 4326), "
                     "name text NOT NULL)")
        conn.execute("CREATE INDEX prefetch_shape_geom ON prefetch_shape USING gist (geom)")
        conn.commit()
        try:
            rows = postgis.catalog_rows(Session(conn))
        finally:
            conn.execute("DROP TABLE prefetch_shape")
            conn.commit()
    fresh = facts_from_rows(rows)
    seeded = facts_from_rows(with_fingerprints(dict(rows)))
    assert fresh.tables and len(seeded.tables) == len(fresh.tables)
    for a, b in zip(fresh.tables, seeded.tables, strict=True):
        assert "shape_fingerprint" in b.__dict__  # given, not computed again
        assert b.shape_fingerprint == a.shape_fingerprint
    # a list that does not match the relations is ignored, not trusted
    damaged = facts_from_rows({**rows, SHAPE_FINGERPRINTS: ["sha256:x"] * (len(fresh.tables) + 1)})
    assert all("shape_fingerprint" not in t.__dict__ for t in damaged.tables)


def test_a_state_written_meanwhile_is_read_again(repo: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HONUA_PG_DSN_DEV", pg_dsn)
    ctx = Context(repo)
    with ctx.backend("dev") as b, b.lock("test") as w:
        w.write(w.read().record_event("plan", "earlier"), expected_serial=0)
    real_take = Prefetch.take_state

    def take_then_write(self: Prefetch, path: Path) -> object:
        found = real_take(self, path)
        with ctx.backend("dev") as b, b.lock("test") as w:  # an apply elsewhere, just now
            w.write(w.read().record_event("apply", "meanwhile"), expected_serial=1)
        return found

    monkeypatch.setattr(Prefetch, "take_state", take_then_write)
    assert Context(repo).plan("dev").state_serial == 2


def test_an_early_read_of_another_database_is_not_used(repo: Path, pg_dsn: str, pg_cluster: object,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """early_dsn guessing wrong costs time, never correctness."""
    from honua_plan.providers.embedded.pgserver import EmbeddedCluster
    from honua_plan.providers.postgis.sqlexec import connect, execute

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
            live = real_refresh(self, *args, **kw)  # type: ignore[arg-type]
            seen.append(live.facts)
            return live

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
