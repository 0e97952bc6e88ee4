"""pygeoapi, really served: publish the example layer, start gunicorn, query it, reload, unpublish.

Needs the optional extra ``server`` (pygeoapi + gunicorn) and the throwaway PostGIS.
The database is reached over its Unix socket, as the embedded database is.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from honua_plan.checks import ogc as ogctest
from honua_plan.config.loader import load_environment
from honua_plan.errors import ServerError
from honua_plan.providers.server import compile_published, open_server
from honua_plan.providers.server.pygeoapi import PygeoapiServer, _children, _pid_alive
from honua_plan.providers.server.pygeoapi_config import PASSWORD_ENV
from tests.helpers import copy_example

pytest.importorskip("pygeoapi", reason="pygeoapi is not installed: pip install 'honua-plan[server]'")
pytest.importorskip("gunicorn", reason="gunicorn is not installed: pip install 'honua-plan[server]'")

pytestmark = [pytest.mark.server, pytest.mark.integration]

CID = "transportation::bike-lanes"
PASSWORD = "Not-Used-By-Trust-7"  # the test cluster trusts local connections; the value must still flow

CREATE = """
CREATE TABLE bike_lanes (
    id serial PRIMARY KEY,
    name varchar(200),
    lane_type varchar(50),
    width_ft float8,
    last_updated timestamptz,
    geom geometry(LineString, 4326)
);
INSERT INTO bike_lanes (name, lane_type, width_ft, last_updated, geom)
SELECT 'Lane ' || i, (ARRAY['protected', 'buffered', 'shared'])[1 + i % 3], 4 + (i % 5), now(),
       ST_SetSRID(ST_MakeLine(ST_MakePoint(-122.49 + i * 0.002, 45.51 + i * 0.0015),
                              ST_MakePoint(-122.488 + i * 0.002, 45.512 + i * 0.0015)), 4326)
  FROM generate_series(1, 42) AS i;
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str, expect: int = 200) -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=10) as resp:
            assert resp.status == expect
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        assert exc.code == expect, f"{url}: HTTP {exc.code}"
        return None


@pytest.fixture
def served(tmp_path: Path, pg_dsn: str) -> Iterator[tuple[PygeoapiServer, Path, str]]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(CREATE)
    repo = copy_example(tmp_path / "repo")
    desired = load_environment(repo, "dev")
    server = desired.server()
    assert server is not None and server.spec.type == "pygeoapi"
    port = free_port()
    # a copy, not a dump validated again: a dump holds durations as seconds, config needs a unit
    options = server.spec.pygeoapi.model_copy(update={"port": port, "environmentPorts": {}})
    server = server.model_copy(update={"spec": server.spec.model_copy(update={"pygeoapi": options})})
    dsn = f"{pg_dsn} password={PASSWORD}"
    provider = open_server(server, root=repo, environment="dev", dsn_resolver=lambda: dsn)
    assert isinstance(provider, PygeoapiServer)
    try:
        yield provider, repo, pg_dsn
    finally:
        provider.stop()


