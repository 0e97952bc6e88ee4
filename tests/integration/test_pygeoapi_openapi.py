"""The OpenAPI document honua builds from the catalog is the one ``pygeoapi openapi generate`` writes.

honua no longer runs pygeoapi's generator in a subprocess that connects to the database
and reflects every table (38 s for 1,000 collections): it runs the same generator in
process with the fields read from the catalog (:mod:`honua_plan.providers.server.pygeoapi_openapi`).
Here both run on one config over tables with every common column type, and the documents
must be equal, so the served ``/openapi`` does not change.
"""

from __future__ import annotations

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
from honua_plan.providers.server.pygeoapi_openapi import openapi_document, provider_fields

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
        ours = json.loads(openapi_document(cfg, fields))
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
