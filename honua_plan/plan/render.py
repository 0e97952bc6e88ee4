"""Render a :class:`~honua_plan.plan.model.Plan` as text, Markdown or JSON.

The three views are one unit: they share the symbols, counts, summaries and the redaction
that make text, a pull-request comment and JSON say the same about the same plan.

Pure functions: a plan in, a string out. The output is deterministic (it depends on
the plan only, never on the clock or the machine) and every renderer passes its
result through :func:`honua_plan.secrets.redact`, so no secret reaches a terminal, a
pull-request comment or a plan file.

* :func:`render_text` – the concise terminal view, in the seed's vocabulary
  ("Deployment Plan", "Rollback Plan:", "Risk Level:", "Estimated Duration:",
  "Automatic Rollback:", "Approval Required:"), with Terraform's symbols
  (``+`` create/apply, ``~`` update, ``-`` delete, ``-/+`` replace, ``↻`` reload,
  ``✓`` validate). Colour (``click.style``) only when asked for.
* :func:`render_markdown` – a pull-request comment: summary and risk tables, a mermaid
  graph of the changes, the policy checklist, approvals, the SQL and metadata diffs
  of each action and its rollback plan.
* :func:`render_json` – the versioned contract, ``Plan.model_dump_json(indent=2)``;
  it validates against :func:`~honua_plan.plan.model.plan_json_schema`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from honua_plan.errors import UsageError
from honua_plan.plan.model import Action, CheckRecord, DriftRecord, Operation, Plan, PolicyCheck
from honua_plan.secrets import might_change, redact
from honua_plan.textsafe import md_code, md_fence, md_text, one_line, terminal_text

__all__ = [
    "FORMATS",
    "SYMBOLS",
    "action_symbol",
    "content_digest",
    "finding_lines",
    "findings_text",
    "format_estimate",
    "redacted",
    "render",
    "render_json",
    "render_markdown",
    "render_text",
    "summary_line",
]

FORMATS = ("text", "markdown", "json")

RULE = "─" * 45

SYMBOLS: dict[str, str] = {
    "create": "+",
    "apply": "+",
    "update": "~",
    "delete": "-",
    "replace": "-/+",
    "reload": "↻",
    "validate": "✓",
    "no-op": " ",
}

_SYMBOL_STYLE: dict[str, dict[str, Any]] = {
    "+": {"fg": "green"},
    "~": {"fg": "yellow"},
    "-": {"fg": "red"},
    "-/+": {"fg": "magenta"},
    "↻": {"fg": "cyan"},
    "✓": {"fg": "cyan"},
}

_RISK_STYLE: dict[str, dict[str, Any]] = {
    "LOW": {"fg": "green"},
    "MEDIUM": {"fg": "yellow"},
    "HIGH": {"fg": "red"},
    "CRITICAL": {"fg": "red", "bold": True},
}

_POLICY_MARK = {"pass": "✓", "fail": "✗", "warn": "⚠", "skip": "-"}
_POLICY_STYLE: dict[str, dict[str, Any]] = {
    "pass": {"fg": "green"},
    "fail": {"fg": "red"},
    "warn": {"fg": "yellow"},
    "skip": {"dim": True},
}

_DRIFT_SYMBOL = {"modified": "~", "missing": "-", "unmanaged": "+"}

# always shown in the summary, in this order; the others only when non-zero
_CORE_COUNTS = ("apply", "create", "update", "delete")
_EXTRA_COUNTS = ("replace", "reload", "validate")

_REASON_WIDTH = 48
_VALUE_WIDTH = 60


# ---------------------------------------------------------------- shared helpers


def action_symbol(action: str) -> str:
    """Terraform-like symbol of an action (``+``, ``~``, ``-``, ``-/+``, ``↻``, ``✓``)."""
    return SYMBOLS.get(action, "?")


def format_estimate(seconds: float) -> str:
    """An estimate as the seed writes it: ``<1s``, ``5s``, ``2m``, ``1m 5s``, ``1h 10m``."""
    if seconds < 1:
        return "<1s"
    total = int(seconds + 0.5)
    if total < 60:
        return f"{total}s"
    minutes, sec = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m {sec}s" if sec else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m" if minutes else f"{hours}h"


def summary_line(plan: Plan) -> str:
    """``3 to apply, 2 to create, 0 to update, 0 to delete, 1 to reload; 1 unchanged``."""
    counts = plan.summary()
    parts = [f"{counts.get(k, 0)} to {k}" for k in _CORE_COUNTS]
    parts += [f"{counts[k]} to {k}" for k in _EXTRA_COUNTS if counts.get(k)]
    if plan.moved:
        parts.append(f"{len(plan.moved)} to move")
    return ", ".join(parts) + f"; {len(plan.no_ops)} unchanged"


def moved_lines(plan: Plan) -> list[str]:
    """``Moved: layer.a → layer.b`` per honua.yaml move the plan records."""
    return [f"Moved: {one_line(m.from_address)} → {one_line(m.to_address)} (recorded under the new address, not replaced)"
            for m in plan.moved]


def _unmanaged_lines(plan: Plan) -> list[str]:
    """What ``honua state rm`` forgot: left alone by apply, said so (not hidden among the unchanged)."""
    return [f"{one_line(n.address)}: {one_line(n.reason)}"
            for n in plan.no_ops if n.reason.startswith("unmanaged (state rm")]


def _approval_required(plan: Plan) -> str:
    if plan.approvals_required <= 0:
        return "NO"
    who = f" of {one_line(', '.join(plan.approvers))}" if plan.approvers else f" approval{'s' if plan.approvals_required != 1 else ''}"
    return f"YES ({plan.approvals_required}{who})"


def _approvals_line(plan: Plan) -> str | None:
    if not plan.approvals:
        return None
    names = one_line(", ".join(a.by for a in plan.approvals))
    have = len({a.by for a in plan.approvals})
    if plan.approvals_required:
        state = "approved" if plan.approved else "pending"
        return f"{names} ({have} of {plan.approvals_required}, {state})"
    return names


_PATH_TOKEN = re.compile(r"\[(\d+)\]|([^.\[\]]+)")
_MISSING = object()


def _lookup(doc: Any, path: str) -> Any:
    """Value at a dotted path (``spec.fields[2].alias``) or ``_MISSING``."""
    if doc is None:
        return _MISSING
    if isinstance(doc, dict) and path in doc:  # a flat "dotted key" map
        return doc[path]
    cur = doc
    for index, key in _PATH_TOKEN.findall(path):
        if index:
            if not isinstance(cur, list) or int(index) >= len(cur):
                return _MISSING
            cur = cur[int(index)]
        elif isinstance(cur, dict) and key in cur:
            cur = cur[key]
        elif isinstance(cur, list) and key.isdigit() and int(key) < len(cur):
            cur = cur[int(key)]
        elif isinstance(cur, list) and (named := [x for x in cur if isinstance(x, dict) and x.get("name") == key]):
            cur = named[0]  # a list of named items (fields) is diffed by name
        else:
            return _MISSING
    return cur


def _short(value: Any, width: int = _VALUE_WIDTH) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def _path_changes(action: Action) -> list[tuple[str, str]]:
    """(symbol, ``path: before → after``) for each changed path of an action."""
    out: list[tuple[str, str]] = []
    for path in action.changed_paths:
        old = _lookup(action.before, path)
        new = _lookup(action.after, path)
        if old is _MISSING and new is _MISSING:
            out.append(("~", one_line(path)))
        elif old is _MISSING:
            out.append(("+", one_line(f"{path}: {_short(new)}")))
        elif new is _MISSING:
            out.append(("-", one_line(f"{path}: {_short(old)}")))
        else:
            out.append(("~", one_line(f"{path}: {_short(old)} → {_short(new)}")))
    return out


def _fit(text: str, width: int) -> str:
    """One line of at most ``width`` characters, cut at a word (SQL is not cut mid-word)."""
    text = " ".join(one_line(text).split())
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space >= width // 2 else cut).rstrip(" ,(") + "…"


def _codes(action: Action) -> str:
    return " ".join(dict.fromkeys(f.code for f in action.findings))


def _op_flags(op: Operation) -> str:
    flags = []
    if op.kind == "sql" and not op.transactional:
        flags.append("no transaction")
    if op.irreversible:
        flags.append("irreversible")
    return f" [{', '.join(flags)}]" if flags else ""


def _check_line(check: CheckRecord) -> str:
    line = f"{one_line(check.name)} (expected: {_fit(check.expected, _VALUE_WIDTH)})"
    if check.predicted_failure:
        line += f" — predicted to fail: {one_line(check.predicted_failure)}"
    return line


def _validation_checks(action: Action) -> list[CheckRecord]:
    return [c for c in action.checks if c.phase != "post-down"]


# ---------------------------------------------------------------------- text


class _Styler:
    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def __call__(self, text: str, **style: Any) -> str:
        if not self.colour or not text:
            return text
        import click

        return click.style(text, **style)


def _drift_text(plan: Plan, s: _Styler) -> list[str]:
    lines = [s(f"Drift in {plan.environment}: {len(plan.drift)} resource{'s' if len(plan.drift) != 1 else ''} changed outside honua", bold=True)]
    width = max(len(one_line(d.address)) for d in plan.drift)
    for d in plan.drift:
        sym = _DRIFT_SYMBOL.get(d.change, "?")
        lines.append(f"  {s(sym, **_SYMBOL_STYLE.get(sym, {}))} {one_line(d.address).ljust(width)}  "
                     f"{d.change}: {one_line(d.summary)}")
        lines.extend(f"      {one_line(detail)}" for detail in d.details)
    return lines


def _steps(ops: list[Operation]) -> list[Operation]:
    """The operations a reviewer reads: all but the state bookkeeping (``record``)."""
    return [op for op in ops if op.kind != "record"]


def _action_text(action: Action, widths: tuple[int, int, int, int], s: _Styler, detailed: bool) -> list[str]:
    sym_w, addr_w, reason_w, codes_w = widths
    sym = action_symbol(action.action)
    codes = _codes(action)
    head = (
        f"  {s(sym.ljust(sym_w), **_SYMBOL_STYLE.get(sym, {}))} {one_line(action.address).ljust(addr_w)}  "
        f"{_fit(action.reason, _REASON_WIDTH).ljust(reason_w)}  "
        f"{s(action.risk.ljust(10), **_RISK_STYLE[action.risk])}"
    )
    if codes_w:
        head += f"{codes.ljust(codes_w)}  "
    head += f"(est. {format_estimate(action.estimated_s)})"
    lines = [head]
    ind = " " * 6
    for psym, text in _path_changes(action):
        lines.append(f"{ind}{s(psym, **_SYMBOL_STYLE.get(psym, {}))} {text}")
    if action.preconditions:
        lines.append(f"{ind}Pre-conditions: {one_line('; '.join(action.preconditions))}")
    if action.backup_tables:
        lines.append(f"{ind}Backup before apply: {one_line(', '.join(action.backup_tables))}")
    for i, op in enumerate(_steps(action.operations), 1):
        lines.append(f"{ind}Step {i}: {one_line(op.name)} (estimated: {format_estimate(op.estimated_s)}){_op_flags(op)}")
        if detailed:
            lines.extend(_op_body(op, ind + "    "))
    lines += finding_lines(action, ind, s)
    checks = _validation_checks(action)
    if checks:
        lines.append(f"{ind}Validation:")
        for c in checks:
            lines.append(f"{ind}  - {_check_line(c)}")
            if detailed and c.query:
                lines.extend(_body(c.query, ind + "      "))
    if action.deferred:
        lines.append(f"{ind}Checked at apply: {one_line('; '.join(action.deferred))}")
    if action.rollback:
        lines.append(f"{ind}Rollback Plan:")
        for op in action.rollback:
            lines.append(f"{ind}  - {one_line(op.name)}{_op_flags(op)}")
            if detailed:
                lines.extend(_op_body(op, ind + "      "))
    elif action.irreversible:
        restore = f" (restore from backup of {one_line(', '.join(action.backup_tables))})" if action.backup_tables else ""
        lines.append(f"{ind}Rollback Plan: none, irreversible{restore}")
    return lines


def finding_lines(action: Action, indent: str, s: Callable[..., str] | None = None) -> list[str]:
    """An action's findings as ``honua plan`` prints them: ``⚠ CODE message`` and ``→ suggestion``."""
    s = s or _Styler(False)
    lines = []
    for f in action.findings:
        mark = "✗" if f.error else "⚠"
        extra = " [irreversible]" if f.irreversible else ""
        lines.append(f"{indent}{s(mark, **_RISK_STYLE[f.level])} {f.code} {one_line(f.message)}{extra}")
        if f.suggestion:
            lines.append(f"{indent}  → {one_line(f.suggestion)}")
    return lines


