"""``honua`` and ``honua-ai``: thin click commands over :class:`honua_plan.context.Context`.

Each command converts its flags and calls one Context method; heavy modules are
imported inside the commands so that ``honua --help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from honua_plan.cli.base import (
    AppState,
    HonuaGroup,
    by_option,
    confirm,
    echo_json,
    env_option,
    format_option,
    quick_exit,
    state,
    yes_option,
)
from honua_plan.cli.base import run as base_run


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from honua_plan.cli.versions import version_lines

    click.echo("\n".join(version_lines()))
    ctx.exit()


@click.group(cls=HonuaGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config-dir", "-C", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
    show_default=True, help="The config repository (a folder with honua.yaml).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the engine, Python, PostgreSQL, PostGIS and pygeoapi versions and exit.")
@click.pass_context
def main(ctx: click.Context, config_dir: Path, debug: bool) -> None:
    """Plan and apply a GIS server's configuration and its PostGIS database."""
    ctx.obj = AppState(root=config_dir, debug=debug)


# --------------------------------------------------------------------------- validate


@main.command()
@env_option(required=False)
@format_option(("text", "json"))
@click.pass_context
def validate(ctx: click.Context, environment: str | None, fmt: str) -> None:
    """Check schema, references, SQL and templates of the config repository."""
    quick_exit()
    from honua_plan.errors import ConfigError

    app = state(ctx)
    context = app.context(quiet=fmt == "json")
    try:
        result = context.validate(environment)
    except ConfigError as exc:
        if fmt == "json":
            from honua_plan.workspace import config_error_summary

            echo_json(config_error_summary(exc))
            ctx.exit(1)
        raise
    if fmt == "json":
        echo_json({
            "valid": True,
            "environments": list(result.environments),
            "counts": result.counts,
            "warnings": [
                {"path": w.location.path, "line": w.location.line, "column": w.location.column,
                 "message": w.message}
                for w in result.warnings
            ],
        })
        return
    con = context.console
    for w in result.warnings:
        con.print(str(w), err=True)
    c = result.counts
    envs = ", ".join(result.environments)
    con.ok(
        f"Validated metadata syntax ({envs}): {c['datasources']} datasource(s), "
        f"{c['servers']} server(s), {c['services']} service(s), {c['layers']} layer(s), "
        f"{c['migrations']} migration(s), {c['policies']} polic{'y' if c['policies'] == 1 else 'ies'}"
    )


# --------------------------------------------------------------------------- completion

COMPLETION_SHELLS = ("bash", "zsh", "fish")


@main.command()
@click.argument("shell", type=click.Choice(COMPLETION_SHELLS))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL (e.g. eval "$(honua completion bash)")."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None  # click ships all three
    click.echo(cls(main, {}, "honua", "_HONUA_COMPLETE").source(), nl=False)


# --------------------------------------------------------------------------- init, schema


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite an existing honua.yaml.")
@click.pass_context
def init(ctx: click.Context, directory: Path, force: bool) -> None:
    """Scaffold a new config repository in DIRECTORY."""
    context = state(ctx).context()
    written = context.init(directory, force=force)
    context.console.ok(f"Created {len(written)} files in {directory}")
    context.console.print(f"Next: cd {directory} && honua validate")


@main.group()
def schema() -> None:
    """JSON Schemas of the resource kinds (for editors and CI)."""


@schema.command("export")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write to (default: schemas/ of the config repository).")
@click.pass_context
def schema_export(ctx: click.Context, out: Path | None) -> None:
    """Write schemas/<kind>.schema.json from the models."""
    context = state(ctx).context()
    written = context.schema_export(out)
    context.console.ok(f"Wrote {len(written)} schemas to {written[0].parent if written else out}")


# --------------------------------------------------------------------------- dev


@main.group()
def dev() -> None:
    """The local loop: embedded PostGIS, sample data, apply + test."""


@dev.group()
def db() -> None:
    """The embedded PostgreSQL + PostGIS cluster under state/.pg."""


