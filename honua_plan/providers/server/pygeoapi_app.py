"""gunicorn's entry point for pygeoapi: ``pygeoapi.flask_app:APP``, its config read by
:mod:`.pygeoapi_loader` (libyaml, or the engine's JSON twin) instead of pure-Python YAML.

It imports nothing else from honua_plan: it runs in the server's processes.
"""

from __future__ import annotations

from honua_plan.providers.server.pygeoapi_loader import install

install()

from pygeoapi.flask_app import APP  # noqa: E402 - after the loader is in place

__all__ = ["APP"]
