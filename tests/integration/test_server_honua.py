"""The Honua adapters against tests/fake_honua.py (and the command adapter against real processes)."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from honua_plan.config.desired import DesiredState
from honua_plan.config.loader import load_environment
from honua_plan.config.models import Server
from honua_plan.errors import ServerError
from honua_plan.providers.server import compile_published, empty_published, open_server
from honua_plan.providers.server.command import CommandServer
from honua_plan.providers.server.honua import HonuaLegacyServer, HonuaManifestServer
from tests.fake_honua import FakeHonua
from tests.helpers import copy_example, edit

CID = "transportation::bike-lanes"
KEY_ENV = "HONUA_SERVER_KEY_GIS_SERVER"  # the slot of server gis-server
KEY = "k3y-Under-Test-42"

PARCELS = """\
apiVersion: honua.io/v1
kind: Layer
metadata:
  name: parcels
  service: transportation
spec:
  title: Parcels
  geometryType: MultiPolygon
  storage:
    table: parcels
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "repo")


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeHonua]:
    f = FakeHonua(KEY, metadata_path=tmp_path / "honua" / "metadata.json").start()
    try:
        yield f
    finally:
        f.stop()


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


def server(desired: DesiredState, spec: dict[str, Any]) -> Server:
    base = desired.server()
    assert base is not None
    return Server.model_validate({**base.model_dump(by_alias=True), "spec": spec})


def manifest_provider(repo: Path, fake: FakeHonua, **honua: Any) -> HonuaManifestServer:
    d = load_environment(repo, "dev")
    srv = server(d, {"type": "honua", "healthTimeout": "5s", "honua": {
        "url": fake.url, "apiKeyEnv": KEY_ENV, "namespace": "city-dev", **honua}})
    p = open_server(srv, root=repo, environment="dev")
    assert isinstance(p, HonuaManifestServer)
    return p


def doc_of(repo: Path) -> dict[str, Any]:
    return compile_published(load_environment(repo, "dev"), {CID: (-122.5, 45.5, -122.4, 45.6)})


def actions(entries: Any) -> list[tuple[str, str, str]]:
    return sorted((e.action, e.kind, e.collection) for e in entries)


# --------------------------------------------------------------------------- manifest (Gen 2)


def test_dry_run_plan_apply_and_read_back(repo: Path, fake: FakeHonua) -> None:
    p = manifest_provider(repo, fake)
    doc = doc_of(repo)
    assert p.read() is None
    plan = p.plan(doc)
    assert actions(plan) == [("create", "collection", CID), ("create", "service", "transportation")]
    assert fake.store == {}, "a dry run changes nothing"
    sent = next(b for m, path, b in fake.requests if path.endswith("/manifest/apply"))
    assert sent["dryRun"] is True and sent["prune"] is True and sent["requestedBy"].startswith("honua-plan")

    result = p.publish(doc, prune=True)
    assert result.summary == {"created": 2, "updated": 0, "deleted": 0, "skipped": 0}
    layer = fake.resource("Layer", "transportation.bike-lanes", "city-dev")
    assert layer is not None
    assert layer["metadata"]["labels"] == {"environment": "dev", "app.kubernetes.io/managed-by": "honua-plan",
                                           "service": "transportation"}
    assert layer["spec"]["tableName"] == "bike_lanes" and layer["spec"]["schemaName"] == "public"
    assert layer["spec"]["geometryType"] == "LineString" and layer["spec"]["srid"] == 4326
    assert fake.resource("Service", "transportation", "city-dev") is not None
    assert json.loads(p.published_path.read_text())["collections"][CID]["table"] == "public.bike_lanes"

    back = p.read()
    assert back is not None and list(back["collections"]) == [CID]
    assert {e.action for e in p.plan(doc)} == {"skip"}
    p.reload()  # nothing to do on Gen 2
    health = p.health([CID], 5)
    assert health.ok and health.statuses == {CID: 200}
    assert p.ogc_url == f"{fake.url}/ogc/features"

    edit(repo / "environments/dev/layers/bike-lanes.yaml", 'title: "Bike Lanes"', 'title: "Bicycle Lanes"')
    changed = p.plan(doc_of(repo))
    assert ("update", "collection", CID) in actions(changed)


