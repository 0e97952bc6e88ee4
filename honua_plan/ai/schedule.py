"""``honua-ai schedule migration``: pick a deployment window and record it.

:func:`parse_window` understands ``next-tuesday 10:00-12:00`` (also ``next tue``,
``today``, ``tomorrow``) and ``2025-10-08 10:00-12:00``, in the time zone of the
environment's policy deployment window (UTC without one). :func:`policy_fit` says
whether the window lies inside the policy's windows and outside its blackouts. The
schedule is recorded as a ``schedule`` event in the environment's state, under the
state lock; ``honua schedule run`` (cron) deploys it inside the window. Where an approval
is required, the stakeholders the policy names for ``approval-needed`` are notified, and
the checklist says whether that was delivered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from honua_plan.errors import UsageError
from honua_plan.plan.windows import Window, approval_line, parse_window, policy_fit, policy_timezone

if TYPE_CHECKING:
    from honua_plan.config.desired import DesiredState
    from honua_plan.config.models import Migration
    from honua_plan.context import Context

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
    notification: str = "✗ Notifications: not configured (the policy lists no URL for approval-needed)"


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
            },
        )
        stored = writer.write(doc, expected_serial=doc.serial)
    line = "✗ Notifications: not configured (the policy lists no URL for approval-needed)"
    if required:
        from honua_plan.apply.notify import notify

        delivery = notify(desired.policy, "approval-needed", environment=environment, actor=context.actor,
                          title=f"honua approval-needed: migration {m.metadata.id} on {environment}",
                          lines=[f"Scheduled: {window.start:%Y-%m-%d %H:%M}-{window.end:%H:%M} {window.start.tzname()}",
                                 f"Approval: {text}", f"Schedule: SCH-{stored.serial}"])
        if delivery.line is not None:
            line = ("Notification: ✓ " if not delivery.failed else "Notification: ✗ ") + delivery.line
    else:
        line = "- Notifications: none sent (no approval is required)"
    return Scheduled(m, environment, window, fits, why, required, text, items, stored.serial, line)


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
    lines.append(f"    - {s.notification}")
    return lines
