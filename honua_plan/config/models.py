"""Strict pydantic models, one per kind (apiVersion ``honua.io/v1``).

The schema of every kind is one unit: the kinds share their field types, patterns and
validators, and the generated JSON Schemas (``honua schema export``) come from this module
alone.

Field names follow the YAML (camelCase, and ``post-up`` where the seed says so) via
aliases, so pydantic's error locations are the YAML key paths and map straight back
to ``path:line:column``. Every model forbids unknown keys.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from honua_plan.config import expected as exp
from honua_plan.config import slots
from honua_plan.fielddefaults import empty_dict, empty_list

API_VERSION = "honua.io/v1"

IDENT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$"
QUALIFIED_PATTERN = r"^(?:[A-Za-z_][A-Za-z0-9_$]{0,62}\.)?[A-Za-z_][A-Za-z0-9_$]{0,62}$"
NAME_PATTERN = r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$"
ENV_VAR_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
# [0-9] and \x1c-\x1f excluded by hand: Rust's Unicode \d and \S accept a few characters re rejects
CRS_PATTERN = r"^(EPSG:[0-9]{4,6}|CRS84|OGC:CRS84|https?://www\.opengis\.net/def/crs/[^\s\x1c-\x1f]+)$"

IDENT_RE = re.compile(IDENT_PATTERN)
QUALIFIED_RE = re.compile(QUALIFIED_PATTERN)
NAME_RE = re.compile(NAME_PATTERN)
ENV_VAR_RE = re.compile(ENV_VAR_PATTERN)
CRS_RE = re.compile(CRS_PATTERN)

# The patterns run in pydantic-core (Rust regex, no Python call per value). Rust's ``$`` does
# not match before a trailing newline, so they are a little stricter than ``re``, never looser.
# The loader turns a ``string_pattern_mismatch`` back into these messages, keyed by pattern.
RULE_CODE_PATTERN = r"^[A-Z]{2,5}[0-9]{3}$"
DRIFT_PATH_PATTERN = r"^(columns|indexes|constraints|geometry)(\.[A-Za-z_][A-Za-z0-9_$]*)?$|^primary_key$"
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
KEY_PREFIX_PATTERN = r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$"
HTTP_URL_PATTERN = r"^https?://[^\s/$.?#][^\s]*$"
REGION_PATTERN = r"^[a-z0-9-]+$"
ADDRESS_PATTERN = r"^(layer|service|datasource|server)\.[a-z0-9][a-z0-9_.:-]{0,200}$"

PATTERN_MESSAGES: dict[str, str] = {
    IDENT_PATTERN: "{!r} is not a plain SQL identifier (letters, digits, _; not starting with a digit)",
    QUALIFIED_PATTERN: "{!r} is not a plain SQL table name (schema.table or table)",
    NAME_PATTERN: "{!r} is not a valid name: use lower-case letters, digits, '-' and '_' (max 63)",
    CRS_PATTERN: "{!r} is not a CRS: use EPSG:<code>, CRS84 or an OGC CRS URI",
    ENV_VAR_PATTERN: "{!r} is not an environment variable name",
    RULE_CODE_PATTERN: "{!r} is not a risk rule code (e.g. PG101, DS102)",
    DRIFT_PATH_PATTERN: "{!r} is not a part of a table: columns, indexes, constraints, geometry, primary_key, "
                        "or <section>.<name>",
    BUCKET_PATTERN: "{!r} is not an S3 bucket name (3-63 lower-case letters, digits, '.' and '-')",
    KEY_PREFIX_PATTERN: "{!r} is not a key prefix: letters, digits, '.', '_', '-' in parts separated by '/'",
    HTTP_URL_PATTERN: "{!r} is not an http(s) URL",
    REGION_PATTERN: "{!r} is not a region name (lower-case letters, digits and '-')",
    ADDRESS_PATTERN: "{!r} is not a resource address (layer.<service>::<name>, service.<name>, "
                     "datasource.<name> or server.<name>)",
}


def _duration(v: Any) -> float:
    return exp.parse_duration(v)


def _duration_or_zero(v: Any) -> float:
    return exp.parse_duration(v, allow_zero=True)


DURATION_PARSERS = (_duration, _duration_or_zero)  # what marks a duration field (a test finds them all)
_DURATION_SCHEMA = WithJsonSchema({"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d))+$"})


Ident = Annotated[str, StringConstraints(pattern=IDENT_PATTERN)]
TableName = Annotated[str, StringConstraints(pattern=QUALIFIED_PATTERN)]
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Crs = Annotated[str, StringConstraints(pattern=CRS_PATTERN)]
EnvVar = Annotated[str, StringConstraints(pattern=ENV_VAR_PATTERN)]
# A positive finite amount with a unit ("30s", "5m", "1h30m", "7d", "250ms"); see parse_duration.
Duration = Annotated[float, BeforeValidator(_duration), _DURATION_SCHEMA]
# The same, where zero means something ("0s": do not wait).
DurationOrZero = Annotated[float, BeforeValidator(_duration_or_zero), _DURATION_SCHEMA]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, str_strip_whitespace=False,
                              defer_build=True)


# --------------------------------------------------------------------------- checks


CheckType = Literal["query", "geometry", "performance", "row-count", "http"]


class Check(Strict):
    """A validation or health check: run ``query``, compare with ``expected``."""

    type: CheckType = "query"
    name: str | None = None
    query: str | None = None
    expected: Annotated[str, WithJsonSchema({"type": "string"})]
    timeout: Duration | None = None
    url: str | None = None

    @field_validator("expected", mode="before")
    @classmethod
    def _parse_expected(cls, v: Any, info: ValidationInfo) -> str:
        if not isinstance(v, str):  # one test on the common path
            if isinstance(v, bool):
                v = "all true" if v else "all false"
            elif isinstance(v, int | float):
                v = f"= {v}"
            else:
                raise ValueError("expected must be a string such as '> 0', '1 row' or 'all true'")
        exp.parse_cached(v, info.data.get("type", "query"))  # raises on a typo
        return v

    @model_validator(mode="after")
    def _needs_query(self) -> Check:
        if self.type != "http" and not self.query:
            raise ValueError(f"a {self.type} check needs a 'query'")
        return self

    @property
    def expectation(self) -> exp.Expectation:
        # cached by text, not per instance: a private attribute costs every Check at load
        return exp.parse_cached(self.expected, self.type)

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        # whole: a reviewer must see all of what will run (a cut label once hid "; COMMIT; …")
        return f"{self.type}: {' '.join((self.query or self.url or '').split())}"


# --------------------------------------------------------------------------- common


class Metadata(Strict):
    name: Name
    description: str | None = None
    labels: dict[str, str] = Field(default_factory=empty_dict)
    annotations: dict[str, str] = Field(default_factory=empty_dict)


class EnvMetadata(Metadata):
    environment: Name | None = None
    created: datetime | str | None = None
    createdBy: str | None = None


# --------------------------------------------------------------------------- Project


class StateConfig(Strict):
    backend: Literal["local", "postgres"] = "local"
    path: str = Field(default="state", description="the folder (inside the repository) of the local files: "
                      "the local state, saved plans, backups, incident reports, the embedded PostGIS")
    dsnEnv: EnvVar | None = Field(default=None, description="the variable holding the postgres state "
                                  "backend's connection string: HONUA_STATE_DSN or HONUA_STATE_DSN_<SUFFIX>")
    lockTimeout: DurationOrZero = 0.0  # how long a run waits for the state lock; 0s: fail at once
    project: Name | None = Field(default=None, description="the project key of the state (default: metadata.name; "
                                 "the environment variable HONUA_PROJECT overrides both)")

    @field_validator("path")
    @classmethod
    def _inside(cls, v: str) -> str:
        """Config is untrusted: a plan or apply writes under this folder, so it stays in the repository."""
        parts = v.replace("\\", "/").split("/")
        if (not v.strip() or v.startswith(("/", "~")) or ":" in v or ".." in parts or set(parts) <= {"", "."}
                or any(ord(c) < 32 for c in v)):
            raise ValueError(f"{v!r} is not a folder inside the repository: use a relative path such as "
                             "'state' or '.honua-state'")
        return v

    @field_validator("dsnEnv")
    @classmethod
    def _state_slot(cls, v: str | None) -> str | None:
        """The state database's variable belongs to the operator: only its own slot."""
        problem = slots.state_dsn_problem(v) if v is not None else None
        if problem:
            raise ValueError(problem)
        return v


