"""Backups before a migration touches a table: ``pg_dump`` of the affected tables.

Why ``pg_dump --format=custom`` of just those tables: it is what ``recover`` and a
failed rollback need (the table as it was, data, indexes and constraints) without
copying a whole database, and ``pg_restore --clean --single-transaction`` puts it back
all or nothing.

Secrets: the DSN's password never reaches a command line, a file or a message. It is
passed to ``pg_dump``/``pg_restore`` in ``PGPASSWORD``; the ``--dbname`` conninfo
has no password, and their stderr is redacted before it is shown.

A record keeps the dump's size and SHA-256, so a restore refuses a file that changed
since it was written.

Never hanging, never outliving apply: ``pg_dump --lock-wait-timeout`` fails fast when
another session holds a conflicting lock on a table; the whole run has a process
timeout (the policy's ``backupTimeout``); the child gets ``PR_SET_PDEATHSIG`` (Linux),
so it is killed when the process that started it dies, even by SIGKILL, and is killed
in a ``finally`` otherwise. A dump is written to ``<id>.dump.partial`` and renamed when
complete; what an interrupted backup leaves (``*.partial``, an empty reserved
``.dump``) is removed by :func:`clean_partial_backups` on the next apply.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql

from honua_plan.errors import ApplyError
from honua_plan.providers.embedded import pgserver
from honua_plan.providers.postgis.connections import client_tool_connection
from honua_plan.providers.postgis.sqlexec import split_qualified
from honua_plan.secrets import redact
from honua_plan.state.model import BackupRecord, TableContent, backup_id, utcnow

__all__ = [
    "DEFAULT_LOCK_WAIT_S",
    "check_backup_file",
    "clean_partial_backups",
    "compare_contents",
    "prune_backups",
    "restore_backup",
    "sha256_file",
    "table_contents",
    "take_backup",
]

DEFAULT_LOCK_WAIT_S = 30.0
"""pg_dump's lock wait when the datasource sets no lock timeout (0)."""

_INSTALL_HINT = "install the PostgreSQL client tools (e.g. apt-get install postgresql-client)"


def _tool(name: str) -> str:
    path = pgserver.find_tool(name)
    if path is None:
        raise ApplyError(f"{name} is not installed: {_INSTALL_HINT}", hint=_INSTALL_HINT)
    return path


def _connection(dsn: str) -> tuple[str, dict[str, str]]:
    return client_tool_connection(dsn, "honua-plan-backup")


def _pattern(table: str) -> str:
    """``"schema"."table"`` in pg_dump's pattern syntax: quoted parts match literally."""
    schema, name = split_qualified(table)
    return ".".join('"' + part.replace('"', '""') + '"' for part in (schema, name))


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the kernel SIGKILL the child when its parent dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _run(argv: list[str], env: dict[str, str], what: str, timeout_s: float | None,
         explain: Callable[[str], str | None] | None = None) -> None:
    """Run a client tool; it never outlives this process nor ``timeout_s``."""
    try:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, preexec_fn=_die_with_parent())
    except OSError as exc:
        raise ApplyError(redact(f"{what} could not be started: {exc}")) from None
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ApplyError(f"{what} did not finish within {format_seconds(timeout_s or 0)} and was stopped",
                         hint="raise the policy's backupTimeout, or find what blocks it in "
                              "pg_stat_activity") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    if proc.returncode != 0:
        message = (err or out or "").strip() or f"exit status {proc.returncode}"
        clear = explain(message) if explain else None
        raise ApplyError(redact(clear or f"{what} failed: {message}"))


def format_seconds(seconds: float) -> str:
    """``2s``, ``1.5s``, ``5m`` (for messages)."""
    from honua_plan.console import format_duration

    return format_duration(seconds)


def format_size(size: int) -> str:
    """``812 B``, ``12.3 kB``, ``4.0 MB``."""
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if value < 1000 or unit == "TB":
            break
    return f"{value:.1f} {unit}"


