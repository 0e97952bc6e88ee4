"""OGC API – Features Part 1 Core checks against a served landing page (``honua test``).

Each check is a function named after its requirement (``/req/core/root-success`` →
:func:`req_core_root_success`) taking ``(client, landing_url[, collection_id])``; it
raises :class:`CheckFailed` with a reason, or returns a short note. :func:`run_checks`
runs them all and returns one :class:`CheckOutcome` per check (it never raises for a
failing server).

The checker is deliberately small and offline (``docs/reference/ogc-api-features.md``
section 3.2): plain ``urllib``, a timeout on every request, a bound on every loop
(paging stops after :data:`MAX_PAGES`), and it never leaves the host of the landing
page: a link that points elsewhere (a ``next`` link included) fails the check instead
of being followed. Loopback addresses bypass any configured HTTP proxy.

Not checked: unknown query parameters → 400 (``/req/core/query-param-unknown``),
which pygeoapi ignores; the API definition's schema; ``datetime``; HTML.
"""

from __future__ import annotations

import math
import statistics
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from honua_plan.errors import ServerError
from honua_plan.providers.server.http import HttpResponse, http_request

CONF_CORE = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core"
CONF_GEOJSON = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson"
MAX_PAGES = 50
DEFAULT_TIMEOUT = 10.0
UNKNOWN_FID = "honua-plan-no-such-feature-0f3c"
UNKNOWN_INT_FID = 2147483646

__all__ = [
    "BenchmarkResult",
    "CheckFailed",
    "CheckOutcome",
    "OgcClient",
    "benchmark",
    "run_conformance",
    "sample_query",
]


class CheckFailed(Exception):
    """A requirement is not met; the message says how."""


@dataclass(frozen=True)
class CheckOutcome:
    requirement: str  # e.g. /req/core/fc-limit-response-1
    name: str  # the function, e.g. req_core_fc_limit_response_1
    ok: bool
    message: str
    seconds: float
    collection: str | None = None

    def __str__(self) -> str:
        mark = "✓" if self.ok else "✗"
        where = f" [{self.collection}]" if self.collection else ""
        return f"{mark} {self.requirement}{where}: {self.message} ({self.seconds * 1000:.0f} ms)"


