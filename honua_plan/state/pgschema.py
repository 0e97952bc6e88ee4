"""The postgres state backend's tables, keyed by project and environment, and their upgrade
in place from the tables of earlier versions (keyed by environment alone).

Several repositories (projects) may share one state database: every row carries its
``project`` (:mod:`honua_plan.state.keys`), and each one reads and locks only its own.

Tables made by an earlier version have no ``project`` column. The first command of this
version that takes the state lock (apply, the state commands, seed-data, recover…) upgrades
them in place, in one transaction under a schema-wide advisory lock: it adds the column,
gives the existing rows **its own project key** (the project that upgrades adopts them: they
were written when the database held one project's state per environment), drops the
column's default (an older version's insert then fails instead of writing a row without a
project) and moves the primary keys to ``(project, environment[, serial])``. Until then a
reader reads the old rows by environment alone, as the earlier version did, so a plan keeps
working before the first apply; readers never change the schema (a read-only role can plan).
"""

from __future__ import annotations

from typing import Any, Literal

import psycopg
from psycopg import sql

TABLES = ("state", "state_history", "lock_holder")
# each table's key after the project (the primary key is (project, <these>))
_KEYS = {"state": ("environment",), "state_history": ("environment", "serial"), "lock_holder": ("environment",)}

Layout = Literal["current", "legacy"]


class Tables:
    """The composed identifiers, DDL and layout of one schema's state tables."""

    def __init__(self, schema: str) -> None:
        self.schema_name = schema
        self.schema = sql.Identifier(schema)
        self.state = sql.Identifier(schema, "state")
        self.history = sql.Identifier(schema, "state_history")
        self.holder = sql.Identifier(schema, "lock_holder")
        self.binding = sql.Identifier(schema, "project_binding")

    def binding_ddl(self) -> list[sql.Composed]:
        """The table binding each project key to a repository (:mod:`honua_plan.state.keys`);
        apart from the state tables so that an older database keeps its layout."""
        return [
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(self.schema),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " project text PRIMARY KEY,"
                " identity jsonb NOT NULL,"
                " bound_at timestamptz NOT NULL DEFAULT now(),"
                " bound_by text)"
            ).format(self.binding),
        ]

    def ensure_binding(self, conn: psycopg.Connection[Any]) -> None:
        """Create the binding table if missing (call in a transaction: the state backend and the
        serial guard, which may share a database, serialise on one lock)."""
        if not self.has_binding(conn):
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{self.schema_name}.project_binding",))
            for stmt in self.binding_ddl():
                conn.execute(stmt)

    def has_binding(self, conn: psycopg.Connection[Any]) -> bool:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                           (self.binding.as_string(conn),)).fetchone()
        return bool(row and row[0])

    def ddl(self) -> list[sql.Composed]:
        return [
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(self.schema),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " project text NOT NULL,"
                " environment text NOT NULL,"
                " lineage text NOT NULL,"
                " serial bigint NOT NULL CHECK (serial >= 0),"
                " format_version integer NOT NULL,"
                " document jsonb NOT NULL,"
                " updated_at timestamptz NOT NULL DEFAULT now(),"
                " PRIMARY KEY (project, environment))"
            ).format(self.state),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " project text NOT NULL,"
                " environment text NOT NULL,"
                " serial bigint NOT NULL,"
                " lineage text NOT NULL,"
                " document jsonb NOT NULL,"
                " written_at timestamptz NOT NULL DEFAULT now(),"
                " PRIMARY KEY (project, environment, serial))"
            ).format(self.history),
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " project text NOT NULL,"
                " environment text NOT NULL,"
                " pid integer NOT NULL,"
                " host text NOT NULL,"
                " username text,"
                " since timestamptz NOT NULL,"
                " command text NOT NULL,"
                " server_pid integer NOT NULL,"
                " PRIMARY KEY (project, environment))"
            ).format(self.holder),
        ]

    def _columns(self, conn: psycopg.Connection[Any]) -> dict[str, bool]:
        """The state tables present, each with whether it has the ``project`` column."""
        rows = conn.execute(
            "SELECT c.relname, EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid"
            " AND a.attname = 'project' AND NOT a.attisdropped)"
            " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind IN ('r', 'p')",
            (self.schema_name, list(TABLES)),
        ).fetchall()
        return {str(name): bool(has) for name, has in rows}

    def layout(self, conn: psycopg.Connection[Any]) -> Layout | None:
        """None: no state tables yet; "legacy": made before projects; "current"."""
        found = self._columns(conn)
        if len(found) != len(TABLES):
            return None
        return "current" if all(found.values()) else "legacy"

    def upgrade(self, conn: psycopg.Connection[Any], project: str) -> list[str]:
        """Key the tables that lack a ``project`` column by project; their rows go to ``project``.

        Call inside the creators' transaction; returns the tables it upgraded."""
        done = []
        for table, has in sorted(self._columns(conn).items()):
            if has:
                continue
            ident = sql.Identifier(self.schema_name, table)
            conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN project text NOT NULL DEFAULT {}").format(
                ident, sql.Literal(project)))
            conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN project DROP DEFAULT").format(ident))
            pk = conn.execute(
                "SELECT con.conname FROM pg_catalog.pg_constraint con"
                " JOIN pg_catalog.pg_class c ON c.oid = con.conrelid"
                " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relname = %s AND con.contype = 'p'",
                (self.schema_name, table),
            ).fetchone()
            if pk is not None:
                conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(ident, sql.Identifier(pk[0])))
            keys = [sql.Identifier(k) for k in ("project", *_KEYS[table])]
            conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY ({})").format(ident, sql.SQL(", ").join(keys)))
            done.append(table)
        return done


def scope(layout: Layout | None, project: str, environment: str, alias: str = "") -> tuple[sql.Composable, tuple[str, ...]]:
    """The WHERE condition selecting one project's environment (the environment alone in
    legacy tables, whose rows are read by every project until the upgrade) and its parameters."""
    prefix = sql.SQL(f"{alias}." if alias else "")
    if layout == "legacy":
        return sql.SQL("{}environment = %s").format(prefix), (environment,)
    return sql.SQL("{p}project = %s AND {p}environment = %s").format(p=prefix), (project, environment)