class BackupStoreConfig(Strict):
    """Where backups are kept (see :mod:`honua_plan.apply.backupstore`)."""

    store: Literal["local", "s3"] = Field(default="local", description="local: the state folder; s3: an "
                                          "S3-compatible object store (credentials from the AWS variables)")
    bucket: str | None = Field(default=None, pattern=BUCKET_PATTERN)
    prefix: str = Field(default="honua-plan", pattern=KEY_PREFIX_PATTERN,
                        description="key prefix; objects are <prefix>/<project>/backups/<file>")
    endpointUrl: str | None = Field(default=None, pattern=HTTP_URL_PATTERN,
                                    description="MinIO, Ceph, Garage … (AWS_ENDPOINT_URL also works)")
    region: str | None = Field(default=None, pattern=REGION_PATTERN)

    @model_validator(mode="after")
    def _bucket(self) -> BackupStoreConfig:
        if self.store == "s3" and not self.bucket:
            raise ValueError("backups.store s3 needs a bucket")
        if ".." in self.prefix.split("/"):
            raise ValueError("backups.prefix may not contain '..'")
        return self


Address = Annotated[str, StringConstraints(pattern=ADDRESS_PATTERN)]


class Moved(Strict):
    """A resource renamed in the configuration: the plan records it under its new address
    instead of deleting and creating it (Terraform's ``moved`` block). Kept in the file
    for as long as some environment's state may still hold the old address."""

    from_: Address = Field(alias="from")
    to: Address

    @model_validator(mode="after")
    def _same_kind(self) -> Moved:
        if self.from_.split(".", 1)[0] != self.to.split(".", 1)[0]:
            raise ValueError(f"{self.from_} and {self.to} are not of the same kind")
        if self.from_ == self.to:
            raise ValueError(f"{self.from_} is moved to itself")
        return self


