"""``honua-ai schedule migration``: pick a deployment window and record it.

:func:`parse_window` understands ``next-tuesday 10:00-12:00`` (also ``next tue``,
``today``, ``tomorrow``) and ``2025-10-08 10:00-12:00``, in the time zone of the
environment's policy deployment window (UTC without one). :func:`policy_fit` says
whether the window lies inside the policy's windows and outside its blackouts. The
schedule is recorded as a ``schedule`` event in the environment's state, under the
state lock; nothing runs by itself at that time (there is no scheduler), and there is
no notifier, which the checklist says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from honua_plan.config.models import Policy
from honua_plan.errors import UsageError

if TYPE_CHECKING:
    from honua_plan.config.desired import DesiredState
    from honua_plan.config.models import Migration
    from honua_plan.context import Context

_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_WINDOW_RE = re.compile(
    r"^\s*(?P<day>next[-\s]+[a-z]+|today|tomorrow|\d{4}-\d{2}-\d{2})\s+"
    r"(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Window:
    start: datetime  # aware, in the window's time zone
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def policy_timezone(policy: Policy | None) -> str:
    if policy is not None and policy.spec.deploymentWindows:
        return policy.spec.deploymentWindows[0].timezone
    return "UTC"


def _hhmm(text: str) -> time:
    h, m = (int(x) for x in text.split(":"))
    if not (0 <= h <= 23 and 0 <= m <= 59):
        raise UsageError(f"{text!r} is not a time of day (HH:MM, 24h)")
    return time(h, m)


def parse_window(text: str, *, tz: str, now: datetime) -> Window:
    """``next-tuesday 10:00-12:00`` → the next Tuesday after today (in ``tz``), 10:00 to 12:00."""
    m = _WINDOW_RE.match(text)
    if not m:
        raise UsageError(f"cannot read the window {text!r}",
                         hint='use "next-tuesday 10:00-12:00" or "2025-10-08 10:00-12:00"')
    zone = ZoneInfo(tz)
    today = now.astimezone(zone).date()
    day_text = m.group("day").lower()
    day: date
    if day_text == "today":
        day = today
    elif day_text == "tomorrow":
        day = today + timedelta(days=1)
    elif day_text.startswith("next"):
        name = re.split(r"[-\s]+", day_text, maxsplit=1)[1]
        wd = _DAYS.get(name[:3])
        if wd is None or not _full_day_name(name):
            raise UsageError(f"{name!r} is not a day of the week")
        ahead = (wd - today.weekday()) % 7 or 7
        day = today + timedelta(days=ahead)
    else:
        try:
            day = date.fromisoformat(day_text)
        except ValueError:
            raise UsageError(f"{day_text!r} is not a date (YYYY-MM-DD)") from None
    start = datetime.combine(day, _hhmm(m.group("start")), zone)
    end = datetime.combine(day, _hhmm(m.group("end")), zone)
    if end <= start:
        raise UsageError(f"the window {text!r} ends before it starts (windows across midnight are not supported)")
    if start <= now:
        raise UsageError(f"the window {text!r} starts in the past ({start:%Y-%m-%d %H:%M %Z})")
    return Window(start, end)


def _full_day_name(name: str) -> bool:
    names = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    return any(n.startswith(name) for n in names) and len(name) >= 3


def policy_fit(policy: Policy | None, window: Window) -> tuple[bool, str]:
    """(fits, why) — inside one of the policy's deployment windows and no blackout."""
    if policy is None or not policy.spec.deploymentWindows:
        fits, why = True, "no deployment windows in the policy"
    else:
        fits, why = False, ""
        for w in policy.spec.deploymentWindows:
            zone = ZoneInfo(w.timezone)
            start, end = window.start.astimezone(zone), window.end.astimezone(zone)
            days = {_DAYS[d[:3].lower()] for d in w.dayOfWeek}
            if start.date() == end.date() and start.weekday() in days and \
                    _hhmm(w.startTime) <= start.time() and end.time() <= _hhmm(w.endTime):
                fits, why = True, f"inside the deployment window ({_window_text(w)})"
                break
        if not fits:
            why = "outside the deployment windows (" + "; ".join(_window_text(w) for w in policy.spec.deploymentWindows) + ")"
    if policy is not None:
        for b in policy.spec.blackoutPeriods:
            if window.start < b.endDate and b.startDate < window.end:
                return False, f"overlaps the blackout period {b.name}" + (f" ({b.reason})" if b.reason else "")
    return fits, why


def _window_text(w: Any) -> str:
    return f"{', '.join(d[:3] for d in w.dayOfWeek)} {w.startTime}-{w.endTime} {w.timezone}"


def format_date(dt: datetime) -> str:
    """``Tuesday, Oct 8, 2025``."""
    return f"{dt:%A}, {dt:%b} {dt.day}, {dt.year}"


def format_time(dt: datetime) -> str:
    """``10:00 AM PDT``."""
    return f"{dt:%I:%M %p}".lstrip("0") + (f" {dt.tzname()}" if dt.tzname() else "")