def findings_text(plan: Plan, indent: str = "  ") -> list[str]:
    """Every finding of ``plan`` under its action's address, as ``honua plan`` prints them:
    the summaries that show a plan's risk (the assistant's migration plan, promote) show
    these, so none of them hides a finding the plan has (VAL001 on a HIGH plan, say)."""
    lines = []
    for a in plan.actions:
        if a.findings:
            lines.append(f"{indent}{one_line(a.address)}:")
            lines += finding_lines(a, indent + "  ")
    return lines


def _op_body(op: Operation, indent: str) -> list[str]:
    return _body(op.sql or op.text_diff or "", indent)


def _body(text: str, indent: str) -> list[str]:
    return [f"{indent}{line}".rstrip() for line in terminal_text(text).strip("\n").splitlines()]


def render_text(plan: Plan, *, colour: bool = False, detailed: bool = False) -> str:
    """The terminal view of a plan (``detailed`` adds each step's SQL and metadata diff)."""
    s = _Styler(colour)
    lines: list[str] = []
    env = one_line(plan.environment)

    if plan.refresh_only:
        if plan.drift:
            lines += _drift_text(plan, s)
            lines[1:1] = _database_text(plan)
        else:
            lines.append(f"No drift. The {env} environment matches the recorded state.")
            lines += _database_text(plan)
        return _finish(lines, colour=colour)

    if not plan.actions and not plan.moved:
        lines.append(s(f"No changes. The {env} environment matches the configuration.", bold=True))
        lines += _database_text(plan)
        lines += _unmanaged_lines(plan)
        if plan.drift:
            lines += ["", *_drift_text(plan, s)]
        if plan.warnings:
            lines += ["", *_warnings_text(plan, s)]
        return _finish(lines, colour=colour)

    lines.append(s(f"Plan for {env} ({summary_line(plan)})", bold=True))
    lines += _database_text(plan)
    if plan.simulation is not None:
        lines.append(f"Simulation: {one_line(plan.simulation.summary)}")
    lines += moved_lines(plan)
    lines += _unmanaged_lines(plan)
    if plan.target:
        lines.append(f"Targeted: {one_line(', '.join(plan.target))} (partial plan)")
    if plan.drift:
        lines += ["", *_drift_text(plan, s)]
    lines += ["", s("Deployment Plan:", bold=True), RULE, f"Environment: {env}"]

    sym_w = max(len(action_symbol(a.action)) for a in plan.actions)
    addr_w = max(len(one_line(a.address)) for a in plan.actions)
    reason_w = max(len(_fit(a.reason, _REASON_WIDTH)) for a in plan.actions)
    codes = [_codes(a) for a in plan.actions]
    codes_w = max(len(c) for c in codes) + 2 if any(codes) else 0
    for action in plan.actions:
        lines += _action_text(action, (sym_w, addr_w, reason_w, codes_w), s, detailed)
        lines.append("")

    lines.append(f"  Risk Level: {s(plan.risk, **_RISK_STYLE[plan.risk])}")
    lines.append(f"  Estimated Duration: {format_estimate(plan.estimated_s)}")
    lines.append(f"  Automatic Rollback: {plan.rollback_summary}")
    lines.append(f"  Approval Required: {_approval_required(plan)}")
    approved = _approvals_line(plan)
    if approved:
        lines.append(f"  Approved by: {approved}")
    irreversible = [a for a in plan.actions if a.irreversible]
    if irreversible:
        lines.append("  Irreversible:")
        for a in irreversible:
            why = [one_line(f.message) for f in a.findings if f.irreversible]
            lines.append(f"    - {one_line(a.address)}" + (f": {'; '.join(why)}" if why else ""))

    if _server_changes(plan):
        lines += ["", *_server_text(plan)]
    if plan.policy:
        lines += ["", "Policy Check:"]
        lines += [f"  {s(_POLICY_MARK[p.status], **_POLICY_STYLE[p.status])} {_policy_text(p)}" for p in plan.policy]
    if plan.warnings:
        lines += ["", *_warnings_text(plan, s)]
    return _finish(lines, colour=colour)