def test_publish_serve_reload_unpublish(served: tuple[PygeoapiServer, Path, str]) -> None:
    provider, repo, pg_dsn = served
    desired = load_environment(repo, "dev")
    doc = compile_published(desired)
    assert provider.read() is None
    assert [(e.action, e.collection) for e in provider.plan(doc)] == [
        ("create", "transportation"), ("create", CID)]

    # publish: files written, the extent computed, no secret on disk
    result = provider.publish(doc, prune=True)
    assert result.summary["created"] == 2
    assert provider.config_path.is_file() and provider.openapi_path.is_file() and provider.published_path.is_file()
    config_text = provider.config_path.read_text()
    assert PASSWORD not in config_text and PASSWORD not in provider.published_path.read_text()
    assert "${" + PASSWORD_ENV + "}" in config_text
    box = result.published["collections"][CID]["bbox"]
    assert -122.5 <= box[0] < box[2] <= -122.4 and 45.5 <= box[1] < box[3] <= 45.6
    published = provider.read()
    assert published is not None and all(e.action == "skip" for e in provider.plan(doc))

    # start (reload starts a server that is not running) and wait for the collection
    started = time.perf_counter()
    provider.reload()
    provider.health([CID], 30)
    start_s = time.perf_counter() - started
    assert provider.is_running()
    base = provider.ogc_url
    assert base.endswith("/ogc")

    items = get_json(f"{base}/collections/{CID}/items?limit=100&f=json")
    assert items["type"] == "FeatureCollection"
    assert len(items["features"]) == 42 and items["numberMatched"] == 42
    for f in items["features"]:
        for lon, lat in f["geometry"]["coordinates"]:  # CRS84: lon, lat (not swapped)
            assert -122.5 <= lon <= -122.4, (lon, lat)
            assert 45.5 <= lat <= 45.6, (lon, lat)
    assert all(lk["href"].startswith(base + "/") for lk in items["links"]), items["links"]
    assert get_json(f"{base}/collections/{CID}?f=json")["id"] == CID

    outcomes = ogctest.run_conformance(base, [CID])
    failed = [str(o) for o in outcomes if not o.ok]
    assert not failed, "\n".join(failed)
    assert ogctest.sample_query(base, CID, 5) == 5
    bench = ogctest.benchmark(base, CID, requests=5, bbox=(-122.5, 45.5, -122.4, 45.6))
    assert bench.errors == 0 and bench.p95_ms >= bench.min_ms > 0

    # a migration adds a column, the layer declares it: served after publish + reload (HUP
    # clears pygeoapi's table cache)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE bike_lanes ADD COLUMN surface text DEFAULT 'asphalt'")
    doc["collections"][CID]["fields"].append("surface")
    master = provider.pid()
    assert master is not None
    old_workers = _children(master)
    provider.publish(doc, prune=True)
    started = time.perf_counter()
    provider.reload()
    provider.health([CID], 30)
    reload_s = time.perf_counter() - started
    assert provider.pid() == master, "a HUP reload keeps the master"
    assert old_workers is None or not (old_workers & (_children(master) or set()))
    feature = get_json(f"{base}/collections/{CID}/items?limit=1&f=json")["features"][0]
    assert feature["properties"]["surface"] == "asphalt"
    # the workers read the JSON twin of the config; the retired ones ended cleanly (no SIGTERM
    # death, which cost a reload 0.7 s of interpreter teardown)
    assert provider.twin_path.is_file()
    assert "was sent SIGTERM" not in provider.log_path.read_text()

    # a hand edit of the YAML is served after a reload: the twin is not the YAML's any more
    text = provider.config_path.read_text()
    title = json.dumps(published["collections"][CID]["title"])
    assert text.count(f'"title": {title}') == 1
    provider.config_path.write_text(text.replace(f'"title": {title}', '"title": "Edited by hand"'))
    provider.reload()
    provider.health([CID], 30)
    assert get_json(f"{base}/collections/{CID}?f=json")["title"] == "Edited by hand"
    # the engine sees it too (the files' digests differ from the recorded ones): a plan updates it
    read = provider.read()
    assert read is not None and read["collections"][CID]["title"] == "Edited by hand"
    assert [e.action for e in provider.plan(doc) if e.collection == CID] == ["update"]
    provider.publish(doc, prune=True)  # and publishing writes the engine's config again
    provider.reload()
    provider.health([CID], 30)
    assert get_json(f"{base}/collections/{CID}?f=json")["title"] == published["collections"][CID]["title"]

    # the layer is removed from the configuration: unpublished, 404 after the reload
    (repo / "environments/dev/layers/bike-lanes.yaml").unlink()
    (repo / "migrations/003_optimize_bike_lanes.yaml").unlink()  # it edits the layer file
    doc2 = compile_published(load_environment(repo, "dev"))
    assert doc2["collections"] == {}
    plan = provider.plan(doc2)
    assert ("delete", CID) in [(e.action, e.collection) for e in plan]
    provider.publish(doc2, prune=True)
    provider.reload()
    get_json(f"{base}/collections/{CID}?f=json", expect=404)
    after = provider.read()
    assert after is not None and after["collections"] == {}

    # stop: master and workers gone, pid file removed
    workers = _children(master) or set()
    assert provider.stop()
    assert not provider.is_running() and not provider.pid_path.exists()
    assert not any(_pid_alive(p) for p in [master, *workers])
    print(f"\npygeoapi timings: start+health {start_s:.2f}s, reload+health {reload_s:.2f}s, "
          f"openapi generate {provider.timings.get('openapi_generate', 0):.2f}s, "
          f"start {provider.timings.get('start', 0):.2f}s, HUP {provider.timings.get('reload', 0):.2f}s")


def test_start_fails_cleanly_on_a_busy_port(served: tuple[PygeoapiServer, Path, str]) -> None:
    provider, repo, _ = served
    provider.publish(compile_published(load_environment(repo, "dev")), prune=True)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", provider.port))
        busy.listen(1)
        with pytest.raises(ServerError, match="cannot serve on"):
            provider.start()
    assert not provider.is_running()


def test_health_times_out_with_the_missing_collection(served: tuple[PygeoapiServer, Path, str]) -> None:
    provider, repo, _ = served
    provider.publish(compile_published(load_environment(repo, "dev")), prune=True)
    provider.reload()
    with pytest.raises(ServerError, match="transportation::nope"):
        provider.health([CID, "transportation::nope"], 1.0)
