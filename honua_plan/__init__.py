"""honua-plan: declarative plan/apply for a GIS server and its PostGIS database."""

__version__ = "0.1.0"
