"""How long an environment has been healthy, from the events its state recorded. Pure.

"Healthy for 48 hours" means: the environment's current configuration has run for 48
hours without a failure, and a check proved it healthy. So the period starts at the later
of its last change (apply, migrate, recover) and its last failure (a failed apply, a
rollback, a failed ``honua test`` or recovery); it counts only when a passing ``honua test`` was
recorded after that start (``test`` events carry ``details.ok``). No such test is
"unknown", which promotion and the cooldown policy treat as not satisfied.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from honua_plan.state.model import Event, StateDocument, utcnow

CHANGES = frozenset({"apply", "migrate", "recover"})
FAILURES = frozenset({"apply-failed", "rollback", "recover-failed"})
CHECKS = frozenset({"test", "health"})


def is_failure(ev: Event) -> bool:
    """A failed apply, a rollback, a failed test, or a recovery that did not restore everything."""
    return ev.kind in FAILURES or (ev.kind in (*CHECKS, "recover") and ev.details.get("ok") is False)


@dataclass(frozen=True)
class Health:
    status: Literal["healthy", "failing", "unknown", "never-applied"]
    since: datetime | None = None
    """Start of the healthy period (healthy), of the failure (failing), of the change (unknown)."""
    seconds: float | None = None
    """Seconds since :attr:`since`."""
    failure: str = ""

    def describe(self, environment: str) -> str:
        from honua_plan.console import format_duration

        ago = format_duration(self.seconds or 0)
        if self.status == "healthy":
            return f"{environment.capitalize()} healthy for {ago} (tested, no failure since its last change)"
        if self.status == "failing":
            return f"{environment} failed {ago} ago and has not passed a test since: {self.failure}"
        if self.status == "unknown":
            return (f"{environment} health unknown: no `honua test` recorded since its last change "
                    f"({ago} ago)")
        return f"{environment} has never been applied"


def assess(state: StateDocument | None, now: datetime | None = None) -> Health:
    """The environment's health from its event log (see the module docstring)."""
    now = now or utcnow()
    events = list(state.events) if state is not None else []
    changed = max((i for i, e in enumerate(events) if e.kind in CHANGES), default=None)
    if changed is None:
        return Health("never-applied")
    failed = max((i for i, e in enumerate(events) if is_failure(e)), default=None)
    start = changed if failed is None or failed < changed else failed
    passed = any(e.kind in CHECKS and e.details.get("ok") is True for e in events[start + 1:])
    at = events[start].at
    seconds = max(0.0, (now - at).total_seconds())
    if passed:
        return Health("healthy", at, seconds)
    if start == failed:
        return Health("failing", at, seconds, events[start].message or events[start].kind)
    return Health("unknown", at, seconds)