def clean_partial_backups(directory: Path, environment: str) -> list[Path]:
    """Remove what an interrupted backup of ``environment`` left: ``*.dump.partial`` and
    empty reserved ``.dump`` files. Call it while holding the environment's state lock."""
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for path in sorted(directory.glob(f"{environment}-backup-*.dump*")):
        try:
            partial = path.name.endswith(".dump.partial")
            if partial or (path.name.endswith(".dump") and path.stat().st_size == 0):
                path.unlink()
                removed.append(path)
        except FileNotFoundError:
            continue
    return removed


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks (dumps can be large)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _reserve(directory: Path, base: str) -> tuple[str, Path]:
    """The first free ``<base>[-N].dump``, created empty so no other backup takes it."""
    n = 1
    while True:
        ident = base if n == 1 else f"{base}-{n}"
        path = directory / f"{ident}.dump"
        try:
            path.touch(exist_ok=False)
        except FileExistsError:
            n += 1
            continue
        return ident, path


def take_backup(
    dsn: str,
    tables: Sequence[str],
    *,
    directory: Path,
    environment: str,
    migration_id: str | None,
    now: datetime | None = None,
    timeout_s: float | None = None,
    commit: str | None = None,
    lock_wait_s: float | None = None,
) -> BackupRecord:
    """Dump ``tables`` to ``<directory>/<backup id>.dump`` and describe the file.

    The record's ``path`` is relative to ``directory.parent`` (the state directory),
    e.g. ``backups/dev-backup-20251004-140530.dump``. pg_dump waits at most
    ``lock_wait_s`` (default :data:`DEFAULT_LOCK_WAIT_S`) for each table's lock and runs
    at most ``timeout_s`` in all.
    """
    if not tables:
        raise ApplyError("a backup needs at least one table")
    pg_dump = _tool("pg_dump")
    conninfo, env = _connection(dsn)
    created = now or utcnow()
    directory.mkdir(parents=True, exist_ok=True)
    wait = lock_wait_s if lock_wait_s and lock_wait_s > 0 else DEFAULT_LOCK_WAIT_S
    names = ", ".join(".".join(split_qualified(t)) for t in tables)
    regclasses = ", ".join("'" + _pattern(t).replace("'", "''") + "'::regclass" for t in tables)

    def explain(stderr: str) -> str | None:
        # pg_dump --lock-wait-timeout runs its LOCK TABLE under a statement timeout
        if "lock timeout" in stderr or "could not obtain lock" in stderr or (
                "statement timeout" in stderr and "LOCK TABLE" in stderr):
            return (f"pg_dump could not lock {names} within {format_seconds(wait)}: another session "
                    "holds a conflicting lock (e.g. LOCK TABLE … IN ACCESS EXCLUSIVE MODE, or a long "
                    "ALTER TABLE); no backup was taken. Find it with: SELECT pid, state, query FROM "
                    "pg_stat_activity WHERE pid IN (SELECT pid FROM pg_locks WHERE granted AND relation IN "
                    f"({regclasses}))")
        return None

    # the dump and the recorded contents see the same rows; reading them waits as long as pg_dump may
    if timeout_s is not None and timeout_s < wait:  # the process timeout binds first
        def explain_snapshot(_: str) -> str | None:
            return f"pg_dump did not finish within {format_seconds(timeout_s)} and was stopped"
        snapshot = _Snapshot(dsn, tables, lock_wait_s=timeout_s, timeout_s=timeout_s, explain=explain_snapshot)
    else:
        snapshot = _Snapshot(dsn, tables, lock_wait_s=wait, timeout_s=timeout_s, explain=explain)
    ident, path = _reserve(directory, backup_id(environment, created))
    partial = path.with_name(path.name + ".partial")
    argv = [
        pg_dump, "--format=custom", "--no-owner", "--no-privileges", "--strict-names",
        f"--lock-wait-timeout={max(1, round(wait * 1000))}",
        f"--file={partial}", f"--snapshot={snapshot.id}",
        *(f"--table={_pattern(t)}" for t in tables),
        f"--dbname={conninfo}",
    ]
    try:
        _run(argv, env, "pg_dump", timeout_s, explain)
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        raise
    finally:
        snapshot.close()
    return BackupRecord(
        id=ident,
        created_at=created,
        path=f"{directory.name}/{path.name}",
        size_bytes=path.stat().st_size,
        sha256=sha256_file(path),
        tables=list(tables),
        migration_id=migration_id,
        commit=commit,
        contents=snapshot.contents,
    )


