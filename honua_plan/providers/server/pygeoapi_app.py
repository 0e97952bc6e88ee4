"""gunicorn's entry point for pygeoapi: ``pygeoapi.flask_app:APP``, its config read by libyaml.

Each gunicorn worker reads the config at import, and pygeoapi's ``yaml_load`` runs
PyYAML's pure-Python parser: 3.6 s per worker for 1,000 collections, on every reload.
This module gives pygeoapi the same loader on libyaml's parser (``CSafeLoader``, about
5x faster) before importing the app: the same ``${VAR}`` resolver on plain scalars
and the same constructor, copied from ``pygeoapi.util.yaml_load``, so what is expanded
and how it is typed do not change. Without libyaml it is pygeoapi's loader as it is.

It imports nothing else from honua_plan: it runs in the server's processes.
"""

from __future__ import annotations

import importlib
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
    result = ""
    current_index = 0
    raw_value = node.value
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


if _Base is not None:
    class _EnvVarLoader(_Base):
        pass

    _EnvVarLoader.add_implicit_resolver("!env", _ENV, None)
    _EnvVarLoader.add_constructor("!env", _env_constructor)

    def yaml_load(fh: IO[str]) -> Any:
        """pygeoapi.util.yaml_load on libyaml's parser."""
        return yaml.load(fh, Loader=_EnvVarLoader)

    _util.yaml_load = yaml_load
    _config.yaml_load = yaml_load

from pygeoapi.flask_app import APP  # noqa: E402 - after the loader is in place

__all__ = ["APP"]