class ProjectSpec(Strict):
    environments: list[Name] = Field(min_length=1)
    state: StateConfig = Field(default_factory=StateConfig)
    backups: BackupStoreConfig = Field(default_factory=BackupStoreConfig)
    defaultDatasource: Name | None = None
    defaultServer: Name | None = None
    moved: list[Moved] = Field(default_factory=list, description="resources renamed: from → to (see Moved)")

    @field_validator("environments")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        dup = sorted({e for e in v if v.count(e) > 1})
        if dup:
            raise ValueError(f"environment listed twice: {', '.join(dup)}")
        tokens: dict[str, str] = {}
        for e in v:  # dev-eu and dev_eu would read the same HONUA_PG_DSN_DEV_EU
            if slots.token(e) in tokens:
                raise ValueError(f"environments '{tokens[slots.token(e)]}' and '{e}' would read the same "
                                 f"variables ({slots.datasource_slot(e)[0]}): rename one")
            tokens[slots.token(e)] = e
        return v


class Project(Strict):
    apiVersion: Literal["honua.io/v1"]
    kind: Literal["Project"]
    metadata: Metadata
    spec: ProjectSpec


# --------------------------------------------------------------------------- Datasource


class Connection(Strict):
    """Where the connection string comes from: environment variables of the environment's own
    slot only (:mod:`honua_plan.config.slots`; the loader checks each name once templated)."""

    env: list[str] = Field(
        default_factory=lambda: ["HONUA_PG_DSN_{{ env | upper }}", "HONUA_PG_DSN"],
        description="environment variables tried in order ({{env}} is templated; '-' reads as '_'): "
                    "HONUA_PG_DSN_<ENV>, HONUA_PG_DSN_<ENV>_<SUFFIX> or HONUA_PG_DSN",
    )
    dsn: str | None = Field(default=None, description="removed: a connection comes from connection.env only")
    embedded: bool = Field(default=True, description="fall back to the embedded PostGIS under <state.path>/.pg "
                           "(never when CI is set or for an environment whose policy says production: true)")

    @field_validator("dsn")
    @classmethod
    def _removed(cls, v: str | None) -> str | None:
        """A ``${VAR}`` in a string of the config's choosing would send any variable to any host."""
        if v is not None:
            raise ValueError("connection.dsn is not read: list the environment's variable in connection.env "
                             "(HONUA_PG_DSN_<ENV>, HONUA_PG_DSN_<ENV>_<SUFFIX> or HONUA_PG_DSN)")
        return v


