"""Live facts: read-only, frozen values describing what exists in a database.

Providers produce these (one refresh, a constant number of catalog queries); planning
code only reads them. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ColumnFacts:
    name: str
    data_type: str  # format_type() text, e.g. "integer", "character varying(200)", "geometry(LineString,4326)"
    udt: str  # base type name, e.g. "int4", "varchar", "geometry"
    nullable: bool
    default: str | None = None
    max_length: int | None = None


@dataclass(frozen=True)
class GeometryColumnFacts:
    column: str
    geometry_type: str  # upper-case as in geometry_columns, e.g. "LINESTRING", "GEOMETRY"
    srid: int
    dims: int


@dataclass(frozen=True)
class IndexFacts:
    name: str
    method: str  # btree, gist, spgist, brin, ...
    columns: tuple[str, ...]
    is_valid: bool
    is_ready: bool
    is_unique: bool
    is_primary: bool
    definition: str


@dataclass(frozen=True)
class ConstraintFacts:
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
        return next((c for c in self.columns if c.name == name), None)

    def geometry(self, column: str) -> GeometryColumnFacts | None:
        return next((g for g in self.geometry_columns if g.column == column), None)

    def index(self, name: str) -> IndexFacts | None:
        return next((i for i in self.indexes if i.name == name), None)


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
