"""Every secret has a slot; a config names only its own (issue 25, reproductions 3-6).

Each secret field refuses a variable outside its slot at ``file:line:col`` (``honua
validate`` exits 1 and names the allowed variables); ``plan``/``apply`` with such a config
are refused before any connection: a loopback listener started here receives nothing. The
code that reads a variable refuses it again (defence in depth).
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from honua_plan.errors import DatabaseError, ServerError
from honua_plan.workflows.sample import seed_bike_lanes
from tests.helpers import copy_example, drop_performance_check, edit, run

pytestmark = pytest.mark.integration

DS = "providers/postgis-primary.yaml"
ENV_LINE = '    env: ["HONUA_PG_DSN_{{ env | upper }}", "HONUA_PG_DSN"]\n'


class Listener:
    """A TCP listener on 127.0.0.1 that records every connection (and what was sent)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.settimeout(0.5)
            with contextlib.suppress(OSError):
                self.received.append(conn.recv(65536))
            conn.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    lst = Listener()
    yield lst
    lst.sock.close()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "repo", server=False)


def position(repo: Path, rel: str, needle: str) -> str:
    """``rel:line:col`` of the first ``needle`` in the file."""
    for n, text in enumerate((repo / rel).read_text().splitlines(), 1):
        if needle in text:
            return f"{rel}:{n}:{text.index(needle) + 1}"
    raise AssertionError(f"{needle!r} not in {rel}")


def refused(result: object, where: str, *phrases: str) -> str:
    out = " ".join(str(getattr(result, "output", "")).split())
    assert getattr(result, "exit_code", None) == 1, out
    assert "Traceback" not in out
    assert re.search(re.escape(where) + r"(:\d+)?: ", out), out
    for phrase in phrases:
        assert phrase in out, out
    return out


# --------------------------------------------------------------------------- datasources


def test_connection_env_names_only_the_environments_own_slot(repo: Path) -> None:
    edit(repo / DS, ENV_LINE, '    env: ["HONUA_PG_DSN_{{ env | upper }}", "HOME"]\n')
    result = run(repo, "validate")
    line = position(repo, DS, '"HOME"').rsplit(":", 1)[0]
    refused(result, line, "HOME is outside the connection slot of environment 'dev'",
            "may read only HONUA_PG_DSN_DEV, HONUA_PG_DSN or HONUA_PG_DSN_DEV_<SUFFIX>")


def test_a_suffix_in_the_environments_namespace_is_allowed(repo: Path) -> None:
    edit(repo / DS, ENV_LINE, '    env: ["HONUA_PG_DSN_{{ env | upper }}_SECOND"]\n')
    result = run(repo, "validate")
    assert result.exit_code == 0, result.output


def test_a_dev_apply_cannot_reach_production(repo: Path, pg_dsn: str, pg_cluster: object) -> None:
    """Reproduction 6: ``connection.env: [HONUA_PG_DSN_PRODUCTION]`` on the dev datasource and
    a new migration: ``apply --env dev --auto-approve`` created the table in production."""
    import uuid

    from tests.conftest import TEMPLATE_DB

    prod_name = f"t_{uuid.uuid4().hex[:8]}"
    prod = pg_cluster.create_database(prod_name, template=TEMPLATE_DB)  # type: ignore[attr-defined]
    try:
        for dsn in (pg_dsn, prod):
            with psycopg.connect(dsn, autocommit=True) as conn:
                seed_bike_lanes(conn, 42)
        drop_performance_check(repo)
        edit(repo / DS, ENV_LINE, '    env: ["HONUA_PG_DSN_PRODUCTION"]\n')
        (repo / "migrations/004_leak.yaml").write_text(
            'apiVersion: honua.io/v1\nkind: Migration\nmetadata:\n  id: "004"\n  environments: [dev]\n'
            "spec:\n  up:\n    - name: leak\n      type: sql\n      content: CREATE TABLE slot_leak (id int);\n")
        env = {"HONUA_PG_DSN_DEV": pg_dsn, "HONUA_PG_DSN_PRODUCTION": prod, "HONUA_PG_DSN": None, "CI": ""}
        result = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
        refused(result, position(repo, DS, '"HONUA_PG_DSN_PRODUCTION"').rsplit(":", 1)[0],
                "HONUA_PG_DSN_PRODUCTION is outside the connection slot of environment 'dev' "
                "(it belongs to environment 'production')")
        for dsn in (prod, pg_dsn):
            with psycopg.connect(dsn) as conn:
                assert conn.execute("SELECT to_regclass('public.slot_leak')").fetchone() == (None,)
        assert not (repo / "state/dev.json").exists()
    finally:
        pg_cluster.drop_database(prod_name)  # type: ignore[attr-defined]