class DatasourceSpec(Strict):
    type: Literal["postgis"] = "postgis"
    connection: Connection = Field(default_factory=Connection)
    schema_: Ident = Field(default="public", alias="schema")
    lockTimeout: Duration = 2.0
    statementTimeout: Duration = 300.0
    connectTimeout: Duration = 10.0


class Datasource(Strict):
    apiVersion: Literal["honua.io/v1"]
    kind: Literal["Datasource"]
    metadata: Metadata
    spec: DatasourceSpec


# --------------------------------------------------------------------------- Server


class PygeoapiOptions(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=5555, ge=1, le=65535)
    basePath: str = "/ogc"
    workers: int = Field(default=2, ge=1, le=16)
    portEnv: EnvVar | None = Field(default=None, description="HONUA_SERVER_PORT_<NAME>: a variable that "
                                   "overrides the port (its slot: no other variable is read)")
    environmentPorts: dict[str, int] = Field(
        default_factory=empty_dict, description="a port per environment (each runs its own server); default: port")


    @field_validator("portEnv")
    @classmethod
    def _port_slot(cls, v: str | None) -> str | None:
        problem = slots.server_port_problem(v) if v is not None else None
        if problem:
            raise ValueError(problem)
        return v


class HonuaOptions(Strict):
    url: str
    apiKeyEnv: EnvVar | None = Field(default=None, description="the variable holding the API key: "
                                     "HONUA_SERVER_KEY_<NAME> (the default; NAME is the server's metadata.name)")
    mode: Literal["manifest", "legacy"] = "manifest"
    namespace: str = "default"
    metadataPath: str | None = None


class CommandOptions(Strict):
    reload: list[str] = Field(min_length=1)
    health: str | None = None
    cwd: str | None = None


class ServerSpec(Strict):
    type: Literal["pygeoapi", "honua", "command", "none"] = "pygeoapi"
    publicUrl: str | None = None
    pygeoapi: PygeoapiOptions = Field(default_factory=PygeoapiOptions)
    honua: HonuaOptions | None = None
    command: CommandOptions | None = None
    healthTimeout: Duration = 30.0

    @model_validator(mode="after")
    def _options_present(self) -> ServerSpec:
        if self.type == "honua" and self.honua is None:
            raise ValueError("a server of type honua needs a 'honua' block (url, apiKeyEnv)")
        if self.type == "command" and self.command is None:
            raise ValueError("a server of type command needs a 'command' block (reload)")
        return self


class Server(Strict):
    apiVersion: Literal["honua.io/v1"]
    kind: Literal["Server"]
    metadata: Metadata
    spec: ServerSpec

    @property
    def api_key_env(self) -> str | None:
        """The variable of this server's API key (type honua), default ``HONUA_SERVER_KEY_<NAME>``."""
        if self.spec.honua is None:
            return None
        return self.spec.honua.apiKeyEnv or slots.server_key(self.metadata.name)


# --------------------------------------------------------------------------- Service


class OgcOptions(Strict):
    collectionsEnabled: bool = True
    itemLimit: int | None = Field(default=None, ge=1, le=100_000)
    defaultCrs: Crs | None = None
    additionalCrs: list[Crs] = Field(default_factory=empty_list)


class ServiceSpec(Strict):
    title: str
    description: str | None = None
    datasource: Name
    server: Name | None = None
    serviceType: Literal["feature", "FeatureServer"] = "feature"
    enabled: bool = True
    keywords: list[str] = Field(default_factory=empty_list)
    ogc: OgcOptions = Field(default_factory=OgcOptions)


