"""Synthetic config repositories of N layers, and their tables in PostGIS.

A repository of N layers has ``ceil(N / 50)`` services of up to 50 layers each, one
YAML file per layer (in the seed's shape: fields, CRS, OGC options, one health check),
a PostGIS datasource whose connection comes from ``$HONUA_PG_DSN``, and a server of
``type: none`` (nothing is published) or ``type: pygeoapi`` (the default users run, its
port from ``$HONUA_SERVER_PORT_GIS_SERVER``, the server port slot). No migrations: the tables are created directly
by :func:`create_tables`, a few multi-statement batches that fill each table from
``generate_series``.

Layer ``i`` is a Point, LineString or Polygon layer (``i % 3``) over table
``public.bm_<i>`` with 0–1,000 rows (a seeded pseudo-random count, so a given N always
gives the same repository and the same data).

``python -m benchmarks.generate DIR --layers N [--dsn DSN]`` writes a repository (and,
with ``--dsn``, its tables) by hand.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

LAYERS_PER_SERVICE = 50
GEOMETRIES = ("Point", "LineString", "Polygon")
MAX_ROWS = 1000
ENVIRONMENT = "dev"
DRIFT_COLUMN = "bench_drift"


@dataclass(frozen=True)
class SyntheticLayer:
    index: int
    name: str  # layer-00001
    service: str  # svc-000
    table: str  # bm_00001 (schema public)
    geometry: str  # Point | LineString | Polygon
    rows: int

    @property
    def qualified_table(self) -> str:
        return f"public.{self.table}"


def layers(n: int, *, seed: int = 20251004) -> list[SyntheticLayer]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        out.append(SyntheticLayer(
            index=i,
            name=f"layer-{i:05d}",
            service=f"svc-{i // LAYERS_PER_SERVICE:03d}",
            table=f"bm_{i:05d}",
            geometry=GEOMETRIES[i % len(GEOMETRIES)],
            rows=rng.randint(0, MAX_ROWS),
        ))
    return out


# --------------------------------------------------------------------------- repository

_PROJECT = """\
# yaml-language-server: $schema=schemas/project.schema.json
apiVersion: honua.io/v1
kind: Project
metadata:
  name: bench-city
  description: "Synthetic repository for the scaling benchmarks ({n} layers)"
spec:
  environments: [dev]
  state:
    backend: local
    path: state
  defaultDatasource: postgis-primary
  defaultServer: gis-server
"""

_DATASOURCE = """\
apiVersion: honua.io/v1
kind: Datasource
metadata:
  name: postgis-primary
  description: "The benchmark's throwaway PostGIS"
spec:
  type: postgis
  connection:
    env: ["HONUA_PG_DSN"]
    embedded: false
  schema: public
  lockTimeout: 2s
  statementTimeout: 10m
"""

_SERVER = """\
apiVersion: honua.io/v1
kind: Server
metadata:
  name: gis-server
  description: "Nothing is published: the benchmark measures the engine"
spec:
  type: none
"""

# The default server (what `honua init` and the example repository use): pygeoapi under
# gunicorn with 2 workers; the port comes from $HONUA_SERVER_PORT_GIS_SERVER (a free one per run).
PORT_ENV = "HONUA_SERVER_PORT_GIS_SERVER"
_SERVER_PYGEOAPI = """\
apiVersion: honua.io/v1
kind: Server
metadata:
  name: gis-server
  description: "pygeoapi, as `honua init` sets it up"
spec:
  type: pygeoapi
  pygeoapi:
    host: 127.0.0.1
    portEnv: HONUA_SERVER_PORT_GIS_SERVER
    basePath: /ogc
    workers: 2
  healthTimeout: 120s
"""
SERVERS = {"none": _SERVER, "pygeoapi": _SERVER_PYGEOAPI}

_SERVICE = """\
# yaml-language-server: $schema=../../../schemas/service.schema.json
apiVersion: honua.io/v1
kind: Service
metadata:
  name: {name}
  environment: dev
  description: "Synthetic service {name}"
spec:
  title: "Service {name}"
  description: "Up to {per} synthetic layers"
  datasource: postgis-primary
  serviceType: feature
  keywords: [benchmark, synthetic]
  ogc:
    collectionsEnabled: true
    itemLimit: 1000
    defaultCrs: EPSG:4326
    additionalCrs: [EPSG:3857]
"""

_LAYER = """\
# yaml-language-server: $schema=../../../schemas/layer.schema.json
apiVersion: honua.io/v1
kind: Layer
metadata:
  name: {name}
  service: {service}
  environment: dev
  created: 2025-10-04T12:00:00Z
  createdBy: benchmarks.generate
  description: "Synthetic {geometry} layer {index}"
spec:
  title: "Layer {index}"
  description: "{rows} synthetic {geometry_lower} features"
  geometryType: {geometry}
  idField: id
  displayField: name
  geometryField: geom

  crs:
    - EPSG:4326
    - EPSG:3857

  storage:
    table: {table}
    geometryColumn: geom
    primaryKey: id
    srid: 4326

  fields:
    - name: id
      type: integer
      alias: "ID"
      nullable: false
    - name: name
      type: string
      alias: "Name"
      maxLength: 100
    - name: category
      type: string
      alias: "Category"
      maxLength: 30
    - name: value
      type: double
      alias: "Value"
    - name: updated_at
      type: datetime
      alias: "Last Updated"

  ogc:
    itemLimit: 1000
    defaultCrs: EPSG:4326

  validation:
    healthChecks:
      - type: query
        query: "SELECT count(*) FROM {table}"
        expected: ">= 0"
