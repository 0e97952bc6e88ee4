"""``honua-ai explain PLAN``: a plain-language explanation of a saved plan.

Offline (the default) the explanation is built from the plan itself, deterministically:
what changes and why, the risks with their suggestions, the rollback, approvals and
policy, and what to check after apply. With ``litellm`` and ``HONUA_AI_MODEL`` the
model gets the plan's text render (already redacted, no SQL bodies) and writes the
explanation; if it fails, the offline one is printed and the mode line says why.
"""

from __future__ import annotations

from dataclasses import dataclass

from honua_plan.plan.model import Action, Plan
from honua_plan.plan.render import format_estimate, render_text, summary_line
from honua_plan.secrets import redact

_VERB = {
    "create": "Create", "update": "Update", "delete": "Delete", "replace": "Replace (delete, then create)",
    "apply": "Apply", "reload": "Reload", "validate": "Validate", "no-op": "Keep",
}
_LEVELS = ("LOW", "MEDIUM", "HIGH", "CRITICAL")

SYSTEM_PROMPT = (
    "You explain change plans of a GIS configuration and its PostGIS database to the people "
    "who must approve them. Use plain language, short paragraphs and lists. Cover: what changes, "
    "why, the risks and what to do about each, how it is rolled back, who must approve, and what "
    "to check after apply. Do not invent steps that are not in the plan."
)


@dataclass(frozen=True)
class Explanation:
    mode: str  # the one line that says which mode was used
    text: str


def _subject(a: Action) -> str:
    kind, _, name = a.address.partition(".")
    if kind == "migration":
        return f"migration {name}"
    if kind == "layer":
        return f"layer {name}"
    return f"{kind} {name}" if name else a.address


def _what(plan: Plan) -> list[str]:
    lines = [f"What changes ({len(plan.actions)} action{'s' if len(plan.actions) != 1 else ''}: "
             f"{summary_line(plan)}; estimated {format_estimate(plan.estimated_s)}):"]
    for i, a in enumerate(plan.actions, 1):
        lines.append(f"  {i}. {_VERB.get(a.action, a.action)} {_subject(a)} — why: {a.reason}")
        steps = [o.name for o in a.operations if o.kind != "record"]
        if steps:
            lines.append(f"     Steps: {'; '.join(steps)}")
        if a.changed_paths:
            lines.append(f"     Changed: {', '.join(a.changed_paths[:8])}{' …' if len(a.changed_paths) > 8 else ''}")
        if a.backup_tables:
            lines.append(f"     A backup of {', '.join(a.backup_tables)} is taken first (pg_dump).")
    return lines


def _risks(plan: Plan) -> list[str]:
    findings = [(a, f) for a in plan.actions for f in a.findings]
    findings.sort(key=lambda af: -_LEVELS.index(af[1].level))
    lines = [f"Risks (overall: {plan.risk}):"]
    if not findings:
        lines.append("  None found by the risk rules.")
    seen: set[tuple[str, str]] = set()
    for a, f in findings:
        if (f.code, f.message) in seen:
            continue
        seen.add((f.code, f.message))
        extra = " It cannot be undone automatically." if f.irreversible else ""
        lines.append(f"  - {f.level} {f.code} ({_subject(a)}): {f.message}.{extra}")
        if f.suggestion:
            lines.append(f"    Suggestion: {f.suggestion}")
    for w in plan.warnings:
        lines.append(f"  - Warning: {w}")
    return lines


def _rollback(plan: Plan) -> list[str]:
    lines = ["Rollback:"]
    bookkeeping = [a for a in plan.actions if a.rollback and all(o.kind == "record" for o in a.rollback)
                   and not a.irreversible]
    for a in plan.actions:
        if a in bookkeeping:
            continue
        steps = ", ".join(o.name for o in a.rollback)
        if a.irreversible or any(o.irreversible for o in a.rollback):
            backup = f"; restore from the backup of {', '.join(a.backup_tables)}" if a.backup_tables else ""
            lines.append(f"  - {_subject(a)}: not reversible automatically{backup}"
                         + (f" (manual steps: {steps})" if steps else ""))
        elif a.rollback and a.automatic_rollback:
            lines.append(f"  - {_subject(a)}: automatic if a step, validation or health check fails: {steps}")
        elif a.rollback:
            lines.append(f"  - {_subject(a)}: on request (`honua apply --rollback` after a failure): {steps}")
    if bookkeeping:
        lines.append(f"  - {', '.join(_subject(a) for a in bookkeeping)}: recorded in the state only; "
                     "undone by `honua apply --rollback` after a failure")
    if len(lines) == 1:
        lines.append("  Nothing to roll back.")
    return lines


