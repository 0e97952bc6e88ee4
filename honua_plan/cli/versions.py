"""What ``honua --version`` reports: the engine and the software it would run with.

Read from the installed files only (no server started, no heavy import): PostgreSQL from
``initdb --version`` of the binaries the embedded cluster would use (:func:`find_bindir`),
PostGIS from the ``default_version`` of that installation's ``postgis.control`` (the
version ``CREATE EXTENSION postgis`` installs), pygeoapi from its package metadata.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from honua_plan import __version__


def _postgresql() -> tuple[str, Path | None]:
    from honua_plan.errors import EmbeddedDatabaseError
    from honua_plan.providers.embedded.pgserver import find_bindir

    try:
        bindir = find_bindir()
    except EmbeddedDatabaseError as exc:
        return f"PostgreSQL: not found ({exc.message})", None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([str(bindir / "initdb"), "--version"], capture_output=True, text=True, timeout=10)
        found = re.search(r"\(PostgreSQL\)\s+(\S+)", out.stdout)
        if out.returncode == 0 and found:
            return f"PostgreSQL {found.group(1)} ({bindir})", bindir
    return f"PostgreSQL: not found (no working initdb in {bindir})", None


def _postgis(bindir: Path | None) -> str:
    from honua_plan.providers.embedded.pgserver import postgis_control

    control = postgis_control(bindir) if bindir is not None else None
    if control is None or not control.is_file():
        return "PostGIS: not found" + (f" (no extension/postgis.control for {bindir})" if bindir else "")
    with contextlib.suppress(OSError):
        found = re.search(r"^\s*default_version\s*=\s*'([^']+)'", control.read_text(), re.MULTILINE)
        if found:
            return f"PostGIS {found.group(1)} ({control})"
    return f"PostGIS: not found (no default_version in {control})"


def _pygeoapi() -> str:
    try:
        return f"pygeoapi {metadata.version('pygeoapi')}"
    except metadata.PackageNotFoundError:
        return "pygeoapi: not installed"


def version_lines() -> list[str]:
    pg, bindir = _postgresql()
    return [
        f"honua {__version__}",
        f"Python {sys.version.split()[0]} ({sys.executable})",
        pg,
        _postgis(bindir),
        _pygeoapi(),
    ]
