"""The table-level lock modes PostgreSQL takes, weakest first, and what each blocks.

The modes per statement follow ``docs/reference/postgres-locks.md`` (measured on PostgreSQL 15);
the classifiers (:mod:`~honua_plan.sql.classify`, :mod:`~honua_plan.sql.grammar`) assign them.
"""

from __future__ import annotations

# Table-level lock modes, weakest first (PostgreSQL "Explicit Locking").
NO_LOCK = "NONE"
ACCESS_SHARE = "ACCESS SHARE"
ROW_SHARE = "ROW SHARE"
ROW_EXCLUSIVE = "ROW EXCLUSIVE"
SHARE_UPDATE_EXCLUSIVE = "SHARE UPDATE EXCLUSIVE"
SHARE = "SHARE"
SHARE_ROW_EXCLUSIVE = "SHARE ROW EXCLUSIVE"
EXCLUSIVE = "EXCLUSIVE"
ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"
UNKNOWN_LOCK = "UNKNOWN"  # opaque code (DO blocks…): assume the worst

LOCK_RANK: dict[str, int] = {
    NO_LOCK: 0,
    ACCESS_SHARE: 1,
    ROW_SHARE: 2,
    ROW_EXCLUSIVE: 3,
    SHARE_UPDATE_EXCLUSIVE: 4,
    SHARE: 5,
    SHARE_ROW_EXCLUSIVE: 6,
    EXCLUSIVE: 7,
    ACCESS_EXCLUSIVE: 8,
    UNKNOWN_LOCK: 8,
}


def blocks_writes(lock: str) -> bool:
    """True when the mode conflicts with ROW EXCLUSIVE (INSERT/UPDATE/DELETE wait)."""
    return LOCK_RANK.get(lock, 8) >= LOCK_RANK[SHARE]


def blocks_reads(lock: str) -> bool:
    """True when the mode conflicts with ACCESS SHARE (plain SELECTs wait)."""
    return lock in (ACCESS_EXCLUSIVE, UNKNOWN_LOCK)


# Volatile functions: as a column DEFAULT they force a table rewrite (PG >= 11 keeps