_SERVER_SYMBOL = {"create": "+", "update": "~", "delete": "-", "skip": " "}


def _database_text(plan: Plan) -> list[str]:
    """The header line naming the database the plan read (none in a plan made before it was recorded)."""
    return [f"Database: {one_line(plan.database.describe())}"] if plan.database is not None else []


def _server_changes(plan: Plan) -> list[Any]:
    return [e for e in plan.server if e.action != "skip"]


def _server_counts(plan: Plan) -> str:
    n = {k: sum(1 for e in plan.server if e.action == k) for k in ("create", "update", "delete", "skip")}
    return f"{n['create']} created, {n['update']} updated, {n['delete']} deleted, {n['skip']} skipped"


def _server_text(plan: Plan) -> list[str]:
    """The GIS server's own dry run of the publish (Honua: manifest apply with dryRun)."""
    lines = [f"GIS server (publish dry run): {_server_counts(plan)}"]
    lines += [f"  {_SERVER_SYMBOL[e.action]} {one_line(e.kind)} {one_line(e.name)}"
              + (f": {one_line(e.message)}" if e.message else "")
              for e in _server_changes(plan)]
    return lines


def _policy_text(p: PolicyCheck) -> str:
    text = one_line(p.message or p.name)
    return f"{text} (skipped)" if p.status == "skip" else text


