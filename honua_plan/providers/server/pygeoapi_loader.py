"""pygeoapi's ``yaml_load``, faster: libyaml's parser, or the engine's JSON twin of the config.

Each gunicorn worker reads the config at import, and pygeoapi's ``yaml_load`` runs
PyYAML's pure-Python parser: 3.6 s per worker for 1,000 collections, on every reload.
:func:`install` gives pygeoapi the same loader on libyaml's parser (``CSafeLoader``,
about 5x faster): the same ``${VAR}`` resolver on plain scalars and the same
constructor, copied from ``pygeoapi.util.yaml_load``, so what is expanded and how it
is typed do not change. Without libyaml it is pygeoapi's loader as it is.

The YAML is not even parsed when the engine wrote its JSON twin beside it
(``pygeoapi-config.json``, see ``pygeoapi_config.config_sidecar``) and the twin's
``yaml_sha256`` is that of the YAML on disk: ``json.loads`` and the same ``${VAR}``
expansion at the listed paths, 0.03 s instead of 0.6 s for 1,000 collections. Any
other file, or a YAML edited by hand, is parsed as above.

It imports nothing else from honua_plan: it runs in the server's processes.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import re
from typing import IO, Any

import yaml

# the modules (the package's attributes ``config`` and ``openapi`` are click groups)
_config: Any = importlib.import_module("pygeoapi.config")
_util: Any = importlib.import_module("pygeoapi.util")

_Base: Any = getattr(yaml, "CSafeLoader", None)
_ENV = re.compile(r'.*?\$\{(?P<varname>\w+)(:-(?P<default>[^}]*))?\}')


def _env_constructor(loader: Any, node: Any) -> Any:
    """pygeoapi.util.yaml_load's env_constructor, unchanged."""
    return _expand(node.value)


def _expand(raw_value: str) -> Any:
    result = ""
    current_index = 0
    for match_obj in _ENV.finditer(raw_value):
        groups = match_obj.groupdict()
        varname_start = match_obj.span("varname")[0]
        result += raw_value[current_index:(varname_start - 2)]
        if (var_value := os.getenv(groups["varname"])) is not None:
            result += var_value
        elif (default_value := groups.get("default")) is not None:
            result += default_value
        else:
            raise OSError(f"Could not find the {groups['varname']!r} environment variable")
        current_index = match_obj.end()
    else:
        result += raw_value[current_index:]
    return _util.get_typed_value(result)


_NOT_THERE = object()


def _from_twin(name: object, text: str) -> Any:
    """The config from its JSON twin, or ``_NOT_THERE`` (no twin, or not of this text)."""
    if not isinstance(name, str) or name != os.environ.get("PYGEOAPI_CONFIG"):
        return _NOT_THERE
    try:
        with open(os.path.splitext(name)[0] + ".json", encoding="utf-8") as fh:
            twin = json.load(fh)
    except (OSError, ValueError):
        return _NOT_THERE
    if not isinstance(twin, dict) or twin.get("yaml_sha256") != hashlib.sha256(text.encode("utf-8")).hexdigest():
        return _NOT_THERE
    config = twin["config"]
    for path in twin["env_paths"]:
        parent = config
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = _expand(parent[path[-1]])
    return config


_pygeoapi_yaml_load = _util.yaml_load

if _Base is not None:
    class _EnvVarLoader(_Base):
        pass

    _EnvVarLoader.add_implicit_resolver("!env", _ENV, None)
    _EnvVarLoader.add_constructor("!env", _env_constructor)


def yaml_load(fh: IO[str]) -> Any:
    """pygeoapi.util.yaml_load: from the JSON twin when it is this file's, else on libyaml's parser."""
    text = fh.read()
    data = _from_twin(getattr(fh, "name", None), text)
    if data is not _NOT_THERE:
        return data
    if _Base is None:
        return _pygeoapi_yaml_load(io.StringIO(text))
    return yaml.load(text, Loader=_EnvVarLoader)


def install() -> None:
    """Make :func:`yaml_load` pygeoapi's (before ``pygeoapi.flask_app`` reads the config)."""
    _util.yaml_load = yaml_load
    _config.yaml_load = yaml_load
