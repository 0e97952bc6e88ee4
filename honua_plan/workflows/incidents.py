"""Incidents: automatic rollbacks, failed deployments and recoveries, each with an id
``INC-YYYYMMDD-NNN`` recorded in the environment's state and a report under
``<state>/incidents/`` (kept with the state by the postgres backend)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from honua_plan.errors import UsageError

if TYPE_CHECKING:
    from honua_plan.state.model import IncidentRecord
    from honua_plan.workspace import Workspace


def log_incident(ws: Workspace, environment: str, *, kind: str, summary: str, report: Path | None,
                 plan_id: str | None = None, command: str = "honua incident") -> str:
    """Record an incident under the state lock; its id (never reused in the environment)."""
    from honua_plan.state.model import IncidentRecord

    rel = None
    if report is not None:
        try:
            rel = report.resolve().relative_to(ws.state_dir.resolve()).as_posix()
        except ValueError:
            rel = str(report)
    with ws.backend(environment).lock(command) as writer:
        doc = writer.read()
        incident = doc.next_incident_id()
        writer.write(doc.with_incident(IncidentRecord(id=incident, kind=kind, summary=summary, report=rel,
                                                      plan_id=plan_id)), expected_serial=doc.serial)
    return incident


def incidents(ws: Workspace, environment: str | None = None) -> list[tuple[str, IncidentRecord]]:
    """(environment, incident) of one environment or all, oldest first."""
    envs = [environment] if environment else list(ws.project.spec.environments)
    out: list[tuple[str, IncidentRecord]] = []
    for env in envs:
        out += [(env, i) for i in ws.recorded(env, check=False).incidents]
    return sorted(out, key=lambda pair: pair[1].at)


def incident_report(ws: Workspace, environment: str, incident_id: str) -> tuple[IncidentRecord, str | None]:
    """The incident and its report's text (fetched from the state's store when not here)."""
    for env, rec in incidents(ws, environment):
        if rec.id == incident_id and env == environment:
            if rec.report is None:
                return rec, None
            path = ws.backend(environment).artifacts().fetch(ws.state_dir, rec.report)
            return rec, path.read_text(encoding="utf-8") if path.is_file() else None
    raise UsageError(f"no incident {incident_id} in {environment}",
                     hint=f"list them with `honua incidents list --env {environment}`")
