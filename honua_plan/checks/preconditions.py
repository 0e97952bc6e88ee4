"""Preconditions that need a query (``sql-check``, ``row-count``), read the same way at
plan time (refresh) and again at apply time (just before the migration runs).

The catalog-only kinds (table, column, index, SRID, extension) are judged from the
live facts by the plan builder; only these two send statements, and only for pending
migrations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from psycopg import sql

from honua_plan.checks import compare as checks
from honua_plan.config import templating
from honua_plan.config.expected import parse
from honua_plan.errors import HonuaError
from honua_plan.providers.postgis.sqlexec import qualified, read_rolled_back

if TYPE_CHECKING:
    from honua_plan.config.models import Migration
    from honua_plan.providers.postgis.sqlexec import Session


PRECONDITION_TIMEOUT_S = 30.0
"""A precondition is a question: it reads in a read-only transaction that is rolled back
(config is untrusted: a pull request's precondition must not change the database that
``honua plan`` reads), and gives up after this long."""


def query_preconditions(session: Session, migration: Migration, variables: dict[str, object]) -> dict[str, tuple[bool, str]]:
    """``{"<id>#<index>": (ok, message)}`` for the sql-check and row-count preconditions."""
    out: dict[str, tuple[bool, str]] = {}
    for i, p in enumerate(migration.spec.preConditions):
        key = f"{migration.metadata.id}#{i}"
        if p.type == "sql-check" and p.query and p.expected:
            statement: str | sql.Composable = templating.render_template(p.query, variables)
        elif p.type == "row-count" and p.table and p.expected:
            statement = sql.SQL("SELECT count(*) FROM {}").format(qualified(p.table))
        else:
            continue
        try:
            rows = read_rolled_back(session, statement, PRECONDITION_TIMEOUT_S)
        except HonuaError as exc:
            out[key] = (False, f"{p.label}: {exc.message}")
            continue
        verdict = checks.evaluate(parse(p.expected or "", "query"), rows)
        out[key] = (verdict.ok, f"{p.label}: {verdict.message}")
    return out
