"""The postgres state backend: tables in a ``honua_plan`` schema, a session advisory lock.

Tables (created, idempotently, the first time the lock is taken; readers never create
anything; :mod:`honua_plan.state.pgschema` upgrades those of earlier versions in place)::

    honua_plan.state         (project text, environment text, lineage text, serial bigint,
                              format_version int, document jsonb, updated_at timestamptz,
                              PK (project, environment))
    honua_plan.state_history (project text, environment text, serial bigint, lineage text,
                              document jsonb, written_at timestamptz,
                              PK (project, environment, serial))  -- every version ever written
    honua_plan.lock_holder   (project text, environment text, pid int, host text, username text,
                              since timestamptz, command text, server_pid int,
                              PK (project, environment))

Every row belongs to a project (:mod:`honua_plan.state.keys`): projects sharing one state
database never read, write or lock each other's state.

The lock is ``pg_try_advisory_lock(key)`` held at session level on a dedicated
connection, ``key`` being a stable signed 64-bit hash of ``'honua_plan:' + project + ':'
+ environment``; it is polled until the lock timeout. The holder row is written when the
lock is taken and deleted when it is released; the server releases the advisory lock
itself when the session ends (process killed, ``pg_terminate_backend``), and a holder row
whose session does not hold the lock is ignored. Writes run on the lock's own connection
in one transaction (``SELECT … FOR UPDATE``, serial check, update, history row), so a
write is only ever made while the lock is really held.

The DSN's password is never shown: :meth:`PostgresBackend.describe` lists host, port,
database and user only, and every message goes through :func:`honua_plan.secrets.redact`.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb

import honua_plan.state.base as base
from honua_plan.errors import StateError, StateLockedError
from honua_plan.secrets import redact, register_dsn, scrub_dsn_error
from honua_plan.state.artifacts import PostgresArtifacts
from honua_plan.state.base import (
    LockInfo,
    StateBackend,
    StateReader,
    StateWriter,
    changed_message,
    locked_message,
    parse_document,
    prepare_write,
    validate_environment,
)
from honua_plan.state.keys import DEFAULT_PROJECT, RepoIdentity, check_binding, next_binding
from honua_plan.state.model import StateDocument
from honua_plan.state.pgschema import Layout, Tables, scope

_POLL_S = 0.1


def lock_key(environment: str, project: str | None = None) -> int:
    """The advisory lock key of ``project``'s ``environment``: signed 64-bit, stable across runs
    (``project`` None: a key of its own, such as the schema creators')."""
    name = environment if project is None else f"{project}:{environment}"
    digest = hashlib.sha256(f"honua_plan:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _key_parts(key: int) -> tuple[int, int]:
    """``(classid, objid)`` under which ``pg_locks`` shows a bigint advisory lock."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF


_SCHEMA_KEY = lock_key("\x00schema")


def describe_dsn(dsn: str) -> str:
    """``user@host:port/dbname`` from a DSN, without its password."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "an unparsable connection string"
    host = str(params.get("host") or params.get("hostaddr") or "localhost")
    port = f":{params['port']}" if params.get("port") else ""
    user = f"{params['user']}@" if params.get("user") else ""
    dbname = str(params.get("dbname") or "")
    return redact(f"{user}{host}{port}/{dbname}")


class _Conn:
    """Opening connections and turning psycopg errors into state errors."""

    def __init__(self, dsn: str, environment: str, schema: str, connect_timeout: float, project: str,
                 identity: RepoIdentity | None = None) -> None:
        self._dsn = dsn
        self.environment = environment
        self.project = project
        self.identity = identity
        self.tables = Tables(schema)
        self.connect_timeout = connect_timeout

    def bound(self, conn: psycopg.Connection[Any], *, for_update: bool = False) -> RepoIdentity | None:
        """The repository the project key is bound to, or None (unbound, or no table yet)."""
        if not self.tables.has_binding(conn):
            return None
        query = sql.SQL("SELECT identity FROM {} WHERE project = %s").format(self.tables.binding)
        row = conn.execute(query + sql.SQL(" FOR UPDATE") if for_update else query, (self.project,)).fetchone()
        return RepoIdentity.from_json(row[0]) if row else None

    def check_binding(self, conn: psycopg.Connection[Any]) -> None:
        """Refuse to read another repository's state (see :mod:`honua_plan.state.keys`)."""
        check_binding(self.project, self.environment, self.bound(conn), self.identity, self.describe())

    def bind(self, conn: psycopg.Connection[Any], *, claim: bool, by: str) -> RepoIdentity | None:
        """Under the lock: record this repository for an unbound key (or with ``claim``), refuse
        another repository's key; return the binding found before."""
        mine = self.identity
        if mine is None and not claim:
            self.check_binding(conn)
            return None
        with conn.transaction():
            self.tables.ensure_binding(conn)
            before = self.bound(conn, for_update=True)
            if not claim:
                check_binding(self.project, self.environment, before, mine, self.describe())
            new = next_binding(before, mine, claim=claim) if mine is not None else before
            if new is not None and new != before:
                conn.execute(
                    sql.SQL("INSERT INTO {} (project, identity, bound_at, bound_by) VALUES (%s, %s, now(), %s)"
                            " ON CONFLICT (project) DO UPDATE SET identity = EXCLUDED.identity,"
                            " bound_at = EXCLUDED.bound_at, bound_by = EXCLUDED.bound_by").format(self.tables.binding),
                    (self.project, Jsonb(new.to_json()), by),
                )
        return before

    def describe(self) -> str:
        return f"postgres {self.tables.schema_name}.state at {describe_dsn(self._dsn)} (project {self.project})"

    def connect(self, purpose: str) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(
                self._dsn,
                autocommit=True,
                connect_timeout=max(1, int(self.connect_timeout)),
                application_name=f"honua-plan {purpose} {self.project}/{self.environment}"[:63],
            )
        except psycopg.Error as exc:
            raise self.error("cannot connect to", exc) from None

    def error(self, doing: str, exc: BaseException) -> StateError:
        detail = scrub_dsn_error(str(exc).strip(), self._dsn) or type(exc).__name__
        return StateError(f"{doing} the state backend {self.describe()}: {detail}")

    def layout(self, conn: psycopg.Connection[Any]) -> Layout | None:
        return self.tables.layout(conn)

    def scope(self, layout: Layout | None, alias: str = "") -> tuple[sql.Composable, tuple[str, ...]]:
        return scope(layout, self.project, self.environment, alias)

    def ensure_tables(self, conn: psycopg.Connection[Any]) -> None:
        """Create the tables, or upgrade those of an earlier version (see :mod:`.pgschema`)."""
        if self.layout(conn) == "current":
            return
        with conn.transaction():
            # CREATE … IF NOT EXISTS still races with itself; serialise the creators.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_KEY,))
            for stmt in self.tables.ddl():
                conn.execute(stmt)
            self.tables.upgrade(conn, self.project)

    def select(
        self, conn: psycopg.Connection[Any], *, for_update: bool = False, layout: Layout | None = "current"
    ) -> StateDocument | None:
        cond, params = self.scope(layout)
        query = sql.SQL("SELECT serial, lineage, document FROM {} WHERE {}").format(self.tables.state, cond)
        if for_update:
            query = query + sql.SQL(" FOR UPDATE")
        row = conn.execute(query, params).fetchone()
        if row is None:
            return None
        serial, lineage, data = row
        where = f"the {self.tables.schema_name}.state row of '{self.environment}'"
        doc = parse_document(data, where=where, environment=self.environment)
        if doc.serial != serial or doc.lineage != lineage:
            raise StateError(
                f"{where} is inconsistent: columns say serial {serial} lineage {lineage}, "
                f"the document says serial {doc.serial} lineage {doc.lineage}"
            )
        return doc


class PostgresReader(StateReader):
    """Reads the state row; opens a short connection per call (or uses the writer's)."""

    def __init__(self, conn: _Conn, connection: psycopg.Connection[Any] | None = None) -> None:
        self.environment = conn.environment
        self._c = conn
        self._connection = connection

    def describe(self) -> str:
        return self._c.describe()

    @contextlib.contextmanager
    def _session(self, purpose: str) -> Iterator[psycopg.Connection[Any]]:
        own = self._connection
        if own is not None and not (own.closed or own.broken):
            yield own
            return
        conn = self._c.connect(purpose)
        try:
            yield conn
        finally:
            conn.close()

    def _read(self) -> StateDocument | None:
        with self._session("read") as conn:
            try:
                layout = self._c.layout(conn)
                if layout is None:
                    return None
                if self._connection is None:  # the writer's own connection checked it under the lock
                    self._c.check_binding(conn)
                return self._c.select(conn, layout=layout)
            except psycopg.Error as exc:
                raise self._c.error("cannot read from", exc) from None

    def read(self) -> StateDocument:
        stored = self._read()
        return stored if stored is not None else StateDocument.new(self.environment)

    def exists(self) -> bool:
        return self._read() is not None


class PostgresWriter(PostgresReader, StateWriter):
    """Writes on the connection that holds the advisory lock."""

    def __init__(
        self, conn: _Conn, connection: psycopg.Connection[Any], key: int, info: LockInfo,
        backend: StateBackend | None = None,
    ) -> None:
        super().__init__(conn, connection)
        self._backend = backend
        self._lock_conn = connection
        self._key = key
        self.lock_info = info
        self._active = True

    def release(self) -> None:
        """Called by the backend when the lock is released: reads go through new sessions."""
        self._active = False
        self._connection = None

    def _lost(self, exc: BaseException | None = None) -> StateLockedError:
        why = f" ({redact(str(exc).strip())})" if exc is not None and str(exc).strip() else ""
        return StateLockedError(
            f"lost the state lock for '{self.environment}': the database session holding it "
            f"ended{why}; nothing was written"
        )

    def write(self, doc: StateDocument, *, expected_serial: int) -> StateDocument:
        if not self._active:
            raise StateError(
                f"the state lock for '{self.environment}' was released; take it again to write"
            )
        conn = self._lock_conn
        if conn.closed or conn.broken:
            raise self._lost()
        classid, objid = _key_parts(self._key)
        t = self._c.tables
        try:
            with conn.transaction():
                held = conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks WHERE locktype = 'advisory'"
                    " AND pid = pg_backend_pid() AND granted AND classid = %s::oid"
                    " AND objid = %s::oid AND objsubid = 1)",
                    (classid, objid),
                ).fetchone()
                if not (held and held[0]):
                    raise self._lost()
                stored = self._c.select(conn, for_update=True)
                new = prepare_write(self.environment, stored, doc, expected_serial)
                data = Jsonb(base.document_to_json(new))
                if stored is None:
                    conn.execute(
                        sql.SQL(
                            "INSERT INTO {} (project, environment, lineage, serial, format_version, document,"
                            " updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                        ).format(t.state),
                        (
                            self._c.project,
                            self.environment,
                            new.lineage,
                            new.serial,
                            new.format_version,
                            data,
                            new.updated_at,
                        ),
                    )
                else:
                    cur = conn.execute(
                        sql.SQL(
                            "UPDATE {} SET lineage = %s, serial = %s, format_version = %s, document = %s,"
                            " updated_at = %s WHERE project = %s AND environment = %s AND serial = %s"
                        ).format(t.state),
                        (
                            new.lineage,
                            new.serial,
                            new.format_version,
                            data,
                            new.updated_at,
                            self._c.project,
                            self.environment,
                            expected_serial,
                        ),
                    )
                    if cur.rowcount != 1:
                        raise StateError(changed_message(stored.serial, expected_serial))
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {} (project, environment, serial, lineage, document, written_at)"
                        " VALUES (%s, %s, %s, %s, %s, %s)"
                        " ON CONFLICT (project, environment, serial) DO UPDATE"
                        " SET lineage = EXCLUDED.lineage, document = EXCLUDED.document,"
                        " written_at = EXCLUDED.written_at"
                    ).format(t.history),
                    (self._c.project, self.environment, new.serial, new.lineage, data, new.updated_at),
                )
        except StateError:
            raise
        except psycopg.errors.UniqueViolation:
            current = self._c.select(conn)
            raise StateError(
                changed_message(current.serial if current else 0, expected_serial)
            ) from None
        except psycopg.Error as exc:
            if conn.broken or isinstance(exc, psycopg.OperationalError):
                raise self._lost(exc) from None
            raise self._c.error("cannot write to", exc) from None
        except Exception as exc:  # the document could not be serialised
            raise StateError(
                f"could not write the state of '{self.environment}': {redact(str(exc))}; "
                "the stored state is unchanged"
            ) from exc
        if self._backend is not None:
            self._backend._written(new)
        return new


