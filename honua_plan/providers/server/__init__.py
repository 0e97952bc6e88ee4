"""GIS server providers: publish the compiled layers to pygeoapi, Honua or a reload command.

``open_server(server, root=…, environment=…, dsn_resolver=…)`` picks the adapter for
``server.spec.type``:

=========  =====================================================================
pygeoapi   the embedded default: config + OpenAPI under ``state/<env>/server/``,
           gunicorn in the background, reload by SIGHUP (:mod:`.pygeoapi`)
honua      a Honua server: Gen 2 manifest API (``mode: manifest``, default) or a
           Gen 1 metadata file + ``/admin/metadata/reload`` (``mode: legacy``)
command    any server: ``published.json`` is written, ``command.reload`` is run
none       nothing is published (:class:`~.base.NoopServer`)
=========  =====================================================================

``dsn_resolver`` gives a datasource's connection string: a callable taking the
datasource name, or taking nothing (one database per environment).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from honua_plan.errors import ServerError
from honua_plan.providers.server.base import (
    DsnResolver,
    NoopServer,
    PlanEntry,
    PublishResult,
    ServerProvider,
    diff_published,
)
from honua_plan.providers.server.compile import (
    compile_published,
    empty_published,
    published_fingerprint,
)
from honua_plan.providers.server.http import HealthResult

if TYPE_CHECKING:
    from honua_plan.config.models import Server

__all__ = [
    "HealthResult",
    "NoopServer",
    "PlanEntry",
    "PublishResult",
    "ServerProvider",
    "compile_published",
    "diff_published",
    "empty_published",
    "open_server",
    "published_fingerprint",
]


def open_server(
    server: Server | None,
    *,
    root: Path | str,
    environment: str,
    dsn_resolver: DsnResolver | None = None,
    state_dir: Path | str | None = None,
) -> ServerProvider:
    """The provider for ``server`` (type ``none`` or no server at all: a no-op provider).

    ``state_dir`` defaults to ``<root>/state/<environment>``.
    """
    kind = server.spec.type if server is not None else "none"
    common = {"root": Path(root), "environment": environment, "dsn_resolver": dsn_resolver,
              "state_dir": Path(state_dir) if state_dir is not None else None}
    if kind == "none":
        return NoopServer(server, root=Path(root), environment=environment, dsn_resolver=dsn_resolver,
                          state_dir=Path(state_dir) if state_dir is not None else None)
    if kind == "pygeoapi":
        from honua_plan.providers.server.pygeoapi import PygeoapiServer

        return PygeoapiServer(server, **common)
    if kind == "honua":
        from honua_plan.providers.server.honua import open_honua

        return open_honua(server, **common)
    if kind == "command":
        from honua_plan.providers.server.command import CommandServer

        return CommandServer(server, **common)
    raise ServerError(f"unknown server type {kind!r}")
