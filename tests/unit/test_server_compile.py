"""The published document and the pure parts of the server adapters (no database, no server)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from honua_plan.config.desired import DesiredState
from honua_plan.config.loader import load_environment
from honua_plan.errors import ServerError
from honua_plan.providers.server import open_server
from honua_plan.providers.server.base import NoopServer, diff_published, merge_published
from honua_plan.providers.server.compile import (
    CRS84,
    collection_fingerprints,
    compile_published,
    crs_uri,
    empty_published,
    published_fingerprint,
    storage_crs_uri,
)
from honua_plan.providers.server.honua import from_gen1, from_manifest, to_gen1, to_manifest
from honua_plan.providers.server.pygeoapi_config import (
    PASSWORD_ENV,
    connection_params,
    dump_config,
    password_env_names,
    render_config,
)
from tests.helpers import copy_example, edit

CID = "transportation::bike-lanes"
BBOX = (-122.5, 45.5, -122.4, 45.6)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "repo")


def desired(repo: Path, env: str = "dev") -> DesiredState:
    return load_environment(repo, env)


def add_layer(repo: Path, name: str, body: str) -> None:
    (repo / "environments" / "dev" / "layers" / f"{name}.yaml").write_text(textwrap.dedent(body))


PARCELS = """\
    apiVersion: honua.io/v1
    kind: Layer
    metadata:
      name: parcels
      service: transportation
    spec:
      title: Parcels
      geometryType: MultiPolygon
      crs: [EPSG:2913]
      storage:
        table: cadastre.parcels
        geometryColumn: shape
        primaryKey: parcel_id
        srid: 2913
      idField: parcel_id
      geometryField: shape
    """


# --------------------------------------------------------------------------- compile


def test_compile_the_example(repo: Path) -> None:
    doc = compile_published(desired(repo), {CID: BBOX})
    assert doc["format_version"] == 1
    assert doc["environment"] == "dev"
    assert list(doc["services"]) == ["transportation"]
    assert list(doc["collections"]) == [CID]
    svc = doc["services"]["transportation"]
    assert svc["title"] == "Transportation"
    assert svc["keywords"] == ["transportation", "mobility"]
    assert svc["ogc"]["itemLimit"] == 1000
    c = doc["collections"][CID]
    assert c["service"] == "transportation" and c["layer"] == "bike-lanes"
    assert c["title"] == "Bike Lanes"
    assert c["description"] == "City bicycle lane network"
    assert c["table"] == "public.bike_lanes"
    assert c["id_field"] == "id" and c["geom_field"] == "geom"
    assert c["geometry_type"] == "LineString"
    assert c["srid"] == 4326
    assert c["fields"] == ["id", "name", "lane_type", "width_ft", "last_updated"]
    assert c["title_field"] == "name"
    assert c["item_limit"] == 1000
    assert c["bbox"] == list(BBOX)
    # CRS84 first, then the declared ones as OGC URIs, no duplicates
    assert c["crs"][0] == CRS84
    assert "http://www.opengis.net/def/crs/EPSG/0/3857" in c["crs"]
    assert len(c["crs"]) == len(set(c["crs"]))
    json.dumps(doc)  # JSON-able


def test_crs_mapping() -> None:
    assert storage_crs_uri(4326) == CRS84
    assert storage_crs_uri(0) == CRS84
    assert storage_crs_uri(2913) == "http://www.opengis.net/def/crs/EPSG/0/2913"
    assert crs_uri("EPSG:3857") == "http://www.opengis.net/def/crs/EPSG/0/3857"
    assert crs_uri("CRS84") == crs_uri("OGC:CRS84") == CRS84
    assert crs_uri(CRS84) == CRS84


def test_schema_qualified_table_and_other_srid(repo: Path) -> None:
    add_layer(repo, "parcels", PARCELS)
    doc = compile_published(desired(repo))
    p = doc["collections"]["transportation::parcels"]
    assert p["table"] == "cadastre.parcels" and p["schema"] == "cadastre"
    assert p["geom_field"] == "shape" and p["id_field"] == "parcel_id"
    assert p["srid"] == 2913
    assert p["crs"] == [CRS84, "http://www.opengis.net/def/crs/EPSG/0/2913", "http://www.opengis.net/def/crs/EPSG/0/3857"]
    assert p["bbox"] is None
    assert p["item_limit"] == 1000  # from the service
    assert p["fields"] == []


def test_disabled_layers_are_not_published(repo: Path) -> None:
    add_layer(repo, "parcels", PARCELS.replace(
        "      geometryField: shape\n", "      geometryField: shape\n      ogc:\n        collectionsEnabled: false\n"))
    doc = compile_published(desired(repo))
    assert list(doc["collections"]) == [CID]
    edit(repo / "environments/dev/services/transportation.yaml", "serviceType: feature", "serviceType: feature\n  enabled: false")
    doc = compile_published(desired(repo))
    assert doc["collections"] == {}
    assert doc["services"]["transportation"]["enabled"] is False


def test_fingerprints_ignore_the_bbox(repo: Path) -> None:
    d = desired(repo)
    a = compile_published(d, {CID: BBOX})
    b = compile_published(d, {CID: (0, 0, 1, 1)})
    assert published_fingerprint(a) == published_fingerprint(b)
    assert collection_fingerprints(a) == collection_fingerprints(b)
    edit(repo / "environments/dev/layers/bike-lanes.yaml", 'title: "Bike Lanes"', 'title: "Bicycle Lanes"')
    c = compile_published(desired(repo), {CID: BBOX})
    assert published_fingerprint(a) != published_fingerprint(c)
    assert collection_fingerprints(a)[CID] != collection_fingerprints(c)[CID]
    assert published_fingerprint(None) == "absent"


# --------------------------------------------------------------------------- diff


def test_diff_published(repo: Path) -> None:
    doc = compile_published(desired(repo), {CID: BBOX})
    entries = diff_published(None, doc)
    assert [(e.action, e.kind, e.collection) for e in entries] == [
        ("create", "service", "transportation"), ("create", "collection", CID)]
    assert all(e.action == "skip" for e in diff_published(doc, doc))
    moved = json.loads(json.dumps(doc))
    moved["collections"][CID]["bbox"] = [0, 0, 1, 1]
    assert all(e.action == "skip" for e in diff_published(doc, moved))
    changed = json.loads(json.dumps(doc))
    changed["collections"][CID]["item_limit"] = 50
    upd = [e for e in diff_published(doc, changed) if e.action == "update"]
    assert len(upd) == 1 and upd[0].collection == CID and "item_limit" in upd[0].message
    empty = empty_published("dev")
    deletes = diff_published(doc, empty, prune=True)
    assert {e.action for e in deletes} == {"delete"}
    kept = diff_published(doc, empty, prune=False)
    assert {e.action for e in kept} == {"skip"}
    merged = merge_published(doc, empty, prune=False)
    assert list(merged["collections"]) == [CID]
    assert merge_published(doc, empty, prune=True)["collections"] == {}


# --------------------------------------------------------------------------- pygeoapi rendering


def test_connection_params_socket_and_url() -> None:
    c = connection_params("host='/tmp/pg sock' port=5433 dbname=gis user=honua")
    assert c.data == {"host": "/tmp/pg sock", "port": 5433, "dbname": "gis", "user": "honua"}
    assert c.password is None and c.options == {}
    u = connection_params("postgresql://app:s3cret-pw@db.example:6543/city?sslmode=require&connect_timeout=5")
    assert u.data == {"host": "db.example", "port": 6543, "dbname": "city", "user": "app"}
    assert u.password == "s3cret-pw"
    assert u.options == {"connect_timeout": "5", "sslmode": "require"}
    assert "s3cret" not in repr(u)
    with pytest.raises(ServerError):
        connection_params("host='/x port=5432")


def test_password_env_names() -> None:
    assert password_env_names(["postgis-primary"]) == {"postgis-primary": PASSWORD_ENV}
    assert password_env_names(["a", "b-2"]) == {"a": f"{PASSWORD_ENV}_A", "b-2": f"{PASSWORD_ENV}_B_2"}


def test_render_config_never_holds_the_password(repo: Path) -> None:
    add_layer(repo, "parcels", PARCELS)
    doc = compile_published(desired(repo), {CID: BBOX})
    conn = connection_params("postgresql://app:Very-Secret-9@127.0.0.1:5432/city")
    cfg = render_config(doc, host="127.0.0.1", port=5555, url="http://127.0.0.1:5555/ogc",
                        connections={"postgis-primary": conn}, password_envs={"postgis-primary": PASSWORD_ENV})
    text = dump_config(cfg)
    assert "Very-Secret-9" not in text
    assert "\"password\": ${HONUA_PYGEOAPI_DB_PASSWORD}" in text  # the one plain scalar: pygeoapi interpolates it
    assert cfg["server"]["url"] == "http://127.0.0.1:5555/ogc"
    assert cfg["server"]["bind"] == {"host": "127.0.0.1", "port": 5555}
    assert cfg["server"]["admin"] is False
    for key in ("identification", "license", "provider", "contact"):
        assert key in cfg["metadata"]
    assert cfg["metadata"]["identification"]["terms_of_service"]
    res = cfg["resources"][CID]
    assert res["type"] == "collection"
    assert res["extents"]["spatial"] == {"bbox": list(BBOX), "crs": CRS84}
    assert res["limits"] == {"max_items": 1000}
    prov = res["providers"][0]
    assert prov["name"] == "PostgreSQL" and prov["table"] == "bike_lanes"
    assert prov["data"]["search_path"] == ["public"]
    assert prov["storage_crs"] == CRS84
    assert prov["title_field"] == "name"
    # the declared fields are the served ones; parcels declares none: every column is served
    assert prov["properties"] == ["id", "name", "lane_type", "width_ft", "last_updated"]
    parcels = cfg["resources"]["transportation::parcels"]["providers"][0]
    assert "properties" not in parcels
    assert parcels["table"] == "parcels" and parcels["data"]["search_path"] == ["cadastre", "public"]
    assert parcels["storage_crs"] == "http://www.opengis.net/def/crs/EPSG/0/2913"
    assert cfg["resources"]["transportation::parcels"]["extents"]["spatial"]["bbox"] == [-180.0, -90.0, 180.0, 90.0]
    no_pw = render_config(doc, host="127.0.0.1", port=5555, url="u", connections={
        "postgis-primary": connection_params("host=/sock dbname=x")}, password_envs={})
    assert "password" not in no_pw["resources"][CID]["providers"][0]["data"]


# --------------------------------------------------------------------------- Honua translations


def test_manifest_round_trip(repo: Path) -> None:
    add_layer(repo, "parcels", PARCELS)
    doc = compile_published(desired(repo), {CID: BBOX})
    resources = to_manifest(doc, namespace="city-dev", environment="dev")
    kinds = [(r["kind"], r["metadata"]["name"]) for r in resources]
    assert kinds == [("Service", "transportation"), ("Layer", "transportation.bike-lanes"),
                     ("Layer", "transportation.parcels")]
    layer = resources[1]
    assert layer["apiVersion"] == "honua.io/v1alpha1"
    assert layer["metadata"]["namespace"] == "city-dev"
    assert layer["metadata"]["labels"]["service"] == "transportation"
    assert layer["metadata"]["labels"]["environment"] == "dev"
    for key in ("tableName", "schemaName", "geometryType", "srid"):
        assert layer["spec"][key]
    assert resources[0]["spec"]["srid"] == 4326 and resources[0]["spec"]["description"]
    back = from_manifest(resources, environment="dev")
    assert all(e.action == "skip" for e in diff_published(back, doc)), diff_published(back, doc)
    assert from_manifest(resources, environment="prod")["collections"] == {}


def test_gen1_round_trip_has_no_dsn(repo: Path) -> None:
    doc = compile_published(desired(repo), {CID: BBOX})
    meta = to_gen1(doc)
    for key in ("catalog", "folders", "services", "layers", "dataSources"):
        assert key in meta
    assert meta["dataSources"] == [{"id": "postgis-primary", "provider": "postgis",
                                    "connectionString": "${HONUA_DB_POSTGIS_PRIMARY}"}]
    lyr = meta["layers"][0]
    assert lyr["id"] == "bike-lanes" and lyr["serviceId"] == "transportation"
    assert lyr["storage"]["table"] == "public.bike_lanes"
    back = from_gen1(meta, environment="dev")
    assert all(e.action == "skip" for e in diff_published(back, doc))
    assert back["collections"][CID]["bbox"] == list(BBOX)


def test_open_server_none_and_unknown_options(repo: Path, tmp_path: Path) -> None:
    d = desired(repo)
    p = open_server(None, root=tmp_path, environment="dev")
    assert isinstance(p, NoopServer) and not p.manages_publication
    assert p.read() is None and p.plan(compile_published(d)) == []
    assert p.health(["x"], 1).ok
    srv = d.server()
    assert srv is not None
    honua = srv.model_copy(update={"spec": srv.spec.model_copy(update={"type": "honua"})})
    with pytest.raises(ServerError, match="honua"):
        open_server(honua, root=tmp_path, environment="dev")