def test_connection_dsn_cannot_wrap_a_variable_in_a_host_of_its_choosing(repo: Path, listener: Listener) -> None:
    """Reproduction 3: a ``connection.dsn`` sent the production DSN as the password to any host."""
    edit(repo / DS, "    embedded: true\n", "    embedded: true\n    dsn: \"host=127.0.0.1 port="
         f"{listener.port} user=x dbname=x password=${{HONUA_PG_DSN_PRODUCTION}}\"\n")
    env = {"HONUA_PG_DSN_PRODUCTION": "host=prod.internal password=Pr0d-Secret-77", "HONUA_PG_DSN": None,
           "HONUA_PG_DSN_DEV": None, "CI": ""}
    where = position(repo, DS, "dsn:")
    refused(run(repo, "validate", env=env), where, "connection.dsn is not read",
            "HONUA_PG_DSN_<ENV>, HONUA_PG_DSN_<ENV>_<SUFFIX> or HONUA_PG_DSN")
    out = refused(run(repo, "plan", "--env", "dev", env=env), where)
    assert "Pr0d-Secret-77" not in out
    assert listener.connections == 0 and listener.received == []


# --------------------------------------------------------------------------- servers

HONUA_SERVER = """apiVersion: honua.io/v1
kind: Server
metadata:
  name: gis-server
spec:
  type: honua
  honua:
    url: http://127.0.0.1:{port}
    apiKeyEnv: {key}
"""


def test_a_server_key_comes_only_from_its_slot(repo: Path, listener: Listener, pg_dsn: str) -> None:
    """Reproduction 4: ``apiKeyEnv: HONUA_PG_DSN_PRODUCTION`` sent the DSN as X-Api-Key."""
    (repo / "providers/gis-server.yaml").write_text(HONUA_SERVER.format(port=listener.port,
                                                                        key="HONUA_PG_DSN_PRODUCTION"))
    env = {"HONUA_PG_DSN_PRODUCTION": "host=prod.internal password=Pr0d-Secret-77", "HONUA_PG_DSN": pg_dsn,
           "CI": ""}
    where = position(repo, "providers/gis-server.yaml", "apiKeyEnv:")
    refused(run(repo, "validate", env=env), where,
            "HONUA_PG_DSN_PRODUCTION is outside the key slot of server 'gis-server'",
            "HONUA_SERVER_KEY_GIS_SERVER")
    out = refused(run(repo, "plan", "--env", "dev", env=env), where)
    assert "Pr0d-Secret-77" not in out
    assert listener.connections == 0 and listener.received == []
    # the slot's own name, the default and the name before slots are accepted
    for key in ("HONUA_SERVER_KEY_GIS_SERVER", "HONUA_API_KEY"):
        (repo / "providers/gis-server.yaml").write_text(HONUA_SERVER.format(port=listener.port, key=key))
        assert run(repo, "validate").exit_code == 0


