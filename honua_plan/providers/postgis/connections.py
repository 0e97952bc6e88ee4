"""Where a datasource's connection string comes from: the environment, never a file.

For environment ``E`` the example repository tries ``HONUA_PG_DSN_E`` then
``HONUA_PG_DSN`` (the ``connection.env`` list, templated; each name must be in the
environment's slot, :mod:`honua_plan.config.slots`, checked again here), then the
embedded PostGIS under ``<state.path>/.pg``.

A plan reads (``read_only``): each name's read-only twin (``HONUA_PG_PLAN_DSN_E`` before
``HONUA_PG_DSN_E``) is tried first, and every plan connection starts its transactions
read-only (``default_transaction_read_only=on``), whichever variable gave the DSN; apply
writes with the write DSN. That last fallback is for the dev
loop: it is refused when ``CI`` is set or when the environment's policy says
``production: true`` (:func:`embedded_refusal`), so a job never plans or applies against
an empty local database by accident. Every resolved DSN is registered with
:mod:`honua_plan.secrets` so its password is redacted from all output, and checked
(:func:`~honua_plan.secrets.check_dsn`): a malformed one is an error naming the
variable, never quoting its value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from honua_plan import secrets
from honua_plan.config import slots, templating
from honua_plan.config.paths import resolve_state_dir
from honua_plan.errors import DatabaseError

if TYPE_CHECKING:  # not imported at run time: early_dsn runs before pydantic is loaded
    from honua_plan.config.models import Datasource, Policy, Project
    from honua_plan.plan.model import DatabaseRef

DEFAULT_DSN_ENV = ("HONUA_PG_DSN_{{ env | upper }}", "HONUA_PG_DSN")
"""``connection.env`` when a datasource does not say."""

READ_ONLY_OPTION = "-c default_transaction_read_only=on"


@dataclass(frozen=True)
class ResolvedDsn:
    dsn: str
    origin: str  # "env HONUA_PG_DSN_DEV", "embedded state/.pg" — safe to print
    embedded_db: str | None = None  # the embedded cluster's database, when the DSN is its
    cluster_root: Path | None = None  # and that cluster's folder

    def __repr__(self) -> str:  # never show the DSN itself
        return f"ResolvedDsn(origin={self.origin!r})"


def embedded_root(root: Path, state_path: str = "state") -> Path:
    """The embedded cluster's folder: ``.pg`` in the state folder (``spec.state.path``)."""
    return resolve_state_dir(root, state_path) / ".pg"  # HONUA_STATE_DIR, or checked to be inside the repository


def embedded_refusal(environment: str, policy: Policy | None) -> str | None:
    """Why the embedded fallback may not be used for ``environment`` (None: it may)."""
    if os.environ.get("CI"):
        return "CI is set (the embedded PostGIS is for the local dev loop)"
    if policy is not None and policy.spec.production:
        return f"the policy of '{environment}' says production: true"
    return None


def resolve_datasource(ds: Datasource, environment: str, root: Path, *, state_path: str = "state",
                       refuse_embedded: str | None = None, read_only: bool = False,
                       environments: Sequence[str] = ()) -> ResolvedDsn:
    c = ds.spec.connection
    return resolve_connection(ds.metadata.name, c.env, c.dsn, c.embedded, environment, root,
                              state_path=state_path, refuse_embedded=refuse_embedded, read_only=read_only,
                              environments=environments)


def slot_names(name: str, env_names: Sequence[str], environment: str, environments: Sequence[str] = ()) -> list[str]:
    """The variables ``connection.env`` names for ``environment``; a :class:`DatabaseError`
    for one outside the environment's slot (the loader refuses it first, at its line)."""
    variables = templating.variables_for(environment)
    names = [slots.variable(templating.render_template(t, variables)) for t in env_names]
    for var in names:
        problem = slots.datasource_problem(var, environment, environments)
        if problem:
            raise DatabaseError(f"datasource '{name}': {problem}")
    return names


