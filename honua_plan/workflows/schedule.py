"""Schedules that run: ``honua schedule migration|apply|list|cancel|run``.

A schedule is a ``schedule`` event in the environment's state (``honua-ai schedule
migration`` writes the same): what to deploy (a migration, or the whole environment),
the window, whether an approval is required (and then the saved plan to apply, by id).
Its id is ``SCH-<serial>`` of the write that recorded it. ``honua schedule run`` (from
cron, a systemd timer or the ``schedule.yml`` workflow, every few minutes) executes each
due entry once: only inside its window and the policy's deployment windows, with the
approvals of its saved plan verified by apply as always.

Running twice at once is safe: a runner claims an entry under the state lock (a
``schedule-run`` event with outcome ``started``) before deploying it; another runner sees
the claim and leaves the entry alone. The outcome (``applied``, ``failed``, ``missed``:
the window ended before a runner came) is recorded the same way. The clock is a
parameter (``now``), so tests control it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from honua_plan.errors import HonuaError, StateLockedError, UsageError

if TYPE_CHECKING:
    from honua_plan.state.model import Event, StateDocument
    from honua_plan.workspace import Workspace


@dataclass(frozen=True)
class Entry:
    id: str
    environment: str
    what: str  # "migration 003" | "apply"
    migration: str | None
    start: datetime
    end: datetime
    approval_required: bool
    plan_id: str | None
    status: str  # scheduled | started | applied | failed | missed | cancelled

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "environment": self.environment, "what": self.what, "migration": self.migration,
                "start": self.start.isoformat(), "end": self.end.isoformat(),
                "approval_required": self.approval_required, "plan_id": self.plan_id, "status": self.status}


def entries(doc: StateDocument) -> list[Entry]:
    """The schedules recorded in ``doc``, with their status from the later events."""
    status: dict[str, str] = {}
    for ev in doc.events:
        sid = str(ev.details.get("schedule") or "")
        if ev.kind == "schedule-run" and sid:
            status[sid] = str(ev.details.get("outcome") or "started")
        elif ev.kind == "schedule-cancel" and sid:
            status[sid] = "cancelled"
    out = []
    for ev in doc.events:
        if ev.kind != "schedule" or "start" not in ev.details:
            continue
        out.append(_entry(ev, doc.environment, status))
    return out


def _entry(ev: Event, environment: str, status: dict[str, str]) -> Entry:
    sid = f"SCH-{ev.serial}"
    mid = ev.details.get("migration")
    return Entry(sid, environment, f"migration {mid}" if mid else "apply", str(mid) if mid else None,
                 datetime.fromisoformat(str(ev.details["start"])), datetime.fromisoformat(str(ev.details["end"])),
                 bool(ev.details.get("approval_required")), ev.details.get("plan_id") or None,
                 status.get(sid, "scheduled"))


def schedule_apply(ws: Workspace, environment: str, window_text: str, *, approval_required: bool = False,
                   plan_id: str | None = None, now: datetime | None = None) -> Entry:
    """Record a deployment of the whole environment in a window (``honua schedule apply``)."""
    from honua_plan.plan.windows import approval_line, parse_window, policy_fit, policy_timezone
    from honua_plan.state.model import utcnow

    desired = ws.desired(environment)
    window = parse_window(window_text, tz=policy_timezone(desired.policy), now=now or utcnow())
    fits, why = policy_fit(desired.policy, window)
    required, _text, approvers = approval_line(desired.policy, approval_required)
    if required and not plan_id:
        raise UsageError("an approval is required: give the saved, approved plan with --plan PLAN_ID",
                         hint=f"honua plan --env {environment} --out plan.json, then honua approve plan.json --by NAME")
    with ws.backend(environment).lock("honua schedule apply") as writer:
        doc = writer.read()
        doc = doc.record_event("schedule", f"apply of {environment} scheduled for "
                               f"{window.start:%Y-%m-%d %H:%M}-{window.end:%H:%M} {window.start.tzname()}",
                               actor=ws.actor, details={
                                   "environment": environment, "start": window.start.isoformat(),
                                   "end": window.end.isoformat(), "timezone": str(window.start.tzinfo),
                                   "within_policy": fits, "policy": why, "approval_required": required,
                                   "approvers": approvers, "plan_id": plan_id})
        stored = writer.write(doc, expected_serial=doc.serial)
    return entries(stored)[-1]


def list_entries(ws: Workspace, environment: str | None = None) -> list[Entry]:
    envs = [environment] if environment else list(ws.project.spec.environments)
    return [e for env in envs for e in entries(ws.recorded(env, check=False))]


def cancel(ws: Workspace, environment: str, schedule_id: str) -> Entry:
    with ws.backend(environment).lock("honua schedule cancel") as writer:
        doc = writer.read()
        found = next((e for e in entries(doc) if e.id == schedule_id), None)
        if found is None:
            raise UsageError(f"no schedule {schedule_id} in {environment}")
        if found.status != "scheduled":
            raise UsageError(f"schedule {schedule_id} is {found.status}: only a waiting one can be cancelled")
        doc = doc.record_event("schedule-cancel", f"schedule {schedule_id} cancelled", actor=ws.actor,
                               details={"schedule": schedule_id})
        writer.write(doc, expected_serial=doc.serial)
    return found


@dataclass(frozen=True)
class RunOutcome:
    entry: Entry
    outcome: str  # applied | failed | missed | waiting | outside-policy | claimed-elsewhere
    message: str = ""


def run_due(ws: Workspace, *, now: datetime, environment: str | None = None) -> list[RunOutcome]:
    """Execute every entry whose window holds ``now`` (once); mark those whose window ended."""
    from honua_plan.plan.windows import Window, policy_fit

    out: list[RunOutcome] = []
    envs = [environment] if environment else list(ws.project.spec.environments)
    for env in envs:
        for entry in entries(ws.recorded(env, check=False)):
            if entry.status != "scheduled":
                continue
            if now < entry.start:
                out.append(RunOutcome(entry, "waiting", f"starts {entry.start.isoformat()}"))
                continue
            if now >= entry.end:
                if _claim(ws, entry, "missed", now):
                    out.append(RunOutcome(entry, "missed", "the window ended before a runner came"))
                continue
            fits, why = policy_fit(ws.desired(env).policy, Window(now, now))
            if not fits:
                out.append(RunOutcome(entry, "outside-policy", why))
                continue
            if not _claim(ws, entry, "started", now):
                out.append(RunOutcome(entry, "claimed-elsewhere", "another runner took it"))
                continue
            outcome, message = _deploy(ws, entry)
            _claim(ws, entry, outcome, now, message=message, force=True)
            out.append(RunOutcome(entry, outcome, message))
    return out


def _claim(ws: Workspace, entry: Entry, outcome: str, now: datetime, *, message: str = "",
           force: bool = False) -> bool:
    """Record ``outcome`` for the entry under the lock; False when another runner got there first."""
    try:
        with ws.backend(entry.environment).lock("honua schedule run", timeout=10) as writer:
            doc = writer.read()
            current = next((e for e in entries(doc) if e.id == entry.id), None)
            if current is None or (current.status != "scheduled" and not force):
                return False
            doc = doc.record_event("schedule-run", f"schedule {entry.id} ({entry.what}): {outcome}"
                                   + (f": {message}" if message else ""), actor=ws.actor,
                                   details={"schedule": entry.id, "outcome": outcome, "at": now.isoformat()})
            writer.write(doc, expected_serial=doc.serial)
            return True
    except StateLockedError:
        return False


def _deploy(ws: Workspace, entry: Entry) -> tuple[str, str]:
    """Apply the entry; (outcome, message). Errors are outcomes here, recorded, not raised."""
    from pathlib import Path

    from honua_plan.workflows.apply import apply

    env = entry.environment
    try:
        ws._reload_desired(env)
        if entry.plan_id:
            result = apply(ws, env, Path(entry.plan_id), yes=True, command=f"honua schedule run {entry.id}")
        else:
            target = (ws.migration_address(env, entry.migration),) if entry.migration else ()
            plan = ws.plan(env, target=target)
            if plan.approvals_required and not plan.approved:
                return "failed", (f"the plan needs {plan.approvals_required} approval(s): schedule it with "
                                  "--plan PLAN_ID of an approved plan")
            result = apply(ws, env, plan=plan, yes=True, command=f"honua schedule run {entry.id}", show=False)
    except HonuaError as exc:
        return "failed", exc.message
    if result is None:
        return "applied", "nothing to change"
    return ("applied", f"{len(result.outcomes)} action(s)") if result.ok else ("failed", "the apply failed")
