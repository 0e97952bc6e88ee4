"""``honua dev …``: the local loop (embedded database, sample data, ``dev apply``)."""

from __future__ import annotations

import click

from honua_plan.cli.base import (
    by_option,
    confirm,
    default_env,
    echo_json,
    env_option,
    format_option,
    state,
    yes_option,
)


@click.group()
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


@dev.command("apply")
@env_option(required=False)
@yes_option
@by_option
@click.pass_context
def dev_apply(ctx: click.Context, environment: str | None, yes: bool) -> None:
    """Apply layers and services (and what they need), start the local server, test the layers."""
    env = default_env(ctx, environment)
    context = state(ctx).context()
    _result, ok = context.dev_apply(env, confirm=confirm, yes=True)
    if not ok:
        ctx.exit(1)
