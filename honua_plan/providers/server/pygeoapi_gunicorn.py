"""gunicorn's config file for the embedded pygeoapi (``-c <this file>``): import pygeoapi's
libraries once, in the master.

A reload (SIGHUP) forks new workers, and each imported pygeoapi, Flask, SQLAlchemy,
shapely, … anew before reading the config: about 1 s of each reload, per worker. The
master imports them here (not ``pygeoapi.flask_app``, which reads the config), so a
forked worker only runs the app module: the config is still read by each new worker,
as pygeoapi wants, and a SIGHUP still serves the new config.

gunicorn loads this file by path (no ``sys.path`` needed) and again on every SIGHUP
(the imports are cached then). Nothing else of honua_plan is imported.
"""

import contextlib
import importlib
from typing import Any

for _name in ("flask", "pygeoapi.api", "pygeoapi.api.coverages", "pygeoapi.api.environmental_data_retrieval",
              "pygeoapi.api.itemtypes", "pygeoapi.api.maps", "pygeoapi.api.processes", "pygeoapi.api.stac",
              "pygeoapi.api.tiles", "pygeoapi.openapi", "pygeoapi.util", "pygeoapi.provider.sql"):
    with contextlib.suppress(Exception):  # a missing optional part is imported (and reported) by the worker
        importlib.import_module(_name)


def worker_exit(server: object, worker: object) -> None:
    """End a retired worker now, past its requests: no interpreter teardown.

    A worker that served ``/collections`` of 1,000 collections holds a large heap, and
    Python's finalization of it takes 0.7 s: each reload waited that long for the old
    workers to go. gunicorn calls this hook last (requests done, "Worker exiting"
    logged); the database connections are closed first, so PostgreSQL sees a clean
    disconnect, and the log is flushed.
    """
    import logging
    import os
    import sys

    with contextlib.suppress(Exception):
        sql = sys.modules.get("pygeoapi.provider.sql")
        get_engine = getattr(sql, "get_engine", None)
        if get_engine is not None and hasattr(get_engine, "cache_info"):
            for engine in _cached_engines(get_engine):
                engine.dispose()
    with contextlib.suppress(Exception):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(0)


def _cached_engines(cached: object) -> list[Any]:
    """The engines a ``functools.cache``'d factory made (CPython keeps them in its closure)."""
    import gc

    return [o for o in gc.get_referents(cached) if hasattr(o, "dispose")] + [
        v for d in gc.get_referents(cached) if isinstance(d, dict) for v in d.values() if hasattr(v, "dispose")
    ]
