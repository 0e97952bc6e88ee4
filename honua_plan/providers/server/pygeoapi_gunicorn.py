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

for _name in ("flask", "pygeoapi.api", "pygeoapi.api.coverages", "pygeoapi.api.environmental_data_retrieval",
              "pygeoapi.api.itemtypes", "pygeoapi.api.maps", "pygeoapi.api.processes", "pygeoapi.api.stac",
              "pygeoapi.api.tiles", "pygeoapi.openapi", "pygeoapi.util", "pygeoapi.provider.sql"):
    with contextlib.suppress(Exception):  # a missing optional part is imported (and reported) by the worker
        importlib.import_module(_name)
