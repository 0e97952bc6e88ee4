"""Run one SQL step of a plan: transaction, timeouts, lock-timeout retry, CIC cleanup.

Why it looks like this (see ``docs/reference/postgres-locks.md`` 4.2-4.3):

* A transactional step runs in one transaction with ``SET LOCAL lock_timeout`` and
  ``SET LOCAL statement_timeout``: either the whole step happens or nothing does,
  and the timeouts cannot leak into a pooled connection.
* A step that cannot run in a transaction (``CREATE INDEX CONCURRENTLY``, ``VACUUM``
  …) runs statement by statement in autocommit with session ``SET``\\ s that are
  ``RESET`` afterwards. ``CONCURRENTLY`` statements get no short ``lock_timeout``:
  they wait for old snapshots anywhere in the database, not for the table, and a
  short timeout just turns that wait into a failure and an INVALID index.
* A lock timeout (SQLSTATE ``55P03``) is retried with exponential backoff: a short
  timeout plus retries keeps an ``ACCESS EXCLUSIVE`` request from queueing every
  reader behind it for long.
* A failed ``CREATE INDEX CONCURRENTLY`` leaves an INVALID index that a plain re-run
  trips over (``already exists``) and that ``IF NOT EXISTS`` silently accepts; it is
  dropped (``DROP INDEX CONCURRENTLY``) before any retry.

Every statement goes through :meth:`Session.execute`, so it is logged and counted.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from psycopg import pq, sql

from honua_plan.errors import ApplyError, HonuaError
from honua_plan.plan.model import Operation
from honua_plan.providers.postgis.sqlexec import Session, StatementError, split_name
from honua_plan.secrets import redact
from honua_plan.sql.analysis import analyze
from honua_plan.sql.statement import Op, Statement

__all__ = [
    "LOCK_TIMEOUT",
    "SqlResult",
    "SqlStepError",
    "drop_invalid_indexes",
    "find_invalid_indexes",
    "run_sql_operation",
]

LOCK_TIMEOUT = "55P03"
"""SQLSTATE lock_not_available: raised when ``lock_timeout`` expires."""
_DUPLICATE_RELATION = "42P07"
_MAX_BACKOFF_S = 60.0

# One catalog query for any number of names: (schema or NULL, index name) pairs.
# A NULL schema means "the index the search_path finds", like an unqualified name.
_INVALID_INDEXES = sql.SQL(
    "SELECT n.nspname, c.relname"
    " FROM pg_catalog.pg_index i"
    " JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " JOIN unnest(%s::text[], %s::text[]) AS w(nsp, name)"
    "   ON c.relname = w.name"
    "  AND (n.nspname = w.nsp OR (w.nsp IS NULL AND pg_catalog.pg_table_is_visible(c.oid)))"
    " WHERE NOT i.indisvalid"
    " ORDER BY 1, 2"
)


@dataclass(frozen=True)
class SqlResult:
    """What running one SQL step took."""

    seconds: float
    statements: int
    """Statements of the step's SQL (not counting the ``SET``/``RESET`` around them)."""
    retried: int = 0
    """Lock-timeout (or invalid-index) retries it needed."""
    cleaned_invalid_indexes: list[str] = field(default_factory=list)
    """``schema.name`` of INVALID indexes dropped after a failed ``CREATE INDEX CONCURRENTLY``."""


class SqlStepError(ApplyError):
    """A SQL step failed; ``sqlstate`` tells a lock timeout (``55P03``) from bad SQL."""

    def __init__(
        self,
        message: str,
        *,
        step: str,
        sqlstate: str | None = None,
        attempts: int = 1,
        cleaned_invalid_indexes: Sequence[str] = (),
        hint: str = "",
    ) -> None:
        super().__init__(message, hint=hint)
        self.step = step
        self.sqlstate = sqlstate
        self.attempts = attempts
        self.cleaned_invalid_indexes = list(cleaned_invalid_indexes)