def _unchanged_file(record: BackupRecord, state_dir: Path) -> Path:
    """The backup's file, refused when missing or changed since it was taken (SHA-256)."""
    path = state_dir / record.path
    if not path.is_file():
        raise ApplyError(f"backup {record.id}: file {record.path} not found under {state_dir}")
    actual = sha256_file(path)
    if actual != record.sha256:
        raise ApplyError(
            f"backup {record.id}: {record.path} does not match its recorded SHA-256 "
            f"(recorded {record.sha256[:12]}…, file {actual[:12]}…); refusing to restore it"
        )
    return path


def restore_backup(
    dsn: str, record: BackupRecord, *, state_dir: Path, timeout_s: float | None = None
) -> None:
    """Put the backed-up tables back as they were, in one transaction.

    The file's SHA-256 is checked first: a dump that changed since it was taken is
    refused rather than restored.
    """
    path = _unchanged_file(record, state_dir)
    pg_restore = _tool("pg_restore")
    conninfo, env = _connection(dsn)
    argv = [
        pg_restore, "--clean", "--if-exists", "--no-owner", "--no-privileges",
        "--single-transaction", f"--dbname={conninfo}", str(path),
    ]
    _run(argv, env, f"pg_restore of backup {record.id}", timeout_s)


def prune_backups(
    records: Sequence[BackupRecord],
    *,
    retention_s: float,
    now: datetime | None = None,
    state_dir: Path,
) -> tuple[list[BackupRecord], list[BackupRecord]]:
    """Delete backups older than ``retention_s``, never the newest; return (kept, removed)."""
    if not records:
        return [], []
    when = now or utcnow()
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    newest = max(records, key=lambda r: r.created_at)
    kept: list[BackupRecord] = []
    removed: list[BackupRecord] = []
    for rec in records:
        if rec is not newest and (when - rec.created_at).total_seconds() > retention_s:
            (state_dir / rec.path).unlink(missing_ok=True)
            if rec.metadata_path:
                (state_dir / rec.metadata_path).unlink(missing_ok=True)
            (state_dir / rec.path).with_name(f"{rec.id}.manifest.json").unlink(missing_ok=True)
            removed.append(rec)
        else:
            kept.append(rec)
    return kept, removed


# --------------------------------------------------------------------------- contents and checks


def _order_by(conn: psycopg.Connection, regclass: str) -> sql.Composable:
    """The primary key's columns, else the whole row's text: a total, repeatable order."""
    rows = conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey::int2[]) WHERE i.indrelid = %s::regclass AND i.indisprimary "
        "ORDER BY array_position(i.indkey::int2[], a.attnum)", [regclass]).fetchall()
    if not rows:
        return sql.SQL("t::text")
    return sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(r[0])) for r in rows)


def table_contents(conn: psycopg.Connection, tables: Sequence[str]) -> dict[str, TableContent]:
    """Per table (keyed ``schema.name``): rows, an md5 over the rows' md5s in key order (primary
    key, else the row text), indexes and constraints, all read in SQL in the connection's
    current snapshot.

    A missing table raises ApplyError naming it."""
    out: dict[str, TableContent] = {}
    for table in tables:
        schema, name = split_qualified(table)
        regclass = _pattern(table)
        if conn.execute("SELECT to_regclass(%s)", [regclass]).fetchone() == (None,):
            raise ApplyError(f"table {schema}.{name} does not exist")
        order = _order_by(conn, regclass)
        # md5 of each row's text, then of those in key order: 32 bytes per row in memory, not the table
        query = sql.SQL("SELECT count(*), md5(coalesce(string_agg(md5(t::text), '' ORDER BY {order}), '')) "
                        "FROM {table} AS t").format(order=order, table=sql.Identifier(schema, name))
        row = conn.execute(query).fetchone()
        assert row is not None
        indexes = conn.execute(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = %s::regclass ORDER BY 1", [regclass]).fetchall()
        constraints = conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass "
            "ORDER BY 1", [regclass]).fetchall()
        out[f"{schema}.{name}"] = TableContent(rows=int(row[0]), checksum=str(row[1]),
                                               indexes={str(k): str(v) for k, v in indexes},
                                               constraints={str(k): str(v) for k, v in constraints})
    return out


