"""The state backend contract: a reader for everyone, a writer only under the lock.

::

    backend = open_backend("local", environment="dev", root=repo, dsn=None, lock_timeout=0)
    doc = backend.reader().read()                 # never writes, never locks
    with backend.lock("honua apply") as writer:   # StateLockedError if someone holds it
        doc = writer.read()
        doc = writer.write(doc.with_resource(rec), expected_serial=doc.serial)

Rules every backend keeps (the shared test suite checks them):

* ``read()`` of a missing state is a new empty document with a fresh lineage
  (serial 0), and nothing is written.
* ``write(doc, expected_serial=N)`` succeeds only when the stored serial is ``N`` (0 when
  nothing is stored) and the stored lineage equals ``doc.lineage``; it stores the
  document with serial ``N + 1`` and a fresh ``updated_at`` and returns what it stored.
  So the serial goes up by exactly one per write and never goes down.
* the event log is append-only: the stored events must be a prefix of the new ones;
  the events a write appends get that write's serial.
* the document is stored as it is, never redacted: redaction would rewrite identifiers
  (an address, a schema named like a short password). It holds no secret to begin with:
  configuration holds ``${VAR}`` references, and the free text that may quote one (a
  journal step's error, an event's message) is redacted where it is made.
* a write either fully happens or not at all (atomic replace / one transaction).
"""

from __future__ import annotations

import getpass
import os
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from honua_plan.errors import StateError, StateLockedError
from honua_plan.secrets import redact
from honua_plan.state.artifacts import Artifacts
from honua_plan.state.keys import DEFAULT_PROJECT, RepoIdentity
from honua_plan.state.model import (
    JSON_CONTEXT,
    Event,
    StateDocument,
    canonical_json,
    check_environment_name,
    utcnow,
)

BACKEND_KINDS = ("local", "postgres")


@dataclass(frozen=True)
class LockInfo:
    """Who holds (or held) a state lock."""

    pid: int
    """Process id of the holder on its host."""
    host: str
    since: datetime
    command: str
    """What the holder is doing, e.g. ``honua apply``."""
    user: str | None = None
    server_pid: int | None = None
    """Postgres only: the backend pid of the session holding the advisory lock."""

    def describe(self) -> str:
        """``pid 123 on host x since 2026-01-02T03:04:05+00:00 (honua apply)``."""
        since = self.since.isoformat(timespec="seconds")
        who = f" by user {self.user}" if self.user else ""
        return f"pid {self.pid} on host {self.host}{who} since {since} ({self.command})"

    def to_json_data(self) -> dict[str, Any]:
        data = asdict(self)
        data["since"] = self.since.isoformat()
        return data

    @classmethod
    def from_json_data(cls, data: dict[str, Any]) -> LockInfo:
        return cls(
            pid=int(data["pid"]),
            host=str(data["host"]),
            since=datetime.fromisoformat(str(data["since"])),
            command=str(data["command"]),
            user=data.get("user"),
            server_pid=data.get("server_pid"),
        )

    @classmethod
    def current(cls, command: str, *, server_pid: int | None = None) -> LockInfo:
        """Info describing this process, taking the lock now for ``command``."""
        try:
            user: str | None = getpass.getuser()
        except Exception:  # no passwd entry in some containers
            user = None
        return cls(
            pid=os.getpid(),
            host=socket.gethostname(),
            since=utcnow(),
            command=redact(command),
            user=user,
            server_pid=server_pid,
        )


def pid_alive(pid: int, since: datetime | None = None) -> bool:
    """Whether process ``pid`` of this host runs (a zombie does not), and is the one that
    existed at ``since`` (a process started later only reuses the pid)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        return True  # no /proc here: the signal said it exists
    if fields[0] in ("Z", "X"):
        return False
    if since is not None:
        try:
            btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                         if line.startswith("btime "))
            started = btime + int(fields[19]) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, StopIteration, IndexError):
            return True
        if started > since.timestamp() + 2:  # 2 s: btime is rounded to the second
            return False
    return True


def holder_alive(holder: LockInfo) -> bool | None:
    """True/False when the holder's process can be checked (same host), else None."""
    if holder.pid <= 0 or holder.host != socket.gethostname():
        return None
    return pid_alive(holder.pid, holder.since)


def unlock_refusal(environment: str, holder: LockInfo, alive: bool | None, session: str = "") -> StateLockedError:
    """The error of ``honua state unlock`` without ``--force`` while the holder may run."""

    why = ("which is still running" if alive else
           "whose process cannot be checked from this host (another host, or no holder record)")
    return StateLockedError(
        f"state for '{environment}' is locked by {holder.describe()}, {why}{session}; "
        "refusing to break a lock that may be in use",
        hint=f"wait for it to finish or stop that process; `honua state unlock --env {environment} --force` "
             "breaks the lock anyway (the holder then cannot write the state)",
    )


