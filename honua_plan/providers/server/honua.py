"""Honua server adapters (``docs/reference/honua-server.md`` sections 1.4 and 1.5).

One unit: the two generations of the Honua API (manifest and legacy) share the translation
to and from the published document, the client and the drift report.

``mode: manifest`` (default, Gen 2 honua-server)
    plan    = ``POST {url}/api/v1/admin/manifest/apply`` with ``dryRun: true, prune: true``
    publish = the same with ``dryRun: false`` and the caller's ``prune``
    read    = ``GET {url}/api/v1/admin/manifest?namespace=…``, translated back
    drift   = ``GET {url}/api/v1/admin/manifest/drift``
    reload  = nothing: Gen 2 compiles and evicts its caches on every write
    health  = ``GET {publicUrl or url/ogc/features}/collections/<id>``

    Our services and layers become ``honua.io/v1alpha1`` resources: ``Service``
    (spec ``description``, ``srid`` + our keys) named after the service and ``Layer``
    (spec ``tableName``, ``schemaName``, ``geometryType``, ``srid`` + our keys) named
    ``<service>.<layer>``, both labelled ``environment``/``service`` and
    ``app.kubernetes.io/managed-by: honua-plan``. Everything the published document
    holds except the bbox is in the spec, so ``read`` gives the document back.

    The server prunes per (namespace, kind) of the *submitted* resources and refuses
    an empty manifest (400), so when a kind disappears entirely (the last layer is
    removed) this adapter deletes those resources itself through
    ``DELETE /api/v1/admin/metadata/resources/{kind}/{namespace}/{name}``. Prune
    also removes resources of other environments that share the namespace: give
    each environment its own ``honua.namespace``.

``mode: legacy`` (Gen 1 Honua.Server)
    publish = write the Gen 1 metadata JSON (catalog, folders, services, layers,
              dataSources) atomically to ``honua.metadataPath``
    reload  = ``POST {url}/admin/metadata/reload`` → ``{"status": "reloaded"}``
    read    = that file, translated back
    health  = ``GET {publicUrl or url/ogc}/collections/<id>``

    The data source's ``connectionString`` is a reference, ``${HONUA_DB_<DATASOURCE>}``,
    for the Honua process to resolve: never the DSN.

Both send the API key from the variable named by ``honua.apiKeyEnv`` (its slot:
``HONUA_SERVER_KEY_<NAME>``, the default, or ``HONUA_API_KEY``) as ``X-API-Key``;
a missing variable is an error naming it (never its value).
"""

from __future__ import annotations

import getpass
import json
import os
import re
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from honua_plan.config.slots import server_key_problem
from honua_plan.errors import ServerError
from honua_plan.providers.server.base import (
    ACTIONS,
    Action,
    PlanEntry,
    PublishResult,
    ServerProvider,
    diff_published,
    merge_published,
)
from honua_plan.providers.server.compile import CRS84, FORMAT_VERSION
from honua_plan.providers.server.http import (
    HealthResult,
    HttpResponse,
    http_request,
    poll_collections,
)
from honua_plan.secrets import redact, register

API_VERSION = "honua.io/v1alpha1"
MANAGED_BY = "app.kubernetes.io/managed-by"
COLLECTION_ANNOTATION = "honua.io/collection-id"
MANIFEST = "/api/v1/admin/manifest"
KINDS = ("Service", "Layer")

__all__ = [
    "DriftReport",
    "HonuaLegacyServer",
    "HonuaManifestServer",
    "from_gen1",
    "from_manifest",
    "open_honua",
    "to_gen1",
    "to_manifest",
]


# --------------------------------------------------------------------------- Gen 2 translation (pure)


def _srid_of(crs: str | None) -> int:
    if crs:
        m = re.search(r"(?:EPSG[:/](?:0/)?)(\d+)$", crs, re.IGNORECASE)
        if m:
            return int(m.group(1))
    return 4326


def layer_resource_name(collection_id: str) -> str:
    service, _, layer = collection_id.partition("::")
    return f"{service}.{layer}" if layer else service