def _approvals(plan: Plan) -> list[str]:
    lines = ["Approvals and policy:"]
    if plan.approvals_required:
        who = f" from {', '.join(plan.approvers)}" if plan.approvers else ""
        have = ", ".join(a.by for a in plan.approvals) or "none yet"
        lines.append(f"  - Needs {plan.approvals_required} approval(s){who}; given: {have}"
                     + ("" if plan.approved else " → `honua approve PLAN --by NAME`"))
    else:
        lines.append("  - No approval required.")
    marks = {"pass": "✓", "fail": "✗", "warn": "⚠", "skip": "-"}
    for p in plan.policy:
        lines.append(f"  {marks[p.status]} {p.message}")
    blocked = [p.message for p in plan.policy if p.status == "fail"]
    if blocked:
        lines.append("  Apply is refused until these pass: " + "; ".join(blocked))
    lines.append(f"  Proposed by: {plan.provenance.kind}" + (f" ({plan.provenance.actor})" if plan.provenance.actor else ""))
    return lines


def _after(plan: Plan) -> list[str]:
    env = plan.environment
    lines = ["After apply, check:"]
    checks = [(a, c) for a in plan.actions for c in a.checks if c.phase != "post-down"]
    for a, c in checks:
        line = f"  - {c.name}: expected {c.expected} ({_subject(a)}; apply runs it)"
        if c.predicted_failure:
            line += f" — predicted to fail: {c.predicted_failure}"
        lines.append(line)
    if any(a.kind in ("layer", "service") for a in plan.actions):
        lines.append(f"  - the served layers: `honua test --env {env}`")
    lines.append(f"  - nothing changed outside honua: `honua drift --env {env}`")
    lines.append(f"  - the history: `honua state history --env {env}`")
    return lines


def explain_offline(plan: Plan) -> str:
    """The deterministic explanation (depends on the plan only)."""
    head = (f"Plan {plan.id[:12]} for {plan.environment}, made {plan.created_at:%Y-%m-%d %H:%M} UTC"
            + (f" from commit {plan.config_commit[:12]}" if plan.config_commit else "")
            + f" against state serial {plan.state_serial}.")
    if not plan.actions:
        return redact(f"{head}\nIt changes nothing: the {plan.environment} environment matches the configuration.\n")
    lines = [head, ""]
    if plan.target:
        lines += [f"It is a partial plan, limited to {', '.join(plan.target)} and what they need.", ""]
    for part in (_what(plan), _risks(plan), _rollback(plan), _approvals(plan), _after(plan)):
        lines += [*part, ""]
    return redact("\n".join(lines).rstrip("\n") + "\n")


def explain(plan: Plan) -> Explanation:
    """The engine's own explanation (risk, rollback, approvals) always, first; a configured
    model's wording after it, marked as the model's. A model that fails raises
    :class:`~honua_plan.errors.AIModelFailed` (the caller says so and exits non-zero)."""
    from honua_plan.ai import llm

    st = llm.status()
    own = explain_offline(plan)
    if not st.available:
        return Explanation(st.mode_line, own)
    summary = render_text(plan)  # redacted, no SQL bodies
    answer = llm.complete(SYSTEM_PROMPT, "Explain this plan:\n\n" + summary)
    cut = "\n(cut off at the model's token limit)" if answer.truncated else ""
    return Explanation(st.mode_line, own.rstrip("\n") + f"\n\nIn the words of the model {answer.model} "
                       "(not checked by the engine):\n" + answer.text.rstrip("\n") + cut + "\n")