def record_unlock(backend: StateBackend, holder: LockInfo, alive: bool | None, message: str) -> str:
    """Leave a trace of an unlock in the event log (when the state exists); ``message``
    gains a note when it could not be recorded."""
    if not backend.exists():
        return message
    try:
        with backend.lock("honua state unlock", timeout=5) as writer:
            current = writer.read()
            writer.write(
                current.record_event(
                    "unlock",
                    "forced unlock: " + message.removeprefix("warning: "),
                    actor=writer.lock_info.user,
                    details={"holder": holder.to_json_data(), "holder_alive": alive},
                ),
                expected_serial=current.serial,
            )
    except StateError as exc:
        message += f" (the unlock could not be recorded in the event log: {exc})"
    return message


def unlock_message(environment: str, holder: LockInfo, alive: bool | None, done: str) -> str:
    """What ``honua state unlock`` did: a plain message for a dead holder, a warning otherwise."""
    if alive is False:
        return f"{done} the lock on the state for '{environment}': its holder, {holder.describe()}, was dead"
    state = "still running" if alive else "possibly still running (it cannot be checked from this host)"
    return (f"warning: {done} the lock on the state for '{environment}' held by {holder.describe()}, "
            f"{state}; it can no longer write the state")


def locked_message(environment: str, holder: LockInfo | None, *, waited: float = 0) -> str:
    """The message of :class:`~honua_plan.errors.StateLockedError`."""
    after = f" (waited {waited:g}s)" if waited > 0 else ""
    if holder is None:
        return f"state for '{environment}' is locked by another process{after}"
    return f"state for '{environment}' is locked by {holder.describe()}{after}"


class StateReader(ABC):
    """Read-only access to one environment's recorded state."""

    environment: str

    @abstractmethod
    def read(self) -> StateDocument:
        """The stored document, or a new empty one (fresh lineage, serial 0) if none.

        Never writes. Raises :class:`StateError` when the stored state is unreadable.
        """

    @abstractmethod
    def exists(self) -> bool:
        """Whether a state document has been stored for this environment."""

    @abstractmethod
    def describe(self) -> str:
        """Where the state lives, for people (``local state/dev.json``); never a password."""

    def history(self, limit: int | None = 20) -> list[Event]:
        """The last ``limit`` events (all when ``None``), newest first."""
        events = list(reversed(self.read().events))
        return events if limit is None else events[: max(limit, 0)]


class StateWriter(StateReader):
    """Read-write access; only :meth:`StateBackend.lock` hands one out."""

    lock_info: LockInfo  # who holds the lock this writer writes under

    @abstractmethod
    def write(self, doc: StateDocument, *, expected_serial: int) -> StateDocument:
        """Store ``doc`` as serial ``expected_serial + 1``; return the stored document.

        Raises :class:`StateError` when the stored serial is not ``expected_serial`` or
        the lineage differs ("state changed since it was read …"), when the event log
        was rewritten, and :class:`~honua_plan.errors.StateLockedError` when the lock
        was lost (e.g. its database session was killed).
        """

    def append_event(self, event: Event) -> StateDocument:
        """Append one event and write (the event's serial becomes the new serial)."""
        current = self.read()
        return self.write(current.with_event(event), expected_serial=current.serial)


