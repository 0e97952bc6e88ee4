"""One typed error hierarchy.

Every error a user can cause or meet derives from :class:`HonuaError` and carries a
message meant for a person. The CLI catches ``HonuaError`` at one boundary, prints the
message (secrets redacted) and exits 1; anything else is a bug and only shows its
traceback under ``--debug``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, order=True)
class Location:
    """Where in a config file a problem sits (1-based line and column)."""

    path: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.path}:{self.line}:{self.column}"
        return self.path


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in the configuration: ``path:line:column: message``."""

    location: Location
    message: str
    severity: str = "error"  # "error" or "warning"
    code: str = ""

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{self.location}: {prefix}{self.message}"


class HonuaError(Exception):
    """Base of every error meant for a user: the message is what they see."""

    exit_code = 1
    hint: str = ""
    details: str = ""  # printed before "Error: <message>" (e.g. one diagnostic per line)

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        if hint:
            self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(HonuaError):
    """The configuration repository has one or more problems, all reported together."""

    def __init__(self, diagnostics: Iterable[Diagnostic], header: str = "") -> None:
        diags = sorted(diagnostics, key=lambda d: (d.location, d.message))
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diags)
        errors = [d for d in diags if d.severity == "error"]
        head = header or f"{len(errors)} configuration error{'s' if len(errors) != 1 else ''}"
        super().__init__(head)
        self.details = "\n".join(str(d) for d in diags)

    def summary(self) -> dict[str, Any]:
        """The JSON shape for ``--format json``."""
        return {
            "valid": False,
            "errors": [
                {"path": d.location.path, "line": d.location.line, "column": d.location.column,
                 "message": d.message, "severity": d.severity}
                for d in self.diagnostics
            ],
        }


class ValidationError(ConfigError):
    """Alias kept for readability where schema validation fails."""


class SecretError(HonuaError):
    """A secret reference (``${VAR}``) names a variable that is not set."""


class DatabaseError(HonuaError):
    """The database could not be reached or a statement failed."""


class EmbeddedDatabaseError(DatabaseError):
    """The embedded PostgreSQL cluster could not be created or started."""


class NotReadOnlyError(DatabaseError):
    """A query a configuration wrote is not a single read-only SELECT: it is refused unsent."""


class StateError(HonuaError):
    """The recorded state is missing, unreadable or inconsistent."""


class StateLockedError(StateError):
    """Another process holds the state lock."""


class PlanError(HonuaError):
    """The plan cannot be built (a precondition fails, a layer mismatches its table...)."""

    def __init__(self, message: str, *, diagnostics: Sequence[Diagnostic] = (), hint: str = "") -> None:
        self.diagnostics = tuple(diagnostics)
        super().__init__(message, hint=hint)
        self.details = "\n".join(str(d) for d in diagnostics)


class StalePlanError(PlanError):
    """A saved plan no longer matches the recorded or live state."""


class PlanTamperedError(PlanError):
    """A saved plan's content no longer matches its digest, its approvals or its configuration."""


class CycleError(PlanError):
    """The dependency graph has a cycle."""


class PolicyError(HonuaError):
    """A policy forbids the change (window, approval, cooldown, backup)."""


class ApprovalRequired(PolicyError):
    """The plan needs approvals it does not have."""


class ApprovalError(PolicyError):
    """An approval is not valid: not bound to this plan, approver not allowed, signature bad."""


class ApplyError(HonuaError):
    """A step failed during apply; state is valid and says how to resume or roll back."""


class RecoveryError(HonuaError):
    """A recovery cannot start (bad input: nothing was touched) or did not restore everything."""


class ValidationFailed(ApplyError):
    """A post-apply validation or health check failed."""


class ServerError(HonuaError):
    """The GIS server could not be published to, reloaded or reached."""


class NotInteractiveError(HonuaError):
    """A confirmation is needed but stdin is not a terminal."""


class UsageError(HonuaError):
    """The command line asks for something that cannot be done."""


class AIUnavailable(HonuaError):
    """The AI assistant needs the optional extra ``ai`` (litellm) or a model setting."""


class AIModelFailed(HonuaError):
    """The configured model was asked and did not answer (an error, a timeout), twice."""


class OutputFileError(HonuaError):
    """An output file cannot be written: its path names a device, FIFO, directory, socket or
    symbolic link, or the write failed."""

    def __init__(self, path: str, reason: str, *, what: str = "") -> None:
        self.path, self.reason = path, reason
        super().__init__(f"cannot write {what + ' ' if what else ''}{path}: {reason}")


class ContainmentError(HonuaError):
    """A path named by configuration resolves outside the folder its kind may touch."""


class ProjectKeyError(StateError):
    """The state's project key is bound to another repository."""