def to_manifest(doc: Mapping[str, Any], *, namespace: str, environment: str) -> list[dict[str, Any]]:
    """``honua.io/v1alpha1`` Service and Layer resources for the published document."""
    resources: list[dict[str, Any]] = []
    base_labels = {"environment": environment, MANAGED_BY: "honua-plan"}
    for name, svc in sorted((doc.get("services") or {}).items()):
        ogc = svc.get("ogc") or {}
        spec = {
            "description": svc.get("description") or svc.get("title") or name,
            "srid": _srid_of(ogc.get("defaultCrs")),
            "title": svc.get("title"),
            "keywords": list(svc.get("keywords") or []),
            "datasource": svc.get("datasource"),
            "enabled": bool(svc.get("enabled", True)),
            "ogc": dict(ogc),
        }
        resources.append({
            "apiVersion": API_VERSION,
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(base_labels)},
            "spec": spec,
        })
    for cid, c in sorted((doc.get("collections") or {}).items()):
        schema, _, table = str(c["table"]).rpartition(".")
        spec = {
            "tableName": table,
            "schemaName": schema or c.get("schema") or "public",
            "geometryType": c.get("geometry_type"),
            "srid": int(c.get("srid") or 4326),
            "serviceName": c.get("service"),
            "layerName": c.get("layer"),
            "title": c.get("title"),
            "description": c.get("description"),
            "keywords": list(c.get("keywords") or []),
            "datasource": c.get("datasource"),
            "idField": c.get("id_field"),
            "geometryField": c.get("geom_field"),
            "displayField": c.get("title_field"),
            "fields": list(c.get("fields") or []),
            "crs": list(c.get("crs") or []),
            "itemLimit": c.get("item_limit"),
        }
        resources.append({
            "apiVersion": API_VERSION,
            "kind": "Layer",
            "metadata": {
                "name": layer_resource_name(cid),
                "namespace": namespace,
                "labels": {**base_labels, "service": str(c.get("service") or "")},
                "annotations": {COLLECTION_ANNOTATION: cid},
            },
            "spec": spec,
        })
    return resources


def _collection_id(resource: Mapping[str, Any]) -> str:
    meta = resource.get("metadata") or {}
    cid = (meta.get("annotations") or {}).get(COLLECTION_ANNOTATION)
    if cid:
        return str(cid)
    spec = resource.get("spec") or {}
    if spec.get("serviceName") and spec.get("layerName"):
        return f"{spec['serviceName']}::{spec['layerName']}"
    name = str(meta.get("name") or "")
    return name.replace(".", "::", 1) if "." in name else name


def _ours(resource: Mapping[str, Any], environment: str) -> bool:
    labels = (resource.get("metadata") or {}).get("labels") or {}
    return resource.get("kind") in KINDS and labels.get("environment", environment) == environment


def from_manifest(resources: Sequence[Mapping[str, Any]], *, environment: str) -> dict[str, Any]:
    """The published document a manifest holds for ``environment`` (bbox unknown: None)."""
    doc: dict[str, Any] = {"format_version": FORMAT_VERSION, "environment": environment,
                           "services": {}, "collections": {}}
    for r in resources:
        if not _ours(r, environment):
            continue
        spec = r.get("spec") or {}
        name = str((r.get("metadata") or {}).get("name") or "")
        if r.get("kind") == "Service":
            doc["services"][name] = {
                "title": spec.get("title"),
                "description": spec.get("description"),
                "keywords": list(spec.get("keywords") or []),
                "datasource": spec.get("datasource"),
                "enabled": bool(spec.get("enabled", True)),
                "ogc": dict(spec.get("ogc") or {}),
            }
        else:
            cid = _collection_id(r)
            service, _, layer = cid.partition("::")
            schema = spec.get("schemaName") or "public"
            doc["collections"][cid] = {
                "service": spec.get("serviceName") or service,
                "layer": spec.get("layerName") or layer,
                "title": spec.get("title"),
                "description": spec.get("description"),
                "keywords": list(spec.get("keywords") or []),
                "datasource": spec.get("datasource"),
                "schema": schema,
                "table": f"{schema}.{spec.get('tableName')}",
                "id_field": spec.get("idField"),
                "geom_field": spec.get("geometryField"),
                "geometry_type": spec.get("geometryType"),
                "srid": spec.get("srid"),
                "crs": list(spec.get("crs") or []),
                "fields": list(spec.get("fields") or []),
                "title_field": spec.get("displayField"),
                "item_limit": spec.get("itemLimit"),
                "bbox": None,
            }
    return doc


# --------------------------------------------------------------------------- Gen 1 translation (pure)


def datasource_env(datasource: str) -> str:
    return "HONUA_DB_" + re.sub(r"[^A-Za-z0-9]", "_", datasource).upper()