def read_only_dsn(dsn: str) -> str:
    """``dsn`` with every transaction read-only by default (libpq ``options``), kept when it has options."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    options = str(conninfo_to_dict(dsn).get("options") or "")
    if READ_ONLY_OPTION in options:
        return dsn
    return make_conninfo(dsn, options=f"{options} {READ_ONLY_OPTION}".strip())


def resolve_connection(name: str, env_names: Sequence[str], dsn_ref: str | None, embedded: bool,
                       environment: str, root: Path, *, state_path: str = "state",
                       refuse_embedded: str | None = None, read_only: bool = False,
                       environments: Sequence[str] = ()) -> ResolvedDsn:
    """The DSN of datasource ``name`` (its ``connection`` fields) for ``environment``.

    A lookup: it starts nothing. An embedded DSN names a database that may not run yet
    (:func:`ensure_embedded` starts it). ``refuse_embedded`` (why) turns the embedded
    fallback into an error naming the variables to set. ``read_only``: a plan's DSN (the
    read-only twin of each name first; transactions read-only by default). ``dsn_ref``
    (``connection.dsn``) is refused: the loader says so at its line."""
    if dsn_ref is not None:
        raise DatabaseError(f"datasource '{name}': connection.dsn is not read; list the variable in connection.env")
    names = slot_names(name, env_names, environment, environments)
    for var in names:
        for candidate in (slots.plan_twin(var), var) if read_only else (var,):
            value = os.environ.get(candidate)
            if value:
                secrets.register_dsn(value)
                secrets.check_dsn(value, f"the connection string in environment variable {candidate}")
                return ResolvedDsn(read_only_dsn(value) if read_only else value, f"env {candidate}")
    if not embedded or refuse_embedded:
        twins = (f"; a plan reads {' or '.join(slots.plan_twin(n) for n in names)} (read-only) first"
                 if read_only and names else "")
        if refuse_embedded:
            raise DatabaseError(
                f"datasource '{name}' has no connection for environment '{environment}': set "
                f"{' or '.join(names) or 'a variable in connection.env'}; the embedded "
                f"PostGIS fallback is refused because {refuse_embedded}",
                hint=f"the variable holds a libpq connection string (host=… dbname=… or postgresql://…){twins}",
            )
        raise DatabaseError(
            f"datasource '{name}' has no connection for environment '{environment}'",
            hint=f"set one of: {', '.join(names)}{twins}",
        )
    from honua_plan.providers.embedded.pgserver import EmbeddedCluster

    # one embedded cluster per repository, one database per environment: dev, staging
    # and production never share tables
    dbname = embedded_database(environment)
    cluster_root = embedded_root(root, state_path)
    cluster = EmbeddedCluster(cluster_root, dbname=dbname)
    return ResolvedDsn(read_only_dsn(cluster.dsn) if read_only else cluster.dsn, f"embedded {state_path.rstrip('/')}/.pg database {dbname}", embedded_db=dbname,
                       cluster_root=cluster_root)


def database_ref(resolved: ResolvedDsn) -> DatabaseRef:
    """Which database ``resolved`` names: host, port and database (libpq's ``PG*`` variables
    and defaults filled in), never the user or the password."""
    import getpass

    from psycopg.conninfo import conninfo_to_dict

    from honua_plan.plan.model import DatabaseRef

    try:
        params = {k: str(v) for k, v in conninfo_to_dict(resolved.dsn).items() if v is not None}
    except Exception:  # checked when resolved: cannot happen, but never quote the DSN
        params = {}
    env = os.environ
    host = params.get("host") or params.get("hostaddr") or env.get("PGHOST") or env.get("PGHOSTADDR") or ""
    user = params.get("user") or env.get("PGUSER") or getpass.getuser()
    dbname = params.get("dbname") or env.get("PGDATABASE") or user
    return DatabaseRef(host=host, port=params.get("port") or env.get("PGPORT") or "5432", dbname=dbname,
                       embedded=resolved.embedded_db is not None)


def ensure_embedded(root: Path, resolved: ResolvedDsn) -> None:
    """Start the embedded cluster (``resolved.cluster_root``, else the one of ``root``) and create
    ``resolved``'s database in it (with PostGIS) when missing; nothing for a DSN that is not the
    embedded cluster's."""
    if resolved.embedded_db is None:
        return
    from honua_plan.providers.embedded.pgserver import EmbeddedCluster

    cluster = EmbeddedCluster(resolved.cluster_root or embedded_root(root), dbname=resolved.embedded_db)
    cluster.start()
    if not cluster.database_exists(resolved.embedded_db):
        cluster.create_database(resolved.embedded_db, exist_ok=True, extensions=("postgis",))


