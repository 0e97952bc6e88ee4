"""``honua-ai migrate plan``: plan pending migrations in every environment, in promotion order.

:func:`analyze` does the I/O (one targeted :meth:`Context.plan` per environment; an
environment whose database cannot be read gets its error and the others go on);
:func:`render_block` is pure and prints the seed's block: the analysis header,
"Deployment Plan:", then per environment its steps, rollback plan, risk (with the
reason when production raised it), estimate, automatic rollback and approvals, and
"[Same as dev]" when an environment would run exactly the steps of an earlier one; each
environment's findings as ``honua plan`` prints them (:func:`findings_text`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from honua_plan.errors import HonuaError, PlanError, UsageError
from honua_plan.plan.model import Action, Operation, Plan
from honua_plan.plan.render import RULE, findings_text, format_estimate

if TYPE_CHECKING:
    from honua_plan.context import Context

PENDING = ("pending", "rolled_back", "failed")


@dataclass
class EnvResult:
    environment: str
    targets: tuple[str, ...] = ()
    plan: Plan | None = None
    error: str | None = None
    precondition_error: bool = False
    note: str | None = None  # nothing to do here, and why
    same_as: str | None = None


@dataclass
class Analysis:
    migrations: list[str] = field(default_factory=list)  # stems, in order
    dependencies: list[str] = field(default_factory=list)  # problems; empty = satisfied
    planned_first: list[str] = field(default_factory=list)  # pending dependencies planned with them
    environments: list[EnvResult] = field(default_factory=list)

    @property
    def first(self) -> EnvResult | None:
        """The first environment (in promotion order) with migrations to deploy, planned or not."""
        return next((e for e in self.environments if e.targets), None)

    def to_json(self) -> dict[str, Any]:
        from honua_plan.plan.render import render_json

        return {
            "format_version": 1,
            "migrations": self.migrations,
            "dependencies": {"satisfied": not self.dependencies, "problems": self.dependencies,
                             "planned_first": self.planned_first},
            "environments": [
                {"environment": e.environment, "targets": list(e.targets), "error": e.error, "note": e.note,
                 "same_as": e.same_as, "plan": json.loads(render_json(e.plan)) if e.plan is not None else None}
                for e in self.environments
            ],
        }


def analyze_migrations(context: Context, migration: str | None = None) -> Analysis:
    """Plan the pending migrations (or ``migration`` with its pending dependencies) per environment."""
    envs = list(context.load()[0].project.spec.environments)
    out = Analysis()
    wanted = None
    if migration is not None:
        m = context.desired(envs[0]).migration(migration)
        if m is None:
            raise UsageError(f"no migration {migration} in migrations/")
        wanted = m
    stems: dict[str, str] = {}
    deps_done = False
    for env in envs:
        desired = context.desired(env)
        res = EnvResult(env)
        out.environments.append(res)
        rows = {r["id"]: r for r in context.migrate_status(env)}
        if wanted is not None:
            row = rows[wanted.metadata.id]
            if row["status"] == "not for this environment":
                res.note = f"migration {wanted.stem} is not for {env}"
                continue
            if row["status"] not in PENDING:
                res.note = f"{wanted.stem} already {row['status'].replace('_', ' ')}" + (
                    f" ({row['applied_at'][:19].replace('T', ' ')})" if row.get("applied_at") else "")
                continue
            ids = [wanted.metadata.id]
        else:
            ids = [mid for mid, r in rows.items() if r["status"] in PENDING]
            if not ids:
                res.note = "no pending migrations"
                continue
        for mid in ids:
            m = desired.migration(mid)
            if m is not None:
                stems.setdefault(m.metadata.id, m.stem)
        res.targets = tuple(f"migration.{mid}" for mid in ids)
        if not deps_done:
            _dependencies(context, env, ids, rows, out)
            deps_done = True
        try:
            res.plan = context.plan(env, target=res.targets)
        except HonuaError as exc:
            res.error = exc.message + (f" ({exc.hint})" if exc.hint else "")
            res.precondition_error = isinstance(exc, PlanError) and "precondition" in exc.message
    order = {m.metadata.id: i for i, m in enumerate(context.desired(envs[0]).migrations)}
    out.migrations = [stems[k] for k in sorted(stems, key=lambda k: order.get(k, len(order)))]
    _mark_same(out)
    return out


def _dependencies(context: Context, env: str, ids: list[str], rows: dict[str, dict[str, Any]], out: Analysis) -> None:
    """The dependency verdict, from the first environment that has work."""
    desired = context.desired(env)
    targets = set(ids)
    for mid in ids:
        m = desired.migration(mid)
        if m is None:
            continue
        for dep in m.spec.dependencies:
            d = desired.migration(dep)
            if d is None:
                out.dependencies.append(f"{m.stem} needs {dep}, which does not exist")
                continue
            status = rows.get(d.metadata.id, {}).get("status")
            if status == "applied" or d.metadata.id in targets:
                continue
            if status in PENDING:
                out.planned_first.append(d.stem)
            else:
                out.dependencies.append(f"{m.stem} needs {d.stem} ({status or 'unknown'} in {env})")


def _signature(plan: Plan) -> list[tuple[Any, ...]]:
    sig: list[tuple[Any, ...]] = []
    for a in _shown_actions(plan):
        sig.append((a.address, tuple((o.kind, o.name, o.sql) for o in _ops(a)),
                    tuple(o.name for o in a.rollback)))
    return sig


def _mark_same(out: Analysis) -> None:
    seen: list[tuple[str, list[tuple[Any, ...]]]] = []
    for res in out.environments:
        if res.plan is None or not res.plan.has_changes:
            continue
        sig = _signature(res.plan)
        res.same_as = next((env for env, s in seen if s == sig), None)
        if res.same_as is None:
            seen.append((res.environment, sig))


# --------------------------------------------------------------------------- render (pure)


def _ops(action: Action) -> list[Operation]:
    return [o for o in action.operations if o.kind != "record"]


def _shown_actions(plan: Plan) -> list[Action]:
    """Actions with real steps (a datasource recorded in state is bookkeeping)."""
    return [a for a in plan.actions if _ops(a) or a.kind == "migration"]


def risk_text(plan: Plan) -> str:
    """``LOW``, ``MEDIUM (production environment)``, ``HIGH (PG101)``."""
    at_level = [f for a in plan.actions for f in a.findings if f.level == plan.risk]
    env = [f for f in at_level if f.code == "ENV001"]
    others = [f for a in plan.actions for f in a.findings if f.code != "ENV001"]
    levels = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
    below = max((levels.index(f.level) for f in others), default=0) < levels.index(plan.risk)
    if env and below:
        return f"{plan.risk} (production environment)"
    if plan.risk == "LOW":
        return plan.risk
    codes = list(dict.fromkeys(f.code for f in at_level if f.code != "ENV001"))
    return f"{plan.risk} ({', '.join(codes)})" if codes else plan.risk


def approval_text(plan: Plan) -> str | None:
    if not plan.approvals_required:
        return None
    who = f" from {', '.join(plan.approvers)}" if plan.approvers else ""
    return f"YES ({plan.approvals_required}{who})"


def _steps_lines(plan: Plan) -> list[str]:
    lines: list[str] = []
    actions = _shown_actions(plan)
    grouped = sum(1 for a in actions if a.kind == "migration") > 1 or any(a.kind != "migration" for a in actions)
    n = 0
    for a in actions:
        ops = _ops(a)
        if grouped:
            label = a.address.removeprefix("migration.") if a.kind == "migration" else a.address
            lines.append(f"  {label}:" if a.kind != "migration" else f"  Migration {label}: {a.reason}")
        for op in ops:
            n += 1
            lines.append(f"  {'  ' if grouped else ''}Step {n}: {op.name} (estimated: {format_estimate(op.estimated_s)})")
    rollback = [(a, op) for a in reversed(actions) for op in a.rollback]
    lines.append("")
    lines.append("  Rollback Plan:")
    if rollback:
        for _a, op in rollback:
            extra = " [irreversible: restore from backup]" if op.irreversible else ""
            lines.append(f"    - {op.name}{extra}")
    else:
        lines.append("    - none")
    return lines


def render_block(out: Analysis) -> list[str]:
    """The seed's "Analyzing migration … Deployment Plan" block, one line per item."""
    lines = [f"Analyzing migration: {stem}" for stem in out.migrations]
    if not out.migrations:
        lines.append("No pending migrations in any environment.")
        return lines
    if out.dependencies:
        lines.append("Dependencies: ✗ " + "; ".join(out.dependencies))
    elif out.planned_first:
        lines.append(f"Dependencies: ✓ All satisfied (pending, planned first: {', '.join(out.planned_first)})")
    else:
        lines.append("Dependencies: ✓ All satisfied")
    lines.append(_preconditions(out))
    lines += ["", "Deployment Plan:", RULE]
    ref: dict[str, Plan] = {}
    for res in out.environments:
        lines.append(f"Environment: {res.environment}")
        if res.error is not None:
            lines.append(f"  ✗ {res.error}")
            lines.append("")
            continue
        if res.plan is None or not res.plan.has_changes:
            lines.append(f"  Nothing to do: {res.note or 'no changes'}")
            lines.append("")
            continue
        plan = res.plan
        if res.same_as is not None:
            lines.append(f"  [Same as {res.same_as}]")
            lines.append(f"  Risk Level: {risk_text(plan)}")
            if format_estimate(plan.estimated_s) != format_estimate(ref[res.same_as].estimated_s):
                lines.append(f"  Estimated Duration: {format_estimate(plan.estimated_s)}")
        else:
            ref[res.environment] = plan
            lines += _steps_lines(plan)
            lines.append("")
            lines.append(f"  Risk Level: {risk_text(plan)}")
            lines.append(f"  Estimated Duration: {format_estimate(plan.estimated_s)}")
            lines.append(f"  Automatic Rollback: {plan.rollback_summary}")
        approval = approval_text(plan)
        if approval:
            lines.append(f"  Approval Required: {approval}")
        for p in plan.policy:
            if p.status == "fail":
                lines.append(f"  Policy: ✗ {p.message}")
        findings = findings_text(plan, "    ")
        if findings:  # the plan's own findings, each environment's (VAL001 depends on its rows)
            lines += ["  Findings:", *findings]
        lines.append("")
    while lines and lines[-1] == "":
        lines.pop()
    return lines


def _preconditions(out: Analysis) -> str:
    for res in out.environments:
        if res.precondition_error:
            return f"Pre-conditions: ✗ {res.error} ({res.environment})"
    first = next((e for e in out.environments if e.plan is not None), None)
    if first is None or first.plan is None:
        return "Pre-conditions: ? not checked (no environment could be planned)"
    checked = [p for a in first.plan.actions for p in a.preconditions]
    deferred = [d for a in first.plan.actions for d in a.deferred]
    if not checked:
        return "Pre-conditions: ✓ None declared"
    if deferred:
        return f"Pre-conditions: ✓ All met ({len(deferred)} checked at apply: the plan creates what they need)"
    return "Pre-conditions: ✓ All met"
