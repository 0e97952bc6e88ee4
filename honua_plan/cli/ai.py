"""``honua-ai …`` (= ``honua ai …``): the AI consultant's commands, on the ``ai`` group that ``honua`` adds.

Thin like the other commands: flags in, one call into :mod:`honua_plan.ai` or the
Context, text out. Everything works offline except ``chat``'s free-text answers
(and ``explain``'s model mode), which need the extra ``ai`` and ``HONUA_AI_MODEL``.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

import click

from honua_plan.cli.base import confirm, echo_json, env_option, format_option, state, yes_option


@click.group()
def ai() -> None:
    """The AI assistant (extra 'ai'): its proposals are validated and planned like any other."""


ai_group: click.Group = ai


def _split(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


# --------------------------------------------------------------------------- propose


@ai_group.group("propose")
def propose() -> None:
    """Propose a change: written as files, then validated and planned (provenance ai)."""


@propose.command("layer")
@click.option("--table", required=True, metavar="[SCHEMA.]TABLE", help="The live table to publish.")
@click.option("--service", required=True, metavar="NAME", help="The service the layer belongs to.")
@click.option("--name", metavar="LAYER", help="Layer name (default: from the table, bike_lanes → bike-lanes).")
@click.option("--title", help="Title (default: from the table name).")
@click.option("--description", help="Description (default: generated).")
@click.option("--environments", metavar="ENV,ENV", help="Environments to write (default: all, in promotion order).")
@click.option("--branch", is_flag=False, flag_value="", default=None, metavar="BRANCH",
              help="Commit the files on a new git branch (default name: feature/add-<name>-layer).")
@click.option("--env-for-introspection", "introspect_env", metavar="ENV",
              help="Environment whose database is read (default: the first one).")
@click.option("--geometry-column", metavar="COLUMN", help="Geometry column (default: the table's first).")
@click.option("--force", is_flag=True, help="Replace layer files that exist.")
@click.pass_context
def propose_layer_cmd(ctx: click.Context, table: str, service: str, name: str | None, title: str | None,
                      description: str | None, environments: str | None, branch: str | None,
                      introspect_env: str | None, geometry_column: str | None, force: bool) -> None:
    """Generate a Layer for a live PostGIS table in every environment, validate it and plan it."""
    from honua_plan.ai.propose import default_branch, layer_name_for, print_proposal, propose_layer

    context = state(ctx).context()
    if branch == "":
        branch = default_branch(name or layer_name_for(table))
    proposal = propose_layer(context, table=table, service=service, name=name, title=title,
                             description=description, environments=_split(environments),
                             introspect_env=introspect_env, geometry_column=geometry_column, branch=branch,
                             force=force)
    print_proposal(context.console, proposal)


# --------------------------------------------------------------------------- migrate plan


@ai_group.group("migrate")
def migrate() -> None:
    """Plan migrations across the environments."""


@migrate.command("plan")
@click.argument("migration_id", required=False)
@format_option(("text", "json"))
@yes_option
@click.pass_context
def migrate_plan_cmd(ctx: click.Context, migration_id: str | None, fmt: str, yes: bool) -> None:
    """Plan pending migrations (or one) in every environment; on yes, deploy to the first."""
    from honua_plan.ai.migrations import analyze_migrations, render_block
    from honua_plan.errors import NotInteractiveError

    context = state(ctx).context(quiet=fmt == "json")
    con = context.console
    analysis = analyze_migrations(context, migration_id)
    if fmt == "json":
        echo_json(analysis.to_json())
        return
    for line in render_block(analysis):
        con.print(line)
    first = analysis.first
    if first is None:
        return
    env = first.environment
    con.print("")
    if first.plan is None or not first.plan.has_changes:
        # never skip an environment of the promotion order: nothing is deployed further on
        con.print(f"{env} could not be planned: nothing was deployed.")
        ctx.exit(1)
    plan = first.plan
    blocked = [p.message for p in plan.policy if p.status == "fail"]
    if plan.approvals_required and not plan.approved:
        con.print(f"{env} needs {plan.approvals_required} approval(s) before it can be deployed:")
        con.print(f"  honua plan --env {env} --target {' --target '.join(first.targets)} --out plan.json")
        con.print(f"  honua approve plan.json --by NAME && honua apply --env {env} plan.json")
        return
    if blocked:
        con.print(f"The {env} policy refuses a deployment now: {'; '.join(blocked)}")
        return
    try:
        confirm("Continue?", yes)
    except NotInteractiveError:
        con.print("Continue? (yes/no): stdin is not a terminal, nothing was deployed.")
        con.print(f"Deploy to {env} with: honua-ai migrate plan{' ' + migration_id if migration_id else ''} --yes")
        return
    result = context.apply(env, plan=plan, yes=True, show=False, command="honua-ai migrate plan")
    if result is not None:
        done = sum(1 for o in getattr(result, "outcomes", []) if o.status == "done")
        con.print("")
        con.print(f"Deployed to {env}: {done} action(s) in {getattr(result, 'seconds', 0.0):.1f}s "
                  f"(state serial {getattr(result, 'serial', 0)})")
    later = [e.environment for e in analysis.environments if e.environment != env and e.plan is not None]
    if later:
        mig = f" --migration {migration_id}" if migration_id else ""
        con.print(f"Next: honua-ai promote {env} {later[0]}{mig}")


# --------------------------------------------------------------------------- explain


@ai_group.command("explain")
@click.argument("plan_file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def explain_cmd(ctx: click.Context, plan_file: Path) -> None:
    """Explain a saved plan in plain language (offline unless a model is configured)."""
    from honua_plan.ai.explain import explain, explain_offline
    from honua_plan.errors import AIModelFailed
    from honua_plan.plan.store import load_plan

    context = state(ctx).context()
    plan = load_plan(plan_file)
    try:
        result = explain(plan)
    except AIModelFailed as exc:  # the engine's own explanation, then say the model failed
        context.console.print(explain_offline(plan).rstrip("\n"))
        context.console.print("")
        context.console.fail(exc.message + " (above: the engine's own explanation only)")
        ctx.exit(1)
    context.console.print(result.mode)
    context.console.print("")
    context.console.print(result.text.rstrip("\n"))


# --------------------------------------------------------------------------- schedule


@ai_group.group("schedule")
def schedule() -> None:
    """Schedule deployments into a policy's deployment windows."""


