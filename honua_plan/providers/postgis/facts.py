"""Live facts: read-only, frozen values describing what exists in a database.

Providers produce these (one refresh, a constant number of catalog queries); planning
code only reads them. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

# The per-column, per-index and per-constraint facts are named tuples: tens of thousands of
# them are built on every refresh of a large database, and a tuple is built several times
# faster than a frozen dataclass (whose __init__ sets each field through object.__setattr__).


class ColumnFacts(NamedTuple):
    name: str
    data_type: str  # format_type() text, e.g. "integer", "character varying(200)", "geometry(LineString,4326)"
    udt: str  # base type name, e.g. "int4", "varchar", "geometry"
    nullable: bool
    default: str | None = None
    max_length: int | None = None


class GeometryColumnFacts(NamedTuple):
    column: str
    geometry_type: str  # upper-case as in geometry_columns, e.g. "LINESTRING", "GEOMETRY"
    srid: int
    dims: int


class IndexFacts(NamedTuple):
    name: str
    method: str  # btree, gist, spgist, brin, ...
    columns: tuple[str, ...]
    is_valid: bool
    is_ready: bool
    is_unique: bool
    is_primary: bool
    definition: str


class ConstraintFacts(NamedTuple):
    name: str
    type: str  # p, u, f, c, x
    columns: tuple[str, ...]
    validated: bool
    definition: str


@dataclass(frozen=True)
class TableFacts:
    schema: str
    name: str
    kind: str  # r (table), v (view), m (matview), p (partitioned)
    row_estimate: int  # pg_class.reltuples clamped at 0 (-1 = never analyzed -> 0)
    columns: tuple[ColumnFacts, ...] = ()
    geometry_columns: tuple[GeometryColumnFacts, ...] = ()
    indexes: tuple[IndexFacts, ...] = ()
    constraints: tuple[ConstraintFacts, ...] = ()
    primary_key: tuple[str, ...] = ()
    total_bytes: int = 0

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}"

    def column(self, name: str) -> ColumnFacts | None:
        return self._columns_by_name.get(name)

    @cached_property
    def _columns_by_name(self) -> dict[str, ColumnFacts]:
        # a plan looks up each layer's geometry, key and field columns: one dict per table
        return {c.name: c for c in reversed(self.columns)}  # the first of a name wins, as before

    def geometry(self, column: str) -> GeometryColumnFacts | None:
        return next((g for g in self.geometry_columns if g.column == column), None)

    def index(self, name: str) -> IndexFacts | None:
        return next((i for i in self.indexes if i.name == name), None)

    @property
    def shape(self) -> dict[str, Any]:
        """What drift compares and the state records (not sizes or row counts); plain JSON values.

        Built on each use (not kept: 20 MB at 10,000 tables, where only the fingerprint is
        needed for every table)."""
        return {
            "columns": {c.name: c.data_type + ("" if c.nullable else " not null") for c in self.columns},
            "geometry": {g.column: f"{g.geometry_type},{g.srid},{g.dims}" for g in self.geometry_columns},
            "indexes": {i.name: i.definition + ("" if i.is_valid else " INVALID") for i in self.indexes},
            "constraints": {c.name: c.definition for c in self.constraints},
            "primary_key": list(self.primary_key),
        }

    @cached_property
    def shape_fingerprint(self) -> str:
        """``sha256:`` of the canonical JSON of :attr:`shape` (the state's fingerprint), once per table."""
        from honua_plan.canonical import fingerprint

        return fingerprint(self.shape)


@dataclass(frozen=True)
class DatabaseFacts:
    """Everything a plan needs to know about one datasource's database."""

    server_version: int = 0  # server_version_num, e.g. 150018
    extensions: tuple[tuple[str, str], ...] = ()  # (name, version)
    tables: tuple[TableFacts, ...] = ()
    search_path: tuple[str, ...] = ("public",)
    statements: int = 0  # how many SQL statements the refresh sent (for the benchmarks)
    _by_name: dict[str, TableFacts] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        index: dict[str, TableFacts] = {}
        for t in self.tables:
            index[f"{t.schema}.{t.name}"] = t
        object.__setattr__(self, "_by_name", index)

    def table(self, name: str) -> TableFacts | None:
        """Look a table up by ``schema.name`` or by a bare name on the search path."""
        if "." in name:
            return self._by_name.get(name)
        for schema in self.search_path:
            found = self._by_name.get(f"{schema}.{name}")
            if found is not None:
                return found
        return None

    def find_index(self, name: str) -> tuple[TableFacts, IndexFacts] | None:
        for t in self.tables:
            idx = t.index(name)
            if idx is not None:
                return t, idx
        return None

    def extension_version(self, name: str) -> str | None:
        return dict(self.extensions).get(name)


CatalogRows = dict[str, Any]
"""The rows of the catalog statements (``providers.postgis.catalog_rows``), plain values.

May carry ``"shape_fingerprints"``: each relation's :attr:`TableFacts.shape_fingerprint`,
in the order of ``"relations"``, computed from these same rows by :func:`with_fingerprints`
(the plan's forked reader does it while the main process loads the repository)."""

SHAPE_FINGERPRINTS = "shape_fingerprints"


def with_fingerprints(rows: CatalogRows) -> CatalogRows:
    """``rows`` plus the shape fingerprint of every relation (a pure function of the rows)."""
    rows[SHAPE_FINGERPRINTS] = [t.shape_fingerprint for t in facts_from_rows(rows).tables]
    return rows


def facts_from_rows(rows: CatalogRows) -> DatabaseFacts:
    """Build the facts from the catalog rows: relations, columns, indexes, constraints joined by oid."""
    columns: dict[int, list[ColumnFacts]] = {}
    geometry: dict[int, list[GeometryColumnFacts]] = {}
    from_views: set[tuple[int, str]] = set()  # (relation, column) the typmod left open
    for oid, name, data_type, udt, nullable, default, max_length, gkind, gtype, srid, dims in rows["columns"]:
        columns.setdefault(oid, []).append(ColumnFacts(name, data_type, udt, nullable, default, max_length))
        if gkind == "typmod":
            geometry.setdefault(oid, []).append(
                GeometryColumnFacts(column=name, geometry_type=gtype, srid=srid, dims=dims or 2))
        elif gkind == "view":
            from_views.add((oid, name))
    indexes: dict[int, list[IndexFacts]] = {}
    for oid, name, method, cols, valid, ready, unique, primary, definition in rows["indexes"]:
        indexes.setdefault(oid, []).append(IndexFacts(
            name=name, method=method, columns=tuple(cols), is_valid=valid, is_ready=ready,
            is_unique=unique, is_primary=primary, definition=definition))
    constraints: dict[int, list[ConstraintFacts]] = {}
    for oid, name, ctype, cols, validated, definition in rows["constraints"]:
        constraints.setdefault(oid, []).append(ConstraintFacts(
            name=name, type=ctype, columns=tuple(cols), validated=validated, definition=definition))
    if from_views:
        named = {(r[1], r[2]): r[0] for r in rows["relations"]}
        for schema, table, column, gtype, srid, dims in rows["geometry_views"]:
            oid = named.get((schema, table))
            if oid is not None and (oid, column) in from_views:
                geometry.setdefault(oid, []).append(GeometryColumnFacts(
                    column=column, geometry_type=str(gtype or "GEOMETRY").upper(),
                    srid=int(srid or 0), dims=int(dims or 2)))
    tables = tuple(
        _table(schema, name, kind, reltuples, total_bytes, columns.get(oid, ()), indexes.get(oid, ()),
               constraints.get(oid, ()), geometry.get(oid, ()))
        for oid, schema, name, kind, reltuples, total_bytes in rows["relations"]
    )
    known = rows.get(SHAPE_FINGERPRINTS)
    if isinstance(known, list) and len(known) == len(tables):
        for t, fp in zip(tables, known, strict=True):
            t.__dict__["shape_fingerprint"] = fp  # what the cached property would compute
    return DatabaseFacts(
        server_version=int(rows["server_version"]),
        extensions=tuple((str(name), str(ver)) for name, ver in rows["extensions"]),
        tables=tables,
        search_path=tuple(rows["search_path"]),
        statements=int(rows["statements"]),
    )


def _table(
    schema: str,
    name: str,
    kind: str,
    reltuples: float | None,
    total_bytes: int | None,
    columns: Sequence[ColumnFacts],
    indexes: Sequence[IndexFacts],
    constraints: Sequence[ConstraintFacts],
    geoms: Sequence[GeometryColumnFacts],
) -> TableFacts:
    primary_key = next((c.columns for c in constraints if c.type == "p"), ())
    order = {c.name: n for n, c in enumerate(columns)}
    return TableFacts(
        schema=schema,
        name=name,
        kind=kind,
        row_estimate=max(0, round(float(reltuples or 0))),
        columns=tuple(columns),
        geometry_columns=tuple(sorted(geoms, key=lambda g: order.get(g.column, len(order)))),
        indexes=tuple(indexes),
        constraints=tuple(constraints),
        primary_key=primary_key,
        total_bytes=int(total_bytes or 0),
    )


def table_facts_json(t: TableFacts) -> dict[str, Any]:
    """One table's facts as plain JSON values (a saved plan carries what its simulation saw)."""
    return {
        "schema": t.schema, "name": t.name, "kind": t.kind, "row_estimate": t.row_estimate,
        "columns": [list(c) for c in t.columns], "geometry_columns": [list(g) for g in t.geometry_columns],
        "indexes": [[*i[:2], list(i.columns), *i[3:]] for i in t.indexes],
        "constraints": [[c.name, c.type, list(c.columns), c.validated, c.definition] for c in t.constraints],
        "primary_key": list(t.primary_key), "total_bytes": t.total_bytes,
    }


def table_facts_from_json(d: dict[str, Any]) -> TableFacts:
    """The inverse of :func:`table_facts_json`."""
    return TableFacts(
        schema=d["schema"], name=d["name"], kind=d["kind"], row_estimate=int(d["row_estimate"]),
        columns=tuple(ColumnFacts(*c) for c in d["columns"]),
        geometry_columns=tuple(GeometryColumnFacts(*g) for g in d["geometry_columns"]),
        indexes=tuple(IndexFacts(i[0], i[1], tuple(i[2]), *i[3:]) for i in d["indexes"]),
        constraints=tuple(ConstraintFacts(c[0], c[1], tuple(c[2]), c[3], c[4]) for c in d["constraints"]),
        primary_key=tuple(d["primary_key"]), total_bytes=int(d["total_bytes"]),
    )
