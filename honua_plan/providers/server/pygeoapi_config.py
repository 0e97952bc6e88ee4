"""pygeoapi's configuration, written by the engine: rendered from the published document,
dumped so that pygeoapi's ``${VAR}`` resolver reads every string literally, with the database
password passed by environment variable only."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from honua_plan.errors import ServerError
from honua_plan.providers.server.compile import CRS84, storage_crs_uri
from honua_plan.secrets import check_dsn, register

PASSWORD_ENV = "HONUA_PYGEOAPI_DB_PASSWORD"

MAP_URL = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"

MAP_ATTRIBUTION = '&copy; <a href="https://openstreetmap.org/copyright">OpenStreetMap contributors</a>'

_LIBPQ_DATA_KEYS = ("host", "port", "dbname", "user")

# What the server process may inherit from ours: where programs and files are, the
# locale, and libpq's file locations (.pgpass, certificates). Never a value: no DSN, no
# API key, no PGPASSWORD. The variables honua sets itself are added on top.
SERVER_ENV_INHERITED = frozenset({
    "PATH", "HOME", "TMPDIR", "TZ", "LANG", "LANGUAGE",
    "PGPASSFILE", "PGSERVICEFILE", "PGSYSCONFDIR", "PGSSLCERT", "PGSSLKEY", "PGSSLROOTCERT", "PGSSLCRL",
    "PROJ_DATA", "PROJ_LIB",
})

SERVER_ENV_SET = frozenset({"PYGEOAPI_CONFIG", "PYGEOAPI_OPENAPI", "PYTHONUNBUFFERED", "SCRIPT_NAME"})

_BaseDumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's emitter: 10x faster


if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class ConnParams:
    """A DSN split for pygeoapi's PostgreSQL provider; ``password`` never goes in the file."""

    data: dict[str, Any]
    options: dict[str, Any]
    password: str | None

    def __repr__(self) -> str:
        return f"ConnParams(data={self.data!r}, options={self.options!r}, password={'***' if self.password else None})"


def connection_params(dsn: str) -> ConnParams:
    """Parse a libpq conninfo (``host=/sock port=5432 dbname=x``) or URL DSN."""
    from honua_plan.errors import DatabaseError

    try:
        parts = check_dsn(dsn, "the datasource's connection string")
    except DatabaseError as exc:
        raise ServerError(exc.message, hint=exc.hint) from None
    password = parts.pop("password", None)
    password = str(password) if password not in (None, "") else None
    if password:
        register(password)
    data: dict[str, Any] = {}
    for key in _LIBPQ_DATA_KEYS:
        value = parts.pop(key, None)
        if value not in (None, ""):
            data[key] = int(str(value)) if key == "port" and str(value).isdigit() else str(value)
    options = {k: (str(v) if v is not None else v) for k, v in sorted(parts.items())}
    return ConnParams(data, options, password)


def server_env_allowed(name: str) -> bool:
    """May the server process have variable ``name``? (inherited, set by honua, or the password)"""
    return (name in SERVER_ENV_INHERITED or name.startswith("LC_") or name in SERVER_ENV_SET
            or name == PASSWORD_ENV or name.startswith(PASSWORD_ENV + "_"))


