"""``honua schedule migration|apply|list|cancel|run`` (see :mod:`honua_plan.workflows.schedule`)."""

from __future__ import annotations

import click

from honua_plan.cli.base import echo_json, echo_line, env_option, format_option, state

WINDOW = click.option("--window", required=True, metavar="WINDOW",
                      help='"next-tuesday 10:00-12:00" or "2025-10-08 10:00-12:00" (time zone: the policy\'s).')
APPROVAL = click.option("--approval-required", is_flag=True,
                        help="Require an approval even where the policy does not.")


@click.group("schedule")
def schedule_group() -> None:
    """Schedule deployments into windows; `honua schedule run` (cron) executes the due ones."""


@schedule_group.command("migration")
@click.argument("migration_id")
@env_option()
@WINDOW
@APPROVAL
@click.pass_context
def schedule_migration_cmd(ctx: click.Context, migration_id: str, environment: str, window: str,
                           approval_required: bool) -> None:
    """Schedule a migration (the seed's `honua-ai schedule migration`)."""
    from honua_plan.ai.schedule import render_scheduled, schedule_migration

    context = state(ctx).context()
    result = schedule_migration(context, migration_id, environment, window, approval_required=approval_required)
    for line in render_scheduled(result):
        context.console.print(line)
    context.console.print("")
    context.console.print(f"Scheduled as SCH-{result.serial}: `honua schedule run` deploys it inside the window "
                          "(run it from cron every few minutes).")


@schedule_group.command("apply")
@env_option()
@WINDOW
@APPROVAL
@click.option("--plan", "plan_id", default=None, metavar="PLAN_ID",
              help="The saved, approved plan to apply (needed where an approval is required).")
@click.pass_context
def schedule_apply_cmd(ctx: click.Context, environment: str, window: str, approval_required: bool,
                       plan_id: str | None) -> None:
    """Schedule a deployment of the whole environment."""
    from honua_plan.workflows.schedule import schedule_apply

    context = state(ctx).context()
    entry = schedule_apply(context, environment, window, approval_required=approval_required, plan_id=plan_id)
    context.console.ok(f"Scheduled {entry.id}: {entry.what} of {environment}, "
                       f"{entry.start:%Y-%m-%d %H:%M}-{entry.end:%H:%M} {entry.start.tzname()}"
                       + (f", plan {plan_id}" if plan_id else ""))


@schedule_group.command("list")
@env_option(required=False)
@format_option(("text", "json"))
@click.pass_context
def schedule_list_cmd(ctx: click.Context, environment: str | None, fmt: str) -> None:
    """List the schedules and their status."""
    from honua_plan.workflows.schedule import list_entries

    found = list_entries(state(ctx).context(quiet=fmt == "json"), environment)
    if fmt == "json":
        echo_json({"format_version": 1, "schedules": [e.to_json() for e in found]})
        return
    if not found:
        click.echo("No schedules.")
    for e in found:
        echo_line(f"{e.id:<9} {e.environment:<12} {e.what:<16} {e.start:%Y-%m-%d %H:%M}-{e.end:%H:%M} "
                   f"{e.start.tzname()}  {e.status}")


@schedule_group.command("cancel")
@click.argument("schedule_id")
@env_option()
@click.pass_context
def schedule_cancel_cmd(ctx: click.Context, schedule_id: str, environment: str) -> None:
    """Cancel a waiting schedule."""
    from honua_plan.workflows.schedule import cancel

    context = state(ctx).context()
    entry = cancel(context, environment, schedule_id)
    context.console.ok(f"Cancelled {entry.id} ({entry.what} of {environment})")


@schedule_group.command("run")
@env_option(required=False)
@click.pass_context
def schedule_run_cmd(ctx: click.Context, environment: str | None) -> None:
    """Execute every due schedule once (run from cron or a timer every few minutes)."""
    from honua_plan.state.model import utcnow
    from honua_plan.workflows.schedule import run_due

    context = state(ctx).context()
    outcomes = run_due(context, now=utcnow(), environment=environment)
    failed = False
    for o in outcomes:
        line = f"{o.entry.id} ({o.entry.environment}, {o.entry.what}): {o.outcome}" + (f": {o.message}" if o.message else "")
        if o.outcome == "applied":
            context.console.ok(line)
        elif o.outcome in ("failed", "missed"):
            context.console.fail(line)
            failed = True
        else:
            context.console.print(f"  {line}")
    if not outcomes:
        context.console.print("Nothing scheduled.")
    if failed:
        ctx.exit(1)
