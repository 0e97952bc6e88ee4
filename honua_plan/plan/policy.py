"""Policies turn risk into requirements: approvals, windows, cooldown, backups. Pure."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from honua_plan.config.models import Policy
from honua_plan.config.paths import PROJECT_FILE
from honua_plan.console import format_duration
from honua_plan.plan.model import Action, FindingRecord, Operation, PolicyBase, PolicyCheck
from honua_plan.plan.rules import Finding, finding
from honua_plan.state.model import StateDocument

if TYPE_CHECKING:
    from honua_plan.config.desired import DesiredState
    from honua_plan.config.policybase import Judge

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


# --------------------------------------------------------------------------- the judging policy


def judged_changes(desired: DesiredState, judge: Judge,
                    finish: Callable[[list[Finding], str], tuple[str, list[FindingRecord]]]) -> list[Action]:
    """The change of the policy or honua.yaml itself (POL101, CRITICAL): what the base's
    approvers approve. Applying it records the commit, which then judges the next plan."""
    out: list[Action] = []
    for address, kind, files in ((f"policy.{desired.environment}", "policy",
                                  [p for p in judge.changed if p != PROJECT_FILE]),
                                 (f"project.{desired.project.metadata.name}", "project",
                                  [p for p in judge.changed if p == PROJECT_FILE])):
        if not files:
            continue
        lvl, frs = finish([finding("POL101", address, files=", ".join(files), base=judge.source)], address)
        s = desired.source(address if kind == "policy" else "project")
        out.append(Action(
            address=address, kind=kind, action="update", changed_paths=files, risk=lvl, findings=frs,
            reason=f"{', '.join(files)} differ(s) from {judge.source}: this plan is judged by the base's policy",
            source=f"{s.locate(()).path}:{s.locate(()).line}" if s is not None else files[0],
            operations=[Operation(kind="record", name=f"Record {kind}: {address.split('.', 1)[1]} (the deployed commit)")],
        ))
    return out


def policy_base_record(judge: Judge | None) -> PolicyBase | None:
    if judge is None:
        return None
    return PolicyBase(revision=judge.revision, source=judge.source, digest=judge.digest, changed=list(judge.changed))


def policy_line(judge: Judge | None, desired: DesiredState) -> list[PolicyCheck]:
    """Which policy judged the plan, said first among its policy checks (where there is one)."""
    if judge is None or (judge.policy is None and desired.policy is None and not judge.changed):
        return []
    return [PolicyCheck(name="policy-base", status="pass" if judge.revision else "warn",
                        message=f"Policy: from {judge.source}")]