def _warnings_text(plan: Plan, s: _Styler) -> list[str]:
    return ["Warnings:", *(f"  {s('⚠', fg='yellow')} {one_line(w)}" for w in plan.warnings)]


def _finish(lines: Iterable[str], *, markdown: bool = False, colour: bool = False) -> str:
    """Join, end with one newline, redact, and remove every control character and escape
    sequence (the data in the lines was made one-line and inert field by field; this is the
    net under it). ``colour`` keeps the styler's SGR sequences; Markdown keeps fenced SQL and
    diffs verbatim (no trailing blanks stripped)."""
    text = "\n".join(line if markdown else line.rstrip() for line in lines).rstrip("\n") + "\n"
    return terminal_text(redact(text), keep_colour=colour and not markdown)


# ------------------------------------------------------------------ markdown


# Markdown: every string from the plan's data (config, database, model) goes through
# textsafe: md_text (inline text), md_code (a code span), md_fence (a fenced block).


def _cell(text: str) -> str:
    return md_text(text) or "–"


def _mermaid_label(text: str) -> str:
    return (one_line(text).replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
            .replace("`", "#96;"))


def _mermaid(plan: Plan) -> list[str]:
    ids = {a.address: f"n{i}" for i, a in enumerate(plan.actions)}
    lines = ["```mermaid", "graph TD"]
    for a in plan.actions:
        top = _mermaid_label(f"{action_symbol(a.action)} {a.address}")
        bottom = _mermaid_label(f"{a.action} · {a.risk}")
        lines.append(f'  {ids[a.address]}["{top}<br/>{bottom}"]')
    for a in plan.actions:
        for dep in a.depends_on:
            if dep in ids:
                lines.append(f"  {ids[dep]} --> {ids[a.address]}")
    by_risk: dict[str, list[str]] = {}
    for a in plan.actions:
        by_risk.setdefault(a.risk.lower(), []).append(ids[a.address])
    lines += [
        "  classDef low fill:#e6f4ea,stroke:#34a853",
        "  classDef medium fill:#fef7e0,stroke:#f9ab00",
        "  classDef high fill:#fce8e6,stroke:#d93025",
        "  classDef critical fill:#d93025,stroke:#a50e0e,color:#fff",
    ]
    for level in ("low", "medium", "high", "critical"):
        if level in by_risk:
            lines.append(f"  class {','.join(by_risk[level])} {level}")
    lines.append("```")
    return lines