def default_datasource(project: Project, datasources: Mapping[str, Datasource]) -> str | None:
    """The datasource a plan reads: the project's default, else the first declared."""
    return project.spec.defaultDatasource or next(iter(datasources), None)


def early_dsn(root: Path, environment: str) -> str | None:
    """The DSN a plan of ``environment`` will use (its read-only one), told from honua.yaml and providers/ alone.

    Lets the catalog read start before the repository is loaded (and before pydantic is
    even imported): the files are read as plain YAML. None whenever it cannot be told that
    way (anything unexpected in those files, an embedded cluster not running yet): the
    caller resolves the DSN after loading, as usual, and uses what was read early only
    when both answers are the same.
    """
    from honua_plan.config.yamlload import YAML_SUFFIXES
    from honua_plan.config.yamlparse import plain_documents

    project = [d for d in plain_documents(root / "honua.yaml", root) if isinstance(d, dict)]
    if len(project) != 1:
        return None
    spec = project[0].get("spec")
    if not isinstance(spec, dict) or environment not in (spec.get("environments") or ()):
        return None
    datasources: dict[str, dict[str, Any]] = {}
    folder = root / "providers"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(YAML_SUFFIXES)) if folder.is_dir() else []
    for file in names:
        for doc in plain_documents(folder / file, root):
            if isinstance(doc, dict) and doc.get("kind") == "Datasource":
                name = (doc.get("metadata") or {}).get("name")
                datasources.setdefault(str(name), doc)
    wanted = spec.get("defaultDatasource") or next(iter(datasources), None)
    ds = datasources.get(str(wanted))
    if ds is None:
        return None
    c = (ds.get("spec") or {}).get("connection") or {}
    env_names, dsn_ref, embedded = c.get("env", DEFAULT_DSN_ENV), c.get("dsn"), c.get("embedded", True)
    state = spec.get("state") or {}
    state_path = state.get("path", "state") if isinstance(state, dict) else None
    if (not isinstance(env_names, list | tuple) or not all(isinstance(n, str) for n in env_names)
            or not isinstance(dsn_ref, str | None) or not isinstance(embedded, bool) or not isinstance(state_path, str)):
        return None
    # a refused fallback (CI, production) raises here: the caller then plans without the early read
    refuse = "CI is set" if os.environ.get("CI") else None
    environments = [str(e) for e in spec.get("environments") or ()]
    return resolve_connection(str(wanted), env_names, dsn_ref, embedded, environment, root, state_path=state_path,
                              refuse_embedded=refuse, read_only=True, environments=environments).dsn


def embedded_database(environment: str) -> str:
    return "honua_" + "".join(c if c.isalnum() else "_" for c in environment.lower())


def client_tool_connection(dsn: str, application_name: str) -> tuple[str, dict[str, str]]:
    """For ``pg_dump``/``pg_restore``: a conninfo without the password, and the environment
    that carries it instead (``PGPASSWORD``), so no command line shows it."""
    from psycopg.conninfo import make_conninfo

    secrets.register_dsn(dsn)
    params = secrets.check_dsn(dsn, "the datasource's connection string")
    env = dict(os.environ)
    password = params.pop("password", None)
    if password:
        secrets.register(str(password))
        env["PGPASSWORD"] = str(password)
    params.setdefault("application_name", application_name)
    return make_conninfo(**{k: str(v) for k, v in params.items() if v is not None}), env
