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
    apply_result,
    by_option,
    confirm,
    default_env,
    echo_json,
    echo_text,
    env_option,
    format_option,
    quick_exit,
    state,
    yes_option,
)
from honua_plan.cli.base import run as base_run
from honua_plan.cli.ci import POLICY_BASE


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

            echo_json(exc.summary())
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
@click.option("--exclude", "excludes", multiple=True, metavar="ADDR",
              help="Leave ADDR out, and what depends on it (repeatable).")
@click.option("--provenance", type=click.Choice(["human", "ci", "ai"]), default=None,
              help="Who proposes this plan (default: ci when $CI is set, else human).")
@click.option("--replace", "replaces", multiple=True, metavar="ADDR",
              help="Re-derive and publish layer ADDR as new, changed or not (repeatable).")
@click.option("--simulate/--no-simulate", default=None,
              help="Run the pending migrations on a schema-only copy and check the layers against the "
                   "result (default: when $HONUA_SCRATCH_DSN is set or the embedded PostGIS runs).")
@POLICY_BASE
@click.pass_context
def plan(ctx: click.Context, environment: str, out: Path | None, fmt: str, detailed_exitcode: bool,
         refresh_only: bool, targets: tuple[str, ...], excludes: tuple[str, ...], provenance: str | None,
         replaces: tuple[str, ...], simulate: bool | None, policy_base: str | None) -> None:
    """Show what apply would change, with risk levels and a rollback plan."""
    if out is None:
        quick_exit()
    context = state(ctx).context(quiet=fmt != "text")
    context.policy_base = policy_base
    result = context.plan(environment, target=targets, exclude=excludes, refresh_only=refresh_only,
                          provenance=_provenance(provenance, None),  # type: ignore[arg-type]
                          refuse_unfinished=True, simulate=simulate, replace=replaces)
    from honua_plan.plan.render import render  # after plan(): its catalog read overlaps this import
    from honua_plan.plan.store import save_plan

    click.echo(render(result, fmt, colour=context.console.colour), nl=False)
    if out is not None:
        save_plan(result, out)
        context.keep_plan(result, out)
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
    plan_file = context.plan_file(plan_file)
    plan = load_plan(plan_file)
    try:
        verify_digest(plan, source=str(plan_file))
        problem = None
    except PlanTamperedError as exc:
        problem = exc
    if problem is not None:  # before and after the plan: it cannot be missed
        echo_text(f"WARNING: {problem.message}", err=True)
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


# --------------------------------------------------------------------------- apply


