"""The OpenAPI document honua builds from the catalog is the one ``pygeoapi openapi generate`` writes.

honua no longer runs pygeoapi's generator in a subprocess that connects to the database
and reflects every table (38 s for 1,000 collections): it runs the same generator in
process with the fields read from the catalog (:mod:`honua_plan.providers.server.pygeoapi_openapi`).
Here both run on one config over tables with every common column type, and the documents
must be equal, so the served ``/openapi`` does not change.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from honua_plan.providers.postgis import catalog as postgis
from honua_plan.providers.postgis.sqlexec import Session, connect
from honua_plan.providers.server.pygeoapi_config import (
    connection_params,
    dump_config,
    render_config,
)
from honua_plan.providers.server.pygeoapi_openapi import openapi_dict, provider_fields, serialize

pytest.importorskip("pygeoapi", reason="pygeoapi is not installed: pip install 'honua-plan[server]'")

pytestmark = [pytest.mark.server, pytest.mark.integration]

TABLES = """
CREATE SCHEMA IF NOT EXISTS other;
CREATE TABLE public.kinds (
    id bigserial PRIMARY KEY, small smallint, big bigint, num numeric(10, 2), r real, d double precision,
    flag boolean, t text, v varchar(20), c char(3), day date, ts timestamp, tstz timestamptz, tm time,
    tmtz timetz, span interval, doc jsonb, j json, u uuid, ints integer[], names text[], raw bytea,
    other_geom geometry(Point, 4326), geom geometry(Polygon, 4326));
