"""Recorded state per environment: models and the two backends (local files, postgres).

Only :meth:`StateBackend.lock` hands out a :class:`StateWriter`; everything else reads.
The postgres backend is imported lazily (``open_backend("postgres", …)``) so that
reading local state never needs a database driver to load.
"""

from honua_plan.state.base import (
    BACKEND_KINDS,
    LockInfo,
    StateBackend,
    StateReader,
    StateWriter,
    open_backend,
)
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
    "utcnow",
]