def _ms(seconds: float) -> str:
    """A timeout setting value. 0 means "no timeout" (as in PostgreSQL); any positive
    value rounds up to at least 1ms so a tiny timeout never silently becomes none."""
    if seconds <= 0:
        return "0"
    return f"{max(1, round(seconds * 1000))}ms"


def _set(name: str, value: str, *, local: bool) -> sql.Composed:
    verb = "SET LOCAL" if local else "SET"
    return sql.SQL("{} {} = {}").format(sql.SQL(verb), sql.Identifier(name), sql.Literal(value))


def _backoff(backoff: float, attempt: int) -> float:
    return min(_MAX_BACKOFF_S, backoff * (2**attempt))


def _is_cic(st: Statement) -> bool:
    return st.op is Op.create_index and st.concurrently


def _index_key(st: Statement) -> tuple[str | None, str] | None:
    """(schema, name) of the index a CREATE INDEX makes: it lives in its table's schema."""
    if not st.index:
        return None  # an unnamed index: PostgreSQL picks the name, nothing to look up
    schema = None
    if st.table and "." in st.table:
        schema = st.table.rsplit(".", 1)[0].rsplit(".", 1)[-1]
    return schema, st.index


def _step_error(op: Operation, exc: StatementError, attempts: int, cleaned: Sequence[str]) -> SqlStepError:
    state = exc.sqlstate or "unknown"
    if exc.sqlstate == LOCK_TIMEOUT:
        head = f"step '{op.name}' could not get its lock within lock_timeout after {attempts} attempt(s)"
        hint = "another session holds a conflicting lock: retry later or in a quieter window"
    else:
        head = f"step '{op.name}' failed [SQLSTATE {state}]"
        hint = ""
    message = redact(f"{head}: {exc.message}")
    if cleaned:
        message += f"\ndropped INVALID index(es) left behind: {', '.join(cleaned)}"
    return SqlStepError(
        message, step=op.name, sqlstate=exc.sqlstate, attempts=attempts,
        cleaned_invalid_indexes=cleaned, hint=hint,
    )


# --------------------------------------------------------------------------- indexes


def find_invalid_indexes(session: Session, keys: Sequence[tuple[str | None, str]]) -> list[str]:
    """``schema.name`` of the INVALID indexes among ``keys`` ((schema or None, name)), one query."""
    if not keys:
        return []
    rows = session.execute(
        _INVALID_INDEXES, [[k[0] for k in keys], [k[1] for k in keys]], read=True
    )
    return [f"{nsp}.{name}" for nsp, name in rows]


def _drop_index_concurrently(session: Session, qualified_name: str) -> None:
    schema, name = qualified_name.split(".", 1)
    session.execute(
        sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(schema, name)),
        fetch=False,
    )


def _drop_invalid(session: Session, keys: Sequence[tuple[str | None, str]]) -> list[str]:
    found = find_invalid_indexes(session, keys)
    with _autocommit(session):
        for qname in found:
            _drop_index_concurrently(session, qname)
    return found


def drop_invalid_indexes(session: Session, names: Sequence[str]) -> list[str]:
    """Drop the INVALID indexes among ``names`` (``idx`` or ``schema.idx``); return what was dropped.

    For the rollback path: a valid index of the same name is left alone, so this is
    safe to call for every index a step meant to build.
    """
    keys: list[tuple[str | None, str]] = []
    for name in names:
        parts = split_name(name)
        keys.append((None, parts[0]) if len(parts) == 1 else (parts[-2], parts[-1]))
    if session.dry_run and session.conn is None:
        return []
    return _drop_invalid(session, keys)


# --------------------------------------------------------------------------- running

_OPENERS = frozenset({"BEGIN", "START"})
_CLOSERS = frozenset({"COMMIT", "END"})


