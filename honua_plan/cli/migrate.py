"""``honua migrate …`` and ``honua deploy migration``: migrations one at a time, Flyway style."""

from __future__ import annotations

from pathlib import Path

import click

from honua_plan.cli.base import (
    apply_result,
    by_option,
    confirm,
    echo_json,
    echo_line,
    env_option,
    format_option,
    state,
    yes_option,
)


@click.group()
def migrate() -> None:
    """Database migrations (migrations/NNN_name.yaml): status, plan, up, down."""


@migrate.command("status")
@env_option()
@format_option(("text", "json"))
@click.pass_context
def migrate_status(ctx: click.Context, environment: str, fmt: str) -> None:
    """Which migrations are applied, pending, rolled back or changed since applied."""
    context = state(ctx).context(quiet=fmt == "json")
    rows = context.migrate_status(environment)
    if fmt == "json":
        echo_json({"environment": environment, "migrations": rows})
        return
    for r in rows:
        when = (r["applied_at"] or "")[:19].replace("T", " ")
        echo_line(f"{r['id']:<6} {r['status']:<22} {when:<20} {r['name']}")


@migrate.command("baseline")
@click.argument("migration_id")
@env_option()
@click.option("--reason", required=True, help="Why (recorded in the state's history).")
@click.pass_context
def migrate_baseline_cmd(ctx: click.Context, migration_id: str, environment: str, reason: str) -> None:
    """Adopt an existing database: record the migrations up to ID as applied, without running them."""
    from honua_plan.workflows.state import migrate_baseline

    context = state(ctx).context()
    adopted = migrate_baseline(context, environment, migration_id, reason)
    if adopted:
        context.console.ok(f"Recorded as applied without running (baseline): {', '.join(adopted)}")
    else:
        context.console.print(f"Nothing to baseline: every migration up to {migration_id} is applied in {environment}.")


@migrate.command("repair")
@click.argument("migration_id")
@env_option()
@click.option("--reason", required=True, help="Why the applied migration's file was edited (recorded).")
@click.pass_context
def migrate_repair_cmd(ctx: click.Context, migration_id: str, environment: str, reason: str) -> None:
    """Accept the edited spec of an applied migration (its new checksum); nothing runs."""
    from honua_plan.workflows.state import migrate_repair

    context = state(ctx).context()
    old, new = migrate_repair(context, environment, migration_id, reason)
    context.console.ok(f"Migration {migration_id}: checksum {old[:19]}… → {new[:19]}… accepted ({reason})")


@migrate.command("plan")
@env_option()
@click.argument("migration_id", required=False)
@format_option()
@click.pass_context
def migrate_plan(ctx: click.Context, environment: str, migration_id: str | None, fmt: str) -> None:
    """Plan pending migrations (or one, with its dependencies)."""
    from honua_plan.plan.render import render

    context = state(ctx).context(quiet=fmt != "text")
    targets = context.migration_targets(environment, migration_id)
    if not targets:
        context.console.print(f"No pending migrations in {environment}.")
        return
    click.echo(render(context.plan(environment, target=targets), fmt, colour=context.console.colour), nl=False)


@migrate.command("render")
@env_option(required=False)
@click.argument("migration_id", required=False)
@click.pass_context
def migrate_render(ctx: click.Context, environment: str | None, migration_id: str | None) -> None:
    """Write pending migrations' metadata edits (or one's) into the layer files, for the
    pull request to carry them; deployment then verifies them instead of editing."""
    from honua_plan.workflows.render import render_metadata

    context = state(ctx).context()
    result = render_metadata(context, environment, migration_id)
    for f in result.files:
        context.console.ok(f.line())
    if not result.files:
        which = f"migration {result.migration}" if result.migration else "the pending migrations"
        context.console.print(f"Nothing to render: the files of {', '.join(result.environments) or 'no environment'} "
                              f"already hold the metadata of {which}.")


@migrate.command("up")
@env_option()
@click.argument("migration_id", required=False)
@yes_option
@by_option
@click.pass_context
def migrate_up(ctx: click.Context, environment: str, migration_id: str | None, yes: bool) -> None:
    """Apply pending migrations (or one, with its dependencies)."""
    context = state(ctx).context()
    targets = context.migration_targets(environment, migration_id)
    if not targets:
        context.console.print(f"No pending migrations in {environment}.")
        return
    plan_ = context.plan(environment, target=targets)
    apply_result(ctx, context.apply(environment, yes=yes, confirm=confirm, plan=plan_, command="honua migrate up",
                                     banner=False))


@migrate.command("down")
@env_option()
@click.argument("migration_id")
@yes_option
@by_option
@click.pass_context
def migrate_down(ctx: click.Context, environment: str, migration_id: str, yes: bool) -> None:
    """Run the down steps of an applied migration, then its post-down validations."""
    context = state(ctx).context()
    plan_ = context.down_plan(environment, migration_id)
    apply_result(ctx, context.apply(environment, yes=yes, confirm=confirm, plan=plan_,
                                     command="honua migrate down", banner=False))


@click.group()
def deploy() -> None:
    """Deploy one thing (the seed's `honua deploy migration 003 --environment dev`)."""


@deploy.command("migration")
@click.argument("migration_id")
@env_option()
@click.option("--plan", "plan_file", type=click.Path(dir_okay=False, path_type=Path),
              help="A saved, approved plan for this migration (needed where policy requires approval).")
@yes_option
@by_option
@click.pass_context
def deploy_migration(ctx: click.Context, migration_id: str, environment: str, plan_file: Path | None,
                     yes: bool) -> None:
    """Deploy a migration (and its pending dependencies) with backup, validation and rollback."""
    context = state(ctx).context()
    if plan_file is not None:
        apply_result(ctx, context.apply(environment, plan_file, yes=True, command="honua deploy migration",
                                         banner=False))
        return
    plan_ = context.plan(environment, target=(context.migration_address(environment, migration_id),))
    apply_result(ctx, context.apply(environment, yes=True if yes or plan_.approvals_required == 0 else yes,
                                     confirm=confirm, plan=plan_, command="honua deploy migration",
                                     show=False, banner=False))
