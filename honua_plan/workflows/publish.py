"""Publishing glue: compile the environment's layers and hand them to the server provider.

The executor only sees three callables (publish, restore a previous document, read
what is published), so it does not depend on which GIS server is behind them.

The server publishes what the state records: given the apply's state document, the
publish compiles the layers and services it records (as recorded), and keeps the ones it
forgot (``honua state rm``) as the server publishes them now. A ``--target`` apply records
only its targets, so it publishes only them beside what was published already: a layer the
configuration declares but no apply recorded is never served (Terraform's rule: a targeted
apply changes only the targets and what they depend on).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from honua_plan.config.desired import DesiredState
    from honua_plan.config.models import Layer, Server, Service
    from honua_plan.providers.server.base import ServerProvider
    from honua_plan.state.model import StateDocument
    from honua_plan.workspace import Workspace


Restore = Callable[[dict[str, Any] | None], None]
Read = Callable[[], dict[str, Any] | None]


class Publish(Protocol):
    def __call__(self, desired: DesiredState, recorded: StateDocument | None = None, /) -> None:
        """Compile, publish, reload, health-check; ``recorded``: publish what it records
        (None: everything ``desired`` declares, as a recovery does)."""


def recorded_view(desired: DesiredState, recorded: StateDocument) -> DesiredState:
    """``desired`` with the layers and services the state records, as it records them: a
    record equal to the configuration is its model, another one (an untargeted edit) is
    rebuilt from the record's attributes."""
    from honua_plan.config.models import Layer, Service
    from honua_plan.errors import StateError
    from honua_plan.plan.diff import attributes_fingerprint, desired_resources

    declared = desired_resources(desired)
    layers: dict[str, Layer] = {}
    services: dict[str, Service] = {}
    for address, rec in recorded.resources.items():
        if rec.kind not in ("layer", "service"):
            continue
        kind_attrs = declared.get(address)
        model: Layer | Service | None = None
        if kind_attrs is not None and attributes_fingerprint(kind_attrs[1]) == rec.fingerprint:
            model = desired.layers[address] if rec.kind == "layer" else desired.services[address.split(".", 1)[1]]
        else:
            cls = Layer if rec.kind == "layer" else Service
            try:
                model = cls.model_validate({"apiVersion": "honua.io/v1", "kind": cls.__name__, **rec.attributes})
            except ValueError as exc:
                raise StateError(f"the recorded {address} cannot be published as recorded: {exc}",
                                 hint=f"`honua state rm {address}` forgets it (the server keeps it as it is)"
                                 ) from None
        if isinstance(model, Layer):
            layers[address] = model
        else:
            services[address.split(".", 1)[1]] = model
    return dataclasses.replace(desired, layers=layers, services=services)


def published_document(desired: DesiredState, recorded: StateDocument | None, published: dict[str, Any] | None,
                       extents: dict[str, Any] | None = None, *, view: DesiredState | None = None) -> dict[str, Any]:
    """The document the server is to publish (see the module docstring); ``view``: the
    :func:`recorded_view` already made."""
    from honua_plan.providers.server.compile import compile_published

    if recorded is None:
        return compile_published(desired, extents)
    return compile_published(view or recorded_view(desired, recorded), extents, unmanaged=recorded.unmanaged,
                             published=published)


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

    def provider(d: DesiredState) -> ServerProvider:
        return open_server(server, root=context.root, environment=d.environment,
                           state_dir=d.state_dir / d.environment,
                           dsn_resolver=lambda: context.database(d.environment).dsn)

    def publish(d: DesiredState, recorded: StateDocument | None = None, /) -> None:
        p = provider(d)
        try:
            # extents of the new and changed collections only: an unchanged one keeps the box
            # it was published with (merge_published), so one changed layer scans one table
            published = p.read()
            current = ((published or {}).get("collections") or {})
            view = recorded_view(d, recorded) if recorded is not None else d
            draft = published_document(d, recorded, published, view=view)["collections"]
            moved = {cid for cid, entry in draft.items()
                     if cid not in current or not current[cid].get("bbox") or changed_keys(current[cid], entry)}
            facts, extents = _catalog_and_extents(context, view, moved, published)
            doc = published_document(d, recorded, published, extents, view=view)
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