def test_prune(repo: Path, fake: FakeHonua) -> None:
    p = manifest_provider(repo, fake)
    (repo / "environments/dev/layers/parcels.yaml").write_text(PARCELS)
    p.publish(doc_of(repo), prune=True)
    assert fake.names("Layer") == ["transportation.bike-lanes", "transportation.parcels"]

    (repo / "environments/dev/layers/parcels.yaml").unlink()
    doc = doc_of(repo)
    assert ("delete", "collection", "transportation::parcels") in actions(p.plan(doc))
    kept = p.publish(doc, prune=False)
    assert kept.summary["deleted"] == 0 and fake.names("Layer") == ["transportation.bike-lanes",
                                                                     "transportation.parcels"]
    pruned = p.publish(doc, prune=True)
    assert ("delete", "collection", "transportation::parcels") in actions(pruned.entries)
    assert fake.names("Layer") == ["transportation.bike-lanes"]

    # the last layer goes: the server would not prune a kind that is not submitted,
    # so the adapter deletes it itself
    only_services = {**doc, "collections": {}}
    assert ("delete", "collection", CID) in actions(p.plan(only_services))
    p.publish(only_services, prune=True)
    assert fake.names("Layer") == [] and fake.names("Service") == ["transportation"]
    # and everything: an empty manifest is refused by the server, so nothing is posted
    assert actions(p.plan(empty_published("dev"))) == [("delete", "service", "transportation")]
    p.publish(empty_published("dev"), prune=True)
    assert fake.store == {}
    assert p.read() is None


def test_drift(repo: Path, fake: FakeHonua) -> None:
    p = manifest_provider(repo, fake)
    doc = doc_of(repo)
    p.publish(doc, prune=True)
    assert not p.drift().has_drift
    fake.edit_spec("Layer", "transportation.bike-lanes", {"title": "Edited in the Admin UI"}, "city-dev")
    report = p.drift()
    assert report.has_drift and report.baseline_version
    assert [(r.kind, r.name, r.drift_type) for r in report.records] == [
        ("Layer", "transportation.bike-lanes", "spec_drift")]
    live = p.read()
    assert live is not None and live["collections"][CID]["title"] == "Edited in the Admin UI"
    assert ("update", "collection", CID) in actions(p.plan(doc))
    p.publish(doc, prune=True)
    assert not p.drift().has_drift


def test_error_mapping(repo: Path, fake: FakeHonua, monkeypatch: pytest.MonkeyPatch) -> None:
    p = manifest_provider(repo, fake)
    doc = doc_of(repo)

    monkeypatch.setenv(KEY_ENV, "wrong-key-value")
    with pytest.raises(ServerError, match=r"API key rejected \(401\)") as e401:
        p.plan(doc)
    assert "wrong-key-value" not in str(e401.value) and KEY_ENV in e401.value.hint

    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ServerError, match=KEY_ENV) as missing:
        p.publish(doc)
    assert KEY not in str(missing.value)
    monkeypatch.setenv(KEY_ENV, KEY)

    fake.failure = 422
    with pytest.raises(ServerError, match=r"422.*geometryType is required"):
        p.publish(doc)
    fake.failure, fake.failure_message = 500, "database is down"
    with pytest.raises(ServerError, match=r"server error \(500\): database is down"):
        p.plan(doc)
    fake.failure, fake.failure_message = 403, None
    with pytest.raises(ServerError, match=r"403") as e403:
        p.publish(doc)
    assert "enterprise" in e403.value.hint
    fake.failure = None
    assert fake.store == {}

    # the server's own validation (400): a Layer without geometryType
    bad = json.loads(json.dumps(doc))
    bad["collections"][CID]["geometry_type"] = None
    with pytest.raises(ServerError, match=r"rejected it \(400\).*geometryType"):
        p.publish(bad)

    # nobody listening
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gone = manifest_provider(repo, fake, url=f"http://127.0.0.1:{port}")
    with pytest.raises(ServerError, match="cannot reach the Honua server"):
        gone.read()


