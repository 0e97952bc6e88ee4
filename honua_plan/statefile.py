"""Reading a local state file's bytes and JSON, without the state models.

Kept outside :mod:`honua_plan.state` (whose package imports pydantic) so that the
prefetch reader (:mod:`honua_plan.providers.postgis.prefetch`) parses the state file without importing
pydantic: ~0.2 s of CPU on a slow core, taken from the same two cores the plan runs on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NoReturn

FileIdentity = tuple[int, int, int, int]
"""(device, inode, size, mtime in ns): a state file is replaced by rename, never rewritten."""


def _not_json(token: str) -> NoReturn:
    raise ValueError(f"{token} is not a JSON value")


def parse_state_bytes(raw: bytes) -> Any:
    """A state file's JSON; NaN and Infinity are refused here, so the document needs no
    further JSON check (see ``JSON_CONTEXT``)."""
    return json.loads(raw.decode("utf-8"), parse_constant=_not_json)


def file_identity(path: Path) -> FileIdentity | None:
    try:
        return _identity(os.stat(path))
    except OSError:
        return None


def _identity(st: os.stat_result) -> FileIdentity:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def read_state_data(path: Path) -> tuple[FileIdentity, Any] | None:
    """Identity and parsed JSON of the state file at ``path``; None if absent or unreadable
    (the reader that uses the data reports problems itself)."""
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            raw = fh.read()
        return _identity(st), parse_state_bytes(raw)
    except (OSError, ValueError):
        return None