def server_env(extra: Mapping[str, str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a server process: the inherited allow-list plus ``extra``."""
    source = os.environ if environ is None else environ
    env = {k: v for k, v in source.items() if k in SERVER_ENV_INHERITED or k.startswith("LC_")}
    env.update(extra)
    refused = sorted(k for k in env if not server_env_allowed(k))
    if refused:  # a programming error: honua itself asked for a variable outside the list
        raise ServerError(f"not passed to the server process (not allow-listed): {', '.join(refused)}")
    return env


def password_env_names(datasources_with_password: Sequence[str]) -> dict[str, str]:
    """The environment variable each datasource's password is passed in."""
    names = sorted(set(datasources_with_password))
    if len(names) == 1:
        return {names[0]: PASSWORD_ENV}
    return {n: f"{PASSWORD_ENV}_{re.sub(r'[^A-Za-z0-9]', '_', n).upper()}" for n in names}


def _typed_by_pygeoapi(value: str) -> bool:
    """pygeoapi turns an interpolated '123', '1.5' or 'true' into a number/bool (util.get_typed_value)."""
    if value.lower() in ("true", "false"):
        return True
    if "." in value:
        try:
            float(value)
            return True
        except ValueError:
            return False
    if len(value) > 1 and value.startswith("0"):
        return False
    try:
        int(value)
        return True
    except ValueError:
        return False


def render_config(
    doc: Mapping[str, Any],
    *,
    host: str,
    port: int,
    url: str,
    connections: Mapping[str, ConnParams],
    password_envs: Mapping[str, str],
    log_level: str = "WARNING",
) -> dict[str, Any]:
    """pygeoapi's configuration for the published document (schema pygeoapi-config-0.x)."""
    project = str(doc.get("project") or "honua-plan")
    env = str(doc.get("environment") or "")
    services: Mapping[str, Any] = doc.get("services") or {}
    collections: Mapping[str, Any] = doc.get("collections") or {}
    keywords = sorted({k for s in services.values() for k in (s.get("keywords") or [])}) or ["gis"]
    limits = [int(c["item_limit"]) for c in collections.values() if c.get("item_limit")]
    resources: dict[str, Any] = {}
    for cid in sorted(collections):
        c = collections[cid]
        conn = connections.get(c.get("datasource") or "")
        if conn is None:
            raise ServerError(f"collection {cid}: no connection for datasource '{c.get('datasource')}'")
        schema = c.get("schema") or str(c["table"]).split(".", 1)[0]
        table = str(c["table"]).split(".", 1)[-1]
        data: dict[str, Any] = dict(conn.data)
        if conn.password:
            data["password"] = EnvReference("${" + password_envs[c["datasource"]] + "}")
        data["search_path"] = [schema] if schema == "public" else [schema, "public"]
        provider: dict[str, Any] = {
            "type": "feature",
            "name": "PostgreSQL",
            "data": data,
            "id_field": c["id_field"],
            "table": table,
            "geom_field": c["geom_field"],
        }
        if conn.options:
            provider["options"] = dict(conn.options)
        if c.get("title_field"):
            provider["title_field"] = c["title_field"]
        # the layer file is the served API: exactly its declared fields (pygeoapi's
        # `properties` restricts /items, /items/{id}, /queryables and the OpenAPI
        # document); a layer that declares no fields serves every column
        served = [f for f in c.get("fields") or [] if f != c["geom_field"]]
        if served:
            provider["properties"] = served
        provider["storage_crs"] = storage_crs_uri(int(c.get("srid") or 4326))
        provider["crs"] = list(c.get("crs") or [CRS84])
        bbox = c.get("bbox") or [-180.0, -90.0, 180.0, 90.0]
        resource: dict[str, Any] = {
            "type": "collection",
            "title": c.get("title") or cid,
            "description": c.get("description") or c.get("title") or cid,
            "keywords": list(c.get("keywords") or []) or [c.get("service") or "gis"],
            "links": [],
            "extents": {"spatial": {"bbox": [float(v) for v in bbox], "crs": CRS84}},
            "providers": [provider],
        }
        if c.get("item_limit"):
            resource["limits"] = {"max_items": int(c["item_limit"])}
        resources[cid] = resource
    title = f"{project} ({env})" if env else project
    return {
        "server": {
            "bind": {"host": host, "port": int(port)},
            "url": url,
            "mimetype": "application/json; charset=UTF-8",
            "encoding": "utf-8",
            "language": "en-US",
            "pretty_print": False,
            "limits": {"default_items": 10, "max_items": max([1000, *limits]), "on_exceed": "throttle"},
            "map": {"url": MAP_URL, "attribution": MAP_ATTRIBUTION},
            "admin": False,
        },
        "logging": {"level": log_level},
        "metadata": {
            "identification": {
                "title": title,
                "description": f"OGC API - Features for {title}, published by honua-plan",
                "keywords": keywords,
                "keywords_type": "theme",
                "terms_of_service": "https://creativecommons.org/licenses/by/4.0/",
                "url": url,
            },
            "license": {"name": "CC-BY 4.0 license", "url": "https://creativecommons.org/licenses/by/4.0/"},
            "provider": {"name": project, "url": url},
            "contact": {"name": project, "position": "GIS", "email": "gis@example.invalid", "url": url,
                        "role": "pointOfContact"},
        },
        "resources": resources,
    }


class EnvReference(str):
    """A ``${VAR}`` pygeoapi must expand: the one string :func:`dump_config` writes plain."""


class _QuotedDumper(_BaseDumper):
    """Every string double-quoted, so pygeoapi's ``${VAR}`` resolver (plain scalars only) skips it."""


def _quoted(dumper: Any, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')


def _reference(dumper: Any, value: EnvReference) -> yaml.ScalarNode:
    if not re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", value):
        raise ServerError(f"not an environment reference: {value!r}")
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style="")


def dump_config(config: Mapping[str, Any]) -> str:
    """The YAML text of ``config``: each string literal to pygeoapi, each EnvReference expanded."""
    header = "# Written by honua-plan from state/<env>/published.json: edits are overwritten.\n"
    # width: no folding of long quoted strings (faithful either way, but readable)
    return header + yaml.dump(dict(config), Dumper=_QuotedDumper, sort_keys=False, allow_unicode=True,
                              width=1 << 16)


def config_sidecar(config: Mapping[str, Any], yaml_text: str) -> str | None:
    """The JSON twin of the YAML ``yaml_text`` that :func:`dump_config` wrote for ``config``.

    pygeoapi reads its YAML config in every worker on every reload, and even libyaml's
    parser with pygeoapi's ``${VAR}`` resolver takes 0.6 s for 1,000 collections. The
    server's app module (:mod:`.pygeoapi_app`) loads this JSON instead (30x faster) when
    its ``yaml_sha256`` is that of the YAML on disk, so a hand edit of the YAML still
    wins. The same values: JSON types are YAML's for what the dumper writes, and each
    :class:`EnvReference` is listed by path, to be expanded as pygeoapi's resolver would.
    None when a value has no exact JSON form (the server then parses the YAML).
    """
    import hashlib
    import json

    env_paths: list[list[str | int]] = []

    def plain(value: Any, path: list[str | int]) -> Any:
        if isinstance(value, EnvReference):
            env_paths.append(path)
            return str(value)
        if value is None or isinstance(value, (str, bool, int)):
            return value
        if isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError("not finite")
            return value
        if isinstance(value, Mapping):
            if not all(isinstance(k, str) for k in value):
                raise ValueError("a key that is not a string")
            return {k: plain(v, [*path, k]) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v, [*path, i]) for i, v in enumerate(value)]
        raise ValueError(f"no JSON form for {type(value).__name__}")

    try:
        data = plain(dict(config), [])
    except ValueError:
        return None
    twin = {"yaml_sha256": hashlib.sha256(yaml_text.encode("utf-8")).hexdigest(), "env_paths": env_paths,
            "config": data}
    return json.dumps(twin, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def sidecar_path(config_path: str) -> str:
    """Where the JSON twin of a pygeoapi config file lives (see :func:`config_sidecar`)."""
    return os.path.splitext(config_path)[0] + ".json"


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()
