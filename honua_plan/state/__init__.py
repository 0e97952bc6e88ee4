"""Recorded state per project and environment: models and the two backends (local files,
postgres).

Only :meth:`StateBackend.lock` hands out a :class:`StateWriter`; everything else reads.
The postgres backend is imported lazily (``open_backend("postgres", …)``) so that
reading local state never needs a database driver to load.
"""

import os
from pathlib import Path

from honua_plan.state import base
from honua_plan.state.base import (
    BACKEND_KINDS,
    LockInfo,
    StateBackend,
    StateReader,
    StateWriter,
)
from honua_plan.state.keys import DEFAULT_PROJECT, repository_identity
from honua_plan.state.model import (
    FORMAT_VERSION,
    BackupRecord,
    Event,
    JournalRecord,
    JournalStep,
    MigrationRecord,
    ResourceRecord,
    StateDocument,
    backup_id,
    canonical_json,
    fingerprint,
    utcnow,
)

__all__ = [
    "BACKEND_KINDS",
    "FORMAT_VERSION",
    "BackupRecord",
    "Event",
    "JournalRecord",
    "JournalStep",
    "LockInfo",
    "MigrationRecord",
    "ResourceRecord",
    "StateBackend",
    "StateDocument",
    "StateReader",
    "StateWriter",
    "backup_id",
    "canonical_json",
    "fingerprint",
    "open_backend",
    "state_dsn",
    "utcnow",
]


def open_backend(
    kind: str,
    *,
    environment: str,
    root: Path,
    dsn: str | None = None,
    lock_timeout: float = 0,
    schema: str = "honua_plan",
    state_dir: Path | None = None,
    project: str = DEFAULT_PROJECT,
) -> StateBackend:
    """Open the state backend ``kind`` ("local" or "postgres") for ``project``'s ``environment``.

    ``root`` is the config repository root; the local backend keeps its files in
    ``state_dir`` (``spec.state.path``; default ``root / "state"``), one repository's own.
    ``dsn`` is required for "postgres" (its password is never shown), whose rows are keyed
    by ``project`` and environment, so projects can share one state database.
    ``lock_timeout`` is how long ``lock()`` waits by default. The project key is bound to
    the git repository ``root`` is in (:mod:`honua_plan.state.keys`).
    """
    base.validate_environment(environment)
    identity = repository_identity(Path(root).resolve())  # the key is bound to it (state.keys)
    if kind == "local":
        from honua_plan.state.local import LocalBackend

        return LocalBackend(Path(state_dir) if state_dir is not None else Path(root) / "state", environment,
                            lock_timeout=lock_timeout, project=project, identity=identity)
    if kind == "postgres":
        if not dsn:
            raise base.StateError(
                "the postgres state backend needs a connection string (dsn); "
                "set it in honua.yaml from an environment variable"
            )
        from honua_plan.state.postgres import PostgresBackend

        return PostgresBackend(dsn, environment, lock_timeout=lock_timeout, schema=schema, project=project,
                               identity=identity)
    raise base.StateError(f"unknown state backend {kind!r}; choose one of: {', '.join(base.BACKEND_KINDS)}")


def state_dsn(variable: str) -> str | None:
    """The postgres state backend's connection string from ``variable`` (``spec.state.dsnEnv``),
    None when unset. Only the operator's slot (``HONUA_STATE_DSN``, ``HONUA_STATE_DSN_<SUFFIX>``)
    is read: the loader refuses another name at its line, and this refuses it again."""
    from honua_plan.config.slots import state_dsn_problem
    from honua_plan.secrets import check_dsn, register_dsn

    problem = state_dsn_problem(variable)
    if problem:
        raise base.StateError(problem)
    dsn = os.environ.get(variable)
    if not dsn:
        return None
    register_dsn(dsn)
    check_dsn(dsn, f"the connection string in environment variable {variable}")
    return dsn
