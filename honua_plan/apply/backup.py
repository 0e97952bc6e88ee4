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
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from honua_plan import pgserver
from honua_plan.errors import ApplyError
from honua_plan.providers.sqlexec import split_qualified
from honua_plan.secrets import check_dsn, redact, register, register_dsn
from honua_plan.state.model import BackupRecord, TableContent, backup_id, utcnow

__all__ = [
    "check_backup_file",
    "compare_contents",
    "prune_backups",
    "restore_backup",
    "sha256_file",
    "table_contents",
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
    commit: str | None = None,
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
    snapshot = _Snapshot(dsn, tables)  # the dump and the recorded contents see the same rows
    ident, path = _reserve(directory, backup_id(environment, created))
    partial = path.with_name(path.name + ".partial")
    argv = [
        pg_dump, "--format=custom", "--no-owner", "--no-privileges", "--strict-names",
        f"--file={partial}", f"--snapshot={snapshot.id}",
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
            if rec.metadata_path:
                (state_dir / rec.metadata_path).unlink(missing_ok=True)
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

    def __init__(self, dsn: str, tables: Sequence[str]) -> None:
        try:
            self.conn = psycopg.connect(dsn, autocommit=False, application_name="honua-plan-backup")
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
            raise ApplyError(redact(f"pg_dump failed: reading the tables: {exc}")) from None
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
    try:
        proc = subprocess.run([pg_restore, "--list", str(path)], capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ApplyError(f"backup {record.id}: pg_restore cannot read {record.path}: {exc}") from None
    if proc.returncode != 0:
        why = (proc.stderr or proc.stdout).strip().splitlines()
        raise ApplyError(f"backup {record.id}: pg_restore cannot read {record.path}: "
                         f"{why[-1] if why else f'exit status {proc.returncode}'}")
