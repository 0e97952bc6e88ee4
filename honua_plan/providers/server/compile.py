"""The published document: what an environment publishes to its GIS server (pure).

:func:`compile_published` turns a :class:`~honua_plan.config.loader.DesiredState` into
one JSON-able document, the same for every server adapter::

    {"format_version": 1, "environment": "dev", "project": "city-gis",
     "services": {"transportation": {title, description, keywords, datasource, enabled, ogc}},
     "collections": {"transportation::bike-lanes": {
         service, layer, title, description, keywords, datasource, schema,
         table (schema-qualified), id_field, geom_field, geometry_type, srid,
         crs [URIs, CRS84 first], fields [names], title_field,
         item_limit, bbox [xmin, ymin, xmax, ymax] in CRS84 or None}}}

The adapters write it to ``state/<env>/published.json`` after a successful publish
and :meth:`ServerProvider.read` gives it back, so refresh compares what is published
with what is declared. The bounding box is data, not configuration: it moves with
every insert, so :func:`published_fingerprint` and :func:`collection_fingerprints`
leave it out.

Unmanaged (``honua state rm``): a forgotten service or collection is neither compiled nor
dropped: its entry is kept as the server publishes it now (``unmanaged`` and ``published``).

Not published: the layers of a disabled service (``enabled: false`` or
``ogc.collectionsEnabled: false``) and a layer with ``ogc.collectionsEnabled: false``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from honua_plan.config.desired import DesiredState

FORMAT_VERSION = 1
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG_URI = "http://www.opengis.net/def/crs/EPSG/0/{code}"
VOLATILE_KEYS: tuple[str, ...] = ("bbox",)

Bbox = tuple[float, float, float, float] | Sequence[float]

__all__ = [
    "CRS84",
    "FORMAT_VERSION",
    "collection_fingerprints",
    "compile_published",
    "crs_uri",
    "empty_published",
    "published_fingerprint",
    "storage_crs_uri",
]


def crs_uri(crs: str) -> str:
    """``EPSG:3857`` → the OGC URI; ``CRS84``/``OGC:CRS84`` → CRS84; a URI stays as it is."""
    text = crs.strip()
    upper = text.upper()
    if upper in ("CRS84", "OGC:CRS84"):
        return CRS84
    if upper.startswith("EPSG:"):
        return EPSG_URI.format(code=int(text.split(":", 1)[1]))
    return text


def storage_crs_uri(srid: int) -> str:
    """The storage CRS to announce for a PostGIS SRID.

    PostGIS stores EPSG:4326 as (lon, lat); pygeoapi reads ``EPSG/0/4326`` in its
    authority axis order (lat, lon) and would swap coordinates and miss every bbox
    (``docs/reference/pygeoapi.md``, "axis order"), so 4326 is CRS84. SRID 0 (unknown)
    is treated the same way.
    """
    if srid in (0, 4326):
        return CRS84
    return EPSG_URI.format(code=srid)


def _crs_list(crs: Sequence[str], srid: int) -> list[str]:
    out = [CRS84]
    for c in [*crs, f"EPSG:{srid}" if srid else "CRS84"]:
        uri = crs_uri(c)
        if uri not in out:
            out.append(uri)
    return out


def _bbox(value: Bbox | None) -> list[float] | None:
    if value is None:
        return None
    box = [float(v) for v in value]
    if len(box) != 4:
        raise ValueError(f"a bbox has 4 numbers, got {len(box)}")
    return box


def empty_published(environment: str, project: str = "") -> dict[str, Any]:
    """A document that publishes nothing (used to unpublish everything)."""
    doc: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "environment": environment,
        "services": {},
        "collections": {},
    }
    if project:
        doc["project"] = project
    return doc


def compile_published(
    desired: DesiredState, extents: Mapping[str, Bbox | None] | None = None, *,
    unmanaged: Sequence[str] = (), published: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The published metadata of one environment; ``extents`` maps collection id → CRS84 bbox.

    ``unmanaged``: addresses the state forgot (``service.X``, ``layer.S::L``); their entries
    are copied from ``published`` (what the server publishes now) as they are, whatever
    ``desired`` says of them, and left out when the server does not publish them."""
    extents = extents or {}
    doc = empty_published(desired.environment, desired.project.metadata.name)
    services: dict[str, Any] = doc["services"]
    collections: dict[str, Any] = doc["collections"]
    now = published or {}
    kept_services = {a.removeprefix("service.") for a in unmanaged if a.startswith("service.")}
    kept_collections = {a.removeprefix("layer.") for a in unmanaged if a.startswith("layer.")}
    for name in sorted(kept_services):
        entry = (now.get("services") or {}).get(name)
        if entry is not None:
            services[name] = copy.deepcopy(entry)

    for name in sorted(desired.services):
        if name in kept_services:
            continue
        svc = desired.services[name]
        services[name] = {
            "title": svc.spec.title,
            "description": svc.spec.description or svc.metadata.description or svc.spec.title,
            "keywords": list(svc.spec.keywords),
            "datasource": svc.spec.datasource,
            "enabled": bool(svc.spec.enabled and svc.spec.ogc.collectionsEnabled),
            "ogc": {
                "collectionsEnabled": svc.spec.ogc.collectionsEnabled,
                "itemLimit": svc.spec.ogc.itemLimit,
                "defaultCrs": crs_uri(svc.spec.ogc.defaultCrs) if svc.spec.ogc.defaultCrs else None,
                "additionalCrs": [crs_uri(c) for c in svc.spec.ogc.additionalCrs],
            },
        }

    for cid in sorted(kept_collections):
        entry = (now.get("collections") or {}).get(cid)
        if entry is not None:
            collections[cid] = copy.deepcopy(entry)
    for layer in sorted(desired.layers.values(), key=lambda lyr: lyr.collection_id):
        if layer.collection_id in kept_collections:
            continue
        service_entry = services.get(layer.metadata.service)
        if service_entry is None or not service_entry["enabled"]:
            continue
        if not layer.spec.ogc.collectionsEnabled:
            continue
        spec = layer.spec
        st = spec.storage
        if "." in st.table:
            schema, table = st.table.split(".", 1)
        else:
            ds = desired.datasources.get(service_entry["datasource"])
            schema, table = st.schema_ or (ds.spec.schema_ if ds is not None else "public"), st.table
        svc_ogc = service_entry["ogc"]
        cid = layer.collection_id
        collections[cid] = {
            "service": layer.metadata.service,
            "layer": layer.metadata.name,
            "title": spec.title,
            "description": spec.description or layer.metadata.description or spec.title,
            "keywords": list(spec.keywords) or list(service_entry["keywords"]),
            "datasource": service_entry["datasource"],
            "schema": schema,
            "table": f"{schema}.{table}",
            "id_field": spec.idField,
            "geom_field": st.geometryColumn,
            "geometry_type": spec.geometryType,
            "srid": st.srid,
            "crs": _crs_list([*spec.crs, *svc_ogc["additionalCrs"]], st.srid),
            "fields": [f.name for f in spec.fields],
            "title_field": spec.displayField,
            "item_limit": spec.ogc.itemLimit or svc_ogc["itemLimit"],
            "bbox": _bbox(extents.get(cid)),
        }
    if kept_collections:
        doc["collections"] = dict(sorted(collections.items()))
    return doc


def _stable(doc: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(doc))
    for entry in (out.get("collections") or {}).values():
        for key in VOLATILE_KEYS:
            entry.pop(key, None)
    return out


def _hash(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def published_fingerprint(doc: Mapping[str, Any] | None) -> str:
    """sha256 of the canonical document without its volatile parts (bbox); ``"absent"`` for None."""
    if doc is None:
        return "absent"
    stable = _stable(doc)
    return _hash({k: stable.get(k) for k in ("format_version", "environment", "services", "collections")})


def collection_fingerprints(doc: Mapping[str, Any] | None) -> dict[str, str]:
    """``{collection id: sha256}`` without the bbox, for per-collection drift."""
    if not doc:
        return {}
    stable = _stable(doc)
    return {cid: _hash(entry) for cid, entry in sorted((stable.get("collections") or {}).items())}