def test_health_timeout(repo: Path, fake: FakeHonua) -> None:
    p = manifest_provider(repo, fake)
    with pytest.raises(ServerError, match=CID):
        p.health([CID], 0.5)


# --------------------------------------------------------------------------- legacy (Gen 1)


def legacy_provider(repo: Path, fake: FakeHonua) -> HonuaLegacyServer:
    d = load_environment(repo, "dev")
    assert fake.metadata_path is not None
    srv = server(d, {"type": "honua", "honua": {"url": fake.url, "apiKeyEnv": KEY_ENV, "mode": "legacy",
                                                "metadataPath": str(fake.metadata_path)}})
    p = open_server(srv, root=repo, environment="dev")
    assert isinstance(p, HonuaLegacyServer)
    return p


def test_legacy_write_and_reload(repo: Path, fake: FakeHonua) -> None:
    p = legacy_provider(repo, fake)
    doc = doc_of(repo)
    assert p.read() is None
    assert actions(p.plan(doc)) == [("create", "collection", CID), ("create", "service", "transportation")]
    p.publish(doc, prune=True)
    assert fake.metadata_path is not None
    meta = json.loads(fake.metadata_path.read_text())
    assert meta["dataSources"][0]["connectionString"] == "${HONUA_DB_POSTGIS_PRIMARY}"
    assert meta["layers"][0]["id"] == "bike-lanes" and meta["layers"][0]["serviceId"] == "transportation"
    p.reload()
    assert fake.reloads == 1
    assert p.health([CID], 5).ok
    assert {e.action for e in p.plan(doc)} == {"skip"}


def test_legacy_errors(repo: Path, fake: FakeHonua, monkeypatch: pytest.MonkeyPatch) -> None:
    p = legacy_provider(repo, fake)
    p.publish(doc_of(repo))
    fake.failure = 500
    with pytest.raises(ServerError, match=r"reloaded the metadata but its caches are stale \(500\)"):
        p.reload()
    fake.failure = 422
    with pytest.raises(ServerError, match=r"rejected the metadata file \(422\)"):
        p.reload()
    fake.failure = None
    monkeypatch.setenv(KEY_ENV, "nope-nope")
    with pytest.raises(ServerError, match=r"API key rejected \(401\)"):
        p.reload()
    monkeypatch.setenv(KEY_ENV, KEY)
    assert fake.metadata_path is not None
    fake.metadata_path.write_text(json.dumps({"catalog": {"id": "x"}}))  # a broken file: the server says 422
    with pytest.raises(ServerError, match=r"422.*missing required properties"):
        p.reload()


def test_legacy_needs_a_metadata_path(repo: Path, fake: FakeHonua) -> None:
    d = load_environment(repo, "dev")
    srv = server(d, {"type": "honua", "honua": {"url": fake.url, "mode": "legacy"}})
    with pytest.raises(ServerError, match="metadataPath"):
        open_server(srv, root=repo, environment="dev")


# --------------------------------------------------------------------------- command adapter


