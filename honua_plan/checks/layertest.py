"""``honua test``: prove that a layer is served as declared (the seed's checklist).

Metadata validation, datasource connectivity, geometry validation, the layer's health
checks, OGC API - Features Part 1 Core against the running server, and a small
performance benchmark. Every check is a :class:`TestCheck`; the CLI prints them and
exits non-zero when any failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from honua_plan.errors import HonuaError

if TYPE_CHECKING:
    from honua_plan.config.desired import DesiredState
    from honua_plan.config.models import Layer
    from honua_plan.providers.server.base import ServerProvider

DEFAULT_MAX_AVG_MS = 500.0


@dataclass(frozen=True)
class TestCheck:
    name: str
    ok: bool
    message: str = ""
    seconds: float = 0.0
    details: tuple[str, ...] = ()

    __test__ = False  # not a pytest class


@dataclass
class LayerReport:
    layer: str
    collection_id: str
    checks: list[TestCheck] = field(default_factory=list)
    endpoint: str | None = None

    __test__ = False

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {"layer": self.layer, "collection": self.collection_id, "ok": self.ok, "endpoint": self.endpoint,
                "checks": [{"name": c.name, "ok": c.ok, "message": c.message, "seconds": round(c.seconds, 3),
                            "details": list(c.details)} for c in self.checks]}


def _timed(name: str, fn: Any) -> TestCheck:
    t0 = time.perf_counter()
    try:
        ok, message, details = fn()
    except HonuaError as exc:
        ok, message, details = False, exc.message, ()
    return TestCheck(name, ok, message, time.perf_counter() - t0, tuple(details))


def run_layer_tests(desired: DesiredState, dsn: Callable[[], str], layer_name: str | None = None, *,
                requests: int = 20) -> list[LayerReport]:
    """Run the checklist for one layer (by name or collection id) or every layer of ``desired``;
    ``dsn`` gives the environment's connection string when a check needs it."""
    from honua_plan.errors import UsageError

    environment = desired.environment
    metadata_ok, metadata_msg = True, "configuration valid"
    layers = list(desired.layers.values())
    if layer_name is not None:
        layers = [lyr for lyr in layers if layer_name in (lyr.metadata.name, lyr.collection_id)]
        if not layers:
            known = ", ".join(sorted(lyr.metadata.name for lyr in desired.layers.values())) or "none"
            raise UsageError(f"no layer {layer_name!r} in {environment} (known: {known})")
    server = desired.server()
    provider = None
    if server is not None and server.spec.type != "none":
        from honua_plan.providers.server import open_server

        provider = open_server(server, root=desired.root, environment=environment,
                               state_dir=desired.state_dir / environment, dsn_resolver=lambda *_: dsn())
    reports = []
    try:
        for layer in layers:
            reports.append(_test_one(desired, dsn, layer, provider, metadata_ok, metadata_msg, requests))
    finally:
        if provider is not None:
            provider.close()
    return reports


