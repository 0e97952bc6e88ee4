"""Reading configuration files only from inside the repository: paths, symbolic links, the
project file."""

from __future__ import annotations

import errno
import os
from pathlib import Path

PROJECT_FILE = "honua.yaml"


def _real(p: Path) -> tuple[str, str | None]:
    """``p`` with its symbolic links resolved, and why it cannot be read (a loop, a link to
    nothing) or None. A missing plain path is not a problem here: callers report that."""
    try:
        return os.path.realpath(p, strict=True), None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return str(p), "symbolic link loop (too many levels of symbolic links); refused"
        if os.path.islink(p):
            return str(p), "symbolic link to a file that does not exist"
        return os.path.realpath(p), None


def _outside(real: str, root: Path) -> bool:
    base = str(root)
    return real != base and not real.startswith(base.rstrip(os.sep) + os.sep)


OUTSIDE = ("symbolic link to a path outside the repository; refused (config is read only from "
           "inside the repository)")
