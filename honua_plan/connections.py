"""Where a datasource's connection string comes from: the environment, never a file.

For environment ``E`` the example repository tries ``HONUA_PG_DSN_E`` then
``HONUA_PG_DSN`` (the ``connection.env`` list, templated), then a ``${VAR}`` reference,
then the embedded PostGIS under ``state/.pg``. Every resolved DSN is registered with
:mod:`honua_plan.secrets` so its password is redacted from all output.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from honua_plan import secrets
from honua_plan.config import templating
from honua_plan.config.models import Datasource
from honua_plan.errors import DatabaseError


@dataclass(frozen=True)
class ResolvedDsn:
    dsn: str
    origin: str  # "env HONUA_PG_DSN_DEV", "embedded state/.pg" — safe to print

    def __repr__(self) -> str:  # never show the DSN itself
        return f"ResolvedDsn(origin={self.origin!r})"


def embedded_root(root: Path) -> Path:
    return root / "state" / ".pg"


def resolve(ds: Datasource, environment: str, root: Path, *, start_embedded: bool = True) -> ResolvedDsn:
    variables = templating.variables_for(environment)
    for name_tpl in ds.spec.connection.env:
        name = templating.render(name_tpl, variables)
        value = os.environ.get(name)
        if value:
            secrets.register_dsn(value)
            return ResolvedDsn(value, f"env {name}")
    if ds.spec.connection.dsn:
        value = secrets.resolve(ds.spec.connection.dsn)
        secrets.register_dsn(value)
        return ResolvedDsn(value, "dsn reference")
    if not ds.spec.connection.embedded:
        names = ", ".join(templating.render(n, variables) for n in ds.spec.connection.env)
        raise DatabaseError(
            f"datasource '{ds.metadata.name}' has no connection for environment '{environment}'",
            hint=f"set one of: {names}",
        )
    from honua_plan.pgserver import EmbeddedCluster

    # one embedded cluster per repository, one database per environment: dev, staging
    # and production never share tables
    dbname = embedded_database(environment)
    cluster = EmbeddedCluster(embedded_root(root), dbname=dbname)
    if start_embedded:
        cluster.start()
        if not cluster.database_exists(dbname):
            cluster.create_database(dbname, exist_ok=True, extensions=("postgis",))
    return ResolvedDsn(cluster.dsn, f"embedded state/.pg database {dbname}")


def embedded_database(environment: str) -> str:
    return "honua_" + "".join(c if c.isalnum() else "_" for c in environment.lower())