def _ends_transaction(st: Statement) -> bool:
    words = st.sql.split()
    if st.keyword in _OPENERS | _CLOSERS | {"ABORT"}:
        return True
    if st.keyword == "ROLLBACK":  # ROLLBACK TO SAVEPOINT stays inside the transaction
        return not (len(words) > 1 and words[1].upper() == "TO")
    return st.keyword == "PREPARE" and len(words) > 1 and words[1].upper() == "TRANSACTION"


def _unwrap(op: Operation, statements: Sequence[Statement]) -> list[Statement]:
    """The step's statements without a ``BEGIN; … COMMIT;`` wrapper the author may have written.

    The engine owns the transaction (one per step, with its timeouts); any other
    transaction control inside a step would end it early, so it is refused.
    """
    body = list(statements)
    if (
        len(body) >= 2
        and body[0].op is Op.transaction and body[0].keyword in _OPENERS
        and body[-1].op is Op.transaction and body[-1].keyword in _CLOSERS
    ):
        body = body[1:-1]
    stray = [st for st in body if st.op is Op.transaction and _ends_transaction(st)]
    if stray:
        raise ApplyError(
            f"step '{op.name}': remove {stray[0].sql!r}: each step already runs in its own "
            "transaction (or in autocommit for CONCURRENTLY), so transaction control inside "
            "a step would end it early"
        )
    if not body:
        raise ApplyError(f"step '{op.name}' has no SQL to run")
    return body


@contextlib.contextmanager
def _autocommit(session: Session) -> Iterator[None]:
    """Autocommit for statements that refuse a transaction block, restored afterwards."""
    conn = session.conn
    if conn is None or session.dry_run or conn.autocommit:
        yield
        return
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise ApplyError(
            "a non-transactional SQL step (CONCURRENTLY, VACUUM …) cannot run while the "
            "connection is inside a transaction"
        )
    conn.autocommit = True
    try:
        yield
    finally:
        conn.autocommit = False


InTransaction = Callable[[], None]
"""Called inside a transactional step's transaction, around its SQL (the journal's catalog
snapshots and its ``step_log`` row, so they commit or roll back with the step)."""


def _run_transactional(session: Session, op: Operation, text: str,
                       before: InTransaction | None = None, after: InTransaction | None = None) -> None:
    conn = session.conn
    context = (
        contextlib.nullcontext() if session.dry_run or conn is None else conn.transaction()
    )
    with context:
        if op.lock_timeout_s is not None:
            session.execute(_set("lock_timeout", _ms(op.lock_timeout_s), local=True), fetch=False)
        if op.statement_timeout_s is not None:
            session.execute(
                _set("statement_timeout", _ms(op.statement_timeout_s), local=True), fetch=False
            )
        if before is not None:
            before()
        session.execute(text, fetch=False)
        if after is not None:
            after()


