"""The local state backend: JSON files under ``state/`` (``spec.state.path`` of honua.yaml).

Files, for environment ``dev``:

* ``state/dev.json``      the document (pretty JSON, sorted keys: readable in a diff)
* ``state/dev.json.bak``  the previous version, kept on every write
* ``state/dev.lock``      the lock file: ``flock(LOCK_EX)`` on it is the lock; while
  held it contains the holder as JSON (pid, host, since, command, user)

A write goes (:mod:`honua_plan.files`) to a temporary file in the same directory, is
fsynced, then replaces the document with ``os.replace`` and the directory is fsynced: a crash leaves either the old
or the new document, never a torn one. The lock is released by the kernel when the
holding process dies, so a lock file left behind is not an error (its content is
ignored unless the flock is actually held).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import honua_plan.state.base as base
from honua_plan.errors import OutputFileError, StateError, StateLockedError
from honua_plan.files import check_target, write_atomic, write_bytes_atomic, write_text_atomic
from honua_plan.secrets import redact
from honua_plan.state.base import (
    LockInfo,
    StateBackend,
    StateReader,
    StateWriter,
    locked_message,
    parse_document,
    prepare_write,
    validate_environment,
)
from honua_plan.state.keys import DEFAULT_PROJECT, RepoIdentity, check_binding, next_binding
from honua_plan.state.model import IdentityCache, StateDocument
from honua_plan.statefile import FileIdentity, file_identity, parse_state_bytes

_POLL_S = 0.05
BINDING_FILE = ".binding.json"


def _display(path: Path) -> str:
    """``path`` relative to the working directory when inside it, else absolute."""
    try:
        return Path(os.path.abspath(path)).relative_to(Path.cwd()).as_posix()
    except ValueError:
        return os.path.abspath(path)


class LocalReader(StateReader):
    """Reads ``state/<env>.json``; never creates anything."""

    def __init__(self, directory: Path, environment: str) -> None:
        self.environment = validate_environment(environment)
        self.directory = Path(directory)

    @property
    def path(self) -> Path:
        return self.directory / f"{self.environment}.json"

    @property
    def backup_path(self) -> Path:
        return self.directory / f"{self.environment}.json.bak"

    def describe(self) -> str:
        return f"local {_display(self.path)}"

    def exists(self) -> bool:
        return self.path.is_file()

    def read(self) -> StateDocument:
        stored, _raw = self._load()
        return stored if stored is not None else StateDocument.new(self.environment)

    def read_prefetched(self, identity: FileIdentity, data: Any) -> StateDocument | None:
        """The document from data another process parsed (:func:`read_state_data`), if the
        file is still the one it read; None when it changed since (read it again)."""
        if file_identity(self.path) != identity:
            return None
        return parse_document(data, where=f"state file {_display(self.path)}", environment=self.environment)

    def _load(self) -> tuple[StateDocument | None, bytes | None]:
        """The stored document and its raw bytes, or ``(None, None)`` when there is none."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            raise StateError(
                f"cannot read state file {_display(self.path)}: {exc.strerror}"
            ) from None
        try:
            data = parse_state_bytes(raw)
        except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
            raise StateError(self._corrupt_message(exc)) from None
        return parse_document(
            data, where=f"state file {_display(self.path)}", environment=self.environment
        ), raw

    def _corrupt_message(self, exc: Exception) -> str:
        where = (
            f" (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        head = f"state file {_display(self.path)} is not valid JSON{where}"
        if self.backup_path.is_file():
            return (
                f"{head}; the previous version is kept in {_display(self.backup_path)}: "
                f"inspect it and copy it over {_display(self.path)} to restore it"
            )
        return f"{head}; no backup {_display(self.backup_path)} exists"


def state_json_text(data: dict[str, Any]) -> str:
    """The text of a state file: a JSON object with one line per resource, event, migration
    and backup, so that a diff of two state files shows what changed, line by line.

    Each line is written by the C encoder (``indent=2`` makes json use its pure-Python
    encoder: 2.4 s per write of a 10,000-layer state).
    """
    return "".join(state_json_lines(data))


_ENCODED = IdentityCache()


def _enc(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False)


def state_json_lines(data: dict[str, Any]) -> Iterator[str]:
    """:func:`state_json_text` line by line (a writer need not hold the whole text).

    A record's text is made once per record object (``to_json_data`` gives the same
    dict for the same frozen record), not at every journal write of an apply.
    """
    enc = _enc

    yield "{\n"
    keys = sorted(data)
    for i, key in enumerate(keys):
        value, comma = data[key], "," if i < len(keys) - 1 else ""
        if isinstance(value, dict) and value:
            items = sorted(value.items())
            yield f"  {enc(key)}: {{\n"
            for j, (k, v) in enumerate(items):
                text = _ENCODED.get(v, _enc) if key == "resources" else enc(v)
                yield f"    {enc(k)}: {text}{',' if j < len(items) - 1 else ''}\n"
            yield "  }" + comma + "\n"
        elif isinstance(value, list) and value:
            yield f"  {enc(key)}: [\n"
            for j, v in enumerate(value):
                yield f"    {enc(v)}{',' if j < len(value) - 1 else ''}\n"
            yield "  ]" + comma + "\n"
        else:
            yield f"  {enc(key)}: {enc(value)}{comma}\n"
    yield "}\n"


class LocalWriter(LocalReader, StateWriter):
    """A reader that can write while its lock is held."""

    def __init__(self, backend: LocalBackend, lock_fd: int, info: LockInfo) -> None:
        super().__init__(backend.directory, backend.environment)
        self._backend = backend
        self._lock_fd = lock_fd
        self.lock_info = info
        self._active = True
        self._written: tuple[FileIdentity | None, StateDocument] | None = None

    def _check_lock(self) -> None:
        if not self._active:
            raise StateError(
                f"the state lock for '{self.environment}' was released; take it again to write"
            )
        try:
            held = os.fstat(self._lock_fd)
            now = os.stat(self._backend.lock_path)
        except FileNotFoundError:
            now = None
        if now is None or (held.st_dev, held.st_ino) != (now.st_dev, now.st_ino):
            raise StateLockedError(
                f"the state lock for '{self.environment}' was forcibly removed "
                f"(honua state unlock) while this process held it; nothing was written"
            )

    def read(self) -> StateDocument:
        """Read under the lock; the first :meth:`write` then compares against this document
        instead of parsing the file again (at 10,000 layers the file is 40 MB of JSON)."""
        before = file_identity(self.path)
        stored, _raw = self._load()
        if stored is not None and before is not None and file_identity(self.path) == before:
            self._written = (before, stored)
        return stored if stored is not None else StateDocument.new(self.environment)

    def write(self, doc: StateDocument, *, expected_serial: int) -> StateDocument:
        self._check_lock()
        written = self._written
        stored: StateDocument | None
        if written is not None and file_identity(self.path) == written[0]:
            stored, old_exists = written[1], True  # our own last write, untouched since (we hold the lock)
        else:
            stored, old_raw = self._load()
            old_exists = old_raw is not None
        new = prepare_write(self.environment, stored, doc, expected_serial)
        mode = 0o644
        with contextlib.suppress(OSError):
            mode = self.path.stat().st_mode & 0o777

        def dump(fh: IO[bytes]) -> None:
            fh.writelines(line.encode("utf-8") for line in state_json_lines(base.document_to_json(new)))

        keep = (lambda: self._keep_backup(mode)) if old_exists else None
        try:
            write_atomic(self.path, dump, mode=mode, before_replace=keep, what="state file")
        except StateError:
            raise
        except OutputFileError as exc:
            raise StateError(
                f"could not write state file {_display(self.path)}: {exc.reason}; the stored state is unchanged"
            ) from None
        except Exception as exc:
            raise StateError(
                f"could not write state file {_display(self.path)}: {redact(str(exc))}; "
                "the stored state is unchanged"
            ) from exc
        self._written = (file_identity(self.path), new)
        self._backend._written(new)
        return new

    def restore_backup_file(self, *, min_serial: int = 0) -> tuple[StateDocument, int]:
        """Make ``<env>.json.bak`` (the previous version) the state again; return the stored
        document and the backup's own serial.

        The serial never goes down: the restored document gets a serial above the
        backup's, the current file's and ``min_serial`` (what the database last recorded).
        The file it replaces, if any, is kept as ``<env>.json.replaced``.
        """
        self._check_lock()
        if not self.backup_path.is_file():
            raise StateError(f"no {_display(self.backup_path)} to restore the state of '{self.environment}' from")
        try:
            data = parse_state_bytes(self.backup_path.read_bytes())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise StateError(f"{_display(self.backup_path)} cannot be read: {exc}") from None
        bak = parse_document(data, where=f"state backup {_display(self.backup_path)}", environment=self.environment)
        try:
            current, _ = self._load()
        except StateError:
            current = None  # unreadable: kept aside below all the same
        serial = max(bak.serial, current.serial if current else 0, min_serial) + 1
        lost = f"; the state had serial {max(current.serial if current else 0, min_serial)}"
        doc = bak.record_event(
            "restore", f"state restored from {self.backup_path.name} (serial {bak.serial}){lost}",
        )
        events = [*doc.events[:-1], doc.events[-1].model_copy(update={"serial": serial})]
        new = doc.model_copy(update={"serial": serial, "updated_at": base.utcnow(), "events": events})
        def aside() -> None:  # the file it replaces is kept, not lost
            if self.path.exists():
                os.replace(self.path, self.directory / f"{self.environment}.json.replaced")

        try:
            write_atomic(self.path,
                         lambda fh: fh.writelines(line.encode("utf-8")
                                                  for line in state_json_lines(base.document_to_json(new))),
                         mode=0o644, before_replace=aside, what="state file")
        except OutputFileError as exc:
            raise StateError(f"could not write state file {_display(self.path)}: {exc.reason}") from None
        self._written = (file_identity(self.path), new)
        self._backend._written(new)
        return new, bak.serial

    def _keep_backup(self, mode: int) -> None:
        """The current file becomes ``<env>.json.bak``: a hard link (no copy of a state of
        10,000 layers per write), or a copy where the filesystem has no links."""
        link = self.directory / f".{self.environment}.json.bak.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
        try:
            os.link(self.path, link)
        except OSError:
            write_bytes_atomic(self.backup_path, self.path.read_bytes(), mode=mode, what="state backup")
            return
        check_target(self.backup_path, "state backup")  # a link or a FIFO is not replaced
        os.replace(link, self.backup_path)


class LocalBackend(StateBackend):
    """State in ``<directory>/<env>.json``, locked with ``flock`` on ``<env>.lock``."""

    kind = "local"

    def __init__(self, directory: Path, environment: str, *, lock_timeout: float = 0,
                 project: str = DEFAULT_PROJECT, identity: RepoIdentity | None = None) -> None:
        self.environment = validate_environment(environment)
        self.directory = Path(directory)
        self.lock_timeout = lock_timeout
        self.project = project
        self.identity = identity

    @property
    def path(self) -> Path:
        return self.directory / f"{self.environment}.json"

    @property
    def lock_path(self) -> Path:
        return self.directory / f"{self.environment}.lock"

    def describe(self) -> str:
        return f"local {_display(self.path)}"

    def reader(self) -> LocalReader:
        return LocalReader(self.directory, self.environment)

    # -- lock ------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, command: str, *, timeout: float | None = None) -> Iterator[LocalWriter]:
        fd, info = self._acquire(command, self.lock_timeout if timeout is None else timeout)
        writer = LocalWriter(self, fd, info)
        try:
            yield writer
        finally:
            writer._active = False
            self._release(fd)

    def _acquire(self, command: str, timeout: float) -> tuple[int, LockInfo]:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(
                f"cannot create state directory {_display(self.directory)}: {exc.strerror}"
            ) from None
        start = time.monotonic()
        deadline = start + max(timeout, 0)
        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise StateError(
                    f"cannot open lock file {_display(self.lock_path)}: {exc.strerror}"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._read_holder(fd)
                os.close(fd)
                now = time.monotonic()
                if now >= deadline:
                    raise StateLockedError(
                        locked_message(
                            self.environment,
                            holder,
                            waited=round(now - start, 2) if timeout > 0 else 0,
                        ),
                        hint="wait for it to finish; if that process is gone, run `honua state unlock`",
                    ) from None
                time.sleep(min(_POLL_S, deadline - now))
                continue
            except BaseException:
                os.close(fd)
                raise
            # The file may have been unlinked (force_unlock) between open and flock:
            # only a lock on the file that is at the path counts.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.lock_path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            break
        info = LockInfo.current(command)
        try:
            payload = json.dumps({**info.to_json_data(), "environment": self.environment}).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, payload + b"\n", 0)
            os.fsync(fd)
            self._bind()
        except BaseException:
            self._release(fd)
            raise
        return fd, info

    def _bind(self) -> None:
        """Under the lock: record this repository's identity in ``.binding.json`` (first lock,
        or ``state rebind``), or refuse another repository's (see :mod:`honua_plan.state.keys`)."""
        path = self.directory / BINDING_FILE
        bound: RepoIdentity | None = None
        try:
            check_target(path, "state binding")
            bound = RepoIdentity.from_json(json.loads(path.read_text(encoding="utf-8")).get("identity"))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError) as exc:
            raise StateError(f"{_display(path)} cannot be read: {exc}") from None
        self._previous_binding = bound
        mine = self.identity
        if bound is not None and not self._claiming:
            check_binding(self.project, self.environment, bound, mine, self.describe())
        if mine is None:
            return
        new = next_binding(bound, mine, claim=self._claiming)
        if new is not None and new != bound:
            write_text_atomic(path, json.dumps({"project": self.project, "identity": new.to_json(),
                                                "bound_at": datetime.now(UTC).isoformat()}, indent=2) + "\n",
                              what="state binding")

    def _release(self, fd: int) -> None:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        with contextlib.suppress(OSError):
            os.close(fd)

    def _read_holder(self, fd: int) -> LockInfo | None:
        """Parse the holder JSON from the lock file (``None`` if empty or unreadable)."""
        for _ in range(5):
            try:
                raw = os.pread(fd, 64 * 1024, 0)
                if raw.strip():
                    return LockInfo.from_json_data(json.loads(raw.decode("utf-8")))
            except (OSError, ValueError, KeyError, TypeError):
                pass
            time.sleep(0.01)  # the holder may be writing its info right now
        return None

    def holder(self) -> LockInfo | None:
        try:
            fd = os.open(self.lock_path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(
                f"cannot open lock file {_display(self.lock_path)}: {exc.strerror}"
            ) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                info = self._read_holder(fd)
                if info is not None:
                    return info
                mtime = datetime.fromtimestamp(os.fstat(fd).st_mtime, UTC)
                return LockInfo(pid=0, host="unknown", since=mtime, command="unknown")
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None  # a lock file nobody holds: stale, not a lock
        finally:
            os.close(fd)

    def force_unlock(self, *, force: bool = False) -> str:
        """Remove the lock file of a dead holder (or, with ``force``, of any holder); a
        holder still running then fails on its next write."""
        holder = self.holder()
        if not self.lock_path.exists():
            return f"state for '{self.environment}' is not locked"
        if holder is None:
            with contextlib.suppress(FileNotFoundError):
                self.lock_path.unlink()
            return f"state for '{self.environment}' was not locked (removed a stale lock file)"
        alive = base.holder_alive(holder)
        if alive is not False and not force:
            raise base.unlock_refusal(self.environment, holder, alive)
        with contextlib.suppress(FileNotFoundError):
            self.lock_path.unlink()
        message = base.unlock_message(self.environment, holder, alive, "removed")
        return base.record_unlock(self, holder, alive, message)