class PostgresBackend(StateBackend):
    """State rows in ``<schema>.state``; lock = session advisory lock on its own connection."""

    kind = "postgres"

    def __init__(
        self,
        dsn: str,
        environment: str,
        *,
        lock_timeout: float = 0,
        schema: str = "honua_plan",
        connect_timeout: float = 10,
        project: str = DEFAULT_PROJECT,
        identity: RepoIdentity | None = None,
    ) -> None:
        self.environment = validate_environment(environment)
        self.project = project
        self.identity = identity
        register_dsn(dsn)  # from now on redact() hides its password wherever it appears
        self._c = _Conn(dsn, self.environment, schema, connect_timeout, project, identity)
        self.lock_timeout = lock_timeout
        self.schema = schema
        self.key = lock_key(self.environment, project)

    def describe(self) -> str:
        return self._c.describe()

    def artifacts(self) -> PostgresArtifacts:
        return PostgresArtifacts(self._c.connect, self.schema, self.project)

    def __repr__(self) -> str:
        return f"PostgresBackend({self.describe()!r}, environment={self.environment!r}, project={self.project!r})"

    def reader(self) -> PostgresReader:
        return PostgresReader(self._c)

    # -- lock ------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, command: str, *, timeout: float | None = None) -> Iterator[PostgresWriter]:
        conn, info = self._acquire(command, self.lock_timeout if timeout is None else timeout)
        writer = PostgresWriter(self._c, conn, self.key, info, self)
        try:
            yield writer
        finally:
            writer.release()
            self._release(conn)

    def _acquire(self, command: str, timeout: float) -> tuple[psycopg.Connection[Any], LockInfo]:
        conn = self._c.connect("lock")
        start = time.monotonic()
        deadline = start + max(timeout, 0)
        try:
            while True:
                row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
                if row and row[0]:
                    break
                now = time.monotonic()
                if now >= deadline:
                    holder = self._holder(conn)
                    waited = round(now - start, 2) if timeout > 0 else 0
                    raise StateLockedError(
                        locked_message(self.environment, holder, waited=waited),
                        hint="wait for it to finish; the lock is released when that "
                        "process or its database session ends",
                    )
                time.sleep(min(_POLL_S, deadline - now))
            self._c.ensure_tables(conn)
            info = LockInfo.current(command, server_pid=conn.info.backend_pid)
            self._previous_binding = self._c.bind(conn, claim=self._claiming, by=f"{info.user}@{info.host}")
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (project, environment, pid, host, username, since, command, server_pid)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (project, environment) DO UPDATE SET"
                    " pid = EXCLUDED.pid, host = EXCLUDED.host, username = EXCLUDED.username,"
                    " since = EXCLUDED.since, command = EXCLUDED.command,"
                    " server_pid = EXCLUDED.server_pid"
                ).format(self._c.tables.holder),
                (
                    self.project,
                    self.environment,
                    info.pid,
                    info.host,
                    info.user,
                    info.since,
                    info.command,
                    info.server_pid,
                ),
            )
        except StateError:
            conn.close()
            raise
        except psycopg.Error as exc:
            conn.close()
            raise self._c.error("cannot lock", exc) from None
        except BaseException:
            conn.close()
            raise
        return conn, info

    def _release(self, conn: psycopg.Connection[Any]) -> None:
        try:
            if not (conn.closed or conn.broken):
                conn.execute(
                    sql.SQL(
                        "DELETE FROM {} WHERE project = %s AND environment = %s AND server_pid = pg_backend_pid()"
                    ).format(self._c.tables.holder),
                    (self.project, self.environment),
                )
                conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        except psycopg.Error:
            pass  # closing the session below releases the lock anyway
        finally:
            conn.close()

    def _holder(self, conn: psycopg.Connection[Any]) -> LockInfo | None:
        """The session holding the advisory lock, described by its holder row if it has one."""
        classid, objid = _key_parts(self.key)
        row = conn.execute(
            "SELECT l.pid, a.backend_start, a.application_name, a.client_hostname,"
            " host(a.client_addr) FROM pg_catalog.pg_locks l"
            " LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s::oid"
            " AND l.objid = %s::oid AND l.objsubid = 1"
            " AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())",
            (classid, objid),
        ).fetchone()
        if row is None:
            return None
        server_pid, backend_start, app, client_host, client_addr = row
        layout = self._c.layout(conn)
        if layout is not None:
            where, params = self._c.scope(layout)
            h = conn.execute(
                sql.SQL("SELECT pid, host, username, since, command FROM {} WHERE {} AND server_pid = %s").format(
                    self._c.tables.holder, where),
                (*params, server_pid),
            ).fetchone()
            if h is not None:
                return LockInfo(
                    pid=h[0], host=h[1], user=h[2], since=h[3], command=h[4], server_pid=server_pid
                )
        since = (
            backend_start if isinstance(backend_start, datetime) else datetime.now().astimezone()
        )
        return LockInfo(
            pid=0,
            host=str(client_host or client_addr or "unknown"),
            since=since,
            command=str(app or "unknown"),
            server_pid=server_pid,
        )

    def holder(self) -> LockInfo | None:
        conn = self._c.connect("status")
        try:
            return self._holder(conn)
        except psycopg.Error as exc:
            raise self._c.error("cannot query the lock of", exc) from None
        finally:
            conn.close()

    def force_unlock(self, *, force: bool = False) -> str:
        """End the session holding the advisory lock when its holder is dead (or with
        ``force``); the server then releases the lock. Stale holder rows are forgotten."""
        conn = self._c.connect("unlock")
        try:
            holder = self._holder(conn)
            layout = self._c.layout(conn)
            if layout is not None:  # forget holder rows of sessions that are gone
                classid, objid = _key_parts(self.key)
                where, params = self._c.scope(layout, "h")
                conn.execute(
                    sql.SQL(
                        "DELETE FROM {} h WHERE {} AND NOT EXISTS ("
                        " SELECT 1 FROM pg_catalog.pg_locks l WHERE l.locktype = 'advisory'"
                        " AND l.granted AND l.pid = h.server_pid AND l.classid = %s::oid"
                        " AND l.objid = %s::oid AND l.objsubid = 1)"
                    ).format(self._c.tables.holder, where),
                    (*params, classid, objid),
                )
            if holder is None:
                return (
                    f"state for '{self.environment}' is not locked; nothing to unlock "
                    "(the postgres backend uses a session advisory lock, which the server "
                    "releases when the holding session ends)"
                )
            alive = base.holder_alive(holder)
            session = f"; its database session (server pid {holder.server_pid}) is open"
            if alive is not False and not force:
                raise base.unlock_refusal(self.environment, holder, alive, session)
            self._terminate(conn, holder)
        except psycopg.Error as exc:
            raise self._c.error("cannot unlock", exc) from None
        finally:
            conn.close()
        message = base.unlock_message(
            self.environment, holder, alive, f"ended database session {holder.server_pid} and so released"
        )
        return base.record_unlock(self, holder, alive, message)

    def _terminate(self, conn: psycopg.Connection[Any], holder: LockInfo) -> None:
        """``pg_terminate_backend`` the holder's session and wait until its lock is gone."""
        row = conn.execute("SELECT pg_terminate_backend(%s)", (holder.server_pid,)).fetchone()
        if not (row and row[0]):
            raise StateError(
                f"could not end database session {holder.server_pid} holding the state lock of "
                f"'{self.environment}' (it ended already, or this role may not signal it)"
            )
        deadline = time.monotonic() + 10
        while self._holder(conn) is not None:
            if time.monotonic() > deadline:
                raise StateError(
                    f"database session {holder.server_pid} was asked to end but still holds the "
                    f"state lock of '{self.environment}' after 10s"
                )
            time.sleep(_POLL_S)
        layout = self._c.layout(conn)
        if layout is not None:
            where, params = self._c.scope(layout)
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE {} AND server_pid = %s").format(self._c.tables.holder, where),
                (*params, holder.server_pid),
            )