class _SessionSettings:
    """Session-level SETs of a non-transactional step, each RESET at the end."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.current: dict[str, str | None] = {}

    def want(self, name: str, value: str | None) -> None:
        if self.current.get(name) == value:
            return
        if value is None:
            self.session.execute(sql.SQL("RESET {}").format(sql.Identifier(name)), fetch=False)
        else:
            self.session.execute(_set(name, value, local=False), fetch=False)
        self.current[name] = value

    def reset(self) -> None:
        for name, value in self.current.items():
            if value is not None:
                with contextlib.suppress(HonuaError):
                    self.session.execute(
                        sql.SQL("RESET {}").format(sql.Identifier(name)), fetch=False
                    )
        self.current.clear()


def is_transactional(op: Operation) -> bool:
    """Whether ``op`` runs in one transaction (not CONCURRENTLY, VACUUM …)."""
    return op.transactional and all(st.transactional for st in analyze(op.sql or ""))


def run_sql_operation(
    session: Session, op: Operation, *, retries: int = 3, backoff: float = 0.5,
    before: InTransaction | None = None, after: InTransaction | None = None,
) -> SqlResult:
    """Run ``op`` (a ``kind == "sql"`` operation); raise :class:`SqlStepError` when it fails.

    ``retries`` is how many times a lock timeout is retried (so at most
    ``retries + 1`` attempts), sleeping ``backoff * 2**n`` seconds in between.
    ``before``/``after`` run inside a transactional step's transaction (not otherwise).
    """
    if op.sql is None or not op.sql.strip():
        raise ApplyError(f"step '{op.name}' has no SQL to run")
    started = time.perf_counter()
    analysed = analyze(op.sql)
    statements = _unwrap(op, analysed)
    # unchanged SQL is sent as written (one round trip); an unwrapped one is rebuilt
    text = op.sql if len(statements) == len(analysed) else ";\n".join(st.sql for st in statements)
    # A statement that refuses a transaction block makes the whole step non-transactional,
    # whatever the plan says: inside BEGIN it could only fail.
    transactional = op.transactional and all(st.transactional for st in statements)
    if transactional:
        retried = _retry_transactional(session, op, text, retries, backoff, before, after)
        return SqlResult(time.perf_counter() - started, len(statements), retried, [])
    retried, cleaned = _run_autocommit(session, op, statements, retries, backoff)
    return SqlResult(time.perf_counter() - started, len(statements), retried, cleaned)


def _retry_transactional(
    session: Session, op: Operation, text: str, retries: int, backoff: float,
    before: InTransaction | None = None, after: InTransaction | None = None,
) -> int:
    attempt = 0
    while True:
        try:
            _run_transactional(session, op, text, before, after)
            return attempt
        except StatementError as exc:
            if exc.sqlstate == LOCK_TIMEOUT and attempt < retries:
                time.sleep(_backoff(backoff, attempt))
                attempt += 1
                continue
            raise _step_error(op, exc, attempt + 1, []) from exc


def _run_autocommit(
    session: Session,
    op: Operation,
    statements: Sequence[Statement],
    retries: int,
    backoff: float,
) -> tuple[int, list[str]]:
    retried = 0
    cleaned: list[str] = []
    real = not session.dry_run and session.conn is not None
    with _autocommit(session):
        settings = _SessionSettings(session)
        try:
            for st in statements:
                cic = _is_cic(st)
                key = _index_key(st) if cic else None
                # statement_timeout for every statement; lock_timeout only for those
                # that wait on a table lock (not CONCURRENTLY: see the module doc).
                settings.want(
                    "statement_timeout",
                    _ms(op.statement_timeout_s) if op.statement_timeout_s is not None else None,
                )
                short_lock = op.lock_timeout_s is not None and not st.concurrently
                settings.want(
                    "lock_timeout",
                    _ms(op.lock_timeout_s) if short_lock and op.lock_timeout_s is not None else None,
                )
                if real and key is not None and st.if_not_exists:
                    # IF NOT EXISTS would accept an INVALID leftover and exit 0 (4.2)
                    cleaned += _drop_invalid(session, [key])
                attempt = 0
                while True:
                    try:
                        session.execute(st.sql, fetch=False)
                        break
                    except StatementError as exc:
                        dropped: list[str] = []
                        if real and key is not None:
                            try:
                                dropped = _drop_invalid(session, [key])
                            except StatementError as drop_exc:
                                raise _step_error(op, exc, attempt + 1, cleaned) from drop_exc
                            cleaned += dropped
                        retry = exc.sqlstate == LOCK_TIMEOUT or (
                            exc.sqlstate == _DUPLICATE_RELATION and bool(dropped)
                        )
                        if retry and attempt < retries:
                            if exc.sqlstate == LOCK_TIMEOUT:
                                time.sleep(_backoff(backoff, attempt))
                            attempt += 1
                            retried += 1
                            continue
                        raise _step_error(op, exc, attempt + 1, cleaned) from exc
        finally:
            settings.reset()
    return retried, cleaned
