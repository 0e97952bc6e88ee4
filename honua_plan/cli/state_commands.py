"""``honua state …`` and ``honua backup …``: the recorded state and the backups taken for it."""

from __future__ import annotations

import click

from honua_plan.cli.base import (
    by_option,
    echo_json,
    echo_line,
    echo_text,
    env_option,
    format_option,
    state,
)


@click.group("state")
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
                   "resources": sorted(doc.resources), "unmanaged": doc.unmanaged})
        return
    for address in sorted(doc.resources):
        echo_line(address)
    for address in doc.unmanaged:
        echo_line(f"{address} (unmanaged: state rm)")
    for mid in doc.applied_migrations():
        echo_line(f"migration.{mid}")


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
        echo_line(f"{e.at:%Y-%m-%d %H:%M:%S}  serial {e.serial:<4} {e.kind:<9} {e.actor or '-':<20} {e.message}")


@state_group.command("rm")
@click.argument("addresses", nargs=-1, required=True)
@env_option()
@click.pass_context
def state_rm_cmd(ctx: click.Context, addresses: tuple[str, ...], environment: str) -> None:
    """Forget resources in the state (the live objects are not touched)."""
    from honua_plan.workflows.state import state_rm

    context = state(ctx).context()
    doc = state_rm(context, environment, list(addresses))
    context.console.ok(f"Removed {len(addresses)} resource(s) from the {environment} state (serial {doc.serial}); "
                       "nothing live was changed")
    kept = [a for a in addresses if a in doc.unmanaged]
    if kept:
        echo_line(f"  unmanaged until `honua state import`: apply leaves {', '.join(kept)} as it is live")


@state_group.command("import")
@click.argument("addresses", nargs=-1, required=True)
@env_option()
@click.pass_context
def state_import_cmd(ctx: click.Context, addresses: tuple[str, ...], environment: str) -> None:
    """Manage again what `state rm` forgot: record the configuration's attributes (nothing live changes)."""
    from honua_plan.workflows.state import state_import

    context = state(ctx).context()
    doc = state_import(context, environment, list(addresses))
    context.console.ok(f"Imported {len(addresses)} resource(s) into the {environment} state (serial {doc.serial}); "
                       f"nothing live was changed: `honua plan --env {environment}` shows what apply would change")


@state_group.command("mv")
@click.argument("source")
@click.argument("destination")
@env_option()
@click.pass_context
def state_mv_cmd(ctx: click.Context, source: str, destination: str, environment: str) -> None:
    """Record a resource under a new address (a rename without delete and create)."""
    from honua_plan.workflows.state import state_mv

    context = state(ctx).context()
    doc = state_mv(context, environment, source, destination)
    context.console.ok(f"Moved {source} to {destination} in the {environment} state (serial {doc.serial})")


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
    bak = context._rel(context.state_dir / f"{environment}.json.bak")
    con.ok(f"Restored the state of {environment} from {bak} (serial {bak_serial}); "
           f"it is now serial {doc.serial}")
    if replaced:
        con.print(f"  the file it replaced is kept as {replaced}")
    if doc.pending is not None:
        con.print(f"  it holds an apply that had not finished when it was saved: finish it with "
                  f"`honua apply --env {environment} --resume` (or undo it with --rollback)")
    con.print(f"  the backup is the version before the last write: check `honua plan --env {environment}` "
              "before applying")


@state_group.command("rebind")
@env_option()
@click.option("--yes", is_flag=True, help="Confirm: the key's state is handed to this repository.")
@click.pass_context
def state_rebind(ctx: click.Context, environment: str, yes: bool) -> None:
    """Bind the state's project key to this repository (hand it over from the one it was bound to)."""
    from honua_plan.errors import UsageError

    if not yes:
        raise UsageError("rebinding hands the state of this project key to this repository, away from the one it "
                         f"is bound to; confirm with `honua state rebind --env {environment} --yes`")
    context = state(ctx).context()
    with context.backend(environment) as backend:
        message = backend.rebind(actor=context.actor)
    context.console.ok(message[0].upper() + message[1:] + f" (event recorded in the {environment} state)")


@click.group()
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
        echo_line(f"{r.id}  {r.created_at:%Y-%m-%d %H:%M:%S} UTC ({age} ago)  {r.size_bytes / 1024:.1f} KiB  "
                   f"commit {r.commit[:9] if r.commit else '-'}  migration {r.migration_id or '-'}")
        for table in r.tables:
            c = r.contents.get(table) or r.contents.get(f"public.{table}")
            detail = (f"{c.rows:,} rows, checksum {c.checksum[:12]}…, {len(c.indexes)} index(es), "
                      f"{len(c.constraints)} constraint(s)") if c is not None else "no checksum recorded"
            echo_line(f"    {table}: {detail}")


@click.group("incidents")
def incidents_group() -> None:
    """Automatic rollbacks, failed deployments and recoveries, with their reports."""


@incidents_group.command("list")
@env_option(required=False)
@format_option(("text", "json"))
@click.pass_context
def incidents_list(ctx: click.Context, environment: str | None, fmt: str) -> None:
    """List the incidents of one environment (default: all)."""
    from honua_plan.workflows.incidents import incidents

    context = state(ctx).context(quiet=fmt == "json")
    found = incidents(context, environment)
    if fmt == "json":
        echo_json({"format_version": 1, "incidents": [
            {"environment": env, **rec.model_dump(mode="json")} for env, rec in found]})
        return
    if not found:
        click.echo("No incidents recorded.")
    for env, rec in found:
        echo_line(f"{rec.id}  {env:<12} {rec.at:%Y-%m-%d %H:%M:%S} UTC  {rec.kind:<18} {rec.summary}")


@incidents_group.command("show")
@click.argument("incident_id")
@env_option()
@click.pass_context
def incidents_show(ctx: click.Context, incident_id: str, environment: str) -> None:
    """Show an incident and its report."""
    from honua_plan.workflows.incidents import incident_report

    context = state(ctx).context()
    rec, text = incident_report(context, environment, incident_id)
    echo_line(f"{rec.id} ({environment}, {rec.kind}, {rec.at:%Y-%m-%d %H:%M:%S} UTC): {rec.summary}")
    if rec.report:
        echo_line(f"Report: {rec.report}" + ("" if text is not None else " (not found on this machine)"))
    if text:
        click.echo("")
        echo_text(text.rstrip("\n"))
