"""Reading configuration files only from inside the repository: paths, symbolic links, the
project file."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from honua_plan.errors import ContainmentError

PROJECT_FILE = "honua.yaml"
ENVIRONMENTS = "environments"
STATE_DIR_ENV = "HONUA_STATE_DIR"
"""An operator's variable (never a config's): the local files' folder, which may then be
outside the repository (see :func:`state_dir_problem`)."""


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


def metadata_step_problem(root: Path, environment: str, rel: str) -> str | None:
    """Why a migration's metadata step may not edit ``rel`` (templated, relative to the
    repository ``root``) when applied to ``environment``, or None.

    A metadata step edits configuration that a plan then trusts, so it may edit only the
    applied environment's own files: ``environments/<env>/``. Not ``policies/`` (the rules
    that judge the change), ``honua.yaml``, ``providers/``, another environment, nor
    anything reached by ``..``, an absolute path or a symbolic link that leaves the folder.
    """
    allowed = f"{ENVIRONMENTS}/{environment}/"
    why = f"a metadata step may edit only files under {allowed} (the applied environment's own folder)"
    norm = rel.replace("\\", "/")
    if not rel.strip():
        return f"the path is empty; {why}"
    if norm.startswith(("/", "~")) or (len(norm) > 1 and norm[1] == ":"):
        return f"path '{rel}' is absolute; {why}"
    if ".." in norm.split("/"):
        return f"path '{rel}' contains '..'; {why}"
    if any(ord(c) < 32 for c in rel):
        return f"path {rel!r} contains a control character; {why}"
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if parts[:2] != [ENVIRONMENTS, environment] or len(parts) < 3:
        return f"path '{rel}' is outside {allowed}; {why}"
    folder = root / ENVIRONMENTS / environment
    if not inside_real(folder, root) or not inside_real(root.joinpath(*parts), folder):
        return f"path '{rel}' resolves outside {allowed} through a symbolic link; {why}"
    return None


def state_dir_problem(root: Path, state_path: str) -> str | None:
    """Why the local files' folder ``root / state_path`` may not be used, or None.

    The folder is written to (state, plans, reports, backups, the embedded cluster): its
    real path must be inside the repository's, so a committed symbolic link to another
    folder is refused."""
    folder = root / state_path
    allowed = (f"refused: the local state, plans and reports are written only inside the repository (an "
               f"operator may name a folder outside it in the environment variable {STATE_DIR_ENV})")
    if not inside_real(folder, root):
        return (f"spec.state.path '{state_path}' resolves outside the repository (a symbolic link to "
                f"{os.path.realpath(folder)}); {allowed}")
    link = _link_out(folder)
    if link is not None:
        return (f"{os.path.relpath(link, root)} in the state folder is a symbolic link to "
                f"{os.path.realpath(link)}, outside the state folder; {allowed}")
    return None


def _link_out(folder: Path, depth: int = 2, base: str = "") -> Path | None:
    """A symbolic link in ``folder`` (``depth`` levels: plans/, backups/, incidents/, <env>/ and
    what they hold) that resolves outside the repository's state folder, or None. The embedded
    cluster's files (``.pg/``) are not walked: only ``.pg`` itself is checked."""
    base = base or os.path.realpath(folder)
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return None
    for entry in entries:
        if entry.is_symlink():
            real = os.path.realpath(entry.path)
            if real != base and not real.startswith(base.rstrip(os.sep) + os.sep):
                return Path(entry.path)
        elif depth > 1 and entry.name != ".pg" and entry.is_dir(follow_symlinks=False):
            found = _link_out(Path(entry.path), depth - 1, base)
            if found is not None:
                return found
    return None


def resolve_state_dir(root: Path, state_path: str) -> Path:
    """The local files' folder: ``$HONUA_STATE_DIR`` when the operator sets it, else
    ``root / state_path`` checked to resolve inside the repository (ContainmentError)."""
    override = os.environ.get(STATE_DIR_ENV, "")
    if override:
        return Path(override).absolute()
    why = state_dir_problem(root, state_path)
    if why is not None:
        raise ContainmentError(why)
    return root / state_path


def inside_real(path: Path, folder: Path) -> bool:
    """Whether ``path`` with its symbolic links resolved is ``folder`` (resolved) or under it."""
    real = os.path.realpath(path)
    base = os.path.realpath(folder)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)