CREATE TABLE other.places (gid integer PRIMARY KEY, label text, shape geometry(Point, 3857));
"""


def test_document_from_the_catalog_equals_pygeoapi_generate(pg_dsn: str, tmp_path: Path) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(TABLES)
    doc = {"project": "p", "environment": "dev", "services": {"s": {"keywords": ["k"]}}, "collections": {
        "s::kinds": {"service": "s", "datasource": "db", "schema": "public", "table": "public.kinds",
                     "id_field": "id", "geom_field": "geom", "title": "Kinds", "srid": 4326, "item_limit": 50},
        "s::places": {"service": "s", "datasource": "db", "schema": "other", "table": "other.places",
                      "id_field": "gid", "geom_field": "shape", "title": "Places", "srid": 3857},
        "s::missing": {"service": "s", "datasource": "db", "schema": "public", "table": "public.nope",
                       "id_field": "id", "geom_field": "geom", "title": "Gone"},
    }}
    config = render_config(doc, host="127.0.0.1", port=5000, url="http://localhost:5000/ogc",
                           connections={"db": connection_params(pg_dsn)}, password_envs={})
    with connect(pg_dsn) as conn:
        facts = postgis.refresh(Session(conn))

    def fields(key: str, geom: str) -> dict[str, dict[str, object]] | None:
        table = facts.table(key)
        return provider_fields(table.columns, geom) if table is not None else None

    for with_missing in (False, True):
        cfg = json.loads(json.dumps(config))
        if not with_missing:
            del cfg["resources"]["s::missing"]
        ours = json.loads(serialize(openapi_dict(cfg, fields), cfg))
        cfg_file = tmp_path / f"config-{with_missing}.yml"
        cfg_file.write_text(dump_config(cfg))
        out = tmp_path / f"openapi-{with_missing}.json"
        env = {"PATH": os.environ.get("PATH", ""), "PYGEOAPI_CONFIG": str(cfg_file), "PYGEOAPI_OPENAPI": str(out)}
        subprocess.run([sys.executable, "-c", "import sys; from pygeoapi import cli; sys.exit(cli())",
                        "openapi", "generate", str(cfg_file), "--format", "json", "--output-file", str(out),
                        "--no-fail-on-invalid-collection"], env=env, check=True, capture_output=True, timeout=120)
        theirs = json.loads(out.read_text())
        differing = sorted(k for k in set(ours["paths"]) | set(theirs["paths"])
                           if ours["paths"].get(k) != theirs["paths"].get(k))
        assert differing == []
        assert ours == theirs
        if not with_missing:  # the fields are there, typed as pygeoapi types them
            params = {p["name"]: p.get("schema") for p in ours["paths"]["/collections/s::kinds/items"]["get"]["parameters"]
                      if isinstance(p, dict) and "name" in p}
            assert params["tstz"] == {"type": "string", "format": "date-time"}
            assert params["num"] == {"type": "number"} and params["doc"] == {"type": "string"}
            assert "geom" not in params and "other_geom" in params


def _unordered(doc: dict[str, object]) -> dict[str, object]:
    """The document with its tags in name order (members of objects compare unordered already)."""
    return {**doc, "tags": sorted(doc["tags"], key=lambda t: t["name"])}  # type: ignore[arg-type, index]


def test_a_spliced_document_equals_the_whole_one(pg_dsn: str, tmp_path: Path) -> None:
    """Generating only the changed collections and splicing them into the previous document
    gives pygeoapi's document for the new config: a title changed, a collection added, one
    removed, a column added to a table (its fields change, its config does not)."""
    from honua_plan.providers.server.pygeoapi_openapi import fingerprints, openapi_dict, splice

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("".join(f"CREATE TABLE public.t{i} (id int PRIMARY KEY, name text, geom geometry(Point, 4326));"
                             for i in range(6)))

    def config_of(titles: dict[int, str]) -> dict[str, object]:
        doc = {"project": "p", "environment": "dev", "services": {"s": {"keywords": ["k"]}}, "collections": {
            f"s::t{i}": {"service": "s", "datasource": "db", "schema": "public", "table": f"public.t{i}",
                         "id_field": "id", "geom_field": "geom", "title": title, "srid": 4326}
            for i, title in titles.items()}}
        return render_config(doc, host="127.0.0.1", port=5000, url="http://localhost:5000/ogc",
                             connections={"db": connection_params(pg_dsn)}, password_envs={})

    def fields_now() -> object:
        with connect(pg_dsn) as conn:
            facts = postgis.refresh(Session(conn))

        def fields(key: str, geom: str) -> dict[str, dict[str, object]] | None:
            table = facts.table(key)
            return provider_fields(table.columns, geom) if table is not None else None
        return fields

    before = config_of({i: f"T{i}" for i in range(5)})
    fields = fields_now()
    old = openapi_dict(before, fields)  # type: ignore[arg-type]
    rest, per = fingerprints(before, fields, "v")  # type: ignore[arg-type]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE public.t3 ADD COLUMN surface text")
    after = config_of({0: "T0", 1: "T1 renamed", 3: "T3", 4: "T4", 5: "T5"})  # 2 removed, 5 added
    fields = fields_now()
    rest2, per2 = fingerprints(after, fields, "v")  # type: ignore[arg-type]
    assert rest2 == rest and fingerprints(after, fields, "w")[0] != rest  # the generator's version counts
    changed = [cid for cid in per2 if per.get(cid) != per2[cid]]
    removed = [cid for cid in per if cid not in per2]
    assert sorted(changed) == ["s::t1", "s::t3", "s::t5"] and removed == ["s::t2"]
    part = openapi_dict({**after, "resources": {c: after["resources"][c] for c in changed}}, fields)  # type: ignore[arg-type, index]
    spliced = splice(old, part, list(per), changed, removed)
    whole = openapi_dict(after, fields)  # type: ignore[arg-type]
    assert _unordered(spliced) == _unordered(whole)
    assert "surface" in json.dumps(spliced["paths"]["/collections/s::t3/queryables"]) or \
        "surface" in json.dumps(spliced["paths"]["/collections/s::t3/items"])
    assert not any("s::t2" in p for p in spliced["paths"])
    # the text the engine writes: the same, whether spliced or generated whole, in the
    # generator process (the engine then never holds the document as objects) or here
    import os

    from honua_plan.providers.server import pygeoapi_openapi as oas
    from honua_plan.providers.server.pygeoapi import _PACKAGE_ROOT

    on_disk = tmp_path / "openapi.json"
    on_disk.write_text(oas.serialize(old, before))
    reuse = oas.Reuse(str(on_disk), list(per), changed, removed)
    dest = tmp_path / "new.json"
    for generator in (True, False):
        if generator:
            oas.start_generator(_PACKAGE_ROOT, {"PATH": os.environ.get("PATH", "")})
        digest = oas.write_document(after, fields, str(dest), reuse)  # type: ignore[arg-type]
        assert digest == hashlib.sha256(dest.read_bytes()).hexdigest()
        assert _unordered(json.loads(dest.read_text())) == _unordered(whole), generator
        assert oas._GENERATOR is None
        if generator:
            oas.start_generator(_PACKAGE_ROOT, {"PATH": os.environ.get("PATH", "")})
        assert oas.write_document(after, fields, str(dest)) is not None  # type: ignore[arg-type]
        assert json.loads(dest.read_text()) == json.loads(oas.serialize(whole, after))
    on_disk.write_text("[]")  # not a document: no splice, the caller generates it whole
    assert oas.write_document(after, fields, str(dest), reuse) is None  # type: ignore[arg-type]


def test_the_generator_process_gives_the_document_generated_here(pg_dsn: str, tmp_path: Path) -> None:
    """An apply imports pygeoapi's generator in another process while it checks its plan;
    that process's document is the one generated in this process, and without it (or when
    it fails) the document is generated here."""
    from honua_plan.providers.server import pygeoapi_openapi as oas
    from honua_plan.providers.server.pygeoapi import _PACKAGE_ROOT

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.g1 (id int PRIMARY KEY, day date, geom geometry(Point, 4326))")
    doc = {"project": "p", "environment": "dev", "services": {"s": {"keywords": ["k"]}}, "collections": {
        "s::g1": {"service": "s", "datasource": "db", "schema": "public", "table": "public.g1",
                  "id_field": "id", "geom_field": "geom", "title": "G1", "srid": 4326},
        "s::gone": {"service": "s", "datasource": "db", "schema": "public", "table": "public.nope",
                    "id_field": "id", "geom_field": "geom", "title": "Gone"}}}
    config = render_config(doc, host="127.0.0.1", port=5000, url="http://localhost:5000/ogc",
                           connections={"db": connection_params(pg_dsn)}, password_envs={})
    with connect(pg_dsn) as conn:
        facts = postgis.refresh(Session(conn))

    def fields(key: str, geom: str) -> dict[str, dict[str, object]] | None:
        table = facts.table(key)
        return provider_fields(table.columns, geom) if table is not None else None

    here = oas.openapi_dict(config, fields)  # type: ignore[arg-type]
    dest = tmp_path / "openapi.json"
    oas.start_generator(_PACKAGE_ROOT, {"PATH": os.environ.get("PATH", "")})
    proc = oas._GENERATOR
    assert proc is not None
    digest = oas.write_document(config, fields, str(dest))  # type: ignore[arg-type]
    assert oas._GENERATOR is None and proc.returncode == 0  # used once, and it ended
    assert digest == hashlib.sha256(dest.read_bytes()).hexdigest()
    there = json.loads(dest.read_text())
    assert there == json.loads(oas.serialize(here, config))
    # pygeoapi leaves out the feature paths of every collection when one table is missing
    assert "/collections/s::g1" in there["paths"] and not any(p.endswith("/items") for p in there["paths"])
    # a generator that died is not waited for: the document is made here
    dest.unlink()
    oas.start_generator(_PACKAGE_ROOT, {"PATH": os.environ.get("PATH", "")})
    assert oas._GENERATOR is not None
    oas._GENERATOR.kill()
    assert oas.write_document(config, fields, str(dest)) == digest  # type: ignore[arg-type]
    assert json.loads(dest.read_text()) == there
    oas.stop_generator()