def _print_status(ctx: click.Context, fmt: str, action: str) -> None:
    context = state(ctx).context(quiet=fmt == "json")
    stopped_pid: int | None = None
    if action == "stop":
        stopped_pid, st = context.db_stop()
    else:
        st = getattr(context, f"db_{action}")()
    if fmt == "json":
        data = {"running": st.running, "pid": st.pid, "data_dir": str(st.data_dir),
                "socket_dir": str(st.socket_dir), "port": st.port, "dsn": st.dsn}
        if action == "stop":
            data["stopped"] = stopped_pid is not None
        echo_json(data)
        return
    if stopped_pid is not None:  # db_stop checked that it is no longer running
        context.console.ok(f"Stopped the embedded PostGIS (pid {stopped_pid}; data: {st.data_dir})")
    elif st.running:
        from honua_plan.errors import HonuaError
        from honua_plan.providers.postgis.connections import embedded_database

        context.console.ok(f"Embedded PostGIS running (pid {st.pid})")
        context.console.print(f"  data:    {st.data_dir}")
        context.console.print(f"  socket:  {st.socket_dir} (port {st.port})")
        try:
            envs = context.load()[0].project.spec.environments
        except HonuaError:  # a broken config must not hide the database status
            envs = []
        if envs:
            context.console.print("  databases (one per environment): "
                                  + ", ".join(embedded_database(e) for e in envs))
    else:
        context.console.print(f"Embedded PostGIS is not running (data: {st.data_dir})")
        if action == "status":
            ctx.exit(3)


@db.command("start")
@format_option(("text", "json"))
@click.pass_context
def db_start(ctx: click.Context, fmt: str) -> None:
    """Create (first time) and start the embedded cluster."""
    _print_status(ctx, fmt, "start")


@db.command("stop")
@format_option(("text", "json"))
@click.pass_context
def db_stop(ctx: click.Context, fmt: str) -> None:
    """Stop the embedded cluster."""
    _print_status(ctx, fmt, "stop")


@db.command("status")
@format_option(("text", "json"))
@click.pass_context
def db_status(ctx: click.Context, fmt: str) -> None:
    """Show whether the embedded cluster runs (exit 3 when it does not)."""
    _print_status(ctx, fmt, "status")


@dev.command("seed-data")
@env_option(required=False)
@click.option("--rows", type=int, default=42, show_default=True, help="Number of bike lanes to load.")
@click.option("--replace", is_flag=True,
              help="Replace rows seed-data did not make (a pg_dump backup is taken first).")
@click.pass_context
def seed_data(ctx: click.Context, environment: str | None, rows: int, replace: bool) -> None:
    """Load the example's sample bike lanes (not in production; never over other rows without --replace)."""
    import time

    context = state(ctx).context()
    env = environment or "dev"
    start = time.perf_counter()
    count = context.seed_data(env, rows, replace=replace)
    context.console.ok(f"Loaded {count} bike lanes into bike_lanes ({env})", time.perf_counter() - start)


# --------------------------------------------------------------------------- ai



def run() -> None:
    """Console script ``honua``."""
    base_run(main)


def ai_main() -> None:
    """Console script ``honua-ai``: the ``ai`` group of ``honua``."""
    base_run(main, ["ai", *sys.argv[1:]], prog_name="honua-ai")


# --------------------------------------------------------------------------- plan, show, approve, drift


def _provenance(kind: str | None, actor: str | None) -> object:
    if kind is None:
        return None
    from honua_plan.plan.model import Provenance

    return Provenance(kind=kind, actor=actor)


@main.command()
@env_option()
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), help="Save the plan to a file.")
@format_option()
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 without changes, 2 with changes, 1 on error.")
@click.option("--refresh-only", is_flag=True, help="Only show what changed outside honua (drift).")
@click.option("--target", "targets", multiple=True, metavar="ADDR",
              help="Limit the plan to ADDR and what it depends on (repeatable).")
@click.option("--provenance", type=click.Choice(["human", "ci", "ai"]), default=None,
              help="Who proposes this plan (default: ci when $CI is set, else human).")
@click.pass_context
def plan(ctx: click.Context, environment: str, out: Path | None, fmt: str, detailed_exitcode: bool,
         refresh_only: bool, targets: tuple[str, ...], provenance: str | None) -> None:
    """Show what apply would change, with risk levels and a rollback plan."""
    if out is None:
        quick_exit()
    context = state(ctx).context(quiet=fmt != "text")
    result = context.plan(environment, target=targets, refresh_only=refresh_only,
                          provenance=_provenance(provenance, None),  # type: ignore[arg-type]
                          refuse_unfinished=True)
    from honua_plan.plan.render import render  # after plan(): its catalog read overlaps this import
    from honua_plan.plan.store import save_plan

    click.echo(render(result, fmt, colour=context.console.colour), nl=False)
    if out is not None:
        save_plan(result, out)
        if fmt == "text":
            context.console.print(f"\nSaved the plan to {out}: apply it with `honua apply --env {environment} {out}`")
    if detailed_exitcode:
        changed = bool(result.drift) if refresh_only else result.has_changes
        ctx.exit(2 if changed else 0)