def test_the_honua_adapter_refuses_a_key_outside_its_slot_again(repo: Path) -> None:
    from honua_plan.config.loader import load_environment
    from honua_plan.config.models import HonuaOptions, Server, ServerSpec
    from honua_plan.providers.server import open_server

    d = load_environment(repo, "dev")
    base = d.server()
    assert base is not None
    bad = Server.model_construct(apiVersion="honua.io/v1", kind="Server", metadata=base.metadata, spec=ServerSpec(
        type="honua", honua=HonuaOptions.model_construct(url="http://127.0.0.1:9", apiKeyEnv="HOME",
                                                         mode="manifest", namespace="default", metadataPath=None)))
    with pytest.raises(ServerError, match="HOME is outside the key slot of server 'gis-server'"):
        open_server(bad, root=repo, environment="dev")
    default = Server.model_validate({**bad.model_dump(by_alias=True, exclude={"spec"}),
                                     "spec": {"type": "honua", "honua": {"url": "http://127.0.0.1:9"}}})
    assert default.api_key_env == "HONUA_SERVER_KEY_GIS_SERVER"


# --------------------------------------------------------------------------- notifications

LEAKY_POLICY = """apiVersion: honua.io/v1
kind: Policy
metadata:
  name: dev-policy
  environment: dev
spec:
  notifications:
    - events: [deploy-started, deploy-succeeded, deploy-failed, rolled-back]
      urls: ["form://127.0.0.1:{port}/?+X-Leak=${{HONUA_STATE_DSN}}", "json://127.0.0.1:{port}/${{HOME}}"]
"""


def test_a_notification_url_reads_only_honua_notify_variables(repo: Path, listener: Listener, pg_dsn: str) -> None:
    """Reproduction 5: notification URLs posted ${HONUA_STATE_DSN} and ${HOME} at apply time."""
    (repo / "policies/dev-policy.yaml").write_text(LEAKY_POLICY.format(port=listener.port))
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        seed_bike_lanes(conn, 42)
    env = {"HONUA_PG_DSN": pg_dsn, "HONUA_STATE_DSN": "host=state.internal password=St4te-Secret-55", "CI": ""}
    where = position(repo, "policies/dev-policy.yaml", '"form://')
    refused(run(repo, "validate", env=env), where.rsplit(":", 1)[0],
            "${HONUA_STATE_DSN} is outside the notification slot", "HONUA_NOTIFY_<NAME>")
    out = refused(run(repo, "apply", "--env", "dev", "--auto-approve", env=env), where.rsplit(":", 1)[0])
    assert "St4te-Secret-55" not in out
    assert listener.connections == 0 and listener.received == []
    with psycopg.connect(pg_dsn) as conn:  # refused before anything ran
        assert conn.execute("SELECT to_regclass('honua_plan.step_log')").fetchone() == (None,)