@schedule.command("migration")
@click.argument("migration_id")
@env_option()
@click.option("--window", required=True, metavar="WINDOW",
              help='"next-tuesday 10:00-12:00" or "2025-10-08 10:00-12:00" (time zone: the policy\'s).')
@click.option("--approval-required", is_flag=True, help="Require an approval even where the policy does not.")
@click.pass_context
def schedule_migration_cmd(ctx: click.Context, migration_id: str, environment: str, window: str,
                           approval_required: bool) -> None:
    """Record a deployment window for a migration (a 'schedule' event in the state)."""
    from honua_plan.ai.schedule import render_scheduled, schedule_migration

    context = state(ctx).context()
    con = context.console
    result = schedule_migration(context, migration_id, environment, window, approval_required=approval_required)
    for line in render_scheduled(result):
        con.print(line)
    con.print("")
    if not result.fits:
        con.warn(f"The window is {result.why}: the policy will refuse the apply then.")
    con.print(f"Scheduled as SCH-{result.serial} in the {environment} state: `honua schedule run` (from cron) "
              "deploys it inside the window; by hand:")
    if result.approval_required:
        con.print(f"  honua plan --env {environment} --target {result.migration.address} --out plan.json && "
                  "honua approve plan.json --by NAME")
        con.print(f"  then in the window: honua deploy migration {result.migration.metadata.id} "
                  f"--environment {environment} --plan plan.json")
    else:
        con.print(f"  in the window: honua deploy migration {result.migration.metadata.id} --environment {environment}")


# --------------------------------------------------------------------------- chat