def _drop_none(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def to_gen1(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Gen 1 metadata (``schemas/metadata-schema.json``) for the published document."""
    env = str(doc.get("environment") or "default")
    project = str(doc.get("project") or "honua-plan")
    services: Mapping[str, Any] = doc.get("services") or {}
    collections: Mapping[str, Any] = doc.get("collections") or {}
    datasources = sorted({str(s.get("datasource")) for s in services.values() if s.get("datasource")}
                         | {str(c.get("datasource")) for c in collections.values() if c.get("datasource")})
    out_services = []
    for name, s in sorted(services.items()):
        ogc = s.get("ogc") or {}
        out_services.append(_drop_none({
            "id": name,
            "folderId": env,
            "serviceType": "feature",
            "dataSourceId": s.get("datasource"),
            "title": s.get("title"),
            "description": s.get("description"),
            "enabled": bool(s.get("enabled", True)),
            "keywords": list(s.get("keywords") or []),
            "ogc": _drop_none({
                "collectionsEnabled": ogc.get("collectionsEnabled", True),
                "itemLimit": ogc.get("itemLimit"),
                "defaultCrs": ogc.get("defaultCrs"),
                "additionalCrs": list(ogc.get("additionalCrs") or []),
            }),
        }))
    layers = []
    for cid, c in sorted(collections.items()):
        layer = _drop_none({
            "id": c.get("layer") or cid.partition("::")[2],
            "serviceId": c.get("service") or cid.partition("::")[0],
            "geometryType": c.get("geometry_type"),
            "idField": c.get("id_field"),
            "geometryField": c.get("geom_field"),
            "title": c.get("title"),
            "description": c.get("description"),
            "displayField": c.get("title_field"),
            "crs": list(c.get("crs") or []),
            "keywords": list(c.get("keywords") or []),
            "storage": _drop_none({
                "table": c.get("table"),
                "geometryColumn": c.get("geom_field"),
                "primaryKey": c.get("id_field"),
                "srid": c.get("srid"),
            }),
            "fields": [{"name": f} for f in c.get("fields") or []],
        })
        if c.get("item_limit"):
            layer["query"] = {"maxRecordCount": int(c["item_limit"])}
        if c.get("bbox"):
            layer["extent"] = {"bbox": [list(c["bbox"])], "crs": CRS84}
        layers.append(layer)
    return {
        "catalog": {"id": f"{project}-{env}", "title": f"{project} ({env})",
                    "description": f"Published by honua-plan for environment {env}"},
        "folders": [{"id": env, "title": env}],
        "dataSources": [
            {"id": ds, "provider": "postgis", "connectionString": "${" + datasource_env(ds) + "}"}
            for ds in datasources
        ],
        "services": out_services,
        "layers": layers,
    }


def from_gen1(meta: Mapping[str, Any], *, environment: str) -> dict[str, Any]:
    """The published document a Gen 1 metadata file holds."""
    doc: dict[str, Any] = {"format_version": FORMAT_VERSION, "environment": environment,
                           "services": {}, "collections": {}}
    svc_ds: dict[str, Any] = {}
    for s in meta.get("services") or []:
        ogc = s.get("ogc") or {}
        svc_ds[s["id"]] = s.get("dataSourceId")
        doc["services"][s["id"]] = {
            "title": s.get("title"),
            "description": s.get("description"),
            "keywords": list(s.get("keywords") or []),
            "datasource": s.get("dataSourceId"),
            "enabled": bool(s.get("enabled", True)),
            "ogc": {
                "collectionsEnabled": ogc.get("collectionsEnabled", True),
                "itemLimit": ogc.get("itemLimit"),
                "defaultCrs": ogc.get("defaultCrs"),
                "additionalCrs": list(ogc.get("additionalCrs") or []),
            },
        }
    for lyr in meta.get("layers") or []:
        st = lyr.get("storage") or {}
        table = str(st.get("table") or lyr["id"])
        schema = table.split(".", 1)[0] if "." in table else "public"
        bbox = (lyr.get("extent") or {}).get("bbox")
        if bbox and isinstance(bbox[0], list):
            bbox = bbox[0]
        cid = f"{lyr['serviceId']}::{lyr['id']}"
        doc["collections"][cid] = {
            "service": lyr["serviceId"],
            "layer": lyr["id"],
            "title": lyr.get("title"),
            "description": lyr.get("description"),
            "keywords": list(lyr.get("keywords") or []),
            "datasource": svc_ds.get(lyr["serviceId"]),
            "schema": schema,
            "table": table if "." in table else f"public.{table}",
            "id_field": lyr.get("idField"),
            "geom_field": st.get("geometryColumn") or lyr.get("geometryField"),
            "geometry_type": lyr.get("geometryType"),
            "srid": st.get("srid"),
            "crs": list(lyr.get("crs") or []),
            "fields": [f["name"] for f in lyr.get("fields") or []],
            "title_field": lyr.get("displayField"),
            "item_limit": (lyr.get("query") or {}).get("maxRecordCount"),
            "bbox": list(bbox) if bbox else None,
        }
    return doc


# --------------------------------------------------------------------------- HTTP client


def _message(resp: HttpResponse) -> str:
    """The server's message: envelope ``message``, problem ``detail``/``title``, ``error`` or raw text."""
    try:
        body = resp.json()
    except (ValueError, UnicodeDecodeError):
        return resp.text(300).strip()
    if isinstance(body, dict):
        for key in ("message", "detail", "error", "title"):
            value = body.get(key)
            if isinstance(value, str) and value:
                errors = body.get("errors")
                if isinstance(errors, dict | list) and errors:
                    value += " " + json.dumps(errors, ensure_ascii=False)[:500]
                return value
        if isinstance(body.get("errors"), dict | list):
            return json.dumps(body["errors"], ensure_ascii=False)[:500]
    return resp.text(300).strip()


class HonuaHttpError(ServerError):
    """An error answer from Honua; ``status`` and the server's ``server_message`` kept for callers."""

    def __init__(self, message: str, *, status: int, server_message: str, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.server_message = server_message


class _HonuaClient:
    def __init__(self, url: str, api_key_env: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.api_key_env = api_key_env
        self.timeout = timeout

    def headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ServerError(
                f"the Honua API key is not set: environment variable {self.api_key_env} is empty or missing",
                hint=f"export {self.api_key_env}=… (the key of an administrator of {self.url})",
            )
        register(key)
        return {"X-API-Key": key}

    def call(self, method: str, path: str, body: Any = None, *, what: str) -> HttpResponse:
        resp = http_request(method, self.url + path, body=body, headers=self.headers(),
                            timeout=self.timeout, what="the Honua server")
        if 200 <= resp.status < 300:
            return resp
        msg = redact(_message(resp))
        status = resp.status

        def fail(text: str, hint: str = "") -> HonuaHttpError:
            return HonuaHttpError(f"{what}: {text}", status=status, server_message=msg, hint=hint)

        if status == 401:
            raise fail(f"Honua at {self.url} answered 401: API key rejected (401)",
                       f"check {self.api_key_env}; Honua in QuickStart auth mode always answers 401 to admin calls")
        if status == 403:
            raise fail(f"Honua refused it (403): {msg or 'forbidden'}",
                       "the API key needs the administrator role; manifest approval workflows "
                       "(approvalRequired) need the Honua enterprise edition")
        if status == 404:
            raise fail(f"{self.url}{path} not found (404): {msg}",
                       "is honua.url right, and does honua.mode (manifest|legacy) match the server?")
        if status in (400, 409, 422):
            raise fail(f"Honua rejected it ({status}): {msg or 'validation failed'}")
        raise fail(f"Honua server error ({status}): {msg or 'no message'}")

    def envelope(self, method: str, path: str, body: Any = None, *, what: str) -> Any:
        resp = self.call(method, path, body, what=what)
        if not resp.body:
            return None
        try:
            payload = resp.json()
        except ValueError:
            raise ServerError(f"{what}: Honua answered something that is not JSON: {redact(resp.text(200))}") from None
        if isinstance(payload, dict) and "success" in payload:
            if payload.get("success") is False:
                raise ServerError(f"{what}: Honua reported a failure: {redact(str(payload.get('message') or ''))}")
            return payload.get("data")
        return payload


# --------------------------------------------------------------------------- drift


@dataclass(frozen=True)
class ManifestDrift:
    kind: str
    namespace: str
    name: str
    drift_type: str
    declared_hash: str | None = None
    actual_hash: str | None = None


@dataclass(frozen=True)
class DriftReport:
    has_drift: bool
    baseline_version: str | None
    records: tuple[ManifestDrift, ...] = field(default_factory=tuple)


def _requested_by() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"honua-plan ({os.environ.get('HONUA_ACTOR') or user})"


# --------------------------------------------------------------------------- adapters


class _HonuaBase(ServerProvider):
    kind = "honua"

    def __init__(self, server: Any, **kwargs: Any) -> None:
        super().__init__(server, **kwargs)
        opts = server.spec.honua
        if opts is None:
            raise ServerError("a server of type honua needs a 'honua' block (url, apiKeyEnv)")
        self.options = opts
        key_env = server.api_key_env
        problem = server_key_problem(key_env, server.metadata.name)
        if problem:  # the loader refuses it first, at its line; checked where it is read
            raise ServerError(problem)
        self.client = _HonuaClient(opts.url, key_env)

    @property
    def public_url(self) -> str | None:
        return self.server.spec.publicUrl if self.server is not None else None

    def health(self, collection_ids: Sequence[str], timeout_s: float = 30.0) -> HealthResult:
        base = self.ogc_url
        assert base is not None
        return poll_collections(base, collection_ids, timeout_s, what="the Honua OGC API")


class HonuaManifestServer(_HonuaBase):
    """Gen 2 honua-server through its manifest API."""

    @property
    def namespace(self) -> str:
        return str(self.options.namespace or "default")

    @property
    def ogc_url(self) -> str:
        return (self.public_url or f"{self.client.url}/ogc/features").rstrip("/")

    def manifest(self) -> dict[str, Any]:
        query = urllib.parse.urlencode({"namespace": self.namespace})
        data = self.client.envelope("GET", f"{MANIFEST}?{query}", what="reading the Honua manifest")
        return data if isinstance(data, dict) else {"resources": []}

    def _resources(self) -> list[dict[str, Any]]:
        res = self.manifest().get("resources") or []
        return [r for r in res if isinstance(r, dict)]

    def read(self) -> dict[str, Any] | None:
        resources = [r for r in self._resources() if _ours(r, self.environment)]
        if not resources:
            return None
        return from_manifest(resources, environment=self.environment)

    def drift(self) -> DriftReport:
        data = self.client.envelope("GET", f"{MANIFEST}/drift", what="reading the Honua drift report") or {}
        records = []
        for r in data.get("resources") or []:
            ident = r.get("identifier") or {}
            records.append(ManifestDrift(
                kind=str(ident.get("kind") or ""), namespace=str(ident.get("namespace") or "default"),
                name=str(ident.get("name") or ""), drift_type=str(r.get("driftType") or ""),
                declared_hash=r.get("declaredHash"), actual_hash=r.get("actualHash"),
            ))
        return DriftReport(bool(data.get("hasDrift", bool(records))), data.get("baselineVersionId"), tuple(records))

    def _entry(self, raw: Mapping[str, Any], names: Mapping[tuple[str, str], str]) -> PlanEntry:
        res = raw.get("resource") or {}
        kind = str(res.get("kind") or "")
        name = str(res.get("name") or "")
        action = cast(Action, str(raw.get("action") or "skip").lower())
        if action not in ACTIONS:
            action = "skip"
        default = {"create": "not published yet", "update": "spec changed", "delete": "pruned: no longer declared",
                   "skip": "no changes"}[action]
        message = str(raw.get("message") or default)
        if kind == "Service":
            return PlanEntry(action, name, message, "service")
        cid = names.get((kind, name)) or name.replace(".", "::", 1)
        if kind != "Layer":
            message = f"{kind} {name}: {message}"
        return PlanEntry(action, cid, message, "collection")

    def _apply(self, doc: Mapping[str, Any], *, dry_run: bool, prune: bool) -> list[PlanEntry]:
        resources = to_manifest(doc, namespace=self.namespace, environment=self.environment)
        existing = self._resources()
        names = {(r["kind"], r["metadata"]["name"]): _collection_id(r) for r in resources if r["kind"] == "Layer"}
        names.update({(str(r.get("kind")), str((r.get("metadata") or {}).get("name"))): _collection_id(r)
                      for r in existing if r.get("kind") == "Layer"})
        entries: list[PlanEntry] = []
        if resources:
            body = {"resources": resources, "dryRun": dry_run, "prune": prune, "approvalRequired": False,
                    "requestedBy": _requested_by(),
                    "requestedReason": f"honua-plan {'plan' if dry_run else 'apply'} of environment {self.environment}"}
            what = "planning the Honua manifest (dry run)" if dry_run else "applying the Honua manifest"
            data = self.client.envelope("POST", f"{MANIFEST}/apply", body, what=what) or {}
            entries = [self._entry(e, names) for e in data.get("entries") or []]
        if prune:
            # the server prunes only kinds that were submitted: remove the others ourselves
            submitted = {r["kind"] for r in resources}
            for r in existing:
                kind = str(r.get("kind") or "")
                if kind in submitted or not _ours(r, self.environment):
                    continue
                meta = r.get("metadata") or {}
                name, ns = str(meta.get("name") or ""), str(meta.get("namespace") or self.namespace)
                if not dry_run:
                    path = "/api/v1/admin/metadata/resources/" + "/".join(
                        urllib.parse.quote(p, safe="") for p in (kind, ns, name))
                    self.client.call("DELETE", path, what=f"deleting Honua {kind} {name}")
                entries.append(self._entry({"action": "delete", "resource": {"kind": kind, "name": name}}, names))
        return entries

    def plan(self, doc: Mapping[str, Any]) -> list[PlanEntry]:
        return self._apply(self._normalized(doc), dry_run=True, prune=True)

    def publish(self, doc: Mapping[str, Any], *, prune: bool = True) -> PublishResult:
        started = time.perf_counter()
        desired = self._normalized(doc)
        entries = self._apply(desired, dry_run=False, prune=prune)
        published = merge_published(self.read_published_file(), desired, prune=prune)
        path = self.write_published(published)
        return PublishResult(tuple(entries), published, time.perf_counter() - started, files=(str(path),))

    def reload(self) -> None:
        """Nothing to do: Gen 2 compiles and evicts its caches on every manifest write."""


class HonuaLegacyServer(_HonuaBase):
    """Gen 1 Honua.Server: metadata JSON file + ``POST /admin/metadata/reload``."""

    def __init__(self, server: Any, **kwargs: Any) -> None:
        super().__init__(server, **kwargs)
        if not self.options.metadataPath:
            raise ServerError("honua.mode legacy needs honua.metadataPath (the metadata JSON file Honua loads)")
        path = Path(self.options.metadataPath)  # no $VAR expansion: a config reads no variable
        self.metadata_path = path if path.is_absolute() else self.root / path

    @property
    def ogc_url(self) -> str:
        return (self.public_url or f"{self.client.url}/ogc").rstrip("/")

    def read(self) -> dict[str, Any] | None:
        try:
            text = self.metadata_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ServerError(f"cannot read {self.metadata_path}: {exc.strerror}") from None
        try:
            meta = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ServerError(f"{self.metadata_path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
        doc = from_gen1(meta, environment=self.environment)
        published = self.read_published_file()
        if published and published.get("project"):
            doc["project"] = published["project"]
        return doc

    def plan(self, doc: Mapping[str, Any]) -> list[PlanEntry]:
        return diff_published(self.read(), self._normalized(doc), prune=True)

    def publish(self, doc: Mapping[str, Any], *, prune: bool = True) -> PublishResult:
        from honua_plan.providers.metadata import write_atomic

        started = time.perf_counter()
        entries, merged, warnings = self.merged_for_publish(doc, prune=prune)
        text = json.dumps(to_gen1(merged), indent=2, ensure_ascii=False) + "\n"
        write_atomic(self.metadata_path, redact(text).encode("utf-8"))
        path = self.write_published(merged)
        return PublishResult(tuple(entries), merged, time.perf_counter() - started,
                             files=(str(self.metadata_path), str(path)), warnings=tuple(warnings))

    def reload(self) -> None:
        what = "reloading the Honua metadata"
        try:
            resp = self.client.call("POST", "/admin/metadata/reload", b"", what=what)
        except HonuaHttpError as exc:
            if exc.status == 500:
                raise ServerError(
                    f"{what}: Honua reloaded the metadata but its caches are stale (500): "
                    f"{exc.server_message or 'cache invalidation failed'}",
                    hint="retry the reload, or restart the Honua server to clear its caches",
                ) from None
            if exc.status == 422:
                raise ServerError(
                    f"{what}: Honua rejected the metadata file (422): {exc.server_message or 'invalid metadata'}",
                    hint=f"the file is {self.metadata_path}",
                ) from None
            raise
        try:
            status = (resp.json() or {}).get("status")
        except (ValueError, AttributeError):
            status = None
        if status not in (None, "reloaded"):
            raise ServerError(f"{what}: unexpected answer {redact(resp.text(200))}")


def open_honua(server: Any, **kwargs: Any) -> ServerProvider:
    opts = server.spec.honua
    if opts is not None and opts.mode == "legacy":
        return HonuaLegacyServer(server, **kwargs)
    return HonuaManifestServer(server, **kwargs)