class Service(Strict):
    apiVersion: Literal["honua.io/v1"]
    kind: Literal["Service"]
    metadata: EnvMetadata
    spec: ServiceSpec


# --------------------------------------------------------------------------- Layer

GeometryType = Literal[
    "Point", "LineString", "Polygon", "MultiPoint", "MultiLineString", "MultiPolygon",
    "GeometryCollection", "Geometry",
]
FieldType = Literal[
    "integer", "long", "smallint", "double", "float", "decimal", "string", "text", "boolean",
    "date", "datetime", "time", "guid", "json",
]


class LayerField(Strict):
    name: Ident
    type: FieldType
    alias: str | None = None
    nullable: bool = True
    maxLength: int | None = Field(default=None, ge=1)
    precision: int | None = Field(default=None, ge=1)
    scale: int | None = Field(default=None, ge=0)
    editable: bool | None = None


class IndexSpec(Strict):
    name: Ident
    type: Literal["gist", "spgist", "brin", "btree", "hash", "gin"] = "btree"
    column: Ident | None = None
    columns: list[Ident] = Field(default_factory=empty_list)
    unique: bool = False

    @model_validator(mode="after")
    def _one_column_form(self) -> IndexSpec:
        if not self.column and not self.columns:
            raise ValueError("an index needs 'column' or 'columns'")
        return self

    @property
    def all_columns(self) -> tuple[str, ...]:
        return (self.column,) if self.column else tuple(self.columns)


class Storage(Strict):
    table: TableName
    schema_: Ident | None = Field(default=None, alias="schema")
    geometryColumn: Ident = "geom"
    primaryKey: Ident = "id"
    srid: int = Field(default=4326, ge=0, le=999_999)
    indexes: list[IndexSpec] = Field(default_factory=empty_list)
    ignoreDrift: list[Annotated[str, StringConstraints(pattern=DRIFT_PATH_PATTERN)]] = Field(
        default_factory=empty_list, exclude_if=lambda v: not v,
        description="parts of the table whose drift is not reported (as Argo CD's ignoreDifferences): "
                    "columns, indexes, constraints, geometry, primary_key, or one of them: columns.<name>")

    @property
    def qualified_table(self) -> str:
        if "." in self.table:
            return self.table
        return f"{self.schema_ or 'public'}.{self.table}"


class LayerOgc(Strict):
    itemLimit: int | None = Field(default=None, ge=1, le=100_000)
    defaultCrs: Crs | None = None
    collectionsEnabled: bool = True


_LAYER_OGC = LayerOgc.model_construct()  # all defaults: equal to LayerOgc(), without building its own validator


def _layer_ogc() -> LayerOgc:
    """The default ``ogc`` block, one shared instance (frozen, scalars only): building one per
    layer that omits the block costs a Python ``__init__`` each."""
    return _LAYER_OGC


class LayerValidation(Strict):
    healthChecks: list[Check] = Field(default_factory=empty_list)


class PerformanceBudget(Strict):
    requests: int = Field(default=20, ge=1, le=1000)
    maxAvgMs: float = Field(default=500.0, gt=0)
    maxP95Ms: float | None = Field(default=None, gt=0)


class LayerSpec(Strict):
    title: str
    description: str | None = None
    geometryType: GeometryType
    idField: Ident = "id"
    displayField: Ident | None = None
    geometryField: Ident = "geom"
    crs: list[Crs] = Field(default_factory=lambda: ["EPSG:4326"])
    storage: Storage
    fields: list[LayerField] = Field(default_factory=empty_list)
    ogc: LayerOgc = Field(default_factory=_layer_ogc)
    validation: LayerValidation = Field(default_factory=LayerValidation)
    performance: PerformanceBudget | None = None
    keywords: list[str] = Field(default_factory=empty_list)

    @field_validator("fields")
    @classmethod
    def _unique_fields(cls, v: list[LayerField]) -> list[LayerField]:
        names = [f.name for f in v]
        if len(set(names)) != len(names):  # linear: names.count per name was O(n²)
            dup = sorted(n for n, count in Counter(names).items() if count > 1)
            raise ValueError(f"field listed twice: {', '.join(dup)}")
        return v