@ai_group.command("chat")
@click.option("--service", metavar="NAME", help="Service for proposed layers (default: ask, or the first).")
@yes_option
@click.pass_context
def chat_cmd(ctx: click.Context, service: str | None, yes: bool) -> None:
    """Talk to the AI consultant (stdin that is not a terminal: one request per line).

    A model's proposal is validated and planned in every environment, then kept only after
    Continue? (yes/no), or with --yes."""
    from honua_plan.ai import llm
    from honua_plan.ai.session import ChatSession

    context = state(ctx).context()
    con = context.console
    session = ChatSession(context, service=service, yes=yes, interactive=sys.stdin.isatty())
    if not session.interactive:  # 0: done; 1: a requested action failed; 2: nothing was done
        code = session.run_text(sys.stdin.read())
        if code:
            ctx.exit(code)
        return
    con.print(f"honua-ai chat ({llm.status().mode_line.removeprefix('Mode: ')}). Type exit to leave.")
    while True:
        try:
            text = click.prompt("User", prompt_suffix=": ", default="", show_default=False)
        except (EOFError, click.exceptions.Abort):
            con.print("")
            break
        if text.strip().lower() in ("exit", "quit", "bye", ":q"):
            break
        if text.strip():
            session.turn(text)


# --------------------------------------------------------------------------- promote, recovery


@ai_group.command("promote")
@click.argument("src")
@click.argument("dst")
@click.option("--migration", metavar="ID", help="Promote this migration only.")
@click.option("--auto-validate", is_flag=True, help="Run the layer tests of SRC first.")
@click.option("--allow-untested", is_flag=True, help="Promote although SRC has no recorded test since its last change.")
@click.option("--allow-predicted-failure", is_flag=True,
              help="Apply with --yes although the plan predicts a validation failure (VAL001).")
@yes_option
@click.pass_context
def promote_cmd(ctx: click.Context, src: str, dst: str, migration: str | None, auto_validate: bool,
                allow_untested: bool, allow_predicted_failure: bool, yes: bool) -> None:
    """Promote what SRC runs to DST: compare, safety and policy checks, plan and apply DST."""
    context = state(ctx).context()
    context.promote(src, dst, migration=migration, auto_validate=auto_validate, allow_untested=allow_untested,
                    yes=yes, confirm=confirm, allow_predicted_failure=allow_predicted_failure)


@ai_group.command("disaster-recovery")
@env_option(required=False)
@click.option("--option", "choice", type=click.IntRange(1, 3), help="1 latest backup, 2 last deployment, 3 a commit.")
@click.option("--commit", metavar="SHA", help="The commit for option 3.")
@click.option("--backup", "backup_id", metavar="ID", help="A specific backup for option 1 (default: the latest).")
@click.option("--what", "reason", metavar="TEXT", help="What happened (recorded in the recovery event).")
@yes_option
@click.pass_context
def disaster_recovery_cmd(ctx: click.Context, environment: str | None, choice: int | None, commit: str | None,
                          backup_id: str | None, reason: str | None, yes: bool) -> None:
    """Analyze an environment, offer the recovery options, recover, and write the recovery report."""
    from honua_plan.ai.recovery import assess_recovery, options
    from honua_plan.errors import HonuaError, UsageError
    from honua_plan.state.model import utcnow

    context = state(ctx).context()
    con = context.console
    env = environment or context.load()[0].project.spec.environments[-1]
    interactive = sys.stdin.isatty()
    con.warn(" Disaster Recovery Mode Activated")
    con.print("")
    con.print("What happened?")
    if reason is None:
        if interactive:
            reason = click.prompt("", prompt_suffix="> ", default="", show_default=False)
        else:
            reason = sys.stdin.readline().strip()
            con.print(f"> {reason}")
    else:
        con.print(f"> {reason}")
    reason = reason or "(not described)"
    con.print("")
    con.print("AI: I'll help you recover. Let me analyze the situation.")
    con.print("")
    con.print(f"Analyzing {env} state...")
    now = utcnow()
    analysis = assess_recovery(context, env, now=now)
    for c in analysis.checks:
        con.print(c.line())
    con.print("")
    d = analysis.last_deployment
    if d is not None:
        con.print("Last successful deployment:")
        con.print(f"  - Commit: {d.commit[:9] if d.commit else 'unknown (not recorded)'}")
        con.print(f"  - Date: {d.at:%Y-%m-%d %H:%M:%S} UTC")
        con.print(f"  - Environment: {env}")
        con.print("  - Status: applied without failures")
    else:
        con.print(f"Last successful deployment: none recorded in the {env} state")
    con.print("")
    offered = options(analysis, now=now)
    con.print("Recovery options:")
    for i, (text, available) in enumerate(offered, 1):
        con.print(f"  {i}. {text}" + ("" if available else "  [unavailable]"))
    con.print("")
    if choice is None:
        if not interactive:
            raise UsageError("no recovery option chosen and stdin is not a terminal", hint="pass --option 1|2|3")
        choice = click.prompt("Which option? (1/2/3)", type=click.IntRange(1, 3))
    if not offered[choice - 1][1]:
        raise UsageError(f"option {choice} is not available: {offered[choice - 1][0]}")
    kwargs: dict[str, Any] = {"yes": yes, "confirm": confirm}
    if choice == 1:
        con.print("Initiating recovery from backup...")
        kwargs.update(backup_id=backup_id, latest=backup_id is None)
    elif choice == 2:
        assert d is not None and d.commit
        con.print(f"Initiating recovery of the last successful deployment (commit {d.commit[:9]})...")
        kwargs.update(last_deployment=True)
    else:
        if commit is None:
            if not interactive:
                raise UsageError("option 3 needs a commit", hint="pass --commit SHA")
            commit = click.prompt("Which commit?").strip()
        con.print(f"Initiating recovery from commit {commit}...")
        kwargs.update(commit=commit)
    con.print("")
    if "reason" in inspect.signature(context.recover).parameters:
        kwargs["reason"] = reason
    else:
        _record_reason(context, env, reason, choice)
    error: str | None = None
    ok: Any = False
    try:
        ok = context.recover(env, **kwargs)
    except HonuaError as exc:
        error = exc.message
        raise
    finally:
        _report(context, env, reason, analysis, offered[choice - 1][0], now, error, choice)
    if ok is False:
        ctx.exit(1)