_RISK_BADGE = {"LOW": "🟢", "MEDIUM": "🟡", "HIGH": "🟠", "CRITICAL": "🔴"}
_POLICY_BOX = {"pass": "- [x] {t}", "warn": "- [x] {t} _(warning)_", "fail": "- [ ] {t} **(failed)**", "skip": "- [ ] {t} _(skipped)_"}


def _md_drift(drift: list[DriftRecord]) -> list[str]:
    lines = ["### Drift", "", "| Address | Change | Summary |", "|---|---|---|"]
    for d in drift:
        summary = "; ".join([d.summary, *d.details])
        lines.append(f"| {md_code(d.address, table=True)} | {d.change} | {_cell(summary)} |")
    return [*lines, ""]


def _md_ops_block(summary: str, ops: list[Operation]) -> list[str]:
    parts: list[str] = []
    for i, op in enumerate(ops, 1):
        if op.sql:
            parts += [f"Step {i}: {md_text(op.name)}", "", *md_fence(op.sql, "sql"), ""]
        if op.text_diff:
            parts += [f"Step {i}: {md_text(op.name)}" + (f" ({md_code(op.path)})" if op.path else ""), "",
                      *md_fence(op.text_diff, "diff"), ""]
    if not parts:
        return []
    return [f"<details><summary>{summary}</summary>", "", *parts, "</details>", ""]