class LayerMetadata(EnvMetadata):
    service: Name


class Layer(Strict):
    apiVersion: Literal["honua.io/v1"]
    kind: Literal["Layer"]
    metadata: LayerMetadata
    spec: LayerSpec

    @property
    def collection_id(self) -> str:
        return f"{self.metadata.service}::{self.metadata.name}"

    @property
    def address(self) -> str:
        return f"layer.{self.collection_id}"


# --------------------------------------------------------------------------- Migration

PreconditionType = Literal[
    "table-exists", "table-not-exists", "column-exists", "sql-check", "row-count", "index-exists",
    "index-not-exists", "srid-is", "extension-exists",
]


class Precondition(Strict):
    type: PreconditionType
    table: TableName | None = None
    column: Ident | None = None
    index: Ident | None = None
    extension: Ident | None = None
    srid: int | None = None
    query: str | None = None
    expected: str | None = None
    message: str | None = None

    @field_validator("expected", mode="before")
    @classmethod
    def _parse_expected(cls, v: Any) -> Any:
        if v is None:
            return v
        if isinstance(v, int):
            v = f"= {v}"
        if isinstance(v, bool):
            v = "all true" if v else "all false"
        exp.parse_cached(str(v), "query")
        return str(v)

    @model_validator(mode="after")
    def _required(self) -> Precondition:
        need: dict[str, tuple[str, ...]] = {
            "table-exists": ("table",),
            "table-not-exists": ("table",),
            "column-exists": ("table", "column"),
            "sql-check": ("query",),
            "row-count": ("table", "expected"),
            "index-exists": ("index",),
            "index-not-exists": ("index",),
            "srid-is": ("table", "srid"),
            "extension-exists": ("extension",),
        }
        missing: list[str] = [k for k in need[self.type] if getattr(self, k) is None]
        if missing:
            raise ValueError(f"a {self.type} precondition needs {', '.join(repr(m) for m in missing)}")
        return self

    @property
    def label(self) -> str:
        if self.message:
            if self.type == "sql-check":  # the query is what runs: a message must not hide it
                return f"{self.message} (sql-check {' '.join((self.query or '').split())} is {self.expected})"
            return self.message
        labels = {
            "table-exists": f"table {self.table} exists",
            "table-not-exists": f"table {self.table} does not exist",
            "column-exists": f"column {self.table}.{self.column} exists",
            "index-exists": f"index {self.index} exists",
            "index-not-exists": f"index {self.index} does not exist",
            "srid-is": f"SRID of {self.table}{'.' + self.column if self.column else ''} is {self.srid}",
            "extension-exists": f"extension {self.extension} is installed",
            "row-count": f"row count of {self.table} is {self.expected}",
            "sql-check": f"sql-check {' '.join((self.query or '').split())} is {self.expected}",
        }
        return labels[self.type]


class AllowedHazard(Strict):
    """A risk rule a step accepts on purpose (as squawk's and Atlas's suppressions), with why."""

    code: Annotated[str, StringConstraints(pattern=RULE_CODE_PATTERN)]
    reason: Annotated[str, StringConstraints(min_length=3, max_length=500)]


