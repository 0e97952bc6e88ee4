"""The generated pygeoapi config, read by pygeoapi's own loader, keeps every text literally.

pygeoapi's ``yaml_load`` expands ``${VAR}`` (and ``${VAR:-default}``) from its
environment; only the password reference may be expanded. Many random texts here, fast
(no server); ``tests/integration/test_served_text_secrets.py`` serves them over HTTP.
"""

from __future__ import annotations

import io
import os
import subprocess
import time
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from honua_plan.config.loader import load_environment
from honua_plan.errors import ServerError
from honua_plan.providers.server import open_server
from honua_plan.providers.server.pygeoapi import PygeoapiServer
from honua_plan.providers.server.pygeoapi_config import (
    PASSWORD_ENV,
    EnvReference,
    config_sidecar,
    connection_params,
    dump_config,
    render_config,
    server_env,
    server_env_allowed,
)
from tests.helpers import copy_example

pygeoapi_util = pytest.importorskip("pygeoapi.util", reason="pygeoapi is not installed")

CID = "transportation::bike-lanes"
ENV = {PASSWORD_ENV: "Pw-From-Env-1", "SOME_SECRET": "Sup3r-Secret", "HONUA_PG_DSN": "host=h password=Dsn-Pw-2"}

TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8", exclude_categories=("Cs",)),
        st.sampled_from(["\n", "\r", "\t", "\\", '"', "'", "$", "{", "}", "%", "#", ":", "&", "*", "!", "\x85"]),
    ),
    max_size=30,
)
FRAGMENTS = st.sampled_from([
    "${SOME_SECRET}", "${HONUA_PG_DSN}", "${UNSET_VAR_X}", "${SOME_SECRET:-d}", "${" + PASSWORD_ENV + "}",
    "$SOME_SECRET", "${", "$", "{{ env }}", "%s", "\\x24", "'", '"', "\\", "\n", "\r\n", " ", "---", "- ",
    ": ", "#", "&a", "*a", "!!python/object", "true", "1.5", "007", "null", "~", "\ufeff", "\u2028", "☃", "𝄞",
])
FREE_TEXT = st.lists(st.one_of(TEXT, FRAGMENTS), max_size=6).map("".join)


def published(title: str, description: str, keywords: list[str]) -> dict[str, Any]:
    return {
        "format_version": 1, "environment": "dev", "project": "city-gis",
        "services": {"transportation": {"keywords": keywords, "datasource": "db", "enabled": True}},
        "collections": {CID: {
            "service": "transportation", "layer": "bike-lanes", "title": title, "description": description,
            "keywords": keywords, "datasource": "db", "schema": "public", "table": "public.bike_lanes",
            "id_field": "id", "geom_field": "geom", "srid": 4326, "crs": [], "title_field": None,
            "item_limit": None, "bbox": None,
        }},
    }


def rendered(doc: dict[str, Any]) -> dict[str, Any]:
    conn = connection_params("host=/sock dbname=city user=app password=Pw-From-Env-1")
    return render_config(doc, host="127.0.0.1", port=5555, url="http://localhost:5555/ogc",
                         connections={"db": conn}, password_envs={"db": PASSWORD_ENV})


def pygeoapi_reads(text: str) -> dict[str, Any]:
    with mock.patch.dict(os.environ, ENV):
        return dict(pygeoapi_util.yaml_load(io.StringIO(text)))


@settings(max_examples=100, deadline=None)
@given(FREE_TEXT, FREE_TEXT, st.lists(FREE_TEXT, max_size=3))
def test_pygeoapi_reads_back_every_text_literally(title: str, description: str, keywords: list[str]) -> None:
    config = rendered(published(title or "t", description or "d", keywords))
    read = pygeoapi_reads(dump_config(config))
    resource = read["resources"][CID]
    assert resource["title"] == (title or "t")
    assert resource["description"] == (description or "d")
    assert resource["keywords"] == (keywords or ["transportation"])
    assert read["metadata"]["identification"]["keywords"] == (sorted(set(keywords)) or ["gis"])
    # the whole document comes back as rendered, but for the one expanded reference
    assert resource["providers"][0]["data"]["password"] == ENV[PASSWORD_ENV]
    resource["providers"][0]["data"]["password"] = config["resources"][CID]["providers"][0]["data"]["password"]
    assert read == config


def twin_reads(tmp: Path, config: dict[str, Any], *, edit: str | None = None) -> dict[str, Any]:
    """What the server's loader gives for the YAML and JSON twin the engine writes."""
    from honua_plan.providers.server import pygeoapi_loader

    text = dump_config(config)
    twin = config_sidecar(config, text)
    assert twin is not None
    (tmp / "pygeoapi-config.json").write_text(twin, encoding="utf-8")
    cfg = tmp / "pygeoapi-config.yml"
    cfg.write_text(text if edit is None else text.replace('"title": "T0"', f'"title": "{edit}"'), encoding="utf-8")
    with mock.patch.dict(os.environ, {**ENV, "PYGEOAPI_CONFIG": str(cfg)}), cfg.open(encoding="utf-8") as fh:
        return dict(pygeoapi_loader.yaml_load(fh))


