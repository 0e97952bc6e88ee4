"""Plan files: save, load, approve, digest.

A plan file is the JSON of :func:`honua_plan.plan.render.render_json` (indent 2, a
trailing newline, secrets redacted), written atomically (:mod:`honua_plan.files`: temporary file in the
same directory, fsync, ``os.replace``) so a reader never sees half a plan.

:func:`plan_digest` identifies *what was reviewed*: the sha256 of the canonical JSON
of the plan without its ``approvals``, so recording an approval does not change it. The
file carries it (``digest``) and every approval carries the digest it approved:
:func:`verify_digest` refuses a file whose content no longer matches either.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from honua_plan.errors import Diagnostic, Location, OutputFileError, PlanError, PlanTamperedError
from honua_plan.files import write_bytes_atomic
from honua_plan.plan.model import PLAN_FORMAT_VERSION, Approval, Plan
from honua_plan.plan.render import content_digest, render_json
from honua_plan.plan.signing import approval_message, sign

try:  # POSIX only; on other systems approvals are not serialised between processes
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = ["TAMPERED", "load_plan", "parse_plan", "plan_digest", "record_approval", "save_plan", "verify_digest"]

TAMPERED = "plan file was modified after it was made/approved: digest mismatch"

PathLike = str | os.PathLike[str]


# ---------------------------------------------------------------------- write


def _atomic_write(path: Path, data: bytes) -> None:
    """One atomic write (:mod:`honua_plan.files`): a device, FIFO, directory or symbolic
    link at ``path`` is refused, never replaced."""
    try:
        write_bytes_atomic(path, data)
    except OutputFileError as exc:
        raise PlanError(f"cannot write plan file {exc.path}: {exc.reason}") from None


def save_plan(plan: Plan, path: PathLike) -> None:
    """Write ``plan`` to ``path`` atomically (JSON, indent 2, trailing newline, redacted)."""
    _atomic_write(Path(path), (render_json(plan) + "\n").encode("utf-8"))


# ----------------------------------------------------------------------- read


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(plan)"


def parse_plan(text: str, *, source: str = "<plan>") -> Plan:
    """Parse the text of a plan file; ``source`` names it in error messages."""
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(
            f"{source}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}",
            hint="a plan file is written by `honua plan --out FILE`; was it edited by hand or truncated?",
        ) from None
    if not isinstance(data, dict):
        raise PlanError(f"{source} is not a honua plan file (expected a JSON object, found {type(data).__name__})")
    if "format_version" not in data:
        raise PlanError(f"{source} is not a honua plan file (no format_version)")
    version = data["format_version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise PlanError(f"{source}: format_version must be an integer, found {json.dumps(version)}")
    if version > PLAN_FORMAT_VERSION:
        raise PlanError(
            f"{source} was written by a newer honua-plan (plan format {version}; "
            f"this version reads format {PLAN_FORMAT_VERSION})",
            hint="upgrade honua-plan, or re-create the plan with this version",
        )
    if version < PLAN_FORMAT_VERSION:
        raise PlanError(
            f"{source} uses plan format {version}, which this honua-plan no longer reads "
            f"(it reads format {PLAN_FORMAT_VERSION})",
            hint="re-create the plan with `honua plan --out FILE`",
        )
    try:
        return Plan.model_validate(data)
    except PydanticValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        diags = [Diagnostic(Location(source), f"{_loc(tuple(e['loc']))}: {e['msg']}") for e in errors]
        first = diags[0].message
        more = f" (and {len(diags) - 1} more)" if len(diags) > 1 else ""
        raise PlanError(f"{source} is not a valid plan file: {first}{more}", diagnostics=diags) from None


def load_plan(path: PathLike) -> Plan:
    """Read and validate a plan file, with a clear :class:`PlanError` for every failure."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise PlanError(
            f"plan file {p} not found", hint="create one with `honua plan --env ENV --out FILE`"
        ) from None
    except IsADirectoryError:
        raise PlanError(f"{p} is a directory, not a plan file") from None
    except OSError as exc:
        raise PlanError(f"cannot read plan file {p}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlanError(f"{p} is not a honua plan file (not UTF-8 text: byte {exc.start})") from None
    return parse_plan(text, source=str(p))


# ------------------------------------------------------------------- approve


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the plan file (re-opened if replaced while waiting)."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    while True:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            yield  # missing or unreadable: load_plan reports it
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except OSError:
            same = False
        if same:
            break
        os.close(fd)  # replaced by another writer while we waited: lock the new file
    try:
        yield
    finally:
        os.close(fd)


def record_approval(path: PathLike, by: str, comment: str = "", *, now: datetime | None = None,
            key: Path | None = None, authorize: Callable[[Plan, Approval], None] | None = None) -> Plan:
    """Record an approval by ``by`` of the plan file's digest and return the new plan.

    Refuses a file whose content does not match its digest (:func:`verify_digest`), an
    empty name and a second approval by the same person (case-insensitive). ``key``
    signs the approval (:mod:`honua_plan.plan.signing`); ``authorize`` (the policy's
    check of the approver and the signature) raises to refuse it. The digest of the
    plan is unchanged.
    """
    who = by.strip()
    if not who:
        raise PlanError("an approval needs the approver's name (--by NAME)")
    at = now or datetime.now(UTC)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    p = Path(path)
    with _exclusive(p):
        plan = load_plan(p)
        digest = verify_digest(plan, source=str(p))
        for existing in plan.approvals:
            if existing.by.casefold() == who.casefold():
                raise PlanError(
                    f"{who} has already approved this plan (at {existing.at.isoformat()})",
                    hint="each approval must come from a different person",
                )
        signature = sign(approval_message(digest, who, at), key) if key is not None else None
        approval = Approval(by=who, at=at, digest=digest, comment=comment.strip(), signature=signature)
        if authorize is not None:
            authorize(plan, approval)
        new = plan.model_copy(update={"approvals": [*plan.approvals, approval]})
        save_plan(new, p)
    return new


# -------------------------------------------------------------------- digest


def plan_digest(plan: Plan) -> str:
    """``sha256:<hex>`` of the canonical JSON of the plan without ``approvals`` (and ``digest``).

    Canonical: keys sorted, no whitespace, UTF-8, secrets redacted (as in the file),
    so a plan and the same plan loaded back from its file have the same digest.
    """
    return content_digest(plan)


def verify_digest(plan: Plan, *, source: str = "<plan>") -> str:
    """The digest of a plan read from a file; :class:`PlanTamperedError` unless the file's
    ``digest`` and every approval's ``digest`` are that digest."""
    actual = content_digest(plan, redact_secrets=False)  # as read: the file holds the redacted text
    hint = "do not apply it: make a new plan (`honua plan --env ENV --out FILE`), review it and approve it again"
    if plan.digest != actual:
        recorded = plan.digest or "none"
        raise PlanTamperedError(f"{source}: {TAMPERED} (recorded {recorded}, content {actual})", hint=hint)
    for a in plan.approvals:
        if a.digest != actual:
            raise PlanTamperedError(
                f"{source}: {TAMPERED} (the approval by {a.by} at {a.at.isoformat()} is for {a.digest}, "
                f"the content is {actual})", hint=hint)
    return actual