@pytest.fixture
def allow(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The operator's allow-list (HONUA_ALLOWED_RELOAD_COMMANDS), outside the repository."""
    import shlex

    allowed: list[str] = []

    def add(argv: list[str]) -> None:
        allowed.append(shlex.join(argv))
        monkeypatch.setenv("HONUA_ALLOWED_RELOAD_COMMANDS", "\n".join(allowed))

    return add


def command_provider(repo: Path, script: str, allow: Any = None, **extra: Any) -> CommandServer:
    if allow is not None:
        allow([sys.executable, "-c", script])
    d = load_environment(repo, "dev")
    srv = server(d, {"type": "command", "healthTimeout": "2s",
                     "command": {"reload": [sys.executable, "-c", script], **extra}})
    p = open_server(srv, root=repo, environment="dev")
    assert isinstance(p, CommandServer)
    return p


def test_command_reload_sees_the_published_document(repo: Path, tmp_path: Path, allow: Any) -> None:
    out = tmp_path / "seen.json"
    script = (
        "import json, os, pathlib; doc = json.loads(pathlib.Path(os.environ['HONUA_PUBLISHED_FILE']).read_text());"
        f"pathlib.Path({str(out)!r}).write_text(json.dumps([os.environ['HONUA_ENVIRONMENT'], list(doc['collections'])]))"
    )
    p = command_provider(repo, script, allow)
    doc = doc_of(repo)
    assert actions(p.plan(doc))[0][0] == "create"
    p.publish(doc)
    p.reload()
    assert json.loads(out.read_text()) == ["dev", [CID]]
    assert p.read() is not None and {e.action for e in p.plan(doc)} == {"skip"}
    assert p.health([CID], 1).ok  # nothing to check without health URL or publicUrl


def test_command_failure_is_redacted(repo: Path, allow: Any) -> None:
    from honua_plan.secrets import register

    register("Sup3r-Secret-Token")
    p = command_provider(repo, "import sys; sys.stderr.write('login failed for Sup3r-Secret-Token\\n'); sys.exit(3)",
                         allow)
    with pytest.raises(ServerError, match=r"failed \(exit 3\): login failed for \*\*\*") as exc:
        p.reload()
    assert "Sup3r" not in str(exc.value)


def test_command_timeout_and_missing(repo: Path, monkeypatch: pytest.MonkeyPatch, allow: Any) -> None:
    p = command_provider(repo, "import time; time.sleep(30)", allow)
    monkeypatch.setattr(CommandServer, "reload_timeout", property(lambda self: 0.5))
    with pytest.raises(ServerError, match="did not finish"):
        p.reload()
    d = load_environment(repo, "dev")
    srv = server(d, {"type": "command", "command": {"reload": ["/nonexistent/reload-gis"]}})
    allow(["/nonexistent/reload-gis"])
    with pytest.raises(ServerError, match="not found"):
        open_server(srv, root=repo, environment="dev").reload()


def test_config_cannot_choose_a_program_to_run(repo: Path, tmp_path: Path, allow: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A pull request that edits spec.command.reload runs nothing the operator did not allow."""
    marker = tmp_path / "pwned"
    script = f"import pathlib; pathlib.Path({str(marker)!r}).write_text('x')"
    p = command_provider(repo, script)  # nothing allowed
    with pytest.raises(ServerError, match="was not run") as exc:
        p.reload()
    assert "HONUA_ALLOWED_RELOAD_COMMANDS" in exc.value.hint
    allow([sys.executable, "-c", "pass"])  # another command allowed: still not this one
    with pytest.raises(ServerError, match="was not run"):
        p.reload()
    assert not marker.exists()
    # allowed: it runs, in the repository, without the engine's secrets in its environment
    seen = tmp_path / "env.json"
    monkeypatch.setenv("HONUA_PG_DSN", "postgresql://u:Sup3r-Secret-Pw@h/db")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-key-value")
    dump = f"import json, os, pathlib; pathlib.Path({str(seen)!r}).write_text(json.dumps(dict(os.environ)))"
    command_provider(repo, dump, allow).reload()
    env = json.loads(seen.read_text())
    assert "HONUA_PG_DSN" not in env and "OPENAI_API_KEY" not in env
    assert "Sup3r-Secret-Pw" not in seen.read_text() and "sk-secret" not in seen.read_text()
    assert env["HONUA_ENVIRONMENT"] == "dev" and "PATH" in env
    outside = command_provider(repo, "pass", allow, cwd="../..")
    with pytest.raises(ServerError, match="outside the repository"):
        outside.reload()


def test_command_health_url(repo: Path, fake: FakeHonua) -> None:
    p = command_provider(repo, "pass", health=fake.url + "/ogc/features/collections/{collection}")
    with pytest.raises(ServerError, match="did not answer 200"):
        p.health([CID], 0.5)
    manifest_provider(repo, fake).publish(doc_of(repo))
    assert p.health([CID], 2).ok