def _md_checks_block(summary: str, checks: list[CheckRecord]) -> list[str]:
    parts: list[str] = []
    for c in checks:
        if c.query:
            parts += [md_text(c.name), "", *md_fence(c.query, "text" if c.type == "http" else "sql"), ""]
    if not parts:
        return []
    return [f"<details><summary>{summary}</summary>", "", *parts, "</details>", ""]


def _md_action(index: int, a: Action) -> list[str]:
    sym = action_symbol(a.action)
    lines = [f"#### {index}. {md_code(f'{sym} {a.address}')} — {_cell(a.reason)} ({_RISK_BADGE[a.risk]} {a.risk})", ""]
    facts = [f"- **Action:** {a.action} {a.kind} · estimated {format_estimate(a.estimated_s)}"]
    if a.source:
        facts.append(f"- **Source:** {md_code(a.source)}")
    if a.depends_on:
        facts.append(f"- **Depends on:** {', '.join(md_code(d) for d in a.depends_on)}")
    if a.preconditions:
        facts.append(f"- **Pre-conditions:** {md_text('; '.join(a.preconditions))}")
    if a.backup_tables:
        facts.append(f"- **Backup before apply:** {', '.join(md_code(t) for t in a.backup_tables)}")
    if a.deferred:
        facts.append(f"- **Checked at apply:** {md_text('; '.join(a.deferred))}")
    lines += [*facts, ""]
    changes = _path_changes(a)
    if changes:
        # "!" is the changed-line marker GitHub's diff highlighting knows ("~" is not)
        marks = {"~": "!"}
        lines += ["**Changed:**", "", *md_fence("\n".join(f"{marks.get(m, m)} {t}" for m, t in changes), "diff"), ""]
    for f in a.findings:
        mark = "❌" if f.error else "⚠️"
        extra = " **irreversible**" if f.irreversible else ""
        lines.append(f"> {mark} **{md_text(f.code)}** ({f.level}) {md_text(f.message)}{extra}")
        if f.suggestion:
            lines.append(f"> → {md_text(f.suggestion)}")
        lines.append(">")
    if a.findings:
        lines[-1] = ""
    steps = _steps(a.operations)
    if steps:
        lines += ["**Steps:**", ""]
        lines += [
            f"{i}. {md_text(op.name)} ({op.kind}, estimated {format_estimate(op.estimated_s)}){_op_flags(op)}"
            for i, op in enumerate(steps, 1)
        ]
        lines.append("")
    lines += _md_ops_block("SQL", steps)
    checks = _validation_checks(a)
    if checks:
        lines += ["**Validation:**", "", *(f"- {md_text(_check_line(c))}" for c in checks), ""]
        lines += _md_checks_block("Validation SQL", checks)
    if a.rollback:
        lines += ["**Rollback Plan:**" + (" (automatic on failure)" if a.automatic_rollback else ""), ""]
        lines += [f"- {md_text(op.name)}{_op_flags(op)}" for op in a.rollback]
        lines += [f"- validate: {md_text(_check_line(c))}" for c in a.rollback_checks]
        lines.append("")
        lines += _md_ops_block("Rollback SQL", a.rollback)
        lines += _md_checks_block("Rollback validation SQL", a.rollback_checks)
    elif a.irreversible:
        restore = f" (restore from the backup of {md_text(', '.join(a.backup_tables))})" if a.backup_tables else ""
        lines += [f"**Rollback Plan:** none, irreversible{restore}", ""]
    return lines


