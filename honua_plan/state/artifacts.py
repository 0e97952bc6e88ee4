"""Durable files kept with the state: saved plans, incident and recovery reports.

The local backend keeps them in the state folder, which is its store already. The
postgres backend also keeps a copy of each in ``honua_plan.artifact`` (one row per
project and name, the name relative to the state folder: ``plans/<id>.json``,
``incidents/<report>.md``), so that a CI runner thrown away after its job leaves
nothing behind that a later runner needs: ``apply --resume``, ``--rollback``,
``recover`` and ``incidents`` on a fresh clone fetch what they read from there.

Reads are by exact name or by folder; content is bytes with its sha256 checked on the
way out. Names are relative, without ``..``: an artefact never lands outside the state
folder.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from pathlib import Path, PurePosixPath
from typing import Any

from honua_plan.errors import StateError
from honua_plan.files import write_bytes_atomic

__all__ = ["Artifacts", "LocalArtifacts", "PostgresArtifacts", "check_name"]


def check_name(name: str) -> str:
    """``name`` when it is a relative path inside the state folder, else StateError."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\\" in name or any(ord(c) < 32 for c in name):
        raise StateError(f"not a name inside the state folder: {name!r}")
    return str(path)


class Artifacts(ABC):
    """Where the durable files of a project are kept besides the local state folder."""

    remote: bool = False
    """True when a fresh clone finds here what another machine wrote."""

    @abstractmethod
    def put(self, name: str, data: bytes) -> None:
        """Keep ``data`` under ``name`` (replacing an earlier version)."""

    @abstractmethod
    def get(self, name: str) -> bytes | None:
        """The content kept under ``name``, None when there is none."""

    @abstractmethod
    def names(self, folder: str) -> list[str]:
        """The names kept under ``folder`` (``incidents``), sorted."""

    def keep(self, root: Path, path: Path) -> None:
        """Keep the file ``path`` (under the state folder ``root``) under its relative name."""
        if self.remote:
            self.put(path.resolve().relative_to(root.resolve()).as_posix(), path.read_bytes())

    def fetch(self, root: Path, name: str) -> Path:
        """``root / name``, written from the store first when it is not there (a fresh clone)."""
        path = root / check_name(name)
        if not path.exists() and self.remote:
            data = self.get(name)
            if data is not None:
                write_bytes_atomic(path, data)
        return path


class LocalArtifacts(Artifacts):
    """The local backend: the state folder itself is the store."""

    def put(self, name: str, data: bytes) -> None:
        check_name(name)

    def get(self, name: str) -> bytes | None:
        check_name(name)
        return None

    def names(self, folder: str) -> list[str]:
        return []


class PostgresArtifacts(Artifacts):
    """Rows of ``<schema>.artifact (project, name, content, sha256, written_at)``."""

    remote = True

    def __init__(self, connect: Any, schema: str, project: str) -> None:
        from psycopg import sql

        self._connect = connect  # purpose -> psycopg connection (autocommit)
        self.project = project
        self._table = sql.Identifier(schema, "artifact")
        self._schema = sql.Identifier(schema)
        self._ready = False

    def _conn(self) -> Any:
        from psycopg import sql

        conn = self._connect("artifacts")
        if not self._ready:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('honua_plan:artifact-ddl'))")
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(self._schema))
                conn.execute(sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (project text NOT NULL, name text NOT NULL,"
                    " content bytea NOT NULL, sha256 text NOT NULL, written_at timestamptz NOT NULL DEFAULT now(),"
                    " PRIMARY KEY (project, name))").format(self._table))
            self._ready = True
        return conn

    def put(self, name: str, data: bytes) -> None:
        from psycopg import sql

        name = check_name(name)
        with self._conn() as conn:
            conn.execute(sql.SQL(
                "INSERT INTO {} (project, name, content, sha256) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (project, name) DO UPDATE SET content = EXCLUDED.content,"
                " sha256 = EXCLUDED.sha256, written_at = now()").format(self._table),
                (self.project, name, data, hashlib.sha256(data).hexdigest()))

    def get(self, name: str) -> bytes | None:
        from psycopg import sql

        name = check_name(name)
        with self._conn() as conn:
            row = conn.execute(sql.SQL("SELECT content, sha256 FROM {} WHERE project = %s AND name = %s")
                               .format(self._table), (self.project, name)).fetchone()
        if row is None:
            return None
        data = bytes(row[0])
        if hashlib.sha256(data).hexdigest() != row[1]:
            raise StateError(f"the stored copy of {name} is damaged (its sha256 does not match)")
        return data

    def names(self, folder: str) -> list[str]:
        from psycopg import sql

        prefix = check_name(folder).rstrip("/") + "/"
        with self._conn() as conn:
            rows = conn.execute(sql.SQL("SELECT name FROM {} WHERE project = %s AND starts_with(name, %s)"
                                        " ORDER BY name").format(self._table), (self.project, prefix)).fetchall()
        return [str(r[0]) for r in rows]
