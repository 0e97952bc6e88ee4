"""The one gate a model's file change passes, as ``propose layer``'s does.

:func:`run_gate` writes the :class:`~honua_plan.ai.changes.Change` into the working tree,
validates the repository, plans every environment in promotion order with provenance
``ai`` and the model's name, saves each plan (``state/plans/ai-<env>-<id>.json``) and shows
its summary (risk per environment with the rule codes, approvals the policy requires)
*before* anything is committed; then it asks ``Continue? (yes/no)``. Each plan is the one
``honua plan`` makes (:func:`plan_like_honua_plan`: the same simulation of pending
migrations); a change that cannot be planned in some environment is not proposed at all
(nobody is asked, nothing is kept). Only a yes commits the
files on a new branch (with the ``Honua-Provenance: ai; model=…`` trailer that later plans
of the branch read); the working tree is put back as it was either way. Outside a git
repository a yes leaves the files in the working tree. Nothing here approves anything: the
plans' approvals are given by people.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from honua_plan.ai import AI_ACTOR
from honua_plan.errors import HonuaError, UsageError

if TYPE_CHECKING:
    from honua_plan.ai.changes import Change
    from honua_plan.console import Console
    from honua_plan.context import Context
    from honua_plan.plan.model import Plan, Provenance

#: the answer to ``Continue? (yes/no)``: "yes", "no", or "not-interactive" (no terminal, no --yes)
Ask = Callable[[], str]


@dataclass
class EnvPlan:
    environment: str
    plan: Plan | None = None
    saved: str | None = None
    error: str | None = None  # why it could not be planned
    absent: bool = False  # nothing of the change is configured or recorded there: no plan, not a failure


@dataclass
class GateResult:
    change: Change
    plans: list[EnvPlan] = field(default_factory=list)
    outcome: str = ""  # "committed", "working-tree", "no" (declined), "not-interactive", "plan-failed"
    failed: list[str] = field(default_factory=list)  # "env (why)" of the environments that could not be planned
    branch: str | None = None
    commit: str | None = None

    @property
    def done(self) -> bool:
        return self.outcome in ("committed", "working-tree")


def plan_lines(env: str, plan: Plan) -> list[str]:
    """What a person reads before answering: the plan's counts, risk with codes, approvals, and
    each finding above LOW with its code and level."""
    from honua_plan.ai.migrations import approval_text, risk_text
    from honua_plan.plan.render import summary_line

    lines = [f"Plan for {env}: {summary_line(plan)}; Risk Level: {risk_text(plan)}; "
             f"Approval Required: {approval_text(plan) or 'NO'}"]
    levels = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
    worst: dict[tuple[str, str], str] = {}  # one line per finding, at its highest level over the actions
    for a in plan.actions:
        for f in a.findings:
            key = (f.code, f.message)
            if levels.index(f.level) > levels.index(worst.get(key, "LOW")):
                worst[key] = f.level
    lines += [f"  ⚠ {code} {level}: {message}" for (code, message), level in worst.items()]
    for p in plan.policy:
        if p.status in ("fail", "warn"):
            lines.append(f"  {'✗' if p.status == 'fail' else '⚠'} policy: {p.message}")
    return lines


def _save(context: Context, plan: Plan) -> str:
    from honua_plan.plan.store import save_plan

    path = context.state_dir / "plans" / f"ai-{plan.environment}-{plan.id[:12]}.json"
    save_plan(plan, path)
    return path.relative_to(context.root).as_posix() if path.is_relative_to(context.root) else str(path)


def _restore(originals: dict[Path, bytes | None]) -> None:
    for path, data in originals.items():
        try:
            if data is None:
                path.unlink(missing_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
        except OSError:
            pass


def plan_like_honua_plan(context: Context, environment: str, *, target: tuple[str, ...],
                         provenance: Provenance) -> Plan:
    """The plan ``honua plan`` makes: it refuses an environment an apply left unfinished, and
    simulates the pending migrations where a scratch database is at hand (``simulate=None``:
    ``HONUA_SCRATCH_DSN`` or the embedded PostGIS, as :meth:`Workspace.plan` decides)."""
    return context.plan(environment, target=target, provenance=provenance, refuse_unfinished=True, simulate=None)


def targets_in(context: Context, environment: str, targets: tuple[str, ...]) -> tuple[str, ...]:
    """The change's addresses that exist in ``environment``: configured (its files) or recorded
    (its state). A layer removed where it was never applied has nothing to plan there."""
    if not targets:
        return ()
    desired, recorded = context.desired(environment), context.recorded(environment)
    return tuple(t for t in targets if t in desired.sources or t in recorded.resources)


def run_gate(context: Context, change: Change, *, model: str, ask: Ask) -> GateResult:
    """Write, validate, plan everywhere, show, ask; commit on yes (see the module doc)."""
    from honua_plan.ai import gitops
    from honua_plan.context import Context as _Context
    from honua_plan.plan.model import Provenance

    con = context.console
    result = GateResult(change)
    root = context.root
    in_git = gitops.is_repository(root)
    branch = gitops.free_branch(root, change.branch) if in_git else None
    if branch is not None:
        gitops.check_branch(root, branch)
    con.print(f"Proposal: {change.title}")
    for rel, status in change.status.items():
        con.print(f"  - {rel} ({status})")
    originals: dict[Path, bytes | None] = {}
    try:
        for rel, text in change.files.items():
            path = root / rel
            if text is not None and path.is_symlink():  # never write through a link
                raise UsageError(f"{rel} is a symbolic link: the proposal does not write through it")
            originals[path] = path.read_bytes() if path.exists() else None
            if text is None:
                path.unlink(missing_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
        fresh = _Context(root, console=con, debug=context.debug)
        con.print("Validating configuration...")
        checked = fresh.validate()
        con.ok(f"Validated ({', '.join(checked.environments)})", indent=2)
        envs = list(fresh.load()[0].project.spec.environments)
        con.print(f"Planning every environment in promotion order (provenance ai, model {model})...")
        prov = Provenance(kind="ai", actor=AI_ACTOR, model=model)
        for env in envs:
            ep = EnvPlan(env)
            result.plans.append(ep)
            try:
                targets = targets_in(fresh, env, change.targets)
                if change.targets and not targets:
                    ep.absent = True
                    con.ok(f"Plan for {env}: nothing to plan (what this change touches is neither configured "
                           f"nor recorded in {env})", indent=2)
                    continue
                ep.plan = plan_like_honua_plan(fresh, env, target=targets, provenance=prov)
            except HonuaError as exc:
                ep.error = exc.message + (f": {exc.details.strip().splitlines()[0].strip()}" if exc.details else "")
                con.fail(f"Plan for {env}: not planned: {ep.error}", indent=2)
                continue
            ep.saved = _save(context, ep.plan)
            first, *rest = plan_lines(env, ep.plan)
            con.ok(first, indent=2)
            for line in rest:
                con.print(f"    {line.lstrip()}")
        saved = [ep.saved for ep in result.plans if ep.saved]
        if saved:
            con.print(f"Plans saved for review: {', '.join(saved)}")
        failed = [ep for ep in result.plans if ep.plan is None and not ep.absent]
        if failed:  # a change that cannot be planned everywhere is not proposed: nobody is asked
            result.outcome = "plan-failed"
            result.failed = [f"{ep.environment} ({ep.error})" for ep in failed]
            _restore(originals)
            return result
        con.print("Nothing was approved: the approvals these plans need are given by people "
                  "(honua approve PLAN --by NAME).")
        answer = ask()
        if answer != "yes":
            result.outcome = "no" if answer == "no" else "not-interactive"
            _restore(originals)
            return result
        if branch is None:
            result.outcome = "working-tree"
            return result
        result.commit = gitops.commit_files(root, branch, change.files, commit_message(result, model))
        result.branch, result.outcome = branch, "committed"
        dirty = [line for line in gitops.status_porcelain(root) or [] if not any(line.endswith(r) for r in change.files)]
        if dirty:
            con.warn(f"the working tree has {len(dirty)} uncommitted change(s): the branch holds HEAD plus this "
                     "change only (it was validated and planned with your changes)")
    except BaseException:
        _restore(originals)
        raise
    _restore(originals)  # the files live on the branch; the checkout stays as it was
    return result


def commit_message(result: GateResult, model: str) -> str:
    from honua_plan.ai.migrations import risk_text
    from honua_plan.config.provenance import trailer

    change = result.change
    plans = [f"- {ep.environment}: " + (f"risk {risk_text(ep.plan)}, {ep.plan.approvals_required} approval(s) required"
                                        if ep.plan is not None else "nothing to plan")
             for ep in result.plans]  # committed only when every environment planned or had nothing to plan
    lines = [change.title, "", f"Proposed by the AI assistant (honua-ai chat, model {model}, tool {change.tool}).",
             "Plans (provenance ai):", *plans, "",
             *(f"- {rel} ({status})" for rel, status in change.status.items()), "", trailer(model)]
    return "\n".join(lines) + "\n"


def print_result(con: Console, result: GateResult) -> None:
    """The closing lines: where the change is now, or why nothing was committed."""
    print_outcome(con, result.outcome, branch=result.branch, commit=result.commit, title=result.change.title,
                  files=tuple(result.change.status), failed=tuple(result.failed))


def print_outcome(con: Console, outcome: str, *, branch: str | None = None, commit: str | None = None,
                  title: str = "", files: tuple[str, ...] = (), failed: tuple[str, ...] = ()) -> None:
    if outcome == "plan-failed":
        con.print(f"Not proposed: the change could not be planned in {', '.join(failed)}. Nothing was committed "
                  "and the working tree is as it was; a proposal is kept only when every environment plans.")
    elif outcome == "committed":
        con.print(f"Created proposal: {branch}")
        con.print(f"Committed {(commit or '')[:12]} on branch {branch} (your checkout and working tree are unchanged)")
        con.print(f"Review with: git checkout {branch}")
        con.print(f"Push with: git push origin {branch}")
        con.print("No pull request was opened (this engine does not reach a remote): push the branch and open one.")
    elif outcome == "working-tree":
        con.print(f"Created proposal: {title}")
        con.print(f"The change is in the working tree, not committed (not a git repository): {', '.join(files)}")
    elif outcome == "no":
        con.print("Not committed: you answered no. The working tree is as it was; the saved plans stay for review.")
    else:
        con.print("Continue? (yes/no): stdin is not a terminal and --yes was not given: nothing was committed, "
                  "the working tree is as it was (the saved plans stay for review).")
        con.print("Rerun with --yes to commit such a proposal without the question.")
