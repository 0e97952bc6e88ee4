"""The OGC API – Features checker against a tiny local OGC server, conforming and broken on purpose.

(The checker against real pygeoapi runs in test_server_pygeoapi.py.)
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from honua_plan.checks import ogc as ogctest
from honua_plan.errors import ServerError

CID = "transportation::bike-lanes"
CORE = ogctest.CONF_CORE
GEOJSON = ogctest.CONF_GEOJSON


def features(n: int = 23) -> list[dict[str, Any]]:
    out = []
    for i in range(1, n + 1):
        x, y = -122.49 + i * 0.003, 45.51 + i * 0.003
        out.append({"type": "Feature", "id": i, "properties": {"name": f"Lane {i}"},
                    "geometry": {"type": "LineString", "coordinates": [[x, y], [x + 0.001, y + 0.001]]}})
    return out


class FakeOgc:
    """A minimal OGC API – Features server; ``broken`` switches one behaviour off."""

    def __init__(self, broken: str = "") -> None:
        self.broken = broken
        self.features = features()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/ogc"

    def _items(self, q: dict[str, list[str]]) -> dict[str, Any]:
        limit = int((q.get("limit") or ["10"])[0])
        offset = int((q.get("offset") or ["0"])[0])
        feats = self.features
        if "bbox" in q and self.broken != "bbox":
            x0, y0, x1, y1 = (float(v) for v in q["bbox"][0].split(","))
            feats = [f for f in feats if any(x0 <= x <= x1 and y0 <= y <= y1 for x, y in f["geometry"]["coordinates"])]
        if self.broken == "limit":
            limit = limit * 3
        page = feats[offset:offset + limit]
        body: dict[str, Any] = {"type": "FeatureCollection", "features": page, "numberMatched": len(feats),
                                "numberReturned": len(page) + (1 if self.broken == "count" else 0),
                                "links": [{"rel": "self", "href": f"{self.base}/collections/{CID}/items"}]}
        if offset + limit < len(feats):
            nxt_offset = offset if self.broken == "paging" else offset + limit
            host = "http://example.invalid/ogc" if self.broken == "foreign" else self.base
            body["links"].append({"rel": "next", "href": f"{host}/collections/{CID}/items?offset={nxt_offset}&limit={limit}"
                                  + (f"&bbox={q['bbox'][0]}" if "bbox" in q else "")})
        return body

    def route(self, path: str, q: dict[str, list[str]]) -> tuple[int, Any]:
        p = path.removeprefix("/ogc")
        if p in ("", "/"):
            rels = ["self", "service-desc", "conformance", "data"]
            if self.broken == "landing":
                rels.remove("conformance")
            return 200, {"links": [{"rel": r, "href": f"{self.base}/{'' if r == 'self' else r}"} for r in rels]}
        if p == "/service-desc":
            return 200, {"openapi": "3.0.2"}
        if p == "/conformance":
            return 200, {"conformsTo": [CORE] + ([] if self.broken == "conformance" else [GEOJSON])}
        if p == "/collections":
            return 200, {"links": [{"rel": "self", "href": f"{self.base}/collections"}],
                         "collections": [self.collection()]}
        if p == f"/collections/{CID}":
            return 200, self.collection()
        if p == f"/collections/{CID}/items":
            return 200, self._items(q)
        if p.startswith(f"/collections/{CID}/items/"):
            fid = p.rsplit("/", 1)[1]
            for f in self.features:
                if str(f["id"]) == fid:
                    return 200, {**f, "links": [{"rel": "self", "href": "x"}, {"rel": "collection", "href": "y"}]}
            return (200, self.features[0]) if self.broken == "404" else (404, {"code": "NotFound"})
        return 404, {"code": "NotFound"}

    def collection(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": CID, "links": [{"rel": "items", "href": f"{self.base}/collections/{CID}/items"}]}
        if self.broken != "extent":
            doc["extent"] = {"spatial": {"bbox": [[-122.5, 45.5, -122.4, 45.6]]}}
        return doc

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                status, body = fake.route(unquote(parts.path), parse_qs(parts.query))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return H

    def __enter__(self) -> FakeOgc:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ogc() -> Iterator[FakeOgc]:
    with FakeOgc() as f:
        yield f


def by_req(outcomes: list[ogctest.CheckOutcome]) -> dict[str, ogctest.CheckOutcome]:
    return {o.requirement: o for o in outcomes}


def test_a_conforming_server_passes(ogc: FakeOgc) -> None:
    outcomes = ogctest.run_conformance(ogc.base, [CID])
    assert [o for o in outcomes if not o.ok] == []
    names = {o.name for o in outcomes}
    assert {"req_core_root_success", "req_core_conformance_success", "req_core_fc_limit_response_1",
            "req_core_fc_bbox_response", "req_core_fc_links_next", "req_core_f_success", "req_core_f_op_404"} <= names
    assert all(o.seconds >= 0 for o in outcomes)
    paging = by_req(outcomes)["/req/core/fc-links"]
    assert "23 distinct features" in paging.message


@pytest.mark.parametrize(("broken", "requirement", "reason"), [
    ("landing", "/req/core/root-success", "conformance"),
    ("conformance", "/req/core/conformance-success", "geojson"),
    ("extent", "/req/core/sfc-md-success", "extent"),
    ("count", "/req/core/fc-response", "numberReturned"),
    ("limit", "/req/core/fc-limit-response-1", "limit=2"),
    ("bbox", "/req/core/fc-bbox-response", "outside bbox"),
    ("paging", "/req/core/fc-links", "came back again"),
    ("foreign", "/req/core/fc-links", "another host"),
    ("404", "/req/core/f-op", "expected 404"),
])
def test_each_broken_behaviour_fails_its_requirement(broken: str, requirement: str, reason: str) -> None:
    with FakeOgc(broken) as ogc:
        outcome = by_req(ogctest.run_conformance(ogc.base, CID))[requirement]
    assert not outcome.ok
    assert reason in outcome.message, outcome.message


def test_unreachable_server_fails_every_check() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    outcomes = ogctest.run_conformance(f"http://127.0.0.1:{port}/ogc", [CID], timeout=1)
    assert outcomes and not any(o.ok for o in outcomes)
    assert "cannot reach" in outcomes[0].message


def test_sample_query_and_benchmark(ogc: FakeOgc) -> None:
    assert ogctest.sample_query(ogc.base, CID, 5) == 5
    assert ogctest.sample_query(ogc.base, CID, 100) == 23
    result = ogctest.benchmark(ogc.base, CID, requests=12, bbox=(-122.5, 45.5, -122.4, 45.6))
    assert result.requests == 12 and result.errors == 0 and len(result.samples_ms) == 12
    assert 0 < result.min_ms <= result.avg_ms <= result.max_ms
    assert result.min_ms <= result.p95_ms <= result.max_ms
    with pytest.raises(ServerError):
        ogctest.sample_query(ogc.base, "transportation::nope", 5)
    with pytest.raises(ServerError, match="all 3 request"):
        ogctest.benchmark(ogc.base, "transportation::nope", requests=3)