@main.command()
@click.argument("plan_file", type=click.Path(dir_okay=False, path_type=Path))
@format_option()
@click.pass_context
def show(ctx: click.Context, plan_file: Path, fmt: str) -> None:
    """Render a saved plan file with the exact SQL of every step; exit 1 when its content
    does not match its digest or its approvals (it was edited)."""
    from honua_plan.errors import PlanTamperedError
    from honua_plan.plan.render import render, render_text
    from honua_plan.plan.store import load_plan, verify_digest

    context = state(ctx).context(quiet=fmt != "text")
    plan = load_plan(plan_file)
    try:
        verify_digest(plan, source=str(plan_file))
        problem = None
    except PlanTamperedError as exc:
        problem = exc
    if problem is not None:  # before and after the plan: it cannot be missed
        click.echo(f"WARNING: {problem.message}", err=True)
    if fmt == "text":
        click.echo(render_text(plan, colour=context.console.colour, detailed=True), nl=False)
    else:
        click.echo(render(plan, fmt, colour=context.console.colour), nl=False)
    if problem is not None:
        raise problem


@main.command()
@click.argument("plan_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--by", "by", required=True, help="Who approves (name or e-mail; a member of the policy's group).")
@click.option("--comment", default="", help="Why.")
@click.option("--key", "key", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Sign the approval with this SSH private key (default: $HONUA_SIGNING_KEY).")
@click.pass_context
def approve(ctx: click.Context, plan_file: Path, by: str, comment: str, key: Path | None) -> None:
    """Record an approval of a saved plan file's content (its digest), signed with --key."""
    context = state(ctx).context()
    result = context.approve(plan_file, by, comment, key=key)
    signed = " (signed)" if result.approvals[-1].signature else ""
    if result.approvals_required <= 0:  # recorded all the same: see the README (Plans)
        context.console.ok(f"Recorded the approval by {by.strip()}{signed}; this plan requires "
                           "no approval (it can be applied without one)")
        return
    context.console.ok(
        f"Approved by {by.strip()}{signed} ({len(result.approvals)} of {result.approvals_required} required)"
    )


@main.command()
@env_option()
@format_option()
@click.pass_context
def drift(ctx: click.Context, environment: str, fmt: str) -> None:
    """Compare live objects with the recorded state; exit 2 when something drifted."""
    quick_exit()
    context = state(ctx).context(quiet=fmt != "text")
    result = context.plan(environment, refresh_only=True, refuse_unfinished=True)
    from honua_plan.plan.render import render
    if fmt == "json":
        echo_json({"format_version": 1, "environment": environment, "drifted": bool(result.drift),
                   "drift": [d.model_dump(mode="json") for d in result.drift]})
    else:
        click.echo(render(result, fmt, colour=context.console.colour), nl=False)
    ctx.exit(2 if result.drift else 0)


# --------------------------------------------------------------------------- state


@main.group("state")
def state_group() -> None:
    """Inspect the recorded state."""


@state_group.command("list")
@env_option()
@format_option(("text", "json"))
@click.pass_context
def state_list(ctx: click.Context, environment: str, fmt: str) -> None:
    """List the recorded resources."""
    context = state(ctx).context(quiet=fmt == "json")
    doc = context.recorded(environment, check=False)  # inspecting a state that went backwards is allowed
    if fmt == "json":
        echo_json({"environment": environment, "serial": doc.serial, "lineage": doc.lineage,
                   "resources": sorted(doc.resources)})
        return
    for address in sorted(doc.resources):
        click.echo(address)
    for mid in doc.applied_migrations():
        click.echo(f"migration.{mid}")


@state_group.command("show")
@env_option()
@click.argument("address", required=False)
@click.pass_context
def state_show(ctx: click.Context, environment: str, address: str | None) -> None:
    """Show the whole state document, or one resource."""
    context = state(ctx).context()
    doc = context.recorded(environment, check=False)
    if address is None:
        echo_json(doc.to_json_data())
        return
    rec = doc.resources.get(address)
    if rec is None:
        from honua_plan.errors import UsageError

        raise UsageError(f"no resource {address} in the state of {environment}")
    echo_json(rec.model_dump(mode="json"))


@state_group.command("history")
@env_option()
@click.option("--limit", type=int, default=20, show_default=True)
@format_option(("text", "json"))
@click.pass_context
def state_history(ctx: click.Context, environment: str, limit: int, fmt: str) -> None:
    """The event log (newest last)."""
    context = state(ctx).context(quiet=fmt == "json")
    with context.backend(environment) as backend:
        events = backend.reader().history(limit)
    if fmt == "json":
        echo_json([e.model_dump(mode="json") for e in events])
        return
    for e in events:
        click.echo(f"{e.at:%Y-%m-%d %H:%M:%S}  serial {e.serial:<4} {e.kind:<9} {e.actor or '-':<20} {e.message}")


@state_group.command("unlock")
@env_option()
@click.option("--force", is_flag=True, help="Break the lock even though its holder may still run.")
@click.pass_context
def state_unlock(ctx: click.Context, environment: str, force: bool) -> None:
    """Remove the state lock of a holder that is dead (refused while it runs, unless --force)."""
    context = state(ctx).context()
    with context.backend(environment) as backend:
        message = backend.force_unlock(force=force)
    if message.startswith("warning: "):
        context.console.warn(message.removeprefix("warning: "))
    else:
        context.console.print(message)


@state_group.command("restore-backup")
@env_option()
@click.option("--force", is_flag=True, help="Replace the state even though nothing says it went backwards.")
@click.pass_context
def state_restore_backup(ctx: click.Context, environment: str, force: bool) -> None:
    """Make state/<env>.json.bak the state again (after it went backwards or was deleted)."""
    context = state(ctx).context()
    doc, bak_serial, replaced = context.restore_state_backup(environment, force=force)
    con = context.console
    con.ok(f"Restored the state of {environment} from state/{environment}.json.bak (serial {bak_serial}); "
           f"it is now serial {doc.serial}")
    if replaced:
        con.print(f"  the file it replaced is kept as {replaced}")
    if doc.pending is not None:
        con.print(f"  it holds an apply that had not finished when it was saved: finish it with "
                  f"`honua apply --env {environment} --resume` (or undo it with --rollback)")
    con.print(f"  the backup is the version before the last write: check `honua plan --env {environment}` "
              "before applying")


# --------------------------------------------------------------------------- apply


@main.command()
@env_option()
@click.argument("plan_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@yes_option
@click.option("--resume", is_flag=True, help="Continue an apply that was interrupted.")
@click.option("--verbose", "-v", is_flag=True,
              help="List every resource and check (a long apply otherwise shows a few per phase and a summary).")
@click.option("--rollback", "rollback_", is_flag=True, help="Undo what an interrupted apply did.")
@click.option("--allow-destroy", is_flag=True,
              help="Let a rollback run a down step that destroys data (DROP TABLE/COLUMN, TRUNCATE of rows); "
                   "a backup of what it drops is taken just before.")
@click.option("--assume-done", "assume_done", multiple=True, metavar="STEP",
              help="With --resume: step STEP (e.g. migration.003#1), outside a transaction, completed.")
@click.option("--assume-not-done", "assume_not_done", multiple=True, metavar="STEP",
              help="With --resume: step STEP did not complete; run it again.")
@by_option
@click.pass_context
def apply(ctx: click.Context, environment: str, plan_file: Path | None, yes: bool, resume: bool, verbose: bool,
          rollback_: bool, allow_destroy: bool, assume_done: tuple[str, ...], assume_not_done: tuple[str, ...]) -> None:
    """Apply a fresh plan (after confirmation) or a saved, approved plan file."""
    from honua_plan.errors import UsageError

    if resume and rollback_:
        raise UsageError("--resume and --rollback exclude each other")
    if (assume_done or assume_not_done) and not resume:
        raise UsageError("--assume-done and --assume-not-done go with --resume")
    both = set(assume_done) & set(assume_not_done)
    if both:
        raise UsageError(f"step {sorted(both)[0]} cannot be both --assume-done and --assume-not-done")
    context = state(ctx).context()
    context.console.verbose = verbose
    _apply_result(ctx, context.apply(environment, plan_file, yes=yes, resume=resume, rollback=rollback_,
                                     allow_destroy=allow_destroy, assume_done=frozenset(assume_done),
                                     assume_not_done=frozenset(assume_not_done), confirm=confirm))


def _apply_result(ctx: click.Context, result: object) -> None:
    if result is None:
        return
    context = state(ctx).context()
    outcomes = getattr(result, "outcomes", [])
    done = sum(1 for o in outcomes if o.status == "done")
    undone = sum(1 for o in outcomes if o.status == "rolled_back")
    context.console.print("")
    what = f"Rollback complete: {undone} action(s) undone" if undone and not done else \
        f"Apply complete: {done} action(s)"
    context.console.print(f"{what} in {getattr(result, 'seconds', 0.0):.1f}s "
                          f"(state serial {getattr(result, 'serial', 0)})")


# --------------------------------------------------------------------------- migrations


@main.group()
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
        click.echo(f"{r['id']:<6} {r['status']:<22} {when:<20} {r['name']}")


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
    _apply_result(ctx, context.apply(environment, yes=yes, confirm=confirm, plan=plan_, command="honua migrate up",
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
    _apply_result(ctx, context.apply(environment, yes=yes, confirm=confirm, plan=plan_,
                                     command="honua migrate down", banner=False))


@main.group()
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
        _apply_result(ctx, context.apply(environment, plan_file, yes=True, command="honua deploy migration",
                                         banner=False))
        return
    plan_ = context.plan(environment, target=(context.migration_address(environment, migration_id),))
    _apply_result(ctx, context.apply(environment, yes=True if yes or plan_.approvals_required == 0 else yes,
                                     confirm=confirm, plan=plan_, command="honua deploy migration",
                                     show=False, banner=False))


@main.group()
def backup() -> None:
    """Backups of an environment's tables (pg_dump, under state/backups)."""


@backup.command("create")
@env_option()
@by_option
@click.pass_context
def backup_create(ctx: click.Context, environment: str) -> None:
    """Back up the tables the environment's layers and migrations touch, with its metadata and commit."""
    state(ctx).context().backup_create(environment)


@backup.command("list")
@env_option()
@format_option(("text", "json"))
@click.pass_context
def backup_list(ctx: click.Context, environment: str, fmt: str) -> None:
    """List the backups of an environment, newest last: age, size, tables, rows and checksums."""
    from honua_plan.console import format_duration
    from honua_plan.state.model import utcnow

    context = state(ctx).context(quiet=fmt == "json")
    records = sorted(context.backups(environment), key=lambda r: r.created_at)
    now = utcnow()
    if fmt == "json":
        echo_json([{**r.model_dump(mode="json"), "age_s": round((now - r.created_at).total_seconds(), 1)}
                   for r in records])
        return
    if not records:
        click.echo(f"No backups for {environment}.")
    for r in records:
        age = format_duration(max(0.0, (now - r.created_at).total_seconds()))
        click.echo(f"{r.id}  {r.created_at:%Y-%m-%d %H:%M:%S} UTC ({age} ago)  {r.size_bytes / 1024:.1f} KiB  "
                   f"commit {r.commit[:9] if r.commit else '-'}  migration {r.migration_id or '-'}")
        for table in r.tables:
            c = r.contents.get(table) or r.contents.get(f"public.{table}")
            detail = (f"{c.rows:,} rows, checksum {c.checksum[:12]}…, {len(c.indexes)} index(es), "
                      f"{len(c.constraints)} constraint(s)") if c is not None else "no checksum recorded"
            click.echo(f"    {table}: {detail}")


# --------------------------------------------------------------------------- served layers


def _default_env(ctx: click.Context, environment: str | None) -> str:
    """Commands of the local loop default to the first environment (dev in the example)."""
    if environment:
        return environment
    context = state(ctx).context()
    from honua_plan.config.loader import load

    return load(context.root)[0].project.spec.environments[0]


@dev.command("apply")
@env_option(required=False)
@yes_option
@by_option
@click.pass_context
def dev_apply(ctx: click.Context, environment: str | None, yes: bool) -> None:
    """Apply layers and services (and what they need), start the local server, test the layers."""
    env = _default_env(ctx, environment)
    context = state(ctx).context()
    _result, ok = context.dev_apply(env, confirm=confirm, yes=True)
    if not ok:
        ctx.exit(1)


@main.command("test")
@env_option(required=False)
@click.option("--layer", "layer", metavar="NAME", help="One layer (name or collection id); default: all.")
@format_option(("text", "json"))
@click.pass_context
def test_cmd(ctx: click.Context, environment: str | None, layer: str | None, fmt: str) -> None:
    """Test served layers: metadata, connectivity, geometry, OGC API conformance, performance."""
    env = _default_env(ctx, environment)
    context = state(ctx).context(quiet=fmt == "json")
    con = context.console
    reports = context.test_layers(env, layer)
    if fmt == "json":
        echo_json({"environment": env, "ok": all(r.ok for r in reports), "layers": [r.to_json() for r in reports]})
    else:
        for r in reports:
            con.print(f"Running layer tests for {r.layer}...")
            for c in r.checks:
                label = c.name
                if c.name == "Performance benchmark" and c.ok:
                    label = f"Performance benchmark ({c.message.split(',')[0]})"
                if c.ok:
                    con.ok(label)
                else:
                    con.fail(f"{label}: {c.message}")
                    for d in c.details:
                        con.print(f"    {d}")
            con.print("")
        failed = [c for r in reports for c in r.checks if not c.ok]
        if failed:
            con.print(f"{len(failed)} check(s) failed.")
        else:
            con.print("All tests passed!")
    if not all(r.ok for r in reports):
        ctx.exit(1)


@main.command()
@env_option(required=False)
@click.option("--port", type=int, default=None, help="Port (default: the server's, 5555 in the example).")
@click.option("--stop", is_flag=True, help="Stop the background server of the environment.")
@click.option("--background", is_flag=True, help="Start in the background and return.")
@click.pass_context
def serve(ctx: click.Context, environment: str | None, port: int | None, stop: bool, background: bool) -> None:
    """Run the local OGC API server (pygeoapi) for an environment; Ctrl-C stops it."""
    import gc

    gc.enable()  # runs until stopped: the usual collector (see HonuaGroup.invoke)
    env = _default_env(ctx, environment)
    context = state(ctx).context()
    if stop:
        stopped = context.stop_server(env)
        context.console.print("Server stopped." if stopped else "No server was running.")
        return
    provider = context.serve(env, port=port, foreground=not background)
    if background:
        context.console.ok(f"Serving {env} at {provider.ogc_url}")


# --------------------------------------------------------------------------- promote, recover


@main.command()
@click.argument("source")
@click.argument("target")
@click.option("--migration", "migration", metavar="ID",
              help="Promote only this migration and the ones it depends on (no files).")
@click.option("--auto-validate", is_flag=True, help="Run the layer tests of SOURCE first (and record them).")
@click.option("--allow-untested", is_flag=True,
              help="Promote although SOURCE has no recorded `honua test` since its last change (a warning).")
@yes_option
@by_option
@click.pass_context
def promote(ctx: click.Context, source: str, target: str, migration: str | None, auto_validate: bool,
            allow_untested: bool, yes: bool) -> None:
    """Compare SOURCE with TARGET, carry layers, services and migrations over, and apply TARGET."""
    context = state(ctx).context()
    _apply_result(ctx, context.promote(source, target, migration=migration, auto_validate=auto_validate,
                                       allow_untested=allow_untested, yes=yes, confirm=confirm))


@main.command()
@env_option()
@click.option("--latest-backup", "latest", is_flag=True, help="Restore the newest backup.")
@click.option("--backup", "backup_id", metavar="ID", help="Restore this backup (see honua backup list).")
@click.option("--last-deployment", "last_deployment", is_flag=True,
              help="Restore the last successful deployment: its commit and the backup taken after it.")
@click.option("--commit", "commit", metavar="SHA",
              help="Restore the environment's metadata from this commit (and the backup taken at it, if any).")
@click.option("--include-shared", is_flag=True,
              help="Also restore shared files (honua.yaml, providers/, migrations/) from the commit.")
@click.option("--reason", default="", help="What happened (recorded in the state's event log).")
@yes_option
@by_option
@click.pass_context
def recover(ctx: click.Context, environment: str, latest: bool, backup_id: str | None, last_deployment: bool,
            commit: str | None, include_shared: bool, reason: str, yes: bool) -> None:
    """Disaster recovery: restore a point in time (a backup's data and its commit's metadata), then republish."""
    context = state(ctx).context()
    ok = context.recover(environment, backup_id=backup_id, latest=latest, last_deployment=last_deployment,
                         commit=commit, include_shared=include_shared, yes=yes, confirm=confirm, reason=reason)
    if not ok:
        ctx.exit(1)


from honua_plan.cli.ai import ai  # noqa: E402 - after the commands it shares options with

main.add_command(ai)
