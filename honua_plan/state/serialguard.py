"""The newest state serial, remembered in the target database: a state that went
backwards is refused.

A state file can be replaced by an old copy, edited, or deleted; the next plan would then
believe every migration is pending and run them again. So every state write also
records ``(project, environment, lineage, serial)`` in ``honua_plan.state_serial`` of the
environment's own database (it only ever goes up), and before a plan or an apply
:meth:`SerialGuard.check` compares the state with it:

* a stored serial lower than the recorded one (same lineage): an old or edited state;
* a stored state of another lineage than the recorded one: someone else's state;
* no state while ``<env>.json.bak`` exists (local backend), or while the database
  records one: a deleted state.

Each is refused with the command that restores (``honua state restore-backup``).
Recording is best effort: a write whose record failed only leaves an older serial in
the database, which never causes a false refusal.

Rows are keyed by project (:mod:`honua_plan.state.keys`) so that projects sharing a
database keep apart; the key is bound to its repository there too (``project_binding``,
as in the postgres state backend): another repository's key is refused by :meth:`check`
and its row is not moved by :meth:`record`. A table made before projects is upgraded in place by the first
record (its rows go to the recording project, as in :mod:`honua_plan.state.pgschema`);
until then it is read by environment alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from honua_plan.errors import StateError
from honua_plan.secrets import redact
from honua_plan.state.keys import DEFAULT_PROJECT, RepoIdentity, check_binding, next_binding
from honua_plan.state.model import StateDocument
from honua_plan.state.pgschema import Tables

DDL = (
    "CREATE SCHEMA IF NOT EXISTS honua_plan",
    "CREATE TABLE IF NOT EXISTS honua_plan.state_serial ("
    " project text NOT NULL, environment text NOT NULL, lineage text NOT NULL, serial bigint NOT NULL,"
    " updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (project, environment))",
)

HAS_PROJECT = ("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = 'honua_plan.state_serial'::regclass"
               " AND attname = 'project' AND NOT attisdropped)")

UPSERT = (
    "INSERT INTO honua_plan.state_serial (project, environment, lineage, serial) VALUES (%s, %s, %s, %s)"
    " ON CONFLICT (project, environment) DO UPDATE SET lineage = EXCLUDED.lineage,"
    " serial = CASE WHEN honua_plan.state_serial.lineage = EXCLUDED.lineage"
    " THEN GREATEST(honua_plan.state_serial.serial, EXCLUDED.serial) ELSE EXCLUDED.serial END,"
    " updated_at = now()"
)


class SerialGuard:
    """Records and checks one environment's state serial in its database."""

    def __init__(self, environment: str, dsn: Callable[[], str], *, project: str = DEFAULT_PROJECT,
                 identity: RepoIdentity | None = None) -> None:
        self.environment = environment
        self.project = project
        self.identity = identity  # the row's project key is bound to this repository (state.keys)
        self._dsn = dsn
        self._conn: Any = None
        self._broken = False
        self._table_ready = False  # honua_plan.state_serial known to exist on this connection

    def _connect(self) -> Any:
        from honua_plan.providers.postgis.sqlexec import connect

        if self._conn is None or self._conn.closed:
            self._conn = connect(self._dsn(), application_name="honua-plan state-serial")
        return self._conn

    def record(self, doc: StateDocument) -> None:
        """Called after every state write: the database's serial goes up to ``doc.serial``."""
        if self._broken:
            return
        import psycopg

        try:
            conn = self._connect()
            if self._table_ready:  # one statement (autocommit) per state write after the first
                try:
                    conn.execute(UPSERT, (self.project, self.environment, doc.lineage, doc.serial))
                    return
                except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
                    self._table_ready = False  # dropped meanwhile: create it again below
            with conn.transaction():
                exists = conn.execute("SELECT to_regclass('honua_plan.state_serial')").fetchone()[0] is not None
                if not exists or not conn.execute(HAS_PROJECT).fetchone()[0]:
                    # CREATE … IF NOT EXISTS still races with itself: serialise the creators
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext('honua_plan.state_serial'))")
                    for stmt in DDL:
                        conn.execute(stmt)
                    _upgrade(conn, self.project)
                if not self._bind(conn):
                    self._broken = True  # another repository's key: its row is not ours to move
                    return
                conn.execute(UPSERT, (self.project, self.environment, doc.lineage, doc.serial))
            self._table_ready = True
        except Exception:  # best effort, see the module docstring
            self._broken = True
            self.close()

    def _bind(self, conn: Any) -> bool:
        """In the recording transaction: bind the key to this repository when unbound; False
        when it is bound to another one."""
        Tables("honua_plan").ensure_binding(conn)
        row = conn.execute("SELECT identity FROM honua_plan.project_binding WHERE project = %s FOR UPDATE",
                           (self.project,)).fetchone()
        bound = RepoIdentity.from_json(row[0]) if row else None
        if bound is not None and self.identity is not None and bound.same(self.identity) is False:
            return False
        new = next_binding(bound, self.identity) if self.identity is not None else bound
        if new is not None and new != bound:
            from psycopg.types.json import Jsonb

            conn.execute("INSERT INTO honua_plan.project_binding (project, identity, bound_by) VALUES (%s, %s, %s)"
                         " ON CONFLICT (project) DO UPDATE SET identity = EXCLUDED.identity, bound_at = now(),"
                         " bound_by = EXCLUDED.bound_by", (self.project, Jsonb(new.to_json()), "serial guard"))
        return True

    def bound(self) -> RepoIdentity | None:
        """The repository the key is bound to in this database, or None."""
        import psycopg

        conn = self._connect()
        try:
            row = conn.execute("SELECT identity FROM honua_plan.project_binding WHERE project = %s",
                               (self.project,)).fetchone()
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            return None
        return RepoIdentity.from_json(row[0]) if row else None

    def recorded(self) -> tuple[str, int] | None:
        """The (lineage, serial) the database records, or None."""
        import psycopg

        conn = self._connect()  # autocommit: a failed statement leaves no aborted transaction
        try:  # one round trip on every plan; the table exists once anything was applied
            row = conn.execute("SELECT lineage, serial FROM honua_plan.state_serial WHERE project = %s"
                               " AND environment = %s", (self.project, self.environment)).fetchone()
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            return None
        except psycopg.errors.UndefinedColumn:  # made before projects, not upgraded yet
            row = conn.execute("SELECT lineage, serial FROM honua_plan.state_serial WHERE environment = %s",
                               (self.environment,)).fetchone()
        return (str(row[0]), int(row[1])) if row else None

    def _bound_and_recorded(self) -> tuple[RepoIdentity | None, tuple[str, int] | None]:
        """:meth:`bound` and :meth:`recorded` in one round trip (every plan asks both); the two
        statements apart when a table is missing or older."""
        import psycopg

        conn = self._connect()  # autocommit: a failed statement leaves no aborted transaction
        try:
            row = conn.execute(
                "SELECT (SELECT identity FROM honua_plan.project_binding WHERE project = %s), s.lineage, s.serial "
                "FROM (SELECT 1) AS one LEFT JOIN honua_plan.state_serial AS s ON s.project = %s AND s.environment = %s",
                (self.project, self.project, self.environment)).fetchone()
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName, psycopg.errors.UndefinedColumn):
            return self.bound(), self.recorded()
        assert row is not None
        return (RepoIdentity.from_json(row[0]) if row[0] else None,
                (str(row[1]), int(row[2])) if row[1] is not None else None)

    def check(self, doc: StateDocument, where: str, backup: tuple[str, int | None] | None) -> None:
        """Refuse ``doc`` (``serial == 0``: nothing stored) when the state went backwards.

        ``where`` names the state (``state/dev.json``); ``backup`` is the local backend's
        ``(path, serial)`` of ``<env>.json.bak`` when that file exists.
        """
        env = self.environment
        restore = f"honua state restore-backup --env {env}"
        if doc.serial == 0 and backup is not None:
            path, serial = backup
            raise StateError(
                f"{where} is missing but {path}"
                f"{f' (serial {serial})' if serial is not None else ''} exists: the state was deleted "
                "or lost; planning without it would run every migration again",
                hint=f"restore it with `{restore}` (or inspect it and `cp {path} {where}`)",
            )
        try:
            bound, recorded = self._bound_and_recorded()
        except Exception as exc:  # the database is checked again by what needs it
            if doc.serial == 0:
                return
            raise StateError(redact(f"cannot check the state serial of '{env}' in its database: {exc}")) from None
        check_binding(self.project, env, bound, self.identity, "the serial guard in its database")
        if recorded is None:
            return
        lineage, serial = recorded
        hint = (f"restore the newest state: `{restore}` (uses the previous version, <env>.json.bak, "
                "and records the restore), or put the newest copy of the state file back")
        if doc.serial == 0:
            raise StateError(
                f"there is no state for '{env}', but the database records serial {serial} (lineage "
                f"{lineage[:8]}) written by honua: the state was deleted, or this is not the state "
                "directory of this database; planning without it would run every migration again",
                hint=hint,
            )
        if doc.lineage != lineage:
            raise StateError(
                f"{where} has lineage {doc.lineage[:8]}, but the database of '{env}' last recorded a state "
                f"of lineage {lineage[:8]} (serial {serial}): this state belongs to something else",
                hint=hint,
            )
        if doc.serial < serial:
            raise StateError(
                f"{where} has serial {doc.serial}, but the database last recorded serial {serial} for "
                f"'{env}': the state went backwards (an old copy, or an edit); what happened after "
                f"serial {doc.serial} would be planned again",
                hint=hint,
            )

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


def _upgrade(conn: Any, project: str) -> None:
    """Key a ``state_serial`` table made before projects by project; its rows go to ``project``."""
    from psycopg import sql

    if conn.execute(HAS_PROJECT).fetchone()[0]:
        return
    conn.execute(sql.SQL("ALTER TABLE honua_plan.state_serial ADD COLUMN project text NOT NULL DEFAULT {}").format(
        sql.Literal(project)))
    conn.execute("ALTER TABLE honua_plan.state_serial ALTER COLUMN project DROP DEFAULT")
    pk = conn.execute("SELECT conname FROM pg_catalog.pg_constraint WHERE conrelid = 'honua_plan.state_serial'::regclass"
                      " AND contype = 'p'").fetchone()
    if pk is not None:
        conn.execute(sql.SQL("ALTER TABLE honua_plan.state_serial DROP CONSTRAINT {}").format(sql.Identifier(pk[0])))
    conn.execute("ALTER TABLE honua_plan.state_serial ADD PRIMARY KEY (project, environment)")
