"""The one door every SQL statement goes through.

Why one function: so that every statement is logged, timed, counted, skipped in a
dry run and turned into a redacted :class:`~honua_plan.errors.DatabaseError` in the
same way, whichever module sends it.

Design:

* :func:`execute` ``(conn, statement, params, *, log, dry_run, fetch)`` is the
  primitive. Identifiers that come from YAML are never formatted into SQL text:
  callers build ``psycopg.sql.Composable`` objects with :func:`ident` /
  :func:`qualified` (which return ``sql.Identifier``) and pass values as ``params``.
* :class:`StatementLog` collects what was sent (or, in a dry run, what would have
  been sent): rendered text, parameters, duration. ``log.count`` is what the
  benchmarks and the constant-statement tests read.
* :class:`Session` bundles a connection, a log and the dry-run flag so that code
  which runs many statements cannot forget to pass them: ``session.execute(...)``
  always logs to ``session.log``. Reads (``read=True``) still run in a dry-run
  session, because a dry run needs live facts to decide what it would do.
  ``open_session(dsn, ...)`` = :func:`connect` + ``Session``.
* :func:`connect` registers the DSN password with :mod:`honua_plan.secrets` before
  connecting, so no later message can leak it.

Statement errors are :class:`StatementError` (a ``DatabaseError``) carrying the
SQLSTATE; the psycopg exception stays available as ``__cause__``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeAlias

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from honua_plan.errors import DatabaseError, NotReadOnlyError
from honua_plan.secrets import redact, register_dsn, scrub_dsn_error
from honua_plan.sql.readonly import check_read_only

Statement: TypeAlias = str | sql.Composable
Params: TypeAlias = Sequence[Any] | Mapping[str, Any] | None
Connection: TypeAlias = psycopg.Connection[Any]

__all__ = [
    "Connection",
    "LoggedStatement",
    "Session",
    "StatementError",
    "StatementLog",
    "connect",
    "execute",
    "ident",
    "open_session",
    "qualified",
    "read_only_options",
    "read_rolled_back",
    "render_sql",
    "split_name",
    "split_qualified",
]

_MAX_STATEMENT_IN_ERROR = 500


class StatementError(DatabaseError):
    """A statement failed; ``sqlstate`` lets callers tell lock timeouts from bad SQL."""

    def __init__(self, message: str, *, sqlstate: str | None = None, statement: str = "") -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.statement = statement


@dataclass(frozen=True)
class LoggedStatement:
    """One statement as sent (or as it would have been sent, when ``executed`` is False)."""

    text: str
    params: str = ""
    seconds: float = 0.0
    executed: bool = True
    read_only: bool = False

    def __str__(self) -> str:
        return self.text if not self.params else f"{self.text}  -- params: {self.params}"


class StatementLog:
    """Ordered record of statements; the dry-run output and the benchmarks' counter."""

    def __init__(self) -> None:
        self.entries: list[LoggedStatement] = []

    @property
    def count(self) -> int:
        return len(self.entries)

    @property
    def seconds(self) -> float:
        return sum(e.seconds for e in self.entries)

    @property
    def texts(self) -> list[str]:
        return [e.text for e in self.entries]

    def record(self, entry: LoggedStatement) -> None:
        self.entries.append(entry)

    def clear(self) -> None:
        self.entries.clear()

    def render(self, *, include_reads: bool = False) -> str:
        """SQL script of the logged statements (``;``-terminated), e.g. for a dry run."""
        lines = []
        for e in self.entries:
            if e.read_only and not include_reads:
                continue
            text = e.text.rstrip().rstrip(";")
            lines.append(f"{text};" + (f"  -- params: {e.params}" if e.params else ""))
        return "\n".join(lines)

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[LoggedStatement]:
        return iter(self.entries)


# --- identifiers -------------------------------------------------------------------


def split_name(name: str) -> tuple[str, ...]:
    """Split ``schema.table`` into parts; ``"double quoted"`` parts may contain dots.

    Unquoted parts are taken literally (no case folding): a name in YAML means
    exactly that name, the way Terraform treats resource names.
    """
    parts: list[str] = []
    i, n = 0, len(name)
    while True:
        if i < n and name[i] == '"':
            j, buf = i + 1, []
            while True:
                if j >= n:
                    raise ValueError(f"invalid SQL name {name!r}: unterminated quote")
                if name[j] == '"':
                    if j + 1 < n and name[j + 1] == '"':
                        buf.append('"')
                        j += 2
                        continue
                    break
                buf.append(name[j])
                j += 1
            part, i = "".join(buf), j + 1
            if i < n and name[i] != ".":
                raise ValueError(f"invalid SQL name {name!r}: text after closing quote")
        else:
            j = name.find(".", i)
            j = n if j < 0 else j
            part, i = name[i:j], j
        if not part:
            raise ValueError(f"invalid SQL name {name!r}: empty part")
        parts.append(part)
        if i >= n:
            break
        i += 1  # skip the dot
        if i >= n:
            raise ValueError(f"invalid SQL name {name!r}: trailing dot")
    if len(parts) > 3:
        raise ValueError(f"invalid SQL name {name!r}: too many parts")
    return tuple(parts)


