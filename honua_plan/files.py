"""The one writer of output files: plans, reports, local state, journals, exported schemas.

A path given on the command line (``plan --out``) or derived from configuration may name
something that is not a file: a device (``/dev/full``), a FIFO, a directory, a socket, or a
symbolic link to anywhere. Replacing it with a regular file (as ``os.replace`` would) loses
a device node or writes through a link outside the folder it was meant for; so a target
that exists and is not a regular file, or is a symbolic link, is refused. Otherwise the
content goes to a temporary file in the same directory, is fsynced, and replaces the target
with ``os.replace``; the directory is fsynced: a reader sees the old file or the new one,
never half of one.

Base layer: the standard library and :mod:`honua_plan.errors` only.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from honua_plan.errors import OutputFileError

__all__ = ["check_target", "inside", "write_atomic", "write_bytes_atomic", "write_text_atomic"]

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
)


def check_target(path: Path | str, what: str = "") -> None:
    """OutputFileError when ``path`` exists and is a symbolic link or not a regular file;
    ``what`` names the file in the message (``plan file``)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputFileError(str(path), exc.strerror or str(exc), what=what) from None
    if stat.S_ISLNK(st.st_mode):
        raise OutputFileError(str(path), f"it is a symbolic link (to {os.readlink(path)}), refused; remove it "
                              "or write to another path", what=what)
    if stat.S_ISREG(st.st_mode):
        return
    kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
    raise OutputFileError(str(path), f"it is {kind}, not a regular file; refused (name a regular file)",
                          what=what)


def write_atomic(
    path: Path | str,
    write: Callable[[IO[bytes]], object],
    *,
    mode: int | None = None,
    before_replace: Callable[[], None] | None = None,
    what: str = "",
) -> None:
    """Write ``path`` atomically with ``write(fh)`` (binary file object).

    ``mode``: the new file's permission bits (default: the replaced file's, else 0o644).
    ``before_replace``: called after the temporary file is durable, just before it replaces
    the target (the local state keeps the previous version as its backup there).
    ``what`` names the file in error messages (``plan file``).
    """
    path = Path(path)
    check_target(path, what)
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if mode is None:
            try:
                mode = os.stat(path).st_mode & 0o7777
            except FileNotFoundError:
                mode = 0o644
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise OutputFileError(str(path), exc.strerror or str(exc), what=what) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if before_replace is not None:
            before_replace()
        check_target(path, what)  # not turned into a link or a FIFO meanwhile
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OutputFileError(str(path), exc.strerror or str(exc), what=what) from None
        raise
    _fsync_dir(directory)


def write_bytes_atomic(path: Path | str, data: bytes, *, mode: int | None = None, what: str = "") -> None:
    """Write ``data`` to ``path`` atomically (see :func:`write_atomic`)."""
    write_atomic(path, lambda fh: fh.write(data), mode=mode, what=what)


def write_text_atomic(path: Path | str, text: str, *, mode: int | None = None, what: str = "",
                      encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`write_atomic`)."""
    write_bytes_atomic(path, text.encode(encoding), mode=mode, what=what)


def _fsync_dir(directory: Path) -> None:
    try:
        dfd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - not possible on every platform
        return
    try:
        os.fsync(dfd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(dfd)


def inside(path: Path | str, folder: Path | str) -> bool:
    """Whether ``path``, its symbolic links resolved, is ``folder`` (resolved) or under it."""
    real = os.path.realpath(path)
    base = os.path.realpath(folder)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)