def _test_one(desired: DesiredState, dsn: Callable[[], str], layer: Layer, provider: ServerProvider | None, metadata_ok: bool,
              metadata_msg: str, requests: int) -> LayerReport:
    from honua_plan.checks import ogc as ogctest
    from honua_plan.checks.validate import run_check
    from honua_plan.plan.migrations import check_record
    from honua_plan.providers.postgis import catalog as postgis
    from honua_plan.providers.postgis.sqlexec import Session, connect

    cid = layer.collection_id
    report = LayerReport(layer.metadata.name, cid)
    report.checks.append(TestCheck("Metadata validation", metadata_ok, metadata_msg))
    st = layer.spec.storage
    conn = None
    try:
        conn = connect(dsn(), read_only=True)  # a test only reads
        report.checks.append(TestCheck("Data source connectivity", True, "connected"))
    except HonuaError as exc:
        report.checks.append(TestCheck("Data source connectivity", False, exc.message))
    if conn is not None:
        with conn:
            session = Session(conn)

            def geometry() -> tuple[bool, str, list[str]]:
                facts = postgis.refresh(session)
                t = facts.table(st.qualified_table)
                if t is None:
                    return False, f"table {st.qualified_table} does not exist", []
                geo = t.geometry(st.geometryColumn)
                if geo is None:
                    return False, f"{st.qualified_table}.{st.geometryColumn} is not a geometry column", []
                invalid, empty, null = postgis.count_invalid_geometries(session, st.qualified_table, st.geometryColumn)
                problems = []
                if invalid:
                    problems.append(f"{invalid} invalid geometr{'y' if invalid == 1 else 'ies'}")
                if geo.srid != st.srid:
                    problems.append(f"SRID {geo.srid} differs from the declared {st.srid}")
                declared = layer.spec.geometryType.upper()
                if declared != "GEOMETRY" and geo.geometry_type not in (declared, "GEOMETRY"):
                    problems.append(f"geometry type {geo.geometry_type} differs from the declared {declared}")
                msg = f"{invalid} invalid, {empty} empty, {null} NULL; SRID {geo.srid}"
                return not problems, "; ".join(problems) or msg, [msg]

            report.checks.append(_timed("Geometry validation", geometry))
            variables = desired.template_vars()
            results = [(chk, run_check(session, check_record(chk, "health", variables)))
                       for chk in layer.spec.validation.healthChecks]
            if results:
                bad = [(c, r) for c, r in results if not r.ok]
                report.checks.append(TestCheck(
                    "Health checks", not bad,
                    f"{len(results) - len(bad)} of {len(results)} passed"
                    + (f"; {bad[0][0].label}: {bad[0][1].message}" if bad else ""),
                    sum(r.seconds for _, r in results),
                    tuple(f"{'✓' if r.ok else '✗'} {c.label}: {r.message}" for c, r in results)))
    if provider is None or not provider.manages_publication:
        report.checks.append(TestCheck("OGC API conformance", False, "no GIS server configured (server type none)"))
        return report
    url = provider.ogc_url
    if url is None:
        report.checks.append(TestCheck("OGC API conformance", False,
                                       "the server declares no OGC API URL to test (set its publicUrl)"))
        return report
    report.endpoint = f"{url.rstrip('/')}/collections/{cid}"
    outcomes = ogctest.run_conformance(url, [cid])
    failed = [o for o in outcomes if not o.ok]
    report.checks.append(TestCheck(
        "OGC API conformance", not failed,
        f"{len(outcomes) - len(failed)} of {len(outcomes)} Part 1 Core requirements met"
        + (f"; failed: {', '.join(o.requirement for o in failed)}" if failed else ""),
        sum(o.seconds for o in outcomes),
        tuple(f"{'✓' if o.ok else '✗'} {o.requirement}: {o.message}" for o in outcomes),
    ))
    if layer.spec.fields:  # a layer that declares no fields serves every column: nothing to compare
        report.checks.append(_timed("Served fields", lambda: ogctest.served_fields(
            url, cid, [f.name for f in layer.spec.fields], id_field=layer.spec.idField, geometry=st.geometryColumn)))
    budget = layer.spec.performance
    max_avg = budget.maxAvgMs if budget else DEFAULT_MAX_AVG_MS
    max_p95 = budget.maxP95Ms if budget else None
    n = budget.requests if budget else requests

    def perf() -> tuple[bool, str, list[str]]:
        plain = ogctest.benchmark(url, cid, requests=n, limit=100)
        client = ogctest.OgcClient(url)
        try:
            coll = client.json(client.url(f"/collections/{ogctest._q(cid)}", {"f": "json"}))
            extent = coll["extent"]["spatial"]["bbox"][0]
        except (ogctest.CheckFailed, KeyError, IndexError, TypeError):
            extent = None
        boxed = ogctest.benchmark(url, cid, requests=n, limit=100, bbox=extent) if extent else None
        avg = plain.avg_ms if boxed is None else (plain.avg_ms + boxed.avg_ms) / 2
        p95 = max(plain.p95_ms, boxed.p95_ms if boxed else 0.0)
        ok = avg <= max_avg and (max_p95 is None or p95 <= max_p95)
        msg = f"avg {avg:.0f}ms, p95 {p95:.0f}ms over {plain.requests + (boxed.requests if boxed else 0)} requests"
        if not ok:
            msg += f" (budget: avg ≤ {max_avg:.0f}ms" + (f", p95 ≤ {max_p95:.0f}ms)" if max_p95 else ")")
        details = [f"/items?limit=100: avg {plain.avg_ms:.1f}ms p95 {plain.p95_ms:.1f}ms"]
        if boxed:
            details.append(f"/items?bbox=…: avg {boxed.avg_ms:.1f}ms p95 {boxed.p95_ms:.1f}ms")
        return ok, msg, details

    report.checks.append(_timed("Performance benchmark", perf))
    return report