class _Snapshot:
    """An open REPEATABLE READ transaction with an exported snapshot (``pg_dump --snapshot``)
    and the tables' contents read in it."""

    def __init__(self, dsn: str, tables: Sequence[str], *, lock_wait_s: float = DEFAULT_LOCK_WAIT_S,
                 timeout_s: float | None = None, explain: Callable[[str], str | None] | None = None) -> None:
        options = f"-c lock_timeout={max(1, round(lock_wait_s * 1000))}"
        if timeout_s:
            options += f" -c statement_timeout={max(1, round(timeout_s * 1000))}"
        try:
            self.conn = psycopg.connect(dsn, autocommit=False, application_name="honua-plan-backup",
                                        options=options)
        except psycopg.Error as exc:
            raise ApplyError(redact(f"pg_dump failed: cannot connect: {exc}")) from None
        try:
            self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            row = self.conn.execute("SELECT pg_export_snapshot()").fetchone()
            assert row is not None
            self.id = str(row[0])
            self.contents = table_contents(self.conn, tables)
        except psycopg.Error as exc:
            self.close()
            timed_out = isinstance(exc, psycopg.errors.LockNotAvailable | psycopg.errors.QueryCanceled)
            clear = explain(str(exc)) if explain and timed_out else None
            raise ApplyError(redact(clear or f"pg_dump failed: reading the tables: {exc}")) from None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.conn.close()


def compare_contents(expected: Mapping[str, TableContent], actual: Mapping[str, TableContent]) -> dict[str, list[str]]:
    """Per table, what differs between a backup's recorded contents and the live ones (empty: match)."""
    out: dict[str, list[str]] = {}
    for table, want in expected.items():
        got = actual.get(table)
        if got is None:
            out[table] = ["table is missing"]
            continue
        problems: list[str] = []
        if got.rows != want.rows:
            problems.append(f"{got.rows:,} rows, backup had {want.rows:,}")
        if got.checksum != want.checksum:
            problems.append(f"checksum {got.checksum[:12]}… ≠ backup's {want.checksum[:12]}…")
        for what, w, g in (("index", want.indexes, got.indexes), ("constraint", want.constraints, got.constraints)):
            problems += [f"{what} {n} missing" for n in sorted(set(w) - set(g))]
            problems += [f"{what} {n} not in the backup" for n in sorted(set(g) - set(w))]
            problems += [f"{what} {n} differs" for n in sorted(set(w) & set(g)) if w[n] != g[n]]
        out[table] = problems
    return out


def check_backup_file(record: BackupRecord, *, state_dir: Path, timeout_s: float | None = 60.0) -> None:
    """Refuse a backup that cannot be restored: missing, changed since it was taken, or
    unreadable to ``pg_restore --list``. Reads only; nothing is touched."""
    path = _unchanged_file(record, state_dir)
    pg_restore = _tool("pg_restore")
    try:
        proc = subprocess.run([pg_restore, "--list", str(path)], capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ApplyError(f"backup {record.id}: pg_restore cannot read {record.path}: {exc}") from None
    if proc.returncode != 0:
        why = (proc.stderr or proc.stdout).strip().splitlines()
        raise ApplyError(f"backup {record.id}: pg_restore cannot read {record.path}: "
                         f"{why[-1] if why else f'exit status {proc.returncode}'}")
