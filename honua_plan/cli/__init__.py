"""``honua`` and ``honua-ai``: thin click commands over :class:`honua_plan.context.Context`.

Each command converts its flags and calls one Context method; heavy modules are
imported inside the commands so that ``honua --help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from honua_plan import __version__
from honua_plan.cli.base import (
    AppState,
    HonuaGroup,
    echo_json,
    env_option,
    format_option,
    state,
)


@click.group(cls=HonuaGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config-dir", "-C", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
    show_default=True, help="The config repository (a folder with honua.yaml).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@click.version_option(__version__, prog_name="honua")
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
    from honua_plan.errors import ConfigError

    app = state(ctx)
    context = app.context(quiet=fmt == "json")
    try:
        result = context.validate(environment)
    except ConfigError as exc:
        if fmt == "json":
            from honua_plan.context import config_error_summary

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
    st = getattr(context, f"db_{action}")()
    if fmt == "json":
        echo_json({"running": st.running, "pid": st.pid, "data_dir": str(st.data_dir),
                   "socket_dir": str(st.socket_dir), "port": st.port, "dsn": st.dsn})
        return
    if st.running:
        context.console.ok(f"Embedded PostGIS running (pid {st.pid})")
        context.console.print(f"  data:   {st.data_dir}")
        context.console.print(f"  dsn:    {st.dsn}")
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
@click.pass_context
def seed_data(ctx: click.Context, environment: str | None, rows: int) -> None:
    """Load the example's sample bike lanes (inside the seed's envelope)."""
    import time

    context = state(ctx).context()
    env = environment or "dev"
    start = time.perf_counter()
    count = context.seed_data(env, rows)
    context.console.ok(f"Loaded {count} bike lanes into bike_lanes ({env})", time.perf_counter() - start)


# --------------------------------------------------------------------------- ai


@main.group()
def ai() -> None:
    """The AI assistant (extra 'ai'): its proposals are validated and planned like any other."""


def ai_main() -> None:
    """Console script ``honua-ai``: the ``ai`` group of ``honua``."""
    main(["ai", *sys.argv[1:]], prog_name="honua-ai")