"""


def write_repo(root: Path, specs: Sequence[SyntheticLayer], *, server: str = "none") -> Path:
    """Write the config repository for ``specs`` under ``root`` (created; must not hold one).

    ``server``: ``none`` (nothing published) or ``pygeoapi`` (the default users run).
    """
    root = Path(root)
    if (root / "honua.yaml").exists():
        raise FileExistsError(f"{root} already holds a config repository")
    env = root / "environments" / ENVIRONMENT
    (env / "layers").mkdir(parents=True)
    (env / "services").mkdir(parents=True)
    (root / "providers").mkdir(parents=True)
    (root / "state").mkdir(parents=True)
    (root / "honua.yaml").write_text(_PROJECT.format(n=len(specs)))
    (root / "providers" / "postgis-primary.yaml").write_text(_DATASOURCE)
    (root / "providers" / "gis-server.yaml").write_text(SERVERS[server])
    for service in sorted({s.service for s in specs}):
        (env / "services" / f"{service}.yaml").write_text(
            _SERVICE.format(name=service, per=LAYERS_PER_SERVICE))
    for s in specs:
        (env / "layers" / f"{s.name}.yaml").write_text(_LAYER.format(
            name=s.name, service=s.service, index=s.index, geometry=s.geometry,
            geometry_lower=s.geometry.lower(), rows=s.rows, table=s.table))
    return root


# --------------------------------------------------------------------------- tables


def _geometry_expr(s: SyntheticLayer) -> str:
    # features spread over a small grid near Seattle, one cell per layer
    x = f"(-122.5 + {(s.index % 100) * 0.01} + (g % 100) * 0.0001)"
    y = f"(47.5 + {(s.index // 100) * 0.001} + (g / 100) * 0.0001)"
    if s.geometry == "Point":
        return f"ST_SetSRID(ST_MakePoint({x}, {y}), 4326)"
    if s.geometry == "LineString":
        return (f"ST_SetSRID(ST_MakeLine(ST_MakePoint({x}, {y}), "
                f"ST_MakePoint({x} + 0.0005, {y} + 0.0003)), 4326)")
    return f"ST_MakeEnvelope({x}, {y}, {x} + 0.0004, {y} + 0.0004, 4326)"


def table_sql(s: SyntheticLayer) -> str:
    t = s.qualified_table
    parts = [
        f"CREATE TABLE {t} (id serial PRIMARY KEY, name varchar(100) NOT NULL, "
        f"category varchar(30), value double precision, updated_at timestamptz DEFAULT now(), "
        f"geom geometry({s.geometry}, 4326));"
    ]
    if s.rows:
        parts.append(
            f"INSERT INTO {t} (name, category, value, geom) "
            f"SELECT 'feature ' || g, 'class ' || (g % 7), g * 0.5, {_geometry_expr(s)} "
            f"FROM generate_series(1, {s.rows}) AS g;"
        )
    parts.append(f"CREATE INDEX {s.table}_geom_idx ON {t} USING gist (geom);")
    return "\n".join(parts)


def batches(specs: Iterable[SyntheticLayer], size: int = 100) -> Iterator[str]:
    """Multi-statement SQL texts of ``size`` tables each (one transaction per batch keeps
    the lock table small: 10,000 tables in one transaction exceed max_locks_per_transaction)."""
    batch: list[str] = []
    for s in specs:
        batch.append(table_sql(s))
        if len(batch) == size:
            yield "\n".join(batch)
            batch = []
    if batch:
        yield "\n".join(batch)


def create_tables(dsn: str, specs: Sequence[SyntheticLayer], *, workers: int = 2) -> None:
    """Create and fill every table (multi-statement batches over ``workers`` connections), then VACUUM."""
    import concurrent.futures

    import psycopg

    texts = list(batches(specs))

    def run(chunk: list[str]) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for text in chunk:
                conn.execute(text.encode())  # bytes: no placeholder parsing, simple protocol

    chunks = [texts[i::workers] for i in range(workers)]
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for f in [pool.submit(run, c) for c in chunks if c]:
            f.result()
    # Settle the database, as a production one has: without this, autovacuum analyzes
    # the N new tables while the operations are measured (a 2-core host then runs the
    # plan, its reader, PostgreSQL and autovacuum workers at once).
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(b"VACUUM (ANALYZE)")


def drift_targets(specs: Sequence[SyntheticLayer], fraction: float = 0.01) -> list[SyntheticLayer]:
    """Every ``1/fraction``-th layer's table (at least one)."""
    step = max(1, round(1 / fraction))
    return list(specs[::step])


def alter_tables(dsn: str, targets: Sequence[SyntheticLayer], *, revert: bool = False) -> None:
    """The out-of-band change drift must find: a column added (or, ``revert``, dropped)."""
    import psycopg

    verb = f"DROP COLUMN IF EXISTS {DRIFT_COLUMN}" if revert else f"ADD COLUMN {DRIFT_COLUMN} integer"
    text = "\n".join(f"ALTER TABLE {s.qualified_table} {verb};" for s in targets)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(text.encode())


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.generate", description=__doc__.split("\n\n")[0])
    p.add_argument("root", type=Path)
    p.add_argument("--layers", type=int, required=True)
    p.add_argument("--dsn", help="also create the tables in this database")
    p.add_argument("--server", choices=sorted(SERVERS), default="none",
                   help=f"the server the layers are published to (pygeoapi: port from ${PORT_ENV})")
    args = p.parse_args(argv)
    specs = layers(args.layers)
    write_repo(args.root, specs, server=args.server)
    if args.dsn:
        create_tables(args.dsn, specs)
    print(f"wrote {args.root} ({len(specs)} layers)" + (" and its tables" if args.dsn else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
