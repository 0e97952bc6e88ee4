"""Layer text is served as written, never as a secret (issue 14, item 2).

pygeoapi expands ``${VAR}`` in its configuration (and in a YAML OpenAPI document) from
its own environment. A layer's title, description or keywords reach that configuration,
so they must survive the expansion literally, and the server's environment must hold
nothing but what it needs (PATH, locale, its own files, the one database password).
Real pygeoapi under gunicorn, real PostGIS, real HTTP.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from honua_plan.config.loader import load_environment
from honua_plan.providers.server import compile_published, open_server
from honua_plan.providers.server.pygeoapi import PygeoapiServer, _children, _environ
from honua_plan.providers.server.pygeoapi_config import PASSWORD_ENV, server_env_allowed
from tests.helpers import copy_example, edit, run

pytest.importorskip("pygeoapi", reason="pygeoapi is not installed: pip install 'honua-plan[server]'")
pytest.importorskip("gunicorn", reason="gunicorn is not installed: pip install 'honua-plan[server]'")

pytestmark = [pytest.mark.server, pytest.mark.integration]

CID = "transportation::bike-lanes"
SECRET = "Sup3r-Secret-Value-41"
API_KEY = "sk-test-never-served-0123456789"
PASSWORD = "Not-Used-By-Trust-7"  # the test cluster trusts local connections; the value must still flow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=15) as resp:
            return resp.status, resp.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def get_json(url: str) -> Any:
    status, body = fetch(url)
    assert status == 200, f"{url}: HTTP {status}: {body[:500]}"
    return json.loads(body)


def server_pids(state_dir: Path) -> list[int]:
    master = int((state_dir / "server" / "gunicorn.pid").read_text().strip())
    return [master, *sorted(_children(master) or set())]


def assert_env_allow_listed(pids: list[int], secrets: list[str]) -> None:
    """Only allow-listed names; the DB password in its one variable; no other secret anywhere."""
    assert len(pids) >= 2, f"the gunicorn master and its workers: {pids}"
    for pid in pids:
        env = _environ(pid)
        assert env is not None, f"/proc/{pid}/environ is not readable"
        extra = sorted(k for k in env if not server_env_allowed(k))
        assert not extra, f"pid {pid} has variables outside the allow-list: {extra}"
        assert env.get(PASSWORD_ENV) == PASSWORD, f"pid {pid}: the password is not in {PASSWORD_ENV}"
        for name, value in env.items():
            for secret in secrets:
                if (name, secret) != (PASSWORD_ENV, PASSWORD):
                    assert secret not in value, f"pid {pid}: {name} holds a secret"


# --------------------------------------------------------------------------- the reproduction


def test_env_references_in_layer_text_are_served_literally(tmp_path: Path, pg_dsn: str) -> None:
    """``${HONUA_PG_DSN}`` in a description was replaced by the DSN on the public API."""
    repo = copy_example(tmp_path / "repo")
    port = free_port()
    edit(repo / "providers/gis-server.yaml", "{dev: 5555,", f"{{dev: {port},")
    (repo / "migrations/003_optimize_bike_lanes.yaml").unlink()
    layer = repo / "environments/dev/layers/bike-lanes.yaml"
    description = "Lanes ${HONUA_PG_DSN} and ${SOME_SECRET} and ${SOME_SECRET:-dflt} $HOME {{ env }} %s"
    title = "Bike ${SOME_SECRET} Lanes"
    edit(layer, 'description: "City bicycle lane network"', f"description: {json.dumps(description)}")
    edit(layer, 'title: "Bike Lanes"', f"title: {json.dumps(title)}\n  keywords: [\"${{SOME_SECRET}}\", plain]")
    dsn = f"{pg_dsn} password={PASSWORD}"
    env = {"HONUA_PG_DSN": dsn, "SOME_SECRET": SECRET, "OPENAI_API_KEY": API_KEY}
    secrets = [dsn, SECRET, API_KEY, PASSWORD]
    base = f"http://localhost:{port}/ogc"
    try:
        assert run(repo, "dev", "seed-data", env=env).exit_code == 0
        applied = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
        assert applied.exit_code == 0, applied.output

        collection = get_json(f"{base}/collections/{CID}?f=json")
        assert collection["title"] == title
        assert collection["description"] == description
        assert collection["keywords"] == ["${SOME_SECRET}", "plain"]
        listed = {c["id"]: c for c in get_json(f"{base}/collections?f=json")["collections"]}
        assert listed[CID]["description"] == description and listed[CID]["title"] == title
        for path in ("/?f=json", "/collections?f=json", f"/collections/{CID}?f=json", "/openapi?f=json",
                     f"/collections/{CID}/items?f=json&limit=2", f"/collections/{CID}/queryables?f=json"):
            status, body = fetch(base + path)
            assert status == 200, f"{path}: HTTP {status}: {body[:300]}"
            for secret in secrets:
                assert secret not in body, f"{path} serves a secret"
        # the OpenAPI document describes the collection with the literal text too
        assert description in json.dumps(get_json(f"{base}/openapi?f=json"), ensure_ascii=False)

        # the server's environment: the allow-list, and the password in its one variable only
        assert_env_allow_listed(server_pids(repo / "state" / "dev"), secrets)
    finally:
        run(repo, "serve", "--env", "dev", "--stop", env=env)


# --------------------------------------------------------------------------- random text

TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
        st.sampled_from(["\n", "\t", "\\", '"', "'", "$", "{", "}", "%", "#", ":", "&", "*", "!"]),
    ),
    max_size=40,
)
FRAGMENTS = st.sampled_from([
    "${SOME_SECRET}", "${HONUA_PG_DSN}", "${OPENAI_API_KEY}", "${UNSET_VAR_X}", "${SOME_SECRET:-d}", "$SOME_SECRET",
    "${", "$", "{{", "}}", "{{ env }}", "{% if %}", "%s", "%(x)s", "\\x24", "\\u0024", "'", '"', "\\", "\n", "\r\n",
    " ", "---", "...", "- ", "? ", ": ", "#", "&a", "*a", "!!python/object", "true", "1.5", "007", "null", "~",
    "é", "☃", "𝄞", "\u00a0", "\u2028",
])
FREE_TEXT = st.lists(st.one_of(TEXT, FRAGMENTS), min_size=1, max_size=6).map("".join)
LAYER_TEXT = st.fixed_dictionaries({
    "title": FREE_TEXT.filter(lambda s: s.strip() != ""),
    "description": FREE_TEXT.filter(lambda s: s.strip() != ""),
    "keywords": st.lists(FREE_TEXT, min_size=1, max_size=3),
    "alias": FREE_TEXT,
})
LAYERS_PER_RELOAD = 5  # a reload (openapi generate + HUP) takes ~4 s: many layers per example


@pytest.fixture
def text_server(tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[PygeoapiServer, Path, str]]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE bike_lanes (id serial PRIMARY KEY, name text, geom geometry(LineString, 4326));"
                     "INSERT INTO bike_lanes (name, geom) VALUES ('a', ST_GeomFromText("
                     "'LINESTRING(-122.45 45.55, -122.44 45.56)', 4326))")
    repo = copy_example(tmp_path / "repo")
    (repo / "migrations/003_optimize_bike_lanes.yaml").unlink()
    dsn = f"{pg_dsn} password={PASSWORD}"
    for name, value in (("HONUA_PG_DSN", dsn), ("SOME_SECRET", SECRET), ("OPENAI_API_KEY", API_KEY)):
        monkeypatch.setenv(name, value)
    server = load_environment(repo, "dev").server()
    assert server is not None
    # a copy, not a dump validated again: a dump holds durations as seconds, config needs a unit
    options = server.spec.pygeoapi.model_copy(update={"port": free_port(), "environmentPorts": {}, "workers": 1})
    server = server.model_copy(update={"spec": server.spec.model_copy(update={"pygeoapi": options})})
    provider = open_server(server, root=repo, environment="dev", dsn_resolver=lambda: dsn)
    assert isinstance(provider, PygeoapiServer)
    try:
        yield provider, repo, dsn
    finally:
        provider.stop()


def write_layer(repo: Path, name: str, text: dict[str, Any]) -> None:
    doc = {
        "apiVersion": "honua.io/v1", "kind": "Layer",
        "metadata": {"name": name, "service": "transportation", "environment": "dev"},
        "spec": {
            "title": text["title"], "description": text["description"], "keywords": text["keywords"],
            "geometryType": "LineString", "idField": "id",
            "storage": {"table": "bike_lanes", "geometryColumn": "geom", "primaryKey": "id", "srid": 4326},
            "fields": [{"name": "id", "type": "integer"}, {"name": "name", "type": "string", "alias": text["alias"]}],
        },
    }
    (repo / "environments/dev/layers" / f"{name}.yaml").write_text(
        yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")


def test_random_layer_text_is_served_exactly(text_server: tuple[PygeoapiServer, Path, str]) -> None:
    provider, repo, dsn = text_server
    secrets = [SECRET, API_KEY, PASSWORD, dsn]
    for old in (repo / "environments/dev/layers").glob("*.yaml"):
        old.unlink()

    @settings(max_examples=6, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(st.lists(LAYER_TEXT, min_size=LAYERS_PER_RELOAD, max_size=LAYERS_PER_RELOAD))
    def check(texts: list[dict[str, Any]]) -> None:
        names = [f"t{i}" for i in range(len(texts))]
        for name, text in zip(names, texts, strict=True):
            write_layer(repo, name, text)
        desired = load_environment(repo, "dev")
        for name, text in zip(names, texts, strict=True):  # honua's own loader keeps the text
            spec = desired.layers[f"layer.transportation::{name}"].spec
            assert (spec.title, spec.description, spec.keywords, spec.fields[1].alias) == (
                text["title"], text["description"], text["keywords"], text["alias"])
        provider.publish(compile_published(desired), prune=True)
        provider.reload()
        cids = [f"transportation::{n}" for n in names]
        provider.health(cids, 30)
        base = provider.ogc_url
        listed = {c["id"]: c for c in get_json(f"{base}/collections?f=json")["collections"]}
        for cid, text in zip(cids, texts, strict=True):
            served = get_json(f"{base}/collections/{cid}?f=json")
            for got in (served, listed[cid]):
                assert got["title"] == text["title"]
                assert got["description"] == text["description"]
                assert got["keywords"] == text["keywords"]
        for path in ("/?f=json", "/collections?f=json", *(f"/collections/{c}?f=json" for c in cids),
                     "/openapi?f=json"):
            status, body = fetch(base + path)
            assert status == 200, f"{path}: HTTP {status}"
            for secret in secrets:
                assert secret not in body, f"{path} serves a secret"

    check()
    assert_env_allow_listed(server_pids(provider.state_dir), secrets)