@main.command()
@env_option()
@click.argument("plan_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@yes_option
@click.option("--resume", is_flag=True, help="Continue an apply that was interrupted.")
@click.option("--verbose", "-v", is_flag=True,
              help="List every resource and check (a long apply otherwise shows a few per phase and a summary).")
@click.option("--rollback", "rollback_", is_flag=True, help="Undo what an interrupted apply did.")
@click.option("--refresh-only", is_flag=True,
              help="Accept drift: record the live shape of drifted tables as the new baseline (nothing live changes).")
@click.option("--target", "targets", multiple=True, metavar="ADDR",
              help="Without a plan file: only ADDR and what it depends on (repeatable).")
@click.option("--exclude", "excludes", multiple=True, metavar="ADDR",
              help="Without a plan file: leave ADDR out, and what depends on it (repeatable).")
@click.option("--replace", "replaces", multiple=True, metavar="ADDR",
              help="Without a plan file: re-derive and publish layer ADDR as new, changed or not (repeatable).")
@click.option("--allow-destroy", is_flag=True,
              help="Let a rollback run a down step that destroys data (DROP TABLE/COLUMN, TRUNCATE of rows); "
                   "a backup of what it drops is taken just before.")
@click.option("--assume-done", "assume_done", multiple=True, metavar="STEP",
              help="With --resume: step STEP (e.g. migration.003#1), outside a transaction, completed.")
@click.option("--assume-not-done", "assume_not_done", multiple=True, metavar="STEP",
              help="With --resume: step STEP did not complete; run it again.")
@POLICY_BASE
@by_option
@click.pass_context
def apply(ctx: click.Context, environment: str, plan_file: Path | None, yes: bool, resume: bool, verbose: bool,
          rollback_: bool, refresh_only: bool, targets: tuple[str, ...], excludes: tuple[str, ...],
          replaces: tuple[str, ...], allow_destroy: bool, assume_done: tuple[str, ...],
          assume_not_done: tuple[str, ...], policy_base: str | None) -> None:
    """Apply a fresh plan (after confirmation) or a saved, approved plan file."""
    from honua_plan.errors import UsageError

    if refresh_only or (plan_file is not None and _saved_refresh_only(plan_file)):
        if resume or rollback_:
            raise UsageError("--refresh-only goes without --resume and --rollback")
        context = state(ctx).context()
        reviewed = None
        if plan_file is not None:  # a saved refresh-only plan: its digest, and the drift it showed
            from honua_plan.plan.store import load_plan, verify_digest

            saved = load_plan(plan_file)
            verify_digest(saved, source=str(plan_file))
            reviewed = sorted(d.address for d in saved.drift)
        context.accept_drift(environment, yes=yes or plan_file is not None, confirm=confirm, reviewed=reviewed)
        return

    if resume and rollback_:
        raise UsageError("--resume and --rollback exclude each other")
    if (assume_done or assume_not_done) and not resume:
        raise UsageError("--assume-done and --assume-not-done go with --resume")
    if (targets or excludes or replaces) and (plan_file is not None or resume or rollback_):
        raise UsageError("--target, --exclude and --replace go with a fresh plan (a saved plan has its own)")
    both = set(assume_done) & set(assume_not_done)
    if both:
        raise UsageError(f"step {sorted(both)[0]} cannot be both --assume-done and --assume-not-done")
    context = state(ctx).context()
    context.console.verbose = verbose
    context.policy_base = policy_base
    apply_result(ctx, context.apply(environment, plan_file, yes=yes, resume=resume, rollback=rollback_,
                                     allow_destroy=allow_destroy, assume_done=frozenset(assume_done),
                                     assume_not_done=frozenset(assume_not_done), confirm=confirm,
                                     target=targets, exclude=excludes, replace=replaces))


def _saved_refresh_only(plan_file: Path) -> bool:
    """Whether a saved plan file is a refresh-only plan (applying it accepts the drift)."""
    import json

    try:
        return bool(json.loads(plan_file.read_text(encoding="utf-8")).get("refresh_only"))
    except (OSError, ValueError, AttributeError):
        return False  # apply reports the file's problem itself


# --------------------------------------------------------------------------- migrations


# --------------------------------------------------------------------------- served layers


@main.command("test")
@env_option(required=False)
@click.option("--layer", "layer", metavar="NAME", help="One layer (name or collection id); default: all.")
@format_option(("text", "json"))
@click.pass_context
def test_cmd(ctx: click.Context, environment: str | None, layer: str | None, fmt: str) -> None:
    """Test served layers: metadata, connectivity, geometry, OGC API conformance, performance."""
    env = default_env(ctx, environment)
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
    env = default_env(ctx, environment)
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
@click.option("--allow-predicted-failure", is_flag=True,
              help="Apply with --yes although the plan predicts a validation failure (VAL001): it would roll back.")
@yes_option
@by_option
@click.pass_context
def promote(ctx: click.Context, source: str, target: str, migration: str | None, auto_validate: bool,
            allow_untested: bool, allow_predicted_failure: bool, yes: bool) -> None:
    """Compare SOURCE with TARGET, carry layers, services and migrations over, and apply TARGET."""
    context = state(ctx).context()
    apply_result(ctx, context.promote(source, target, migration=migration, auto_validate=auto_validate,
                                       allow_untested=allow_untested, yes=yes, confirm=confirm,
                                       allow_predicted_failure=allow_predicted_failure))


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


from honua_plan.cli.ai import ai  # noqa: E402 - the command groups of their own modules
from honua_plan.cli.ci import ci  # noqa: E402
from honua_plan.cli.dev import dev  # noqa: E402
from honua_plan.cli.migrate import deploy, migrate  # noqa: E402
from honua_plan.cli.schedule import schedule_group  # noqa: E402
from honua_plan.cli.state_commands import backup, incidents_group, state_group  # noqa: E402

for _group in (dev, state_group, migrate, deploy, backup, ai, ci, incidents_group, schedule_group):
    main.add_command(_group)