class StateBackend(ABC):
    """One environment's state store: readers for anyone, a writer under the lock."""

    kind: str
    environment: str
    lock_timeout: float
    after_write: Callable[[StateDocument], None] | None = None
    """Called with every document a writer of this backend stored (e.g. to record its
    serial elsewhere); set by whoever opens the backend."""
    on_close: Callable[[], None] | None = None
    project: str = DEFAULT_PROJECT
    identity: RepoIdentity | None = None
    """The repository that opened the backend (:mod:`honua_plan.state.keys`); its key is bound to it."""
    _claiming: bool = False
    _previous_binding: RepoIdentity | None = None

    def rebind(self, actor: str | None = None) -> str:
        """Bind the project key to this repository (``honua state rebind``): under the lock, with
        an event in the state's history; returns what was done."""
        mine = self.identity
        if mine is None:
            raise StateError("this checkout has no git history: there is no repository identity to bind the "
                             f"state key '{self.project}' to")
        self._claiming = True
        try:
            with self.lock("honua state rebind") as writer:
                before = self._previous_binding
                doc = writer.read()
                was = f" (was {before.describe()})" if before is not None and before != mine else ""
                message = f"state key '{self.project}' bound to this repository: {mine.describe()}{was}"
                details: dict[str, Any] = {"identity": mine.to_json(),
                                           "previous": before.to_json() if before is not None else None}
                writer.write(doc.record_event("state-rebind", message, actor=actor, details=details),
                             expected_serial=doc.serial)
        finally:
            self._claiming = False
        return message

    @abstractmethod
    def reader(self) -> StateReader:
        """A reader; it never takes the lock and never writes."""

    @abstractmethod
    def lock(
        self, command: str, *, timeout: float | None = None
    ) -> AbstractContextManager[StateWriter]:
        """Take the state lock for ``command`` and yield a writer; release it on exit.

        Waits up to ``timeout`` seconds (the backend's ``lock_timeout`` when ``None``;
        0 = fail at once) and then raises :class:`~honua_plan.errors.StateLockedError`
        naming the holder. The writer refuses to write once the context has exited.
        """

    @abstractmethod
    def holder(self) -> LockInfo | None:
        """Who holds the lock now, or ``None`` (a stale lock record is not a holder)."""

    @abstractmethod
    def force_unlock(self, *, force: bool = False) -> str:
        """Break a lock whose holder is dead; return what was done, for people.

        Raises :class:`~honua_plan.errors.StateLockedError` when the holder may still run
        (its process is alive, or cannot be checked), unless ``force``.
        """

    @abstractmethod
    def describe(self) -> str:
        """Where the state lives (no password)."""

    def read(self) -> StateDocument:
        """Shortcut for ``reader().read()``."""
        return self.reader().read()

    def artifacts(self) -> Artifacts:
        """Where saved plans and reports are kept besides the state folder (see :mod:`.artifacts`)."""
        from honua_plan.state.artifacts import LocalArtifacts

        return LocalArtifacts()

    def exists(self) -> bool:
        return self.reader().exists()

    def close(self) -> None:
        """Release any resource the backend keeps open (none by default)."""
        if self.on_close is not None:
            self.on_close()

    def _written(self, doc: StateDocument) -> None:
        """Writers call this after each successful write."""
        if self.after_write is not None:
            self.after_write(doc)

    def __enter__(self) -> StateBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- shared logic


def changed_message(stored_serial: int, expected_serial: int) -> str:
    return (
        f"state changed since it was read (serial {expected_serial}, now {stored_serial}); "
        "plan again against the current state"
    )


def prepare_write(
    environment: str,
    stored: StateDocument | None,
    doc: StateDocument,
    expected_serial: int,
) -> StateDocument:
    """Check ``doc`` against what is stored and return the document to store.

    Called by backends while they hold both the lock and whatever makes the write
    atomic (the file lock, the row lock). The result has serial
    ``expected_serial + 1`` and a fresh ``updated_at``.
    """
    if doc.environment != environment:
        raise StateError(
            f"refusing to write state of environment '{doc.environment}' "
            f"into the state of '{environment}'"
        )
    stored_serial = stored.serial if stored is not None else 0
    if expected_serial != stored_serial:
        raise StateError(changed_message(stored_serial, expected_serial))
    if stored is not None and stored.lineage != doc.lineage:
        raise StateError(
            f"state lineage differs: stored state of '{environment}' has lineage {stored.lineage}, "
            f"the document to write has {doc.lineage} (it belongs to another state)"
        )
    new = doc
    if stored is not None:
        old_events = stored.events
        if len(new.events) < len(old_events) or any(
            canonical_json(a) != canonical_json(b)
            for a, b in zip(old_events, new.events, strict=False)
        ):
            raise StateError(
                f"the event log of '{environment}' is append-only: the document to write "
                f"does not start with the {len(old_events)} recorded event(s)"
            )
    serial = expected_serial + 1
    known = len(stored.events) if stored is not None else 0
    events = new.events[:known] + [
        e if e.serial == serial else e.model_copy(update={"serial": serial})
        for e in new.events[known:]
    ]
    return new.model_copy(update={"serial": serial, "updated_at": utcnow(), "events": events})


def parse_document(data: Any, *, where: str, environment: str) -> StateDocument:
    """Validate data parsed from stored JSON into a document; :class:`StateError` naming ``where``."""
    from pydantic import ValidationError

    try:
        doc = StateDocument.model_validate(data, context=JSON_CONTEXT)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<document>'}: {e['msg']}"
            for e in exc.errors()[:5]
        )
        raise StateError(f"{where} is not a valid state document: {redact(problems)}") from None
    if doc.environment != environment:
        raise StateError(
            f"{where} holds the state of environment '{doc.environment}', not '{environment}'"
        )
    return doc


def validate_environment(environment: str) -> str:
    try:
        return check_environment_name(environment)
    except ValueError as exc:
        raise StateError(str(exc)) from None


def document_to_json(doc: StateDocument) -> dict[str, Any]:
    """The JSON data a backend stores for ``doc`` (one place, so tests can break it)."""
    return doc.to_json_data()


# --------------------------------------------------------------------------- factory
