"""Publishing glue: compile the environment's layers and hand them to the server provider.

The executor only sees three callables (publish, restore a previous document, read
what is published), so it does not depend on which GIS server is behind them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from honua_plan.config.loader import DesiredState
    from honua_plan.config.models import Server
    from honua_plan.context import Context

Publish = Callable[["DesiredState"], None]
Restore = Callable[[dict[str, Any] | None], None]
Read = Callable[[], dict[str, Any] | None]


def _extents(context: Context, desired: DesiredState) -> dict[str, tuple[float, float, float, float] | None]:
    from honua_plan.providers import postgis
    from honua_plan.providers.sqlexec import Session, connect

    out: dict[str, tuple[float, float, float, float] | None] = {}
    resolved = context.resolve_dsn(desired.environment)
    with connect(resolved.dsn) as conn:
        session = Session(conn)
        facts = postgis.refresh(session)
        for layer in desired.layers.values():
            st = layer.spec.storage
            t = facts.table(st.qualified_table)
            if t is not None and t.geometry(st.geometryColumn) is not None:
                out[layer.collection_id] = postgis.table_extent(session, st.qualified_table, st.geometryColumn)
    return out


def publish_callbacks(context: Context, desired: DesiredState, server: Server) -> tuple[Publish, Restore, Read]:
    from honua_plan.providers.server import open_server
    from honua_plan.providers.server.compile import compile_published

    def provider(d: DesiredState) -> Any:
        return open_server(server, root=context.root, environment=d.environment,
                           dsn_resolver=lambda: context.resolve_dsn(d.environment).dsn)

    def publish(d: DesiredState) -> None:
        doc = compile_published(d, _extents(context, d))
        p = provider(d)
        try:
            p.publish(doc, prune=True)
            p.reload()
            p.health(sorted(doc["collections"]), server.spec.healthTimeout)
        finally:
            p.close()

    def restore(previous: dict[str, Any] | None) -> None:
        p = provider(desired)
        try:
            doc = previous or {"format_version": 1, "environment": desired.environment,
                               "services": {}, "collections": {}}
            p.publish(doc, prune=True)
            p.reload()
            if doc.get("collections"):
                p.health(sorted(doc["collections"]), server.spec.healthTimeout)
        finally:
            p.close()

    def read() -> dict[str, Any] | None:
        p = provider(desired)
        try:
            return p.read()
        finally:
            p.close()

    return publish, restore, read
