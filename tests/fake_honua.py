"""A small local Honua server following the documented contracts (docs/reference/honua-server.md).

Gen 2 (honua-server) admin API, in the ``{success, message, data}`` envelope, with
the ``X-API-Key`` header:

* ``GET  /api/v1/admin/capabilities``
* ``GET  /api/v1/admin/manifest[?namespace=]`` → ``{apiVersion, generatedAt, resources, driftedResources, manifestHash}``
* ``POST /api/v1/admin/manifest/apply`` ``{resources, dryRun, prune, approvalRequired, requestedBy}`` →
  ``{dryRun, summary{created, updated, deleted, skipped}, entries[{action, resource{kind, namespace, name}, message}]}``;
  prune is per (namespace, kind) of the submitted resources; an empty manifest is 400;
  ``approvalRequired`` is 403 (enterprise only); validation failures are 400 (as the server does)
* ``GET  /api/v1/admin/manifest/drift`` → ``{generatedAt, baselineVersionId, hasDrift, resources[…]}``
* ``DELETE|PUT /api/v1/admin/metadata/resources/{kind}/{namespace}/{name}``
* ``GET  /ogc/features/collections/{service}::{layer}``: 200 when such a Layer is stored

Gen 1 (Honua.Server): ``POST /admin/metadata/reload`` loads ``metadata_path`` →
``{"status": "reloaded"}`` (422 on invalid metadata), ``GET /ogc/collections/{id}``.

Failure modes: set ``fake.failure = 401 | 403 | 422 | 500`` (and optionally
``fake.failure_message``) and every admin call answers that until it is reset to None.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

API_VERSION = "honua.io/v1alpha1"
LAST_APPLIED = "honua.io/last-applied-manifest-hash"
REQUIRED_SPEC = {
    "Service": ("description", "srid"),
    "Layer": ("tableName", "schemaName", "geometryType", "srid"),
    "Relationship": ("originLayerId", "relatedLayerId", "name", "relationshipType", "originForeignKey",
                     "destinationForeignKey"),
    "Style": ("layerId", "style"),
    "Connection": ("name", "host", "databaseName"),
}
GEN1_REQUIRED = ("catalog", "folders", "services", "layers", "dataSources")
DEFAULT_MESSAGES = {
    401: "Unauthorized",
    403: "Forbidden",
    422: "Validation failed: layers[0].geometryType is required.",
    500: "Internal server error: metadata store unavailable.",
}


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def spec_hash(spec: Any) -> str:
    return hashlib.sha256(canonical(spec).encode("utf-8")).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat()


Key = tuple[str, str, str]  # kind, namespace, name


class FakeHonua:
    def __init__(self, api_key: str = "test-key", metadata_path: Path | None = None) -> None:
        self.api_key = api_key
        self.metadata_path = metadata_path
        self.store: dict[Key, dict[str, Any]] = {}
        self.versions: list[dict[str, Any]] = []
        self.loaded_gen1: dict[str, Any] | None = None
        self.failure: int | None = None
        self.failure_message: str | None = None
        self.requests: list[tuple[str, str, Any]] = []  # method, path, body
        self.reloads = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeHonua:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-honua", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- test helpers ------------------------------------------------------------

    def resource(self, kind: str, name: str, namespace: str = "default") -> dict[str, Any] | None:
        return self.store.get((kind, namespace, name))

    def edit_spec(self, kind: str, name: str, changes: dict[str, Any], namespace: str = "default") -> None:
        """An out-of-band edit (the Admin UI): the spec changes, the last-applied hash does not."""
        with self._lock:
            res = self.store[(kind, namespace, name)]
            res["spec"].update(changes)
            res["metadata"]["resourceVersion"] = str(int(res["metadata"]["resourceVersion"]) + 1)

    def names(self, kind: str) -> list[str]:
        return sorted(k[2] for k in self.store if k[0] == kind)

    # -- logic -------------------------------------------------------------------

    def _validate(self, resources: list[Any]) -> str | None:
        for r in resources:
            if not isinstance(r, dict):
                return "Each resource must be an object."
            kind = r.get("kind")
            name = (r.get("metadata") or {}).get("name")
            if not r.get("apiVersion") or not kind or not name:
                return "Resource apiVersion, kind and metadata.name are required."
            if r.get("apiVersion") not in (API_VERSION, "honua.io/v1alpha0"):
                return f"Unsupported apiVersion '{r.get('apiVersion')}'."
            if kind not in REQUIRED_SPEC:
                return f"Unknown resource kind '{kind}'."
            spec = r.get("spec")
            if not isinstance(spec, dict):
                return f"{kind} '{name}' spec must be an object."
            for key in REQUIRED_SPEC[kind]:
                if spec.get(key) in (None, ""):
                    return f"{kind} '{name}' is missing required spec key '{key}'."
        return None

    def apply(self, body: dict[str, Any], actor: str) -> tuple[int, dict[str, Any]]:
        resources = body.get("resources") or []
        if not resources:
            return 400, _error("Manifest must include resources.")
        if body.get("approvalRequired"):
            return 403, _error("Manifest approval workflows require the enterprise edition.")
        problem = self._validate(resources)
        if problem:
            return 400, _error(problem)
        dry = bool(body.get("dryRun"))
        prune = bool(body.get("prune"))
        entries: list[dict[str, Any]] = []
        counts = {"created": 0, "updated": 0, "deleted": 0, "skipped": 0}
        with self._lock:
            ids: set[Key] = set()
            for r in resources:
                meta = r.get("metadata") or {}
                key = (r["kind"], meta.get("namespace") or "default", meta["name"])
                ids.add(key)
                ident = {"kind": key[0], "namespace": key[1], "name": key[2]}
                h = spec_hash(r["spec"])
                existing = self.store.get(key)
                if existing is None:
                    counts["created"] += 1
                    entries.append({"action": "create", "resource": ident})
                    if not dry:
                        self.store[key] = self._stored(r, key, h, version=1)
                    continue
                last = (existing["metadata"].get("annotations") or {}).get(LAST_APPLIED)
                if spec_hash(existing["spec"]) == h and last == h:
                    counts["skipped"] += 1
                    entries.append({"action": "skip", "resource": ident, "message": "No changes."})
                    continue
                counts["updated"] += 1
                entries.append({"action": "update", "resource": ident})
                if not dry:
                    self.store[key] = self._stored(r, key, h, version=int(existing["metadata"]["resourceVersion"]) + 1,
                                                   created=existing["metadata"].get("createdAt"))
            if prune:
                namespaces = {k[1] for k in ids}
                kinds = {k[0] for k in ids}
                for key in sorted(self.store):
                    if key[0] in kinds and key[1] in namespaces and key not in ids:
                        counts["deleted"] += 1
                        entries.append({"action": "delete",
                                        "resource": {"kind": key[0], "namespace": key[1], "name": key[2]}})
                        if not dry:
                            del self.store[key]
            if not dry:
                self.versions.append({"versionId": uuid.uuid4().hex, "manifest": copy.deepcopy(resources),
                                      "actor": actor, "appliedAt": _now()})
        return 200, _ok({"dryRun": dry, "summary": counts, "entries": entries})

    def _stored(self, r: dict[str, Any], key: Key, h: str, *, version: int, created: str | None = None) -> dict[str, Any]:
        meta = copy.deepcopy(r.get("metadata") or {})
        meta["namespace"] = key[1]
        meta.setdefault("labels", {})
        annotations = dict(meta.get("annotations") or {})
        annotations[LAST_APPLIED] = h
        meta["annotations"] = annotations
        meta["resourceVersion"] = str(version)
        meta["createdAt"] = created or _now()
        meta["updatedAt"] = _now()
        return {"apiVersion": r.get("apiVersion") or API_VERSION, "kind": key[0], "metadata": meta,
                "spec": copy.deepcopy(r["spec"]), "status": {"ready": True}}

    def manifest(self, namespace: str | None) -> dict[str, Any]:
        with self._lock:
            resources = [copy.deepcopy(r) for k, r in sorted(self.store.items())
                         if namespace is None or k[1] == namespace]
        drifted = [
            {"kind": r["kind"], "namespace": r["metadata"]["namespace"], "name": r["metadata"]["name"]}
            for r in resources
            if r["metadata"]["annotations"].get(LAST_APPLIED) not in (None, spec_hash(r["spec"]))
        ]
        return {"apiVersion": API_VERSION, "generatedAt": _now(), "resources": resources,
                "driftedResources": drifted, "manifestHash": spec_hash([r["spec"] for r in resources])}

    def drift(self) -> dict[str, Any]:
        with self._lock:
            baseline = self.versions[-1] if self.versions else None
            actual = {k: r for k, r in self.store.items()}
        records: list[dict[str, Any]] = []
        if baseline is not None:
            declared = {}
            for r in baseline["manifest"]:
                meta = r.get("metadata") or {}
                declared[(r["kind"], meta.get("namespace") or "default", meta["name"])] = r["spec"]
            for key, r in sorted(actual.items()):
                ident = {"kind": key[0], "namespace": key[1], "name": key[2]}
                if key in declared:
                    if spec_hash(declared[key]) != spec_hash(r["spec"]):
                        records.append({"identifier": ident, "driftType": "spec_drift",
                                        "declaredHash": spec_hash(declared[key]), "actualHash": spec_hash(r["spec"])})
                else:
                    records.append({"identifier": ident, "driftType": "extra", "actualHash": spec_hash(r["spec"])})
            for key, spec in sorted(declared.items()):
                if key not in actual:
                    records.append({"identifier": {"kind": key[0], "namespace": key[1], "name": key[2]},
                                    "driftType": "missing", "declaredHash": spec_hash(spec)})
        return {"generatedAt": _now(), "baselineVersionId": baseline["versionId"] if baseline else None,
                "hasDrift": bool(records), "resources": records}

    def reload_gen1(self) -> tuple[int, dict[str, Any]]:
        if self.metadata_path is None:
            return 500, {"error": "Metadata path is not configured."}
        try:
            meta = json.loads(self.metadata_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return 422, {"error": f"Metadata could not be read: {exc}"}
        missing = [k for k in GEN1_REQUIRED if k not in meta]
        if missing:
            return 422, {"error": f"Metadata is missing required properties: {', '.join(missing)}"}
        for s in meta["services"]:
            for k in ("id", "folderId", "serviceType", "dataSourceId"):
                if k not in s:
                    return 422, {"error": f"Service is missing required property '{k}'."}
        for lyr in meta["layers"]:
            for k in ("id", "serviceId", "geometryType", "idField", "geometryField"):
                if k not in lyr:
                    return 422, {"error": f"Layer is missing required property '{k}'."}
        with self._lock:
            self.loaded_gen1 = meta
            self.reloads += 1
        return 200, {"status": "reloaded"}

    def gen2_collection(self, cid: str) -> bool:
        with self._lock:
            for (kind, _ns, _name), r in self.store.items():
                if kind != "Layer":
                    continue
                ann = r["metadata"].get("annotations") or {}
                if ann.get("honua.io/collection-id") == cid:
                    return True
        return False

    def gen1_collection(self, cid: str) -> bool:
        meta = self.loaded_gen1 or {}
        return any(f"{lyr.get('serviceId')}::{lyr.get('id')}" == cid for lyr in meta.get("layers") or [])

    # -- HTTP --------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> Any:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                if not raw:
                    return None
                try:
                    return json.loads(raw)
                except ValueError:
                    return raw.decode("utf-8", "replace")

            def _admin_gate(self, gen1: bool) -> bool:
                if self.headers.get("X-API-Key") != fake.api_key:
                    self._send(401, {"error": "Unauthorized"} if gen1 else _error("Unauthorized"))
                    return False
                if fake.failure is not None:
                    msg = fake.failure_message or DEFAULT_MESSAGES.get(fake.failure, "failure")
                    self._send(fake.failure, {"error": msg} if gen1 else _error(msg))
                    return False
                return True

            def _route(self, method: str) -> None:
                parts = urlsplit(self.path)
                path = unquote(parts.path)
                query = parse_qs(parts.query)
                body = self._body() if method in ("POST", "PUT") else None
                fake.requests.append((method, path, body))
                if path.startswith("/ogc/features/collections/") and method == "GET":
                    cid = path.removeprefix("/ogc/features/collections/")
                    self._send(200 if fake.gen2_collection(cid) else 404, {"id": cid})
                    return
                if path.startswith("/ogc/collections/") and method == "GET":
                    cid = path.removeprefix("/ogc/collections/")
                    self._send(200 if fake.gen1_collection(cid) else 404, {"id": cid})
                    return
                if path == "/admin/metadata/reload" and method == "POST":
                    if self._admin_gate(gen1=True):
                        status, payload = fake.reload_gen1()
                        self._send(status, payload)
                    return
                if not path.startswith("/api/v1/admin"):
                    self._send(404, {"error": "not found"})
                    return
                if not self._admin_gate(gen1=False):
                    return
                sub = path.removeprefix("/api/v1/admin")
                if sub == "/capabilities" and method == "GET":
                    self._send(200, _ok({"resourceKinds": list(REQUIRED_SPEC), "manifestSupported": True,
                                         "manifestDryRunSupported": True, "manifestPruneSupported": True}))
                elif sub == "/manifest" and method == "GET":
                    ns = (query.get("namespace") or [""])[0] or None
                    self._send(200, _ok(fake.manifest(ns)))
                elif sub == "/manifest/apply" and method == "POST":
                    if not isinstance(body, dict):
                        self._send(400, _error("Request body must be a JSON object."))
                        return
                    status, payload = fake.apply(body, str(body.get("requestedBy") or ""))
                    self._send(status, payload)
                elif sub == "/manifest/drift" and method == "GET":
                    self._send(200, _ok(fake.drift()))
                elif sub.startswith("/metadata/resources/") and method in ("DELETE", "PUT"):
                    bits = sub.removeprefix("/metadata/resources/").split("/")
                    if len(bits) != 3:
                        self._send(400, _error("Expected /metadata/resources/{kind}/{namespace}/{name}."))
                        return
                    key = (bits[0], bits[1], bits[2])
                    with fake._lock:
                        exists = key in fake.store
                        if method == "DELETE" and exists:
                            del fake.store[key]
                    if method == "DELETE":
                        self._send(200 if exists else 404,
                                   _ok(None, "Deleted.") if exists else _error("Resource not found."))
                    else:
                        if not exists or not isinstance(body, dict):
                            self._send(404, _error("Resource not found."))
                            return
                        fake.edit_spec(key[0], key[2], body.get("spec") or {}, key[1])
                        self._send(200, _ok(fake.store[key]))
                else:
                    self._send(404, _error(f"No route for {method} {path}."))

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_PUT(self) -> None:
                self._route("PUT")

            def do_DELETE(self) -> None:
                self._route("DELETE")

        return Handler


def _ok(data: Any, message: str | None = None) -> dict[str, Any]:
    return {"success": True, "message": message, "data": data}


def _error(message: str) -> dict[str, Any]:
    return {"success": False, "message": message, "data": None}


@contextmanager
def running(api_key: str = "test-key", metadata_path: Path | None = None) -> Iterator[FakeHonua]:
    fake = FakeHonua(api_key, metadata_path).start()
    try:
        yield fake
    finally:
        fake.stop()
