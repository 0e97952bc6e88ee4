"""Shared pytest fixtures: the throwaway PostgreSQL + PostGIS cluster.

``pg_cluster`` (session) starts one embedded cluster per test session, with a template
database ``honua_template`` that has PostGIS; ``pg_dsn`` (function) gives each test a
fresh database copied from that template and drops it afterwards; ``pg_root``
(function) is an empty directory for a test that runs a cluster of its own. Tests using
any of them are marked ``integration`` automatically.

Cluster roots are made with ``tempfile.mkdtemp`` in the system temp directory, not in
pytest's ``tmp_path``: run as root, the server runs as an unprivileged user that must be
able to reach its data directory, and every pytest session that starts (another one on
the same machine, say) resets ``/tmp/pytest-of-<user>`` to mode 0700, which would cut a
running server off from its files.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from honua_plan.providers.embedded.pgserver import EmbeddedCluster

TEMPLATE_DB = "honua_template"
_DB_FIXTURES = frozenset({"pg_cluster", "pg_dsn", "pg_root"})


@pytest.fixture(autouse=True)
def _not_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs as on a developer's machine whatever runs the suite (the pipeline
    sets ``CI``): a test that means CI sets ``CI`` itself. Under CI a plan refuses a
    pending migration's metadata edit that is not in the files, and the embedded database."""
    monkeypatch.delenv("CI", raising=False)


def _make_root(kind: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"honua-pytest-{kind}-"))


@pytest.fixture
def pg_root() -> Iterator[Path]:
    """An empty directory to root a test's own ``EmbeddedCluster``; removed afterwards."""
    root = _make_root("own")
    try:
        yield root
    finally:
        if any(root.glob("**/postmaster.pid")):  # a cluster the test left running
            from honua_plan.providers.embedded.pgserver import EmbeddedCluster

            for pidfile in root.glob("**/data/postmaster.pid"):
                EmbeddedCluster(pidfile.parent.parent).stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[EmbeddedCluster]:
    """A running embedded cluster (fast settings) with the ``honua_template`` database."""
    from honua_plan.providers.embedded.pgserver import EmbeddedCluster

    cluster = EmbeddedCluster(_make_root("session"), fast=True)
    try:
        cluster.start()
        # copied from the cluster's own database, which start() gave PostGIS already
        cluster.create_database(
            TEMPLATE_DB,
            template=cluster.dbname,
            exist_ok=True,
            extensions=("postgis",),
            is_template=True,
        )
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg_dsn(pg_cluster: EmbeddedCluster) -> Iterator[str]:
    """libpq conninfo of a fresh database ``t_<uuid8>`` with PostGIS, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:8]}"
    dsn = pg_cluster.create_database(name, template=TEMPLATE_DB)
    try:
        yield dsn
    finally:
        pg_cluster.drop_database(name)  # terminates leftover sessions first


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _DB_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
