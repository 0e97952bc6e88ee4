"""Deployment windows: ``next-tuesday 10:00-12:00`` parsed in a policy's time zone, and
whether a window (or a moment) lies inside the policy's deployment windows and outside its
blackouts. Pure: used by scheduling (``honua schedule``, ``honua-ai schedule``) and by
``honua schedule run``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from honua_plan.config.models import Policy
from honua_plan.errors import UsageError

__all__ = ["Window", "approval_line", "parse_window", "policy_fit", "policy_timezone"]

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
