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
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from psycopg.conninfo import make_conninfo

from honua_plan import pgserver
from honua_plan.errors import ApplyError
from honua_plan.providers.sqlexec import split_qualified
from honua_plan.secrets import check_dsn, redact, register, register_dsn
from honua_plan.state.model import BackupRecord, backup_id, utcnow

__all__ = [
    "prune_backups",
    "restore_backup",
    "sha256_file",
    "take_backup",
]

_INSTALL_HINT = "install the PostgreSQL client tools (e.g. apt-get install postgresql-client)"


def _tool(name: str) -> str:
    path = pgserver.find_tool(name)
    if path is None:
        raise ApplyError(f"{name} is not installed: {_INSTALL_HINT}", hint=_INSTALL_HINT)
    return path


def _connection(dsn: str) -> tuple[str, dict[str, str]]:
    """A conninfo without the password, and the environment that carries it instead."""
    register_dsn(dsn)
    params = check_dsn(dsn, "the datasource's connection string")
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


def _run(argv: list[str], env: dict[str, str], what: str, timeout_s: float | None) -> None:
    try:
        proc = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        raise ApplyError(f"{what} did not finish within {timeout_s:g}s") from None
    except OSError as exc:
        raise ApplyError(redact(f"{what} could not be started: {exc}")) from None
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout or "").strip() or f"exit status {proc.returncode}"
        raise ApplyError(redact(f"{what} failed: {message}"))


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
) -> BackupRecord:
    """Dump ``tables`` to ``<directory>/<backup id>.dump`` and describe the file.

    The record's ``path`` is relative to ``directory.parent`` (the state directory),
    e.g. ``backups/dev-backup-20251004-140530.dump``.
    """
    if not tables:
        raise ApplyError("a backup needs at least one table")
    pg_dump = _tool("pg_dump")
    conninfo, env = _connection(dsn)
    created = now or utcnow()
    directory.mkdir(parents=True, exist_ok=True)
    ident, path = _reserve(directory, backup_id(environment, created))
    partial = path.with_name(path.name + ".partial")
    argv = [
        pg_dump, "--format=custom", "--no-owner", "--no-privileges", "--strict-names",
        f"--file={partial}",
        *(f"--table={_pattern(t)}" for t in tables),
        f"--dbname={conninfo}",
    ]
    try:
        _run(argv, env, "pg_dump", timeout_s)
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