def _report(context: Any, env: str, reason: str, analysis: Any, option: str, started: Any,
            error: str | None, choice: int = 0) -> None:
    """Write the recovery report of a recovery that ran (succeeded or not) and say where it is;
    one refused or cancelled before it touched anything leaves no report (nothing changed)."""
    from honua_plan.ai.recovery import write_report

    doc = context.recorded(env)
    event = next((e for e in reversed(doc.events)
                  if e.kind in ("recover", "recover-failed") and e.at >= started), None)
    if event is None:
        return
    from honua_plan.ai.recovery import chosen_option
    from honua_plan.workflows.incidents import log_incident

    option = chosen_option(choice, option, analysis, event)  # names the backup restored, not the one offered

    rid, path = write_report(context, env, what=reason, analysis=analysis, option=option, event=event, error=error)
    rel = path.relative_to(context.root) if path.is_relative_to(context.root) else path
    incident = log_incident(context, env, kind="recovery", summary=f"recovery of {env} ({option}): {reason}",
                            report=path, command="honua-ai disaster-recovery")
    context.console.print("")
    context.console.print("Post-recovery tasks:")
    context.console.ok(f"Incident logged: {incident}", indent=2)
    from honua_plan.apply.notify import notify

    delivery = notify(context.desired(env).policy, "recovery", environment=env, actor=context.actor,
                      title=f"honua recovery: {env}", lines=[f"Incident: {incident}", f"Option: {option}",
                                                            f"What happened: {reason}", f"Report: {rel}"])
    if delivery.line is None:
        context.console.print("  - Stakeholders: not notified (no notification is configured)")
    else:
        (context.console.fail if delivery.failed else context.console.ok)(delivery.line, indent=2)
    context.console.ok(f"Recovery report generated: {rid} ({rel})", indent=2)


def _record_reason(context: Any, env: str, reason: str, choice: int) -> None:
    """Fallback when ``Context.recover`` takes no reason: record it as its own event."""
    with context.backend(env) as backend, backend.lock("honua-ai disaster-recovery") as writer:
        doc = writer.read()
        doc = doc.record_event("recover-request", reason, actor=context.actor, details={"option": choice})
        writer.write(doc, expected_serial=doc.serial)
