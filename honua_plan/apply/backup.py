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
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from honua_plan import pgserver
from honua_plan.errors import ApplyError
from honua_plan.providers.sqlexec import split_qualified
from honua_plan.secrets import redact, register, register_dsn
from honua_plan.state.model import BackupRecord, backup_id, utcnow

__all__ = [
    "DEFAULT_LOCK_WAIT_S",
    "clean_partial_backups",
    "prune_backups",
    "restore_backup",
    "sha256_file",
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
    """A conninfo without the password, and the environment that carries it instead."""
    register_dsn(dsn)
    try:
        params = conninfo_to_dict(dsn)
    except Exception as exc:  # psycopg.ProgrammingError: not a conninfo/URI
        raise ApplyError(redact(f"invalid database connection string: {exc}")) from None
    env = dict(os.environ)
    password = params.pop("password", None)
    if password:
        register(str(password))
        env["PGPASSWORD"] = str(password)
    params.setdefault("application_name", "honua-plan-backup")
    return make_conninfo(**{k: str(v) for k, v in params.items() if v is not None}), env


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
    from honua_plan.config.expected import format_duration

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
    ident, path = _reserve(directory, backup_id(environment, created))
    partial = path.with_name(path.name + ".partial")
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

    argv = [
        pg_dump, "--format=custom", "--no-owner", "--no-privileges", "--strict-names",
        f"--lock-wait-timeout={max(1, round(wait * 1000))}",
        f"--file={partial}",
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
    return BackupRecord(
        id=ident,
        created_at=created,
        path=f"{directory.name}/{path.name}",
        size_bytes=path.stat().st_size,
        sha256=sha256_file(path),
        tables=list(tables),
        migration_id=migration_id,
    )


def restore_backup(
    dsn: str, record: BackupRecord, *, state_dir: Path, timeout_s: float | None = None
) -> None:
    """Put the backed-up tables back as they were, in one transaction.

    The file's SHA-256 is checked first: a dump that changed since it was taken is
    refused rather than restored.
    """
    path = state_dir / record.path
    if not path.is_file():
        raise ApplyError(f"backup {record.id}: file {record.path} not found under {state_dir}")
    actual = sha256_file(path)
    if actual != record.sha256:
        raise ApplyError(
            f"backup {record.id}: {record.path} does not match its recorded SHA-256 "
            f"(recorded {record.sha256[:12]}…, file {actual[:12]}…); refusing to restore it"
        )
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
            removed.append(rec)
        else:
            kept.append(rec)
    return kept, removed
