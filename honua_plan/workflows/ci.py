"""The pipeline's entry points: ``honua ci plan``, ``ci deploy``, ``ci drift``.

A CI system (GitHub Actions, GitLab CI, Jenkins) only runs these and publishes what they
write; the engine does the work. Environments are taken in the project's promotion order
(``spec.environments``). Every environment's folder is planned from the same commit:
"promotion" on the main branch means the merged change reaches the next environment once
the previous one applied it and its layers passed their tests, the way the seed's
Example 1 flows (dev, tests, staging, approval, production).

Exit codes a pipeline can trust: 0 nothing to do (or all applied), 1 error, 2 changes
(``plan``) or drift (``drift``), 3 a plan blocked by policy.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from honua_plan.textsafe import md_code, md_text

if TYPE_CHECKING:
    from honua_plan.plan.model import Plan
    from honua_plan.workspace import Workspace

COMMENT_LIMIT = 65_536  # GitHub's maximum comment body
MARKER = "<!-- honua-plan -->"

EXIT_OK, EXIT_ERROR, EXIT_CHANGES, EXIT_BLOCKED = 0, 1, 2, 3


def marker(environment: str) -> str:
    """The hidden marker of one environment's section (a comment is updated in place).
    The name is config text: only the characters of a name are kept, so it cannot end the
    HTML comment."""
    return f"<!-- honua-plan:{re.sub(r'[^A-Za-z0-9_.-]', '', environment)} -->"


@dataclass
class EnvResult:
    environment: str
    status: str  # no-changes | changes | blocked | applied | awaiting-approval | failed | drift | clean | error
    summary: str = ""
    risk: str | None = None
    approvals: str = ""
    plan_file: str | None = None
    markdown: str = ""
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "markdown"}


@dataclass
class CIResult:
    command: str
    exit_code: int
    environments: list[EnvResult] = field(default_factory=list)
    report: str | None = None
    stopped_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"format_version": 1, "command": self.command, "exit_code": self.exit_code, "report": self.report,
                "stopped_at": self.stopped_at, "environments": [e.to_json() for e in self.environments]}


def error_section(title: str, environment: str, message: str) -> str:
    """An environment's section when it could not be planned: the error is data (it names
    files and values of the config), rendered as text."""
    return f"## {title}: {md_code(environment)}\n\n**Error:** {md_text(message)}\n"


def blocked_note(messages: list[str]) -> str:
    """The line above a plan blocked by policy (the policy's messages are config text)."""
    return "> **Blocked by policy:** " + md_text("; ".join(messages)) + "\n\n"


def _close_open_blocks(text: str) -> str:
    """``text`` cut at a line, with the fenced block and the ``<details>`` it was cut in
    closed. A fence is closed by a run of backticks at least as long as the one that opened
    it; ``<details>`` are counted outside fences only, on the lines the renderer writes
    (data is escaped, or literal inside a fence or a code span)."""
    fence: str | None = None
    depth = 0
    for line in text.split("\n"):
        m = re.match(r" {0,3}(`{3,})", line)
        if fence is not None:
            if m and line.strip() == m.group(1) and len(m.group(1)) >= len(fence):
                fence = None
        elif m:
            fence = m.group(1)
        elif line.startswith("<details>"):
            depth += 1
        elif line == "</details>":
            depth = max(0, depth - 1)
    if fence is not None:
        text += "\n" + fence
    return text + "\n</details>" * depth


def report_markdown(title: str, sections: list[tuple[str, str]], limit: int = COMMENT_LIMIT) -> str:
    """One comment: a marker, a title, a section per environment (each behind its own
    marker), cut to ``limit`` characters with a note saying what was left out.

    The sections are Markdown whose data was escaped by their renderer
    (:func:`~honua_plan.plan.render.render_markdown`, :func:`error_section`): a
    ``<details>`` or a fence in them is the renderer's own."""
    head = f"{MARKER}\n# {title}\n\n"
    note = "\n\n> **Truncated:** this report is longer than a pull-request comment allows ({limit:,} " \
           "characters); {left} left out. The full report and the plans are in the job's artifacts.\n"
    out, left = head, []
    for env, text in sections:
        block = f"{marker(env)}\n{text.rstrip()}\n\n"
        if len(out) + len(block) + len(note) + 200 > limit:
            room = limit - len(out) - len(note) - 200
            if room > 500:  # the start of the section, closed cleanly
                out += _close_open_blocks(block[:room].rsplit("\n", 1)[0]) + "\n"
                left.append(f"the rest of {md_code(env)}")
            else:
                left.append(md_code(env))
            continue
        out += block
    if left:
        out += note.format(limit=limit, left=", ".join(left))
    return out


def _approvals(plan: Plan) -> str:
    if plan.approvals_required <= 0:
        return "none"
    who = f" from {', '.join(plan.approvers)}" if plan.approvers else ""
    return f"{plan.approvals_required}{who} ({len(plan.approvals)} recorded)"


def _write(path: Path, text: str) -> None:
    from honua_plan.files import write_text_atomic

    write_text_atomic(path, text)  # a device, FIFO or link at the path is refused


def ci_plan(ws: Workspace, out_dir: Path) -> CIResult:
    """Validate, then plan every environment in promotion order; save each plan and one
    Markdown report for the pull request."""
    from honua_plan.errors import HonuaError
    from honua_plan.plan.render import render_markdown, summary_line
    from honua_plan.plan.store import save_plan

    envs = ws.load()[0].project.spec.environments
    result = CIResult("plan", EXIT_OK)
    sections: list[tuple[str, str]] = []
    for env in envs:
        try:
            plan = ws.plan(env, refuse_unfinished=True, simulate=None)
        except HonuaError as exc:  # with its problems (path:line: message), which say what to do
            message = exc.message + "".join(f"; {line}" for line in exc.details.splitlines())
            result.environments.append(EnvResult(env, "error", detail=message))
            sections.append((env, error_section("honua plan", env, message)))
            result.exit_code = EXIT_ERROR
            continue
        from honua_plan.workflows.render import unrendered

        if missing := unrendered(ws, plan):  # the pull request must carry a migration's file edits
            message = (f"pending migration metadata is not in the working tree: {'; '.join(missing)}; run "
                       "`honua migrate render` and commit the result in the pull request")
            result.environments.append(EnvResult(env, "error", detail=message))
            sections.append((env, error_section("honua plan", env, message)))
            result.exit_code = EXIT_ERROR
            continue
        path = out_dir / f"plan-{env}.json"
        save_plan(plan, path)
        blocked = [c.message for c in plan.policy if c.status == "fail"]
        status = "blocked" if blocked else ("changes" if plan.has_changes else "no-changes")
        md = render_markdown(plan)
        if blocked:
            md = blocked_note(blocked) + md
        result.environments.append(EnvResult(env, status, summary=summary_line(plan), risk=str(plan.risk),
                                             approvals=_approvals(plan), plan_file=str(path), markdown=md,
                                             detail="; ".join(blocked)))
        sections.append((env, md))
        if result.exit_code != EXIT_ERROR:
            rank = {"blocked": EXIT_BLOCKED, "changes": EXIT_CHANGES, "no-changes": EXIT_OK}[status]
            result.exit_code = max(result.exit_code, rank) if rank != EXIT_OK else result.exit_code
    report = out_dir / "plan.md"
    _write(report, report_markdown("honua plan", sections))
    _write(out_dir / "plan.json", json.dumps(result.to_json(), indent=2) + "\n")
    result.report = str(report)
    return result


def ci_drift(ws: Workspace, out_dir: Path) -> CIResult:
    """Drift of every environment; one Markdown report; exit 2 when anything drifted."""
    from honua_plan.errors import HonuaError
    from honua_plan.plan.render import render_markdown

    envs = ws.load()[0].project.spec.environments
    result = CIResult("drift", EXIT_OK)
    sections: list[tuple[str, str]] = []
    for env in envs:
        try:
            plan = ws.plan(env, refresh_only=True, refuse_unfinished=True)
        except HonuaError as exc:
            result.environments.append(EnvResult(env, "error", detail=exc.message))
            sections.append((env, error_section("honua drift", env, exc.message)))
            result.exit_code = EXIT_ERROR
            continue
        md = render_markdown(plan)
        drifted = bool(plan.drift)
        result.environments.append(EnvResult(env, "drift" if drifted else "clean",
                                             summary=f"{len(plan.drift)} drifted" if drifted else "no drift",
                                             markdown=md))
        sections.append((env, md))
        if drifted and result.exit_code == EXIT_OK:
            result.exit_code = EXIT_CHANGES
        if drifted:
            _tell(ws, env, "drift", f"drift in {env}", [f"{d.address}: {d.change}, {d.summary}" for d in plan.drift][:20])
    report = out_dir / "drift.md"
    _write(report, report_markdown("honua drift", sections))
    result.report = str(report)
    return result


def ci_deploy(ws: Workspace, out_dir: Path) -> CIResult:
    """On the main branch: apply each environment in promotion order, test its changed
    layers, go on to the next on success; stop at the first environment whose plan needs an
    approval, leaving its saved plan (and ``plan=<path>`` in ``$GITHUB_OUTPUT``)."""
    from honua_plan.errors import HonuaError
    from honua_plan.plan.render import summary_line
    from honua_plan.workflows.apply import apply
    from honua_plan.workflows.dev import test_layers

    con = ws.console
    envs = ws.project.spec.environments
    result = CIResult("deploy", EXIT_OK)
    for env in envs:
        con.print(f"== {env}")
        try:
            ws._reload_desired(env)  # an apply before may have edited files (a migration's file edits)
            plan = ws.plan(env, refuse_unfinished=True)  # applied next: no simulation, as apply
        except HonuaError as exc:
            result.environments.append(EnvResult(env, "error", detail=exc.message))
            result.exit_code, result.stopped_at = EXIT_ERROR, env
            con.fail(f"{env}: {exc.message}")
            break
        blocked = [c.message for c in plan.policy if c.status == "fail"]
        if blocked:  # e.g. outside the deployment window: the plan is kept for a later run
            path = _save(ws, plan, out_dir)
            result.environments.append(EnvResult(env, "blocked", summary=summary_line(plan), plan_file=str(path),
                                                 detail="; ".join(blocked)))
            result.exit_code, result.stopped_at = EXIT_BLOCKED, env
            con.fail(f"{env}: blocked by policy: {'; '.join(blocked)} (plan saved: {path})")
            break
        if not plan.has_changes:
            result.environments.append(EnvResult(env, "no-changes", summary=summary_line(plan)))
            con.ok(f"{env}: no changes")
            continue
        if plan.approvals_required > 0 and not plan.approved:
            path = _save(ws, plan, out_dir)
            result.environments.append(EnvResult(env, "awaiting-approval", summary=summary_line(plan),
                                                 risk=str(plan.risk), approvals=_approvals(plan), plan_file=str(path)))
            result.stopped_at = env
            _tell(ws, env, "approval-needed", f"{env} needs {_approvals(plan)} approval(s)",
                  [f"Plan: {plan.id} ({summary_line(plan)})", f"Risk: {plan.risk}", f"Saved plan: {path}"])
            con.print(f"  {env} needs {_approvals(plan)} approval(s): saved {path}")
            con.print(f"  approve with `honua approve {path} --by NAME`, then "
                      f"`honua apply --env {env} {path}`")
            break
        try:
            applied = apply(ws, env, plan=plan, yes=True, command="honua ci deploy", show=False)
        except HonuaError as exc:
            result.environments.append(EnvResult(env, "failed", summary=summary_line(plan), detail=exc.message))
            result.exit_code, result.stopped_at = EXIT_ERROR, env
            con.fail(f"{env}: {exc.message}")
            break
        if applied is not None and not applied.ok:
            result.environments.append(EnvResult(env, "failed", summary=summary_line(plan), detail="apply failed"))
            result.exit_code, result.stopped_at = EXIT_ERROR, env
            break
        changed = sorted({a.address.split(".", 1)[1] for a in plan.actions if a.kind == "layer"
                          and a.action in ("create", "update")})
        failed: list[str] = []
        for layer in changed:
            for report in test_layers(ws, env, layer):
                failed += [f"{layer}: {c.name}" for c in report.checks if not c.ok]
        if failed:
            result.environments.append(EnvResult(env, "failed", summary=summary_line(plan),
                                                 detail="layer tests failed: " + ", ".join(failed)))
            result.exit_code, result.stopped_at = EXIT_ERROR, env
            con.fail(f"{env}: layer tests failed: {', '.join(failed)}")
            break
        result.environments.append(EnvResult(env, "applied", summary=summary_line(plan),
                                             detail=f"{len(changed)} changed layer(s) tested"))
        con.ok(f"{env}: applied; {len(changed)} changed layer(s) tested")
    _write(out_dir / "deploy.json", json.dumps(result.to_json(), indent=2) + "\n")
    return result


def _save(ws: Workspace, plan: Plan, out_dir: Path) -> Path:
    """Save the plan a later job applies: in ``out_dir``, with the state (by id), and named
    in ``$GITHUB_OUTPUT``."""
    from honua_plan.plan.store import save_plan
    from honua_plan.workflows.plans import keep_plan

    path = (out_dir / f"plan-{plan.environment}.json").resolve()
    save_plan(plan, path)
    keep_plan(ws, plan, path)
    _github_output({"environment": plan.environment, "plan": str(path), "plan_id": plan.id})
    return path


def _tell(ws: Workspace, environment: str, event: str, title: str, lines: list[str]) -> None:
    from honua_plan.apply.notify import notify

    delivery = notify(ws.desired(environment).policy, event, environment=environment, actor=ws.actor,
                      title=f"honua {event}: {title}", lines=lines)
    if delivery.line is not None:
        (ws.console.fail if delivery.failed else ws.console.ok)(delivery.line, indent=2)


def _github_output(values: dict[str, str]) -> None:
    """Append ``key=value`` lines to ``$GITHUB_OUTPUT`` when a GitHub Actions step runs us."""
    target = os.environ.get("GITHUB_OUTPUT")
    if not target:
        return
    with open(target, "a", encoding="utf-8") as fh:
        for key, value in values.items():
            fh.write(f"{key}={value.replace(chr(10), ' ')}\n")