class OgcClient:
    """GETs JSON under one landing page: same host only, bounded time, counted requests."""

    def __init__(self, landing_url: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.landing = landing_url.rstrip("/")
        parts = urllib.parse.urlsplit(self.landing)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ServerError(f"not an http(s) URL: {landing_url!r}")
        self.origin = (parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        self.timeout = timeout
        self.requests = 0

    def url(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        url = self.landing + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        return url

    def same_origin(self, url: str) -> bool:
        p = urllib.parse.urlsplit(url)
        return (p.scheme, p.hostname, p.port or (443 if p.scheme == "https" else 80)) == self.origin

    def get(self, url: str, *, accept: str = "application/json") -> HttpResponse:
        if not self.same_origin(url):
            raise CheckFailed(f"refusing to follow a link to another host: {url}")
        self.requests += 1
        try:
            return http_request("GET", url, headers={"Accept": accept}, timeout=self.timeout, what="the OGC API")
        except ServerError as exc:
            raise CheckFailed(exc.message) from None

    def json(self, url: str, *, expect: int = 200, accept: str = "application/json") -> Any:
        resp = self.get(url, accept=accept)
        if resp.status != expect:
            raise CheckFailed(f"GET {_path(url)} answered HTTP {resp.status}, expected {expect}")
        try:
            return resp.json()
        except ValueError:
            raise CheckFailed(f"GET {_path(url)} did not return JSON ({resp.headers.get('Content-Type')})") from None

    def items(self, cid: str, **params: Any) -> dict[str, Any]:
        params.setdefault("f", "json")
        body = self.json(self.url(f"/collections/{_q(cid)}/items", params), accept="application/geo+json")
        if not isinstance(body, dict):
            raise CheckFailed("the items response is not a JSON object")
        return body


def _q(cid: str) -> str:
    return urllib.parse.quote(str(cid), safe=":-_.~")


def _path(url: str) -> str:
    p = urllib.parse.urlsplit(url)
    return p.path + (f"?{p.query}" if p.query else "")


def _links(doc: Any) -> list[dict[str, Any]]:
    links = doc.get("links") if isinstance(doc, dict) else None
    return [lk for lk in links or [] if isinstance(lk, dict)]


def _rels(doc: Any) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for lk in _links(doc):
        out.setdefault(str(lk.get("rel")), []).append(lk)
    return out


def _need_links(doc: Any, rels: Iterable[str | tuple[str, ...]], what: str) -> None:
    have = _rels(doc)
    missing = []
    for rel in rels:
        alternatives = rel if isinstance(rel, tuple) else (rel,)
        if not any(a in have for a in alternatives):
            missing.append("|".join(alternatives))
    if missing:
        raise CheckFailed(f"{what} has no link with rel {', '.join(missing)}")


def _check_feature_collection(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    if body.get("type") != "FeatureCollection":
        raise CheckFailed(f"type is {body.get('type')!r}, not 'FeatureCollection'")
    feats = body.get("features")
    if not isinstance(feats, list):
        raise CheckFailed("'features' is not an array")
    if "numberReturned" in body and body["numberReturned"] != len(feats):
        raise CheckFailed(f"numberReturned is {body['numberReturned']} but {len(feats)} features came back")
    return [f for f in feats if isinstance(f, dict)]


def _coords(geom: Any) -> Iterable[tuple[float, float]]:
    if not isinstance(geom, dict):
        return
    if geom.get("type") == "GeometryCollection":
        for g in geom.get("geometries") or []:
            yield from _coords(g)
        return

    def walk(c: Any) -> Iterable[tuple[float, float]]:
        if isinstance(c, list) and c and isinstance(c[0], int | float):
            yield float(c[0]), float(c[1])
        elif isinstance(c, list):
            for x in c:
                yield from walk(x)

    yield from walk(geom.get("coordinates"))


def _feature_bbox(feature: Mapping[str, Any]) -> tuple[float, float, float, float] | None:
    pts = list(_coords(feature.get("geometry")))
    if not pts:
        return None
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return min(xs), min(ys), max(xs), max(ys)


def _intersects(a: Sequence[float], b: Sequence[float]) -> bool:
    return not (a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1])


def _bbox_param(box: Sequence[float]) -> str:
    return ",".join(f"{v:.9g}" for v in box)


# --------------------------------------------------------------------------- landing, conformance, collections


def req_core_root_success(client: OgcClient) -> str:
    """/req/core/root-success: the landing page has links self, service-desc|service-doc, conformance, data."""
    doc = client.json(client.url("/", {"f": "json"}))
    _need_links(doc, ["self", ("service-desc", "service-doc"), "conformance", "data"], "the landing page")
    return "landing page links self, service-desc, conformance, data"


def req_core_api_definition_success(client: OgcClient) -> str:
    """/req/core/api-definition-success: the service-desc (or service-doc) link answers 200."""
    doc = client.json(client.url("/", {"f": "json"}))
    rels = _rels(doc)
    link = (rels.get("service-desc") or rels.get("service-doc") or [{}])[0]
    href = link.get("href")
    if not href:
        raise CheckFailed("no service-desc or service-doc link")
    resp = client.get(str(href), accept=str(link.get("type") or "application/vnd.oai.openapi+json;version=3.0"))
    if resp.status != 200:
        raise CheckFailed(f"the API definition {_path(str(href))} answered HTTP {resp.status}")
    return f"API definition at {_path(str(href))}"


def req_core_conformance_success(client: OgcClient) -> str:
    """/req/core/conformance-success: /conformance declares core and geojson."""
    doc = client.json(client.url("/conformance", {"f": "json"}))
    declared = doc.get("conformsTo") if isinstance(doc, dict) else None
    if not isinstance(declared, list):
        raise CheckFailed("/conformance has no conformsTo array")
    missing = [c for c in (CONF_CORE, CONF_GEOJSON) if c not in declared]
    if missing:
        raise CheckFailed("/conformance does not declare " + ", ".join(missing))
    return f"{len(declared)} conformance classes, core and geojson among them"


def req_core_fc_md_success(client: OgcClient, cid: str | None = None) -> str:
    """/req/core/fc-md-success: /collections lists the collections (and the one under test)."""
    doc = client.json(client.url("/collections", {"f": "json"}))
    cols = doc.get("collections") if isinstance(doc, dict) else None
    if not isinstance(cols, list):
        raise CheckFailed("/collections has no collections array")
    _need_links(doc, ["self"], "/collections")
    ids = [c.get("id") for c in cols if isinstance(c, dict)]
    if cid is not None and cid not in ids:
        raise CheckFailed(f"/collections does not list {cid}")
    return f"{len(ids)} collection(s)"


def _collection(client: OgcClient, cid: str) -> dict[str, Any]:
    doc = client.json(client.url(f"/collections/{_q(cid)}", {"f": "json"}))
    if not isinstance(doc, dict):
        raise CheckFailed(f"/collections/{cid} is not a JSON object")
    return doc


def _extent_bbox(doc: Mapping[str, Any]) -> list[float]:
    spatial = ((doc.get("extent") or {}).get("spatial") or {})
    boxes = spatial.get("bbox")
    if not isinstance(boxes, list) or not boxes:
        raise CheckFailed("the collection has no extent.spatial.bbox")
    box = boxes[0] if isinstance(boxes[0], list) else boxes
    if len(box) not in (4, 6) or not all(isinstance(v, int | float) for v in box):
        raise CheckFailed(f"extent.spatial.bbox is not 4 or 6 numbers: {box!r}")
    if len(box) == 6:
        box = [box[0], box[1], box[3], box[4]]
    return [float(v) for v in box]


def req_core_sfc_md_success(client: OgcClient, cid: str) -> str:
    """/req/core/sfc-md-success (+ fc-md-links, fc-md-extent): the collection has its id, extent and an items link."""
    doc = _collection(client, cid)
    if doc.get("id") != cid:
        raise CheckFailed(f"id is {doc.get('id')!r}, expected {cid!r}")
    _need_links(doc, ["items"], f"/collections/{cid}")
    box = _extent_bbox(doc)
    return f"extent {_bbox_param(box)}"


# --------------------------------------------------------------------------- items


def req_core_fc_response(client: OgcClient, cid: str) -> str:
    """/req/core/fc-response (+ fc-numberReturned, fc-numberMatched): a FeatureCollection with consistent counts."""
    body = client.items(cid, limit=10)
    feats = _check_feature_collection(body)
    _need_links(body, ["self"], "the items response")
    matched = body.get("numberMatched")
    if matched is not None and (not isinstance(matched, int) or matched < len(feats)):
        raise CheckFailed(f"numberMatched {matched!r} is less than the {len(feats)} features returned")
    return f"{len(feats)} feature(s), numberMatched {matched}"


def req_core_fc_limit_response_1(client: OgcClient, cid: str) -> str:
    """/req/core/fc-limit-response-1: limit=2 returns at most 2 features."""
    feats = _check_feature_collection(client.items(cid, limit=2))
    if len(feats) > 2:
        raise CheckFailed(f"limit=2 returned {len(feats)} features")
    return f"limit=2 returned {len(feats)}"


def req_core_fc_bbox_response(client: OgcClient, cid: str) -> str:
    """/req/core/fc-bbox-response: a bbox around a feature finds it; a far-away bbox finds nothing."""
    sample = _check_feature_collection(client.items(cid, limit=1))
    if not sample:
        raise CheckFailed("the collection is empty: nothing to test bbox with")
    fb = _feature_bbox(sample[0])
    if fb is None:
        raise CheckFailed("the first feature has no geometry")
    pad = max(fb[2] - fb[0], fb[3] - fb[1], 1e-6) * 0.01 + 1e-6
    around = (fb[0] - pad, fb[1] - pad, fb[2] + pad, fb[3] + pad)
    near = _check_feature_collection(client.items(cid, bbox=_bbox_param(around), limit=100))
    if not near:
        raise CheckFailed(f"bbox={_bbox_param(around)} around a feature returned nothing (axis order?)")
    for f in near:
        b = _feature_bbox(f)
        if b is not None and not _intersects(b, around):
            raise CheckFailed(f"feature {f.get('id')} outside bbox={_bbox_param(around)} was returned")
    try:
        extent = _extent_bbox(_collection(client, cid))
    except CheckFailed:
        extent = list(fb)
    far = _far_box(extent)
    away = _check_feature_collection(client.items(cid, bbox=_bbox_param(far), limit=10))
    if away:
        raise CheckFailed(f"bbox={_bbox_param(far)} far from the data returned {len(away)} feature(s)")
    return f"{len(near)} feature(s) in a box around one, 0 far away"


def _far_box(extent: Sequence[float]) -> tuple[float, float, float, float]:
    """A small CRS84 box disjoint from ``extent`` (a corner of the world the data avoids)."""
    for box in ((-179.9, -89.9, -179.0, -89.0), (179.0, 89.0, 179.9, 89.9), (179.0, -89.9, 179.9, -89.0),
                (-179.9, 89.0, -179.0, 89.9)):
        if not _intersects(box, extent):
            return box
    return (0.0, 0.0, 1e-9, 1e-9)


def req_core_fc_links_next(client: OgcClient, cid: str) -> str:
    """/req/core/fc-links (paging): following ``next`` as-is walks the collection without repeating ids."""
    first = client.items(cid, limit=1)
    matched = first.get("numberMatched")
    total = matched if isinstance(matched, int) else None
    page_size = max(1, min(10, math.ceil((total or 10) / 4)))
    body = client.items(cid, limit=page_size)
    seen: list[Any] = []
    pages = 0
    while True:
        feats = _check_feature_collection(body)
        pages += 1
        if len(feats) > page_size:
            raise CheckFailed(f"page {pages} has {len(feats)} features for limit={page_size}")
        for f in feats:
            fid = f.get("id")
            if fid in seen:
                raise CheckFailed(f"feature {fid} came back again on page {pages}")
            seen.append(fid)
        nxt = [lk for lk in _links(body) if lk.get("rel") == "next" and lk.get("href")]
        if not nxt or not feats:
            break
        if pages >= MAX_PAGES:
            return f"{len(seen)} distinct features over {pages} pages (stopped at {MAX_PAGES} pages)"
        body = client.json(str(nxt[0]["href"]), accept="application/geo+json")
    if total is not None and len(seen) != total:
        raise CheckFailed(f"paging returned {len(seen)} features, numberMatched is {total}")
    return f"{len(seen)} distinct features over {pages} page(s) of {page_size}"


def req_core_f_success(client: OgcClient, cid: str) -> str:
    """/req/core/f-success (+ f-links): /items/{fid} is a Feature with self and collection links."""
    sample = _check_feature_collection(client.items(cid, limit=1))
    if not sample:
        raise CheckFailed("the collection is empty: no feature to fetch")
    fid = sample[0].get("id")
    if fid is None:
        raise CheckFailed("the first feature has no id")
    doc = client.json(client.url(f"/collections/{_q(cid)}/items/{_q(str(fid))}", {"f": "json"}),
                      accept="application/geo+json")
    if not isinstance(doc, dict) or doc.get("type") != "Feature":
        raise CheckFailed(f"/items/{fid} is not a GeoJSON Feature")
    if str(doc.get("id")) != str(fid):
        raise CheckFailed(f"/items/{fid} returned id {doc.get('id')!r}")
    _need_links(doc, ["self", "collection"], f"/items/{fid}")
    return f"feature {fid}"


def req_core_f_op_404(client: OgcClient, cid: str) -> str:
    """/req/core/f-op (unknown id): /items/<unknown> answers 404.

    The unknown id has the type of the collection's ids (a number that fits a 32-bit
    key for integer ids), so the server is asked for a missing feature, not for a
    malformed id.
    """
    sample = _check_feature_collection(client.items(cid, limit=1))
    fid = sample[0].get("id") if sample else None
    unknown = UNKNOWN_INT_FID if isinstance(fid, int) and not isinstance(fid, bool) else UNKNOWN_FID
    resp = client.get(client.url(f"/collections/{_q(cid)}/items/{unknown}", {"f": "json"}))
    if resp.status != 404:
        raise CheckFailed(f"an unknown feature id ({unknown}) answered HTTP {resp.status}, expected 404")
    return f"unknown id {unknown} → 404"


# --------------------------------------------------------------------------- runner

LandingCheck = Callable[[OgcClient], str]
CollectionCheck = Callable[[OgcClient, str], str]

LANDING_CHECKS: tuple[tuple[str, LandingCheck], ...] = (
    ("/req/core/root-success", req_core_root_success),
    ("/req/core/api-definition-success", req_core_api_definition_success),
    ("/req/core/conformance-success", req_core_conformance_success),
)
COLLECTION_CHECKS: tuple[tuple[str, CollectionCheck], ...] = (
    ("/req/core/fc-md-success", req_core_fc_md_success),
    ("/req/core/sfc-md-success", req_core_sfc_md_success),
    ("/req/core/fc-response", req_core_fc_response),
    ("/req/core/fc-limit-response-1", req_core_fc_limit_response_1),
    ("/req/core/fc-bbox-response", req_core_fc_bbox_response),
    ("/req/core/fc-links", req_core_fc_links_next),
    ("/req/core/f-success", req_core_f_success),
    ("/req/core/f-op", req_core_f_op_404),
)


def _run(requirement: str, fn: Callable[..., str], args: tuple[Any, ...], cid: str | None) -> CheckOutcome:
    started = time.perf_counter()
    try:
        note = fn(*args)
        ok, message = True, note
    except CheckFailed as exc:
        ok, message = False, str(exc)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        ok, message = False, f"unexpected response shape: {type(exc).__name__}: {exc}"
    return CheckOutcome(requirement, fn.__name__, ok, message, time.perf_counter() - started, cid)


def run_conformance(
    landing_url: str, collection_ids: Sequence[str] | str = (), *, timeout: float = DEFAULT_TIMEOUT
) -> list[CheckOutcome]:
    """Run the landing-page checks once and the collection checks per collection id."""
    client = OgcClient(landing_url, timeout=timeout)
    ids = [collection_ids] if isinstance(collection_ids, str) else list(collection_ids)
    out = [_run(req, fn, (client,), None) for req, fn in LANDING_CHECKS]
    for cid in ids:
        out.extend(_run(req, fn, (client, cid), cid) for req, fn in COLLECTION_CHECKS)
    return out


# --------------------------------------------------------------------------- served fields


def served_fields(landing_url: str, collection_id: str, declared: Sequence[str], *, id_field: str,
                  geometry: str, timeout: float = DEFAULT_TIMEOUT) -> tuple[bool, str, list[str]]:
    """Whether ``/items`` and ``/queryables`` serve exactly the layer's declared fields (the
    served API is the layer file): no property that is not declared, none declared missing.
    The feature's id and geometry are its members, not properties."""
    client = OgcClient(landing_url, timeout=timeout)
    want = {f for f in declared if f not in (geometry,)}
    details: list[str] = []
    problems: list[str] = []
    try:
        feats = _check_feature_collection(client.items(collection_id, limit=10))
    except CheckFailed as exc:
        return False, f"/items: {exc}", []
    served = set().union(*(set((f.get("properties") or {}).keys()) for f in feats)) if feats else set()
    extra = sorted(served - want)
    missing = sorted(want - served - {id_field}) if feats else []
    details.append(f"/items properties: {', '.join(sorted(served)) or '(no features)'}")
    if extra:
        problems.append(f"/items serves {', '.join(extra)}, which the layer does not declare")
    if missing:
        problems.append(f"/items does not serve {', '.join(missing)}")
    resp = client.get(client.url(f"/collections/{_q(collection_id)}/queryables", {"f": "json"}),
                      accept="application/schema+json")
    if resp.status == 200:
        try:
            queryables = set((resp.json().get("properties") or {}).keys()) - {"geometry", geometry}
        except (ValueError, AttributeError):
            queryables = set()
            problems.append("/queryables did not return a JSON schema")
        details.append(f"/queryables: {', '.join(sorted(queryables))}")
        if queryables - want:
            problems.append(f"/queryables offers {', '.join(sorted(queryables - want))}, which the layer does not declare")
        if want - queryables:
            problems.append(f"/queryables lacks {', '.join(sorted(want - queryables))}")
    else:
        details.append(f"/queryables: HTTP {resp.status} (not checked)")
    return not problems, "; ".join(problems) or f"exactly the {len(want)} declared field(s)", details


# --------------------------------------------------------------------------- sample query, benchmark


def sample_query(landing_url: str, collection_id: str, limit: int = 10, *, timeout: float = DEFAULT_TIMEOUT) -> int:
    """How many features ``/items?limit=N`` returns (ServerError when it fails)."""
    client = OgcClient(landing_url, timeout=timeout)
    try:
        feats = _check_feature_collection(client.items(collection_id, limit=max(1, int(limit))))
    except CheckFailed as exc:
        raise ServerError(f"sample query on {collection_id} failed: {exc}") from None
    return len(feats)


@dataclass(frozen=True)
class BenchmarkResult:
    requests: int
    errors: int
    avg_ms: float
    p95_ms: float
    min_ms: float
    max_ms: float
    samples_ms: tuple[float, ...] = field(default_factory=tuple, repr=False)


def _p95(values: Sequence[float]) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def benchmark(
    landing_url: str,
    collection_id: str,
    *,
    requests: int = 20,
    bbox: Sequence[float] | None = None,
    limit: int = 100,
    timeout: float = DEFAULT_TIMEOUT,
) -> BenchmarkResult:
    """Time ``requests`` sequential ``/items`` queries (optionally with a bbox): avg and p95 in ms.

    A request answering anything but 200 counts as an error and is not timed.
    """
    client = OgcClient(landing_url, timeout=timeout)
    params: dict[str, Any] = {"f": "json", "limit": max(1, int(limit))}
    if bbox is not None:
        params["bbox"] = _bbox_param(bbox)
    url = client.url(f"/collections/{_q(collection_id)}/items", params)
    times: list[float] = []
    errors = 0
    for _ in range(max(1, min(int(requests), 10_000))):
        try:
            resp = client.get(url, accept="application/geo+json")
        except CheckFailed:
            errors += 1
            continue
        if resp.status != 200:
            errors += 1
            continue
        times.append(resp.seconds * 1000.0)
    if not times:
        raise ServerError(f"benchmark of {collection_id}: all {errors} request(s) failed")
    return BenchmarkResult(
        requests=len(times) + errors,
        errors=errors,
        avg_ms=statistics.fmean(times),
        p95_ms=_p95(sorted(times)),
        min_ms=min(times),
        max_ms=max(times),
        samples_ms=tuple(times),
    )
