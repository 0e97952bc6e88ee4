"""Incident reports (Markdown, under the state folder) written after an automatic rollback."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from honua_plan.console import format_duration
from honua_plan.files import write_text_atomic
from honua_plan.plan.model import Action, Plan
from honua_plan.secrets import redact
from honua_plan.textsafe import md_code, md_fence, md_text

if TYPE_CHECKING:
    from honua_plan.config.desired import DesiredState


def recommendations(action: Action, reason: str) -> list[str]:
    """What to do next, derived from the failure and the action's risk findings."""
    recs: list[str] = []
    env = "the target environment"
    if "erformance" in reason:
        recs.append(f"Review query performance on {env}'s dataset (EXPLAIN ANALYZE with production-scale data)")
    for f in action.findings:
        if f.suggestion and f.code not in ("ENV001", "AI001", "PG104"):
            recs.append(f.suggestion.split(" (")[0] if f.code == "PG101" else f.suggestion)
    if any(f.code == "VAL001" for f in action.findings) or "erformance" in reason:
        recs.append("Test with production-scale data in staging")
    return list(dict.fromkeys(recs))


def write_incident_report(
    state_dir: Path,
    *,
    plan: Plan,
    action: Action,
    desired: DesiredState,
    reason: str,
    detail: str,
    status: str,
    seconds: float,
    irreversible: list[str],
    actor: str,
    backups: list[str],
    incident: str | None = None,
) -> Path:
    now = datetime.now(UTC)
    name = action.address.split(".", 1)[1].replace("::", "-").replace("/", "-")
    if action.kind == "validation":
        name = "health-checks"
    elif action.kind == "server":
        name = f"reload-{name}"
    folder = state_dir / "incidents"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{plan.environment}-rollback-{now:%Y%m%d-%H%M%S}.md"
    mig = desired.migration(name) if action.kind == "migration" else None
    lines = [
        f"# Incident{' ' + incident if incident else ''}: {md_text(action.address)} on {md_text(plan.environment)}",
        "",
        f"- **Migration:** {md_text(mig.stem)}" if mig else f"- **Action:** {md_text(action.address)}",
        f"- **Environment:** {md_text(plan.environment)}",
        f"- **Status:** {md_text(status)}",
        f"- **Reason:** {md_text(reason)}",
        f"- **Duration:** {format_duration(seconds)}",
        f"- **When:** {now:%Y-%m-%d %H:%M:%S} UTC",
        f"- **Who:** {md_text(actor)}",
        f"- **Plan:** {plan.id} (config commit {plan.config_commit or 'unknown'})",
        f"- **Risk at plan time:** {action.risk} {' '.join(f.code for f in action.findings)}",
        f"- **Backups:** {', '.join(backups) if backups else 'none taken'}",
        f"- **Restore from backup:** {backups[-1] if backups else 'none: no backup was taken for this environment'}"
        + (f" (`honua recover --env {plan.environment} --backup {backups[-1]}`)" if backups else ""),
        "",
        "## What failed",
        "",
        *md_fence(detail or reason),
        "",
        "## What was rolled back",
        "",
    ]
    lines += [f"- {md_text(op.name)}" for op in action.rollback] or ["- (no rollback operations)"]
    if irreversible:
        lines += ["", "## Not rolled back (irreversible)", ""]
        lines += [f"- {md_text(n)}: restore from backup with {md_code(f'honua recover --env {plan.environment} --latest-backup')}"
                  for n in irreversible]
    recs = recommendations(action, reason)
    if recs:
        lines += ["", "## Recommendations", ""] + [f"{i}. {md_text(r)}" for i, r in enumerate(recs, 1)]
    write_text_atomic(path, redact("\n".join(lines) + "\n"), what="incident report")
    return path