class MigrationStep(Strict):
    name: str
    allowHazards: list[AllowedHazard] = Field(
        default_factory=empty_list, exclude_if=lambda v: not v,
        description="risk rules this step accepts, each with its reason (shown in the plan); errors "
                    "cannot be allowed")
    type: Literal["sql", "metadata"]
    content: str | None = None
    action: Literal["update"] | None = None
    path: str | None = None
    changes: dict[str, Any] | None = None
    transaction: bool | None = Field(
        default=None, description="force (true) or forbid (false) a transaction; default: detected"
    )
    lockTimeout: Duration | None = None
    statementTimeout: Duration | None = None

    @field_validator("path")
    @classmethod
    def _in_environment_folder(cls, v: str | None) -> str | None:
        """A metadata step edits only the applied environment's files (checked again after
        templating, and on the real path at apply): never policies/, honua.yaml, providers/."""
        if v is None:
            return v
        norm = v.replace("\\", "/")
        parts = [p for p in norm.split("/") if p not in ("", ".")]
        if norm.startswith(("/", "~")) or (len(norm) > 1 and norm[1] == ":") or ".." in parts \
                or not parts or parts[0] != "environments":
            raise ValueError(f"{v!r} is not a path under environments/<env>/: a metadata step may edit only "
                             "the applied environment's own files (such as environments/{{env}}/layers/x.yaml)")
        return v

    @model_validator(mode="after")
    def _shape(self) -> MigrationStep:
        if self.type == "sql":
            if not self.content or not self.content.strip():
                raise ValueError("a sql step needs 'content'")
            extra = [k for k in ("action", "path", "changes") if getattr(self, k) is not None]
            if extra:
                raise ValueError(f"a sql step does not take {', '.join(extra)}")
        else:
            if self.action is None or self.path is None or self.changes is None:
                raise ValueError("a metadata step needs 'action', 'path' and 'changes'")
            if self.content is not None:
                raise ValueError("a metadata step does not take 'content'")
        return self


class MigrationValidation(Strict):
    post_up: list[Check] = Field(default_factory=empty_list, alias="post-up")
    post_down: list[Check] = Field(default_factory=empty_list, alias="post-down")


RollbackTrigger = Literal["validation-failure", "health-check-failure", "step-failure", "timeout"]
ALL_TRIGGERS: tuple[RollbackTrigger, ...] = ("validation-failure", "health-check-failure", "step-failure", "timeout")


class RollbackPolicy(Strict):
    automatic: bool = False
    triggers: list[RollbackTrigger] = Field(default_factory=lambda: list(ALL_TRIGGERS))
    timeout: Duration | None = None


class MigrationSpec(Strict):
    dependencies: list[str] = Field(default_factory=empty_list)
    preConditions: list[Precondition] = Field(default_factory=empty_list)
    up: list[MigrationStep] = Field(min_length=1)
    down: list[MigrationStep] = Field(default_factory=empty_list)
    validation: MigrationValidation = Field(default_factory=MigrationValidation)
    rollback: RollbackPolicy = Field(default_factory=RollbackPolicy)
    repeatable: bool = Field(default=False, exclude_if=lambda v: not v,
                             description="run again whenever the spec changes (views, functions), as "
                                         "Flyway's repeatable migrations; otherwise an applied spec must not change")


class MigrationMetadata(Strict):
    id: Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int) else v)]
    description: str | None = None
    author: str | None = None
    created: datetime | str | None = None
    environments: list[Name] = Field(default_factory=empty_list)
    labels: dict[str, str] = Field(default_factory=empty_dict)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not re.match(r"^[0-9A-Za-z][0-9A-Za-z._-]*$", v):
            raise ValueError(f"{v!r} is not a migration id (e.g. '003')")
        return v


class Migration(Strict):
    apiVersion: Literal["honua.io/v1"]
    kind: Literal["Migration"]
    metadata: MigrationMetadata
    spec: MigrationSpec
    _stem: str = PrivateAttr(default="")

    @property
    def address(self) -> str:
        return f"migration.{self.metadata.id}"

    @property
    def stem(self) -> str:
        """The file stem (``003_optimize_bike_lanes``), another name dependencies may use."""
        return self._stem or self.metadata.id


# --------------------------------------------------------------------------- Policy

Day = Literal[
    "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday",
    "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun",
]
LevelName = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]
TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class DeploymentWindow(Strict):
    dayOfWeek: list[Day] = Field(min_length=1)
    startTime: str
    endTime: str
    timezone: str = "UTC"

    @field_validator("startTime", "endTime")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not TIME_RE.match(v):
            raise ValueError(f"{v!r} is not a time of day (HH:MM, 24h)")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v


class BlackoutPeriod(Strict):
    name: str
    startDate: datetime
    endDate: datetime
    reason: str | None = None


Member = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=320)]


