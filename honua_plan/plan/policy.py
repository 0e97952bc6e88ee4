"""Policies turn risk into requirements: approvals, windows, cooldown, backups. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from honua_plan.config.models import Policy
from honua_plan.console import format_duration
from honua_plan.plan.model import PolicyCheck
from honua_plan.state.model import StateDocument

LEVELS = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


def level_at_least(level: str, threshold: str) -> bool:
    return LEVELS.index(level) >= LEVELS.index(threshold)


def evaluate_policy(
    policy: Policy | None,
    *,
    risk: str,
    provenance: str,
    now: datetime,
    has_changes: bool,
    source_state: StateDocument | None,
    backup_needed: bool,
    pg_dump_available: bool,
) -> tuple[list[PolicyCheck], int, list[str]]:
    """Policy checks, the number of approvals required, and who may approve."""
    if policy is None:
        return [], 0, []
    spec = policy.spec
    checks: list[PolicyCheck] = []
    required = 0
    approvers: list[str] = []

    if spec.deploymentWindows:
        inside = [w for w in spec.deploymentWindows if _in_window(now, w.dayOfWeek, w.startTime, w.endTime, w.timezone)]
        if inside:
            checks.append(PolicyCheck(name="deployment-window", status="pass", message="Within deployment window"))
        else:
            w = spec.deploymentWindows[0]
            days = ", ".join(d[:3] for d in w.dayOfWeek)
            checks.append(PolicyCheck(
                name="deployment-window", status="fail",
                message=f"Outside deployment window ({days} {w.startTime}-{w.endTime} {w.timezone})",
            ))
    for b in spec.blackoutPeriods:
        if b.startDate <= now <= b.endDate:
            checks.append(PolicyCheck(name="blackout", status="fail", message=f"Blackout period {b.name}: {b.reason or ''}".strip()))

    if spec.approval is not None and has_changes:
        ap = spec.approval
        needs = level_at_least(risk, ap.requiredAt) or (provenance == "ai" and ap.aiProposals == "required")
        if needs or not spec.autoApprove:
            required = ap.minApprovals
            approvers = ap.group_names
            why = f"risk {risk} ≥ {ap.requiredAt}" if level_at_least(risk, ap.requiredAt) else (
                "proposed by the AI assistant" if provenance == "ai" else "autoApprove is off")
            who = f" from {', '.join(approvers)}" if approvers else ""
            checks.append(PolicyCheck(name="approval", status="warn",
                                      message=f"Approval requirement: {required} approval(s){who} ({why})"))
        else:
            checks.append(PolicyCheck(name="approval", status="pass", message="Approval requirement: none at this risk"))
    elif not spec.autoApprove and has_changes:
        required = 1
        checks.append(PolicyCheck(name="approval", status="warn", message="Approval requirement: 1 approval (autoApprove is off)"))

    if spec.cooldown is not None and has_changes:
        from honua_plan.state.health import assess

        cd = spec.cooldown
        health = assess(source_state, now)
        if health.status == "never-applied":
            checks.append(PolicyCheck(name="cooldown", status="fail",
                                      message=f"Cooldown period: {cd.sourceEnvironment} has never been applied"))
        elif health.status != "healthy":
            checks.append(PolicyCheck(name="cooldown", status="fail",
                                      message=f"Cooldown period: {health.describe(cd.sourceEnvironment)}"))
        elif (health.seconds or 0) >= cd.minimum:
            checks.append(PolicyCheck(name="cooldown", status="pass",
                                      message=f"Cooldown period: Satisfied ({cd.sourceEnvironment} healthy for "
                                              f"{format_duration(health.seconds or 0)})"))
        else:
            checks.append(PolicyCheck(name="cooldown", status="fail",
                                      message=f"Cooldown period: {cd.sourceEnvironment} healthy for "
                                              f"{format_duration(health.seconds or 0)}, needs {format_duration(cd.minimum)}"))
    if spec.requireBackup:
        if not backup_needed:
            checks.append(PolicyCheck(name="backup", status="pass", message="Backup requirement: Configured (no table touched)"))
        elif pg_dump_available:
            checks.append(PolicyCheck(name="backup", status="pass", message="Backup requirement: Configured (pg_dump before migrations)"))
        else:
            checks.append(PolicyCheck(name="backup", status="fail",
                                      message="Backup requirement: pg_dump is not installed, no backup can be taken"))
    return checks, required, approvers


def _in_window(now: datetime, days: Sequence[str], start: str, end: str, tz: str) -> bool:
    local = now.astimezone(ZoneInfo(tz))
    wanted = {_DAYS[d[:3].lower()] for d in days}
    if local.weekday() not in wanted:
        return False
    sh, sm = map(int, start.split(":"))
    eh, em = map(int, end.split(":"))
    minutes = local.hour * 60 + local.minute
    return sh * 60 + sm <= minutes < eh * 60 + em


def next_window_start(policy: Policy, now: datetime) -> datetime | None:
    """When the next deployment window opens (for messages and ``ai schedule``)."""
    best: datetime | None = None
    for w in policy.spec.deploymentWindows:
        tz = ZoneInfo(w.timezone)
        local = now.astimezone(tz)
        sh, sm = map(int, w.startTime.split(":"))
        for add in range(8):
            day = (local + timedelta(days=add)).replace(hour=sh, minute=sm, second=0, microsecond=0)
            if day.weekday() in {_DAYS[d[:3].lower()] for d in w.dayOfWeek} and day > local and (best is None or day < best):
                best = day
                break
    return best