def ident(*parts: str) -> sql.Identifier:
    """``sql.Identifier`` for a name: one ``"schema.table"`` string is split, several parts are used as given."""
    if len(parts) == 1:
        return sql.Identifier(*split_name(parts[0]))
    if not parts or any(not p for p in parts):
        raise ValueError(f"invalid SQL name parts {parts!r}")
    return sql.Identifier(*parts)


def split_qualified(name: str, default_schema: str = "public") -> tuple[str, str]:
    """``(schema, name)``; a bare name gets ``default_schema``."""
    parts = split_name(name)
    if len(parts) == 1:
        return default_schema, parts[0]
    return parts[-2], parts[-1]


def qualified(name: str, default_schema: str = "public") -> sql.Identifier:
    """Always schema-qualified identifier, so statements never depend on search_path."""
    return sql.Identifier(*split_qualified(name, default_schema))


# --- execution -----------------------------------------------------------------------


def render_sql(statement: Statement, conn: Connection | None = None) -> str:
    """Text of a statement, quoting identifiers as the connection would."""
    if isinstance(statement, sql.Composable):
        return statement.as_string(conn)
    return statement


def _params_text(params: Params) -> str:
    if params is None:
        return ""
    return redact(repr(params if isinstance(params, Mapping) else tuple(params)))


def _error_message(exc: psycopg.Error, text: str) -> str:
    sqlstate = getattr(exc, "sqlstate", None)
    diag = getattr(exc, "diag", None)
    primary = (diag.message_primary if diag is not None else None) or str(exc).strip()
    lines = [
        f"SQL failed [SQLSTATE {sqlstate}]: {primary}" if sqlstate else f"SQL failed: {primary}"
    ]
    if diag is not None:
        if diag.message_detail:
            lines.append(f"DETAIL: {diag.message_detail}")
        if diag.message_hint:
            lines.append(f"HINT: {diag.message_hint}")
    short = text if len(text) <= _MAX_STATEMENT_IN_ERROR else text[:_MAX_STATEMENT_IN_ERROR] + " …"
    lines.append(f"statement: {short}")
    return redact("\n".join(lines))


def execute(
    conn: Connection | None,
    statement: Statement,
    params: Params = None,
    *,
    log: StatementLog | None = None,
    dry_run: bool = False,
    fetch: bool = True,
    read_only: bool = False,
    extended: bool = False,
) -> list[tuple[Any, ...]]:
    """Run one statement (which may hold several ``;``-separated commands when unparameterised).

    Returns the result rows as tuples (``[]`` for commands without a result, when
    ``fetch`` is False, and in a dry run, which logs and runs nothing).

    ``extended=True`` sends the statement with the extended query protocol even without
    parameters (psycopg sends a parameterless one with the simple protocol, which runs
    every ``;``-separated command): PostgreSQL then refuses a text that holds more than one
    statement. Sent in a pipeline, so the statement is unnamed and its rows come back as
    text, as they would from the simple protocol.
    """
    text = render_sql(statement, conn)
    if dry_run:
        if log is not None:
            log.record(LoggedStatement(redact(text), _params_text(params), 0.0, False, read_only))
        return []
    if conn is None:
        raise DatabaseError("no database connection (statements can only be logged in a dry run)")
    started = time.perf_counter()
    try:
        with conn.cursor(row_factory=tuple_row) as cur:
            query = statement
            if isinstance(query, sql.Composable) and not isinstance(query, sql.SQL | sql.Composed):
                query = sql.Composed([query])  # e.g. a bare sql.Identifier
            if extended:
                with conn.pipeline():  # pipeline mode always uses the extended protocol
                    cur.execute(query, params)
            else:
                cur.execute(query, params)
            rows = cur.fetchall() if fetch and cur.description is not None else []
    except psycopg.Error as exc:
        if log is not None:
            elapsed = time.perf_counter() - started
            log.record(
                LoggedStatement(redact(text), _params_text(params), elapsed, True, read_only)
            )
        raise StatementError(
            _error_message(exc, text),
            sqlstate=getattr(exc, "sqlstate", None),
            statement=redact(text),
        ) from exc
    if log is not None:
        elapsed = time.perf_counter() - started
        log.record(LoggedStatement(redact(text), _params_text(params), elapsed, True, read_only))
    return rows


