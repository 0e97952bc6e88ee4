"""An environment's DSN is resolved once per command, and resolving it starts nothing: the
embedded cluster starts only through :meth:`Workspace.database`, the one explicit call."""

from __future__ import annotations

from pathlib import Path

import pytest

from honua_plan.context import Context
from honua_plan.providers.embedded.pgserver import EmbeddedCluster
from honua_plan.providers.postgis import connections
from tests.helpers import copy_example


def test_a_plan_resolves_the_dsn_once(tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = copy_example(tmp_path / "repo", server=False)
    monkeypatch.setenv("HONUA_PG_DSN", pg_dsn)
    calls: list[str] = []
    real = connections.resolve_datasource

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(connections, "resolve_datasource", counted)
    plan = Context(repo).plan("dev")
    assert plan.actions  # a real plan: refresh, state, serial guard and the server all needed the DSN
    assert calls == ["dev"]


def test_resolving_an_embedded_dsn_starts_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = copy_example(tmp_path / "repo", server=False)
    for var in ("HONUA_PG_DSN", "HONUA_PG_DSN_DEV"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CI", "")  # the dev loop: under CI the embedded fallback is refused
    ctx = Context(repo)
    resolved = ctx.resolve_dsn("dev")
    assert resolved.embedded_db == "honua_dev"
    assert "embedded" in resolved.origin
    cluster = EmbeddedCluster(connections.embedded_root(repo))
    assert not cluster.status().running
    assert not (repo / "state" / ".pg" / "data").exists()  # not even initdb
