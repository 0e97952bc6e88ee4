"""The served API is the layer file: pygeoapi serves exactly the declared fields (issue 26)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import edit, run

pytest.importorskip("pygeoapi", reason="the served-layer tests need the 'server' extra (make test installs it)")

CID = "transportation::bike-lanes"
WIDTH = """    - name: width_ft
      type: double
      alias: "Width (feet)"
"""


def get(url: str) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=15) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


def served_properties(base: str) -> tuple[set[str], set[str]]:
    items = get(f"{base}/collections/{CID}/items?limit=5&f=json")
    props = set().union(*(f["properties"].keys() for f in items["features"]))
    queryables = set(get(f"{base}/collections/{CID}/queryables?f=json")["properties"])
    return props, queryables


def test_a_removed_field_is_no_longer_served(served: tuple[Path, dict[str, str], str]) -> None:
    repo, env, base = served
    assert run(repo, "dev", "seed-data", env=env).exit_code == 0
    applied = run(repo, "dev", "apply", "--environment", "dev", env=env)
    assert applied.exit_code == 0, applied.output
    props, queryables = served_properties(base)
    assert "width_ft" in props and "width_ft" in queryables

    edit(repo / "environments/dev/layers/bike-lanes.yaml", WIDTH, "")
    updated = run(repo, "apply", "--env", "dev", "--yes", env=env)
    assert updated.exit_code == 0, updated.output
    props, queryables = served_properties(base)
    # the id is the feature's id, not a property; the geometry is the feature's geometry
    assert props == {"name", "lane_type", "last_updated"}, props
    assert queryables == {"geometry", "id", "name", "lane_type", "last_updated"}, queryables

    assert run(repo, "plan", "--env", "dev", "--detailed-exitcode", env=env).exit_code == 0
    drift = run(repo, "drift", "--env", "dev", env=env)
    assert drift.exit_code == 0, drift.output
    tested = run(repo, "test", "--layer", "bike-lanes", env=env)
    assert "✓ Served fields" in tested.output, tested.output


def test_honua_test_fails_when_the_server_serves_an_undeclared_field() -> None:
    """`honua test` compares what /items and /queryables serve with the layer file."""
    import http.server
    import threading

    from honua_plan.checks.ogc import served_fields

    bodies = {
        "/collections/t::l/items": {"type": "FeatureCollection", "features": [
            {"type": "Feature", "id": 1, "geometry": None, "properties": {"name": "a", "ssn": "123"}}]},
        "/collections/t::l/queryables": {"type": "object", "properties": {
            "geometry": {}, "id": {}, "name": {}, "ssn": {}}},
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(bodies.get(self.path.split("?")[0], {})).encode()
            self.send_response(200 if self.path.split("?")[0] in bodies else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        ok, message, _ = served_fields(url, "t::l", ["id", "name"], id_field="id", geometry="geom")
        assert not ok
        assert message == ("/items serves ssn, which the layer does not declare; "
                           "/queryables offers ssn, which the layer does not declare")
        ok, message, _ = served_fields(url, "t::l", ["id", "name", "ssn"], id_field="id", geometry="geom")
        assert ok, message
    finally:
        server.shutdown()


BAD_MIGRATION = """apiVersion: honua.io/v1
kind: Migration
metadata:
  id: "004"
  description: "A column of a type that does not exist"
  environments: [dev]
spec:
  dependencies: ["001"]
  up:
    - name: Add the column
      type: sql
      content: |
        ALTER TABLE bike_lanes ADD COLUMN surface no_such_type;
  down:
    - name: Drop the column
      type: sql
      content: |
        ALTER TABLE bike_lanes DROP COLUMN surface;
"""


def test_no_reload_after_a_migration_that_failed_entirely(served: tuple[Path, dict[str, str], str]) -> None:
    """Issue 26 item 11: nothing this apply changed is served, so the server is left alone."""
    repo, env, base = served
    assert run(repo, "dev", "seed-data", env=env).exit_code == 0
    assert run(repo, "dev", "apply", "--environment", "dev", env=env).exit_code == 0
    assert run(repo, "apply", "--env", "dev", "--yes", env=env).exit_code == 0  # 001 and 002 recorded
    config = next((repo / "state").rglob("pygeoapi-config.yml"))
    before = config.stat().st_mtime_ns, config.read_bytes()

    (repo / "migrations/004_bad.yaml").write_text(BAD_MIGRATION)
    failed = run(repo, "apply", "--env", "dev", "--yes", env=env)
    assert failed.exit_code == 1, failed.output
    assert "Services reloaded" not in failed.output, failed.output
    assert "Services not reloaded: no step that changes what the server serves completed" in failed.output
    assert (config.stat().st_mtime_ns, config.read_bytes()) == before
    assert get(f"{base}/collections/{CID}?f=json")["id"] == CID


def test_resume_after_a_failed_reload_keeps_every_record(served: tuple[Path, dict[str, str], str]) -> None:
    """Issue 26 item 7: the reload fails (the server's port is taken), then `apply --resume`
    with the port free: the state records what is served, plan and drift are empty."""
    import socket

    repo, env, base = served
    assert run(repo, "dev", "seed-data", env=env).exit_code == 0
    port = int(base.split(":")[2].split("/")[0])
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen(1)
        failed = run(repo, "apply", "--env", "dev", "--yes", env=env)
    assert failed.exit_code == 1, failed.output
    resumed = run(repo, "apply", "--env", "dev", "--resume", "--yes", env=env)
    assert resumed.exit_code == 0, resumed.output
    listed = run(repo, "state", "list", "--env", "dev", env=env)
    for address in (f"layer.{CID}", "service.transportation", "datasource.postgis-primary"):
        assert address in listed.output, "\n".join((address, failed.output, "-----", resumed.output, listed.output))
    assert get(f"{base}/collections/{CID}?f=json")["id"] == CID
    planned = run(repo, "plan", "--env", "dev", "--detailed-exitcode", env=env)
    assert planned.exit_code == 0, planned.output
    assert run(repo, "drift", "--env", "dev", env=env).exit_code == 0