def format_span(seconds: float) -> str:
    """``Up to 2 hours``, ``Up to 1 hour 30 minutes``, ``Up to 45 minutes``."""
    minutes = int(seconds // 60)
    h, m = divmod(minutes, 60)
    parts = []
    if h:
        parts.append(f"{h} hour{'s' if h != 1 else ''}")
    if m or not h:
        parts.append(f"{m} minute{'s' if m != 1 else ''}")
    return "Up to " + " ".join(parts)


def approval_line(policy: Policy | None, flag: bool) -> tuple[bool, str, list[str]]:
    """(required, text, approvers): the policy's approvers, or ``--approval-required``."""
    approvers = policy.spec.approval.group_names if policy is not None and policy.spec.approval else []
    required = flag or (policy is not None and (not policy.spec.autoApprove or policy.spec.approval is not None))
    if not required:
        return False, "Not required", approvers
    if len(approvers) == 1:
        return True, f"Required from {approvers[0]} team", approvers
    if approvers:
        return True, f"Required from one of: {', '.join(approvers)}", approvers
    return True, "Required (any reviewer: honua approve PLAN --by NAME)", approvers


@dataclass(frozen=True)
class ChecklistItem:
    ok: bool
    label: str
    text: str


def checklist(desired: DesiredState, migration: Migration, *, pg_dump: bool) -> list[ChecklistItem]:
    pol = desired.policy
    items: list[ChecklistItem] = []
    if pg_dump:
        items.append(ChecklistItem(True, "Backup database", "Automated"))
    elif pol is not None and pol.spec.requireBackup:
        items.append(ChecklistItem(False, "Backup database", "pg_dump is not installed: the policy will refuse the apply"))
    else:
        items.append(ChecklistItem(False, "Backup database", "not possible: pg_dump is not installed"))
    health = sum(len(lyr.spec.validation.healthChecks) for lyr in desired.layers.values())
    post_up = len(migration.spec.validation.post_up)
    if health or post_up:
        items.append(ChecklistItem(True, "Health check", "Automated"))
    else:
        items.append(ChecklistItem(False, "Health check", "none defined (no layer health checks, no post-up validation)"))
    if migration.spec.down:
        items.append(ChecklistItem(True, "Rollback plan", "Ready" + (" (automatic)" if migration.spec.rollback.automatic else "")))
    else:
        items.append(ChecklistItem(False, "Rollback plan", "none: the migration has no down steps"))
    return items


@dataclass(frozen=True)
class Scheduled:
    migration: Migration
    environment: str
    window: Window
    fits: bool
    why: str
    approval_required: bool
    approval_text: str
    checklist: list[ChecklistItem]
    serial: int


def schedule_migration(context: Context, migration_id: str, environment: str, window_text: str, *,
                       approval_required: bool = False, now: datetime | None = None) -> Scheduled:
    """Check and record a deployment window for a migration (a ``schedule`` event in the state)."""
    from honua_plan.providers.embedded.pgserver import pg_dump_available
    from honua_plan.state.model import utcnow

    desired = context.desired(environment)
    m = desired.migration(migration_id)
    if m is None:
        raise UsageError(f"no migration {migration_id} in migrations/")
    if m.metadata.environments and environment not in m.metadata.environments:
        raise UsageError(f"migration {m.stem} is not for {environment} (it lists {', '.join(m.metadata.environments)})")
    now = now or utcnow()
    window = parse_window(window_text, tz=policy_timezone(desired.policy), now=now)
    fits, why = policy_fit(desired.policy, window)
    required, text, approvers = approval_line(desired.policy, approval_required)
    items = checklist(desired, m, pg_dump=pg_dump_available())
    with context.backend(environment) as backend, backend.lock("honua-ai schedule") as writer:
        doc = writer.read()
        latest = doc.latest_migration(m.metadata.id)
        if latest is not None and latest.status == "applied":
            raise UsageError(f"migration {m.stem} is already applied in {environment}")
        doc = doc.record_event(
            "schedule",
            f"migration {m.metadata.id} scheduled for {window.start:%Y-%m-%d %H:%M}-{window.end:%H:%M} {window.start.tzname()}",
            actor=context.actor,
            details={
                "migration": m.metadata.id, "name": m.stem, "environment": environment,
                "start": window.start.isoformat(), "end": window.end.isoformat(),
                "timezone": str(window.start.tzinfo), "within_policy": fits, "policy": why,
                "approval_required": required, "approvers": approvers,
                "checklist": {i.label: {"ok": i.ok, "text": i.text} for i in items},
                "notification": "not configured",
            },
        )
        stored = writer.write(doc, expected_serial=doc.serial)
    return Scheduled(m, environment, window, fits, why, required, text, items, stored.serial)


def render_scheduled(s: Scheduled) -> list[str]:
    lines = [f"Scheduled deployment for migration {s.migration.metadata.id}:",
             f"  Environment: {s.environment}",
             f"  Date: {format_date(s.window.start)}",
             f"  Time: {format_time(s.window.start)}",
             f"  Duration: {format_span(s.window.seconds)}",
             f"  Approval: {s.approval_text}",
             "",
             "  Pre-deployment checklist:"]
    for i in s.checklist:
        lines.append(f"    - {i.label}: {'✓' if i.ok else '✗'} {i.text}")
    lines.append("    - ✗ Notifications: not configured (honua has no notifier: tell the stakeholders yourself)")
    return lines