def render_markdown(plan: Plan) -> str:
    """A pull-request comment: tables, mermaid graph, checklist, SQL, rollback plan."""
    env = md_text(plan.environment)
    lines: list[str] = []
    if plan.refresh_only:
        lines += [f"## honua drift: {md_code(plan.environment)}", ""]
        lines += _md_drift(plan.drift) if plan.drift else [f"No drift. The {env} environment matches the recorded state.", ""]
        return _finish(lines, markdown=True)

    lines += [f"## honua plan: {md_code(plan.environment)}", ""]
    meta = [f"plan {md_code(plan.id)}", f"created {plan.created_at.isoformat()}", f"honua-plan {md_text(plan.engine_version)}"]
    if plan.config_commit:
        meta.append(f"config {md_code(plan.config_commit[:12])}")
    meta.append(f"state serial {plan.state_serial}")
    if plan.database is not None:
        meta.append(f"database {md_code(plan.database.describe())}")
    meta.append(f"digest `{content_digest(plan)[:19]}`")
    meta.append(f"by {plan.provenance.kind}" + (f" ({md_text(plan.provenance.actor)})" if plan.provenance.actor else ""))
    lines += ["<sub>" + " · ".join(meta) + "</sub>", ""]
    if plan.simulation is not None:
        lines += [f"**Simulation:** {_cell(plan.simulation.summary)}", ""]
    if plan.moved:
        lines += [f"- {_cell(line)}" for line in moved_lines(plan)] + [""]

    if not plan.actions and not plan.moved:
        lines += [f"No changes. The {env} environment matches the configuration.", ""]
        if plan.drift:
            lines += _md_drift(plan.drift)
        lines += _md_warnings(plan)
        return _finish(lines, markdown=True)

    lines += [
        f"**{summary_line(plan)}**",
        "",
        f"**Risk Level:** {_RISK_BADGE[plan.risk]} {plan.risk} · "
        f"**Estimated Duration:** {format_estimate(plan.estimated_s)} · "
        f"**Automatic Rollback:** {plan.rollback_summary} · "
        f"**Approval Required:** {md_text(_approval_required(plan))}",
        "",
    ]
    if plan.target:
        lines += [f"> Targeted plan (partial): {', '.join(md_code(t) for t in plan.target)}", ""]

    counts = plan.summary()
    lines += ["### Summary", "", "| Action | Count |", "|---|---:|"]
    for key in _CORE_COUNTS:
        lines.append(f"| {action_symbol(key)} {key} | {counts.get(key, 0)} |")
    for key in _EXTRA_COUNTS:
        if counts.get(key):
            lines.append(f"| {action_symbol(key)} {key} | {counts[key]} |")
    lines += [f"| unchanged | {len(plan.no_ops)} |", ""]

    lines += ["### Risk", "", "| # | Address | Action | Risk | Rules | Estimate |", "|---:|---|---|---|---|---:|"]
    for i, a in enumerate(plan.actions, 1):
        lines.append(
            f"| {i} | {md_code(a.address, table=True)} | {action_symbol(a.action)} {a.action} | {_RISK_BADGE[a.risk]} {a.risk} "
            f"| {_cell(_codes(a))} | {format_estimate(a.estimated_s)} |"
        )
    lines.append("")
    irreversible = [a for a in plan.actions if a.irreversible]
    if irreversible:
        lines += ["**Irreversible:** " + ", ".join(md_code(a.address) for a in irreversible), ""]

    lines += ["### Graph", "", *_mermaid(plan), ""]

    if plan.drift:
        lines += _md_drift(plan.drift)

    if _server_changes(plan):
        lines += ["### GIS server (publish dry run)", "", _server_counts(plan), ""]
        lines += [f"- {md_code(f'{_SERVER_SYMBOL[e.action]} {e.kind} {e.name}')}" + (f": {_cell(e.message)}" if e.message else "")
                  for e in _server_changes(plan)]
        lines.append("")

    if plan.policy:
        lines += ["### Policy", ""]
        lines += [_POLICY_BOX[p.status].format(t=_cell(p.message or p.name)) for p in plan.policy]
        lines.append("")

    lines += ["### Approvals", ""]
    if plan.approvals_required:
        have = len({a.by for a in plan.approvals})
        who = f" from {md_text(', '.join(plan.approvers))}" if plan.approvers else ""
        state = "✅ approved" if plan.approved else "⏳ pending"
        lines.append(f"Required: {plan.approvals_required}{who} · received: {have} · {state}")
    else:
        lines.append("Approval Required: NO")
    lines.append("")
    if plan.approvals:
        for ap in plan.approvals:
            comment = f" — {_cell(ap.comment)}" if ap.comment else ""
            signed = " (signed)" if ap.signature else ""
            lines.append(f"- [x] **{md_text(ap.by)}**{signed} at {ap.at.isoformat()}{comment}")
        lines.append("")

    lines += ["### Changes", ""]
    for i, a in enumerate(plan.actions, 1):
        lines += _md_action(i, a)

    if plan.no_ops:
        lines += ["<details><summary>Unchanged</summary>", ""]
        lines += [f"- {md_code(n.address)}: {_cell(n.reason)}" for n in plan.no_ops]
        lines += ["", "</details>", ""]
    lines += _md_warnings(plan)
    return _finish(lines, markdown=True)


