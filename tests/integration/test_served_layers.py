"""Served layers end to end: the seed's Example 1 over real HTTP (pygeoapi under gunicorn)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest

from tests.helpers import edit, run

pytest.importorskip("pygeoapi", reason="the served-layer tests need the 'server' extra (make test installs it)")

CID = "transportation::bike-lanes"
ENVELOPE = (-122.5, 45.5, -122.4, 45.6)


def get(url: str) -> tuple[int, dict]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=15) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def test_example_1_served_tested_altered_and_removed(served: tuple[Path, dict[str, str], str], pg_dsn: str) -> None:
    repo, env, base = served
    seeded = run(repo, "dev", "seed-data", env=env)
    assert seeded.exit_code == 0, seeded.output

    applied = run(repo, "dev", "apply", "--environment", "dev", env=env)
    assert applied.exit_code == 0, applied.output
    for line in ("✓ Validated metadata syntax", "✓ Connected to datasource: postgis-primary",
                 "✓ Verified table exists: bike_lanes", "✓ Validated geometry column: geom",
                 "✓ Created layer: bike-lanes", "Testing layer...", "✓ Health check passed",
                 f"✓ OGC endpoint: {base}/collections/{CID}", "✓ Sample query returned 42 features"):
        assert line in applied.output, applied.output

    status, items = get(f"{base}/collections/{CID}/items?limit=100&f=json")
    assert status == 200 and items["type"] == "FeatureCollection"
    assert len(items["features"]) == 42 and items["numberMatched"] == 42
    for feature in items["features"]:
        for lon, lat in feature["geometry"]["coordinates"]:  # CRS84: lon, lat
            assert ENVELOPE[0] <= lon <= ENVELOPE[2] and ENVELOPE[1] <= lat <= ENVELOPE[3], (lon, lat)

    tested = run(repo, "test", "--layer", "bike-lanes", env=env)
    assert tested.exit_code == 0, tested.output
    for line in ("Running layer tests for bike-lanes...", "✓ Metadata validation", "✓ Data source connectivity",
                 "✓ Geometry validation", "✓ OGC API conformance", "✓ Performance benchmark (avg",
                 "All tests passed!"):
        assert line in tested.output, tested.output
    report = json.loads(run(repo, "test", "--layer", "bike-lanes", "--format", "json", env=env).output)
    assert report["ok"] and report["layers"][0]["collection"] == CID

    # a migration adding a column: applied, then served after the automatic reload
    (repo / "migrations/004_add_surface.yaml").write_text(
        'apiVersion: honua.io/v1\nkind: Migration\nmetadata:\n  id: "004"\n  description: "Add surface"\n'
        '  environments: [dev]\nspec:\n  dependencies: ["001"]\n  up:\n    - name: Add surface column\n'
        "      type: sql\n      content: |\n        ALTER TABLE bike_lanes ADD COLUMN surface varchar(30) DEFAULT 'asphalt';\n"
        "  down:\n    - name: Drop surface column\n      type: sql\n      content: |\n"
        "        ALTER TABLE bike_lanes DROP COLUMN surface;\n")
    deployed = run(repo, "deploy", "migration", "004", "--environment", "dev", env=env)
    assert deployed.exit_code == 0, deployed.output
    assert "✓ Services reloaded" in deployed.output, deployed.output
    status, items = get(f"{base}/collections/{CID}/items?limit=5&f=json")
    assert status == 200 and "surface" not in items["features"][0]["properties"]  # not declared yet
    # the layer file is the served API: the new column is served once the layer declares it
    edit(repo / "environments/dev/layers/bike-lanes.yaml", '      alias: "Last Updated"\n',
         '      alias: "Last Updated"\n    - name: surface\n      type: string\n      maxLength: 30\n')
    updated = run(repo, "apply", "--env", "dev", "--yes", env=env)
    assert updated.exit_code == 0, updated.output
    status, items = get(f"{base}/collections/{CID}/items?limit=5&f=json")
    assert status == 200
    assert items["features"][0]["properties"]["surface"] == "asphalt"

    # removing the layer: the plan marks it SVC101 HIGH, the apply removes the collection
    (repo / "environments/dev/layers/bike-lanes.yaml").unlink()
    planned = json.loads(run(repo, "plan", "--env", "dev", "--format", "json", env=env).output)
    gone = next(a for a in planned["actions"] if a["address"] == f"layer.{CID}")
    assert gone["action"] == "delete" and gone["risk"] == "HIGH"
    assert "SVC101" in [f["code"] for f in gone["findings"]]
    removed = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
    assert removed.exit_code == 0, removed.output
    assert get(f"{base}/collections/{CID}?f=json")[0] == 404


def test_honua_test_fails_on_invalid_geometry_missing_collection_and_server_down(
        served: tuple[Path, dict[str, str], str], pg_dsn: str) -> None:
    repo, env, _base = served
    assert run(repo, "dev", "seed-data", env=env).exit_code == 0
    assert run(repo, "dev", "apply", "--environment", "dev", env=env).exit_code == 0

    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # a LineString with one distinct point
        conn.execute("INSERT INTO bike_lanes (name, geom) VALUES ('broken', "
                     "ST_GeomFromText('LINESTRING(-122.45 45.55, -122.45 45.55)', 4326))")
    bad = run(repo, "test", "--layer", "bike-lanes", env=env)
    assert bad.exit_code == 1
    assert "✗ Geometry validation: 1 invalid geometry" in bad.output, bad.output
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM bike_lanes WHERE name = 'broken'")

    # a layer declared but never published: its collection is missing on the server
    layer = (repo / "environments/dev/layers/bike-lanes.yaml").read_text()
    (repo / "environments/dev/layers/lanes-copy.yaml").write_text(layer.replace("name: bike-lanes", "name: lanes-copy"))
    missing = run(repo, "test", "--layer", "lanes-copy", env=env)
    assert missing.exit_code == 1
    assert "✗ OGC API conformance" in missing.output, missing.output
    (repo / "environments/dev/layers/lanes-copy.yaml").unlink()

    assert run(repo, "serve", "--env", "dev", "--stop", env=env).exit_code == 0
    down = run(repo, "test", "--layer", "bike-lanes", "--format", "json", env=env)
    assert down.exit_code == 1
    checks = {c["name"]: c for c in json.loads(down.output)["layers"][0]["checks"]}
    assert checks["Geometry validation"]["ok"] is True
    assert checks["OGC API conformance"]["ok"] is False