@settings(max_examples=50, deadline=None)
@given(FREE_TEXT, FREE_TEXT, st.lists(FREE_TEXT, max_size=3))
def test_the_json_twin_reads_as_pygeoapi_reads_the_yaml(
        tmp_path_factory: pytest.TempPathFactory, title: str, description: str, keywords: list[str]) -> None:
    config = rendered(published(title or "t", description or "d", keywords))
    assert twin_reads(tmp_path_factory.mktemp("twin"), config) == pygeoapi_reads(dump_config(config))


def test_a_hand_edited_yaml_wins_over_its_twin(tmp_path: Path) -> None:
    config = rendered(published("T0", "d", []))
    assert twin_reads(tmp_path, config)["resources"][CID]["title"] == "T0"
    assert twin_reads(tmp_path, config, edit="Edited by hand")["resources"][CID]["title"] == "Edited by hand"


def test_no_twin_for_a_value_json_cannot_hold_exactly() -> None:
    from datetime import datetime

    assert config_sidecar({"a": float("nan")}, "") is None
    assert config_sidecar({"a": datetime(2026, 1, 1)}, "") is None
    assert config_sidecar({"a": {1: "x"}}, "") is None
    assert config_sidecar({"a": [1.5, None, True, "s"]}, "") is not None


def test_the_reproduction_text() -> None:
    text = "Lanes ${HONUA_PG_DSN} and ${SOME_SECRET:-x} ${UNSET_VAR_X}"
    read = pygeoapi_reads(dump_config(rendered(published(text, text, [text]))))
    assert read["resources"][CID]["description"] == text
    # the old dump (plain scalars) is what pygeoapi expanded
    plain = yaml.safe_dump({"description": "Lanes ${HONUA_PG_DSN} and ${SOME_SECRET}"})
    assert pygeoapi_reads(plain)["description"] == "Lanes host=h password=Dsn-Pw-2 and Sup3r-Secret"


def test_only_a_reference_is_written_plain() -> None:
    with pytest.raises(ServerError, match="not an environment reference"):
        dump_config({"x": EnvReference("${A} ${B}")})
    assert dump_config({"x": EnvReference("${A_1}")}).endswith('"x": ${A_1}\n')


def test_server_env_is_the_allow_list() -> None:
    environ = {
        "PATH": "/usr/bin", "HOME": "/home/u", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TMPDIR": "/tmp",
        "PGPASSFILE": "/home/u/.pgpass", "HONUA_PG_DSN": "host=x password=p", "HONUA_PG_DSN_DEV": "y",
        "OPENAI_API_KEY": "sk-1", "PGPASSWORD": "p", "PYTHONPATH": "/x", "PYGEOAPI_CONFIG": "/evil.yml",
        PASSWORD_ENV: "stale", "SCRIPT_NAME": "/stale", "AWS_SECRET_ACCESS_KEY": "k",
    }
    env = server_env({PASSWORD_ENV: "pw", "PYGEOAPI_CONFIG": "/state/cfg.yml"}, environ)
    assert env == {"PATH": "/usr/bin", "HOME": "/home/u", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
                   "TMPDIR": "/tmp", "PGPASSFILE": "/home/u/.pgpass", PASSWORD_ENV: "pw",
                   "PYGEOAPI_CONFIG": "/state/cfg.yml"}
    assert all(server_env_allowed(k) for k in env)
    for name in ("HONUA_PG_DSN", "OPENAI_API_KEY", "PGPASSWORD", "PYTHONPATH", "HONUA_PYGEOAPI_DB_PASSWORDX"):
        assert not server_env_allowed(name)
    with pytest.raises(ServerError, match="OPENAI_API_KEY"):
        server_env({"OPENAI_API_KEY": "sk-1"}, {})


def test_a_server_with_another_environment_is_restarted(tmp_path: Path) -> None:
    """A running server whose environment is not the allow-listed one (an older honua's) is restarted."""
    repo = copy_example(tmp_path / "repo")
    server = load_environment(repo, "dev").server()
    provider = open_server(server, root=repo, environment="dev", dsn_resolver=lambda: "host=/sock dbname=x")
    assert isinstance(provider, PygeoapiServer)
    secret_env = {PASSWORD_ENV: "pw"}
    for extra, reason in (({}, None), ({"OPENAI_API_KEY": "sk-1"}, "its environment is not the allow-listed one")):
        env = {**provider._process_env(secret_env), **extra}
        with subprocess.Popen(["sleep", "30"], env=env) as proc:
            try:
                # until the child has exec'd, /proc/<pid>/environ is still this process's
                deadline = time.monotonic() + 5
                while Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")[0] != b"sleep":
                    assert time.monotonic() < deadline, "the child did not start sleep"
                    time.sleep(0.01)
                assert provider._needs_restart(proc.pid, secret_env) == reason
            finally:
                proc.kill()