def test_notify_refuses_a_variable_outside_its_slot_at_run_time(listener: Listener,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence in depth: a policy that did not come through the loader reads nothing either."""
    pytest.importorskip("apprise")
    from honua_plan import secrets
    from honua_plan.apply.notify import notify
    from honua_plan.config.models import Notification, Policy, PolicyMetadata, PolicySpec

    monkeypatch.setenv("HONUA_STATE_DSN", "host=state.internal password=St4te-Secret-55")
    monkeypatch.setenv("HONUA_NOTIFY_HOOK", "n0tify-Hook-Path-31")
    urls = [f"json://127.0.0.1:{listener.port}/${{HONUA_STATE_DSN}}", f"json://127.0.0.1:{listener.port}/${{HOME}}"]
    policy = Policy.model_construct(apiVersion="honua.io/v1", kind="Policy",
                                    metadata=PolicyMetadata(name="p", environment="dev"),
                                    spec=PolicySpec.model_construct(notifications=[Notification.model_construct(
                                        events=["drift"], urls=urls)]))
    delivery = notify(policy, "drift", environment="dev", title="t", lines=[])
    assert delivery.delivered == 0
    assert delivery.failed == ["json (a ${VAR} of its URL names a variable outside HONUA_NOTIFY_*)"] * 2
    assert listener.connections == 0
    # a value of the slot is read, and registered as a secret
    good = Policy.model_construct(**{**policy.__dict__, "spec": PolicySpec.model_construct(notifications=[
        Notification.model_construct(events=["drift"], urls=[f"json://127.0.0.1:{listener.port}/${{HONUA_NOTIFY_HOOK}}"])])})
    notify(good, "drift", environment="dev", title="t", lines=[])
    assert secrets.redact("x n0tify-Hook-Path-31 y") == "x *** y"


# --------------------------------------------------------------------------- the state database


def test_state_dsn_env_is_the_operators_slot(repo: Path) -> None:
    edit(repo / "honua.yaml", "    backend: local\n", "    backend: postgres\n    dsnEnv: HOME\n")
    refused(run(repo, "validate"), position(repo, "honua.yaml", "dsnEnv:"),
            "HOME is outside the state database slot: dsnEnv may name only HONUA_STATE_DSN or "
            "HONUA_STATE_DSN_<SUFFIX>")
    edit(repo / "honua.yaml", "dsnEnv: HOME", "dsnEnv: HONUA_STATE_DSN_CITY")
    result = run(repo, "validate", env={"HONUA_STATE_DSN_CITY": None})
    assert "dsnEnv" not in result.output, result.output


def test_the_runtime_refuses_what_the_loader_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from honua_plan.errors import StateError
    from honua_plan.providers.postgis.connections import resolve_connection
    from honua_plan.state import state_dsn

    monkeypatch.setenv("HONUA_PG_DSN_PRODUCTION", "host=prod.internal dbname=x")
    with pytest.raises(DatabaseError, match="outside the connection slot of environment 'dev'"):
        resolve_connection("pg", ["HONUA_PG_DSN_PRODUCTION"], None, True, "dev", tmp_path,
                           environments=["dev", "production"])
    with pytest.raises(DatabaseError, match=r"connection\.dsn is not read"):
        resolve_connection("pg", ["HONUA_PG_DSN"], "${HONUA_PG_DSN_PRODUCTION}", True, "dev", tmp_path)
    with pytest.raises(StateError, match="outside the state database slot"):
        state_dsn("HOME")


# --------------------------------------------------------------------------- the server port


def test_port_env_reads_only_the_server_port_slot(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """portEnv is read on the config's behalf, and its value was quoted in an error: a slot too."""
    server = "providers/gis-server.yaml"
    edit(repo / server, "    basePath: /ogc\n", "    basePath: /ogc\n    portEnv: HONUA_PG_DSN_PRODUCTION\n")
    refused(run(repo, "validate"), position(repo, server, "portEnv:"),
            "HONUA_PG_DSN_PRODUCTION is outside the server port slot: portEnv may name only HONUA_SERVER_PORT_<NAME>")
    edit(repo / server, "portEnv: HONUA_PG_DSN_PRODUCTION", "portEnv: HONUA_SERVER_PORT_GIS_SERVER")
    assert run(repo, "validate").exit_code == 0

    from honua_plan.config.models import PygeoapiOptions
    from honua_plan.providers.server.pygeoapi import PygeoapiServer

    provider = PygeoapiServer(None, root=repo, environment="dev")
    provider.options = PygeoapiOptions.model_construct(port=5555, portEnv="HOME", environmentPorts={})
    monkeypatch.setenv("HOME", "4242")
    assert provider.port == 5555  # a name outside the slot is never read, whatever built the options
    provider.options = PygeoapiOptions(portEnv="HONUA_SERVER_PORT_GIS_SERVER")
    monkeypatch.setenv("HONUA_SERVER_PORT_GIS_SERVER", "s3cret-value")
    with pytest.raises(ServerError) as err:
        _ = provider.port
    assert "s3cret-value" not in err.value.message and "is not a TCP port" in err.value.message
