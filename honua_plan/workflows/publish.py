"""Publishing glue: compile the environment's layers and hand them to the server provider.

The executor only sees three callables (publish, restore a previous document, read
what is published), so it does not depend on which GIS server is behind them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from honua_plan.config.desired import DesiredState
    from honua_plan.config.models import Server
    from honua_plan.providers.server.base import ServerProvider
    from honua_plan.workspace import Workspace

Publish = Callable[["DesiredState"], None]
Restore = Callable[[dict[str, Any] | None], None]
Read = Callable[[], dict[str, Any] | None]


def _catalog_and_extents(
    context: Workspace, desired: DesiredState, only: set[str] | None = None,
    current: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, tuple[float, float, float, float] | None]]:
    """The catalog (one read: the OpenAPI document's fields come from it) and the extent
    of each collection in ``only`` (all when None), in a few batched statements.

    With ``current`` (what is served), a collection outside ``only`` whose served bbox no
    longer contains its live extent (rows written outside it since) gets its extent again:
    the exact one, widened to the live estimate drift compares with, so the next drift
    finds it contained."""
    from honua_plan.providers.postgis import catalog as postgis
    from honua_plan.providers.postgis.sqlexec import Session, connect
    from honua_plan.providers.server.base import live_served_extents, stale_extents

    resolved = context.database(desired.environment)
    # the apply's own geometry scan gave these, and no SQL ran since (see Workspace)
    scanned = context.scanned_extents.get(desired.environment, {}) \
        if desired.environment in context.fresh_extents else {}
    with connect(resolved.dsn) as conn:
        session = Session(conn)
        facts = postgis.refresh(session, exact_sizes=False)
        widen: dict[str, tuple[float, float, float, float]] = {}
        if current is not None and only is not None:
            now = live_served_extents(session, facts, current, skip=only)
            for entry in stale_extents(current, now):
                box = now[entry.collection]
                if box is not None:
                    widen[entry.collection] = box
            only = only | set(widen)
        wanted: dict[str, tuple[str, str]] = {}
        for layer in desired.layers.values():
            st = layer.spec.storage
            t = facts.table(st.qualified_table)
            if only is not None and layer.collection_id not in only:
                continue
            if t is not None and t.geometry(st.geometryColumn) is not None:
                wanted[layer.collection_id] = (st.qualified_table, st.geometryColumn)
        boxes = {pair: scanned[pair] for pair in wanted.values() if pair in scanned}
        boxes.update(postgis.table_extents_many(session, [p for p in wanted.values() if p not in boxes]))
    out = {cid: boxes.get(pair) for cid, pair in wanted.items()}
    for cid, box in widen.items():
        exact = out.get(cid)
        out[cid] = box if exact is None else (min(exact[0], box[0]), min(exact[1], box[1]),
                                              max(exact[2], box[2]), max(exact[3], box[3]))
    return facts, out


def publish_callbacks(context: Workspace, desired: DesiredState, server: Server) -> tuple[Publish, Restore, Read]:
    from honua_plan.providers.server import open_server
    from honua_plan.providers.server.base import changed_keys
    from honua_plan.providers.server.compile import compile_published

    def provider(d: DesiredState) -> ServerProvider:
        return open_server(server, root=context.root, environment=d.environment,
                           state_dir=d.state_dir / d.environment,
                           dsn_resolver=lambda: context.database(d.environment).dsn)

    def publish(d: DesiredState) -> None:
        p = provider(d)
        try:
            # extents of the new and changed collections only: an unchanged one keeps the box
            # it was published with (merge_published), so one changed layer scans one table
            served = p.read()
            current = ((served or {}).get("collections") or {})
            draft = compile_published(d)["collections"]
            moved = {cid for cid, entry in draft.items()
                     if cid not in current or not current[cid].get("bbox") or changed_keys(current[cid], entry)}
            facts, extents = _catalog_and_extents(context, d, moved, served)
            doc = compile_published(d, extents)
            for name in {c.get("datasource") or "" for c in doc["collections"].values()}:
                p.use_catalog(name, facts)
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