def connect(
    dsn: str,
    *,
    application_name: str = "honua-plan",
    autocommit: bool = True,
    connect_timeout: int = 10,
    read_only: bool = False,
) -> Connection:
    """Open a connection; the password is registered as a secret before anything can print it.

    ``read_only=True`` makes every transaction of the session read-only
    (``default_transaction_read_only``): the connection plan, drift and validate read with."""
    register_dsn(dsn)
    extra: dict[str, Any] = {"options": read_only_options(dsn)} if read_only else {}
    try:
        return psycopg.connect(
            dsn,
            application_name=application_name,
            autocommit=autocommit,
            connect_timeout=connect_timeout,
            **extra,
        )
    except psycopg.Error as exc:
        message = str(exc).strip() or type(exc).__name__
        raise DatabaseError(scrub_dsn_error(f"could not connect to datasource: {message}", dsn)) from None


def read_only_options(dsn: str) -> str:
    """The DSN's libpq ``options`` with ``-c default_transaction_read_only=on`` added."""
    try:
        current = str(psycopg.conninfo.conninfo_to_dict(dsn).get("options") or "")
    except psycopg.ProgrammingError:
        current = ""
    return f"{current} -c default_transaction_read_only=on".strip()


def read_rolled_back(session: Session, query: Statement, timeout_s: float,
                     params: Params = None, *, explain_only: bool = False) -> list[tuple[Any, ...]]:
    """Rows of ``query`` in a read-only transaction that is always rolled back, under a
    statement timeout: the one way the engine runs SQL that a configuration wrote (checks,
    preconditions, plan-time probes) when it must not change anything.

    Three locks, each enough alone against a second statement: the text must pass
    :func:`~honua_plan.sql.readonly.check_read_only` (one SELECT calling only functions
    known to be read-only; else :class:`~honua_plan.errors.NotReadOnlyError`, nothing
    sent), the transaction is ``READ ONLY``, and the query goes by the extended protocol,
    which runs one statement at most. ``explain_only``: the plan's own probe, an EXPLAIN
    without ANALYZE of a migration's statement."""
    conn = session.conn
    if conn is None:
        raise DatabaseError("reading needs a database connection")
    text = render_sql(query, conn)
    problems = check_read_only(text, explain_only=explain_only)
    if problems:
        first = problems[0]
        where = f" (line {first.line}, column {first.col})" if "\n" in text.strip() else ""
        raise NotReadOnlyError(redact(f"query refused, not read-only{where}: {first.message}"))
    # our two settings in one round trip; the query is sent alone, by the extended protocol
    setup = sql.SQL("SET TRANSACTION READ ONLY; SET LOCAL statement_timeout = {}").format(
        sql.Literal(f"{max(1, round(timeout_s * 1000))}ms")
    )
    with conn.transaction(force_rollback=True):
        session.execute(setup, fetch=False, read=True)
        return session.execute(text, params, read=True, extended=True)


class Session:
    """A connection with its statement log and dry-run flag, so no caller forgets either.

    ``conn`` may be None only for a dry run without a database (statements are
    logged, reads fail with a DatabaseError).
    """

    def __init__(
        self, conn: Connection | None, *, log: StatementLog | None = None, dry_run: bool = False
    ) -> None:
        self.conn = conn
        self.log = log if log is not None else StatementLog()
        self.dry_run = dry_run

    def execute(
        self, statement: Statement, params: Params = None, *, fetch: bool = True, read: bool = False,
        extended: bool = False,
    ) -> list[tuple[Any, ...]]:
        """Run (or, in a dry run, log) a statement; ``read=True`` marks a read that runs even in
        a dry run; ``extended=True``: one statement at most (see :func:`execute`)."""
        return execute(
            self.conn,
            statement,
            params,
            log=self.log,
            dry_run=self.dry_run and not read,
            fetch=fetch,
            read_only=read,
            extended=extended,
        )

    def render(self, statement: Statement) -> str:
        return render_sql(statement, self.conn)

    def close(self) -> None:
        if self.conn is not None and not self.conn.closed:
            self.conn.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_session(
    dsn: str,
    *,
    log: StatementLog | None = None,
    dry_run: bool = False,
    application_name: str = "honua-plan",
    autocommit: bool = True,
    connect_timeout: int = 10,
    read_only: bool = False,
) -> Session:
    """:func:`connect` and wrap the connection in a :class:`Session`."""
    conn = connect(
        dsn,
        application_name=application_name,
        autocommit=autocommit,
        connect_timeout=connect_timeout,
        read_only=read_only,
    )
    return Session(conn, log=log, dry_run=dry_run)
