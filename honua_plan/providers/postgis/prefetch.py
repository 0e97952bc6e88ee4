"""Read the live catalog and the state file while the repository is being loaded.

A plan needs the desired state (YAML parsed and validated: Python, one core), the
recorded state (a JSON file) and the live catalog (a few statements that keep
PostgreSQL busy, then rows to turn into facts). They do not depend on each other, so
the reads start first, before the plan engine is even imported:

* on Linux, in a forked process when this one has no other thread. The reader parses
  the local state file while its catalog statements run, and sends both back through
  a pipe with :mod:`marshal` (plain values; much faster to load than JSON). This
  process then neither imports psycopg nor parses JSON, and the reader's buffers are
  not this process's peak memory;
* elsewhere, in a daemon thread (which shares the interpreter lock, but still overlaps
  the time PostgreSQL spends on the statements).

Nothing read early is trusted blindly: the DSN is told from honua.yaml and providers/
as plain YAML (:func:`connections.early_dsn`) and the catalog is used only if the DSN
resolved after loading is the same; the state is used only if it came from the file
the backend reads and that file is still the same one (:func:`statefile.file_identity`).
Any failure of an early read is dropped, and the plan then reads for itself and
reports its own errors.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    from honua_plan.providers.postgis.facts import CatalogRows
    from honua_plan.providers.postgis.sqlexec import StatementLog

FORK = True
"""Read in a forked process where possible; False keeps the reads in this process (a
thread), e.g. for a tool that counts the statements this process sends."""

# (statement text, params text, seconds, executed, read_only) of each logged statement
_Logged = tuple[str, str, float, bool, bool]
_Catalog = tuple[str, "CatalogRows", list[_Logged]]  # dsn, rows, statements sent
_State = tuple[str, Any, Any]  # path, file identity, parsed JSON


def _read_catalog(root: Path, environment: str) -> _Catalog | None:
    from honua_plan.providers.postgis import catalog as postgis
    from honua_plan.providers.postgis.connections import early_dsn
    from honua_plan.providers.postgis.sqlexec import Session, StatementLog, connect

    dsn = early_dsn(root, environment)
    if dsn is None:
        return None
    log = StatementLog()
    with connect(dsn) as conn:
        rows = postgis.catalog_rows(Session(conn, log=log))
    return dsn, rows, [(e.text, e.params, e.seconds, e.executed, e.read_only) for e in log]


def state_path(root: Path, environment: str) -> Path | None:
    """Where the local state of ``environment`` is, told from honua.yaml as plain YAML."""
    from honua_plan.config.yamlparse import plain_documents

    project = [d for d in plain_documents(root / "honua.yaml", root) if isinstance(d, dict)]
    spec = project[0].get("spec") if len(project) == 1 else None
    cfg = (spec.get("state") if isinstance(spec, dict) else None) or {}
    if not isinstance(cfg, dict) or cfg.get("backend", "local") != "local":
        return None
    path = cfg.get("path", "state")  # used only if it is the backend's own file (take_state compares)
    if not isinstance(path, str) or not path or Path(path).is_absolute() or ".." in Path(path).parts:
        return None  # the loader refuses it
    return root / path / f"{environment}.json"


def _read_state(root: Path, environment: str) -> _State | None:
    from honua_plan.statefile import read_state_data

    path = state_path(root, environment)
    found = read_state_data(path) if path is not None else None
    return (str(path), *found) if found is not None else None


def _safely(read: Any, root: Path, environment: str) -> Any:
    try:
        return read(root, environment)
    except Exception:  # the plan reads it itself and reports why
        return None


def _send(out: BinaryIO, value: Any) -> None:
    blob = marshal.dumps(value)
    out.write(len(blob).to_bytes(8, "big"))
    out.write(blob)
    out.flush()


class Prefetch:
    """The early reads of one plan: :meth:`take_state`, then :meth:`take_catalog` (or :meth:`discard`)."""

    def __init__(self, root: Path, environment: str, *, fork: bool | None = None, catalog: bool = True) -> None:
        """``catalog``: False when the caller has the catalog already (only the state is read)."""
        self._with_catalog = catalog
        self._state: _State | None = None
        self._catalog: _Catalog | None = None
        self._pid = 0
        self._fd = -1
        self._thread: threading.Thread | None = None
        self._state_taken = False
        if fork is None:
            fork = FORK and sys.platform == "linux" and threading.active_count() == 1
        if fork:
            self._start_process(root, environment)
        else:
            self._thread = threading.Thread(target=self._read_both, args=(root, environment), daemon=True,
                                            name="honua-prefetch")
            self._thread.start()

    # -- the reader ------------------------------------------------------------------

    def _read_both(self, root: Path, environment: str) -> None:
        self._state = _safely(_read_state, root, environment)
        if self._with_catalog:
            self._catalog = _safely(_read_catalog, root, environment)

    def _start_process(self, root: Path, environment: str) -> None:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the reader: never returns, never runs the parent's cleanup
            code = 0
            try:
                os.close(read_fd)
                with os.fdopen(write_fd, "wb") as out:
                    # the catalog statements keep PostgreSQL busy while this thread parses the state
                    catalog = threading.Thread(target=self._read_catalog_into, args=(root, environment))
                    if self._with_catalog:
                        catalog.start()
                    _send(out, _safely(_read_state, root, environment))
                    if self._with_catalog:
                        catalog.join()
                    _send(out, self._catalog)
            except BaseException:  # e.g. a closed pipe: the plan gave up on the reader
                code = 1
            finally:
                os._exit(code)
        os.close(write_fd)
        self._pid, self._fd = pid, read_fd

    def _read_catalog_into(self, root: Path, environment: str) -> None:
        self._catalog = _safely(_read_catalog, root, environment)
        if self._catalog is not None:  # a core of its own: the drift check's hashes too
            with contextlib.suppress(Exception):
                from honua_plan.providers.postgis.facts import with_fingerprints

                with_fingerprints(self._catalog[1])

    def _receive(self) -> Any:
        header = self._read_exactly(8)
        blob = self._read_exactly(int.from_bytes(header, "big")) if header is not None else None
        try:
            return marshal.loads(blob) if blob is not None else None
        except (EOFError, ValueError, TypeError):
            return None

    def _read_exactly(self, n: int) -> bytes | None:
        chunks, left = [], n
        while left:
            chunk = os.read(self._fd, min(left, 1 << 22))
            if not chunk:
                return None
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _finish(self) -> None:
        if self._pid:
            os.close(self._fd)
            os.waitpid(self._pid, 0)
            self._pid, self._fd = 0, -1

    # -- the plan's side -----------------------------------------------------------

    def take_state(self, path: Path) -> tuple[Any, Any] | None:
        """(file identity, parsed JSON) of the state file at ``path``, or None (read it yourself)."""
        if self._thread is not None:
            self._thread.join()
            found = self._state
        else:
            found = self._receive() if self._pid and not self._state_taken else None
        self._state, self._state_taken = None, True
        if found is None or found[0] != str(path):
            return None
        return found[1], found[2]

    def take_catalog(self, dsn: str, log: StatementLog | None = None) -> CatalogRows | None:
        """The catalog rows, if they were read from ``dsn``; None otherwise (read it yourself)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            found = self._catalog
        elif self._pid:
            if not self._state_taken:
                self._receive()  # the reader sends the state first
            found = self._receive()
            self._finish()
        else:
            found = None
        self._catalog = None
        if found is None or found[0] != dsn:
            return None
        _, rows, logged = found
        if log is not None:
            from honua_plan.providers.postgis.sqlexec import LoggedStatement

            for entry in logged:
                log.record(LoggedStatement(*entry))
        return rows

    def discard(self) -> None:
        """Stop waiting for the reader (a plan that failed before it needed what was read)."""
        if self._pid:
            import signal

            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
            self._finish()
        self._thread = None  # a daemon: it ends on its own, nothing holds what it read
        self._state = self._catalog = None