def _md_warnings(plan: Plan) -> list[str]:
    if not plan.warnings:
        return []
    return ["### Warnings", "", *(f"- ⚠️ {md_text(w)}" for w in plan.warnings), ""]


# ---------------------------------------------------------------------- json


def _redact_tree(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redact_tree(v) for v in value]
    if isinstance(value, dict):
        return {k: _redact_tree(v) for k, v in value.items()}  # keys are structure, never redacted
    return value


def redacted(plan: Plan) -> Plan:
    """The plan with every secret hidden in every string (the plan itself if none)."""
    data = plan.model_dump(mode="json")
    if not might_change(json.dumps(data, ensure_ascii=False)):
        return plan  # the common case, found in one pass over the text (keys included)
    clean = _redact_tree(data)
    if clean == data:
        return plan
    return Plan.model_validate(clean)


def content_digest(plan: Plan, *, redact_secrets: bool = True) -> str:
    """``sha256:`` + hex of the canonical JSON of the plan without ``approvals`` and ``digest``.

    Canonical: keys sorted, no whitespace, UTF-8. Secrets are redacted first (as in the
    file), so a plan and the same plan loaded back from its file have the same digest;
    ``redact_secrets=False`` digests a plan read from a file exactly as it was read.
    Recording an approval does not change the digest.
    """
    clean = redacted(plan) if redact_secrets else plan
    data = clean.model_dump(mode="json", exclude={"approvals", "digest"})
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def render_json(plan: Plan) -> str:
    """The versioned JSON contract (``format_version``), indent 2, no trailing newline.

    Redaction is applied string by string (not to the JSON text), so the result is
    always valid JSON that validates against ``plan_json_schema()``. It carries the
    plan's :func:`content_digest` (the one of its content, whatever ``plan.digest`` said).
    """
    clean = redacted(plan)
    digest = content_digest(clean, redact_secrets=False)
    return clean.model_copy(update={"digest": digest}).model_dump_json(indent=2)


# ------------------------------------------------------------------ dispatch

_RENDERERS: dict[str, Callable[[Plan, bool], str]] = {
    "text": lambda p, colour: render_text(p, colour=colour),
    "markdown": lambda p, colour: render_markdown(p),
    "md": lambda p, colour: render_markdown(p),
    "json": lambda p, colour: render_json(p) + "\n",
}


def render(plan: Plan, fmt: str, *, colour: bool = False) -> str:
    """Render ``plan`` as ``text``, ``markdown`` (or ``md``) or ``json``.

    Every format ends with exactly one newline (for ``json`` that makes the output the
    same bytes as the saved plan file), so callers print it with ``nl=False``.
    """
    try:
        renderer = _RENDERERS[fmt.lower()]
    except KeyError:
        raise UsageError(f"unknown plan format {fmt!r}: choose one of {', '.join(FORMATS)}") from None
    return renderer(plan, colour)