class ApprovalRule(Strict):
    """Who must approve a plan at which risk, and how strongly.

    ``approvers`` is either a list of names (teams or people; kept as a label, not
    checked: any ``--by`` is accepted, as before groups existed) or groups with their
    members (``{gis-ops: [john@city.gov, jane@city.gov]}``): then only a member of a
    group may approve. ``signatures: required`` makes every approval an SSH signature
    verified against ``allowedSigners`` (a file of the repository).
    """

    requiredAt: LevelName = "HIGH"
    approvers: list[Member] | dict[Name, Annotated[list[Member], Field(min_length=1)]] = Field(
        default_factory=empty_list)
    minApprovals: int = Field(default=1, ge=1)
    aiProposals: Literal["required", "threshold"] = "required"
    signatures: Literal["required", "optional"] = "optional"
    allowedSigners: str = ".honua/allowed_signers"

    @field_validator("allowedSigners")
    @classmethod
    def _inside_repository(cls, v: str) -> str:
        parts = v.replace("\\", "/").split("/")
        if not v.strip() or v.startswith(("/", "~")) or ".." in parts or (len(v) > 1 and v[1] == ":"):
            raise ValueError(f"{v!r} must be a path inside the repository (relative, no '..')")
        return v

    @model_validator(mode="after")
    def _enough_members(self) -> ApprovalRule:
        members = self.members
        if members is not None:
            everyone = {m.casefold() for ms in members.values() for m in ms}
            if self.minApprovals > len(everyone):
                raise ValueError(f"minApprovals is {self.minApprovals} but the approver groups have only "
                                 f"{len(everyone)} member(s)")
        return self

    @property
    def group_names(self) -> list[str]:
        """The names the policy gives (groups, or the plain list)."""
        return list(self.approvers)

    @property
    def members(self) -> dict[str, list[str]] | None:
        """Groups with their members, or None when the policy names no members (not checked)."""
        return dict(self.approvers) if isinstance(self.approvers, dict) else None


class Cooldown(Strict):
    sourceEnvironment: Name
    minimum: Duration


NOTIFY_EVENTS = ("approval-needed", "deploy-started", "deploy-succeeded", "deploy-failed", "rolled-back",
                 "drift", "recovery")
NotifyEvent = Literal["approval-needed", "deploy-started", "deploy-succeeded", "deploy-failed", "rolled-back",
                      "drift", "recovery"]


class Notification(Strict):
    """Where to tell whom about what: Apprise URLs (``slack://…``, ``mailto://…``, ``json://…``)."""

    events: list[NotifyEvent] = Field(min_length=1)
    urls: list[Annotated[str, StringConstraints(min_length=3, max_length=2000)]] = Field(
        min_length=1, description="Apprise URLs; a secret in one is written ${HONUA_NOTIFY_<NAME>} and read "
                                  "from the environment when sending (never printed)")

    @field_validator("urls")
    @classmethod
    def _no_literal_secret(cls, v: list[str]) -> list[str]:
        for url in v:
            if "://" not in url:
                raise ValueError(f"not an Apprise URL: {url.split(':', 1)[0]!r}…")
            problems = slots.notify_problems(url)
            if problems:
                raise ValueError(problems[0])
        return v


class PolicySpec(Strict):
    production: bool = False
    notifications: list[Notification] = Field(default_factory=empty_list)
    autoApprove: bool = True
    approval: ApprovalRule | None = None
    deploymentWindows: list[DeploymentWindow] = Field(default_factory=empty_list)
    blackoutPeriods: list[BlackoutPeriod] = Field(default_factory=empty_list)
    cooldown: Cooldown | None = None
    requireBackup: bool = False
    backupRetention: Duration = 30 * 86400.0
    backupTimeout: Duration = Field(
        default=300.0, gt=0, description="how long a pg_dump backup may run before it is stopped"
    )


class PolicyMetadata(Metadata):
    environment: Name


class Policy(Strict):
    apiVersion: Literal["honua.io/v1"]
    kind: Literal["Policy"]
    metadata: PolicyMetadata
    spec: PolicySpec


Resource = Project | Datasource | Server | Service | Layer | Migration | Policy
KINDS: dict[str, type[Strict]] = {
    "Project": Project,
    "Datasource": Datasource,
    "Server": Server,
    "Service": Service,
    "Layer": Layer,
    "Migration": Migration,
    "Policy": Policy,
}
