"""``honua ci plan|deploy|drift``: the pipeline's entry points (see :mod:`honua_plan.workflows.ci`).

Each command prints a short summary (or JSON with ``--format json``), writes its files
under ``--out-dir`` and exits with the code a pipeline branches on: 0 nothing to do or all
done, 1 error, 2 changes or drift, 3 blocked by policy.
"""

from __future__ import annotations

from pathlib import Path

import click

from honua_plan.cli.base import echo_json, echo_line, format_option, state

OUT_DIR = click.option("--out-dir", "out_dir", type=click.Path(file_okay=False, path_type=Path),
                       default=Path(".honua-ci"), show_default=True,
                       help="Where the plans and the Markdown report are written.")

POLICY_BASE = click.option(
    "--policy-base", "policy_base", metavar="REV", default=None,
    help="Judge approvals, windows and cooldown by the policy at git revision REV (default: "
         "$HONUA_POLICY_BASE; in CI on a pull request the merge base with $GITHUB_BASE_REF; else the "
         "commit of the last deployment; the working tree only before the first one).")


@click.group("ci")
def ci() -> None:
    """Pipeline commands: pull-request plans, merge-to-deploy, scheduled drift."""


def _finish(ctx: click.Context, result: object, fmt: str) -> None:
    from honua_plan.workflows.ci import CIResult

    assert isinstance(result, CIResult)
    if fmt == "json":
        echo_json(result.to_json())
    else:
        for e in result.environments:
            line = f"{e.environment}: {e.status}" + (f" — {e.summary}" if e.summary else "")
            if e.approvals and e.approvals != "none":
                line += f"; approvals: {e.approvals}"
            if e.detail:
                line += f" ({e.detail})"
            echo_line(line)
        if result.report:
            echo_line(f"Report: {result.report}")
    ctx.exit(result.exit_code)


@ci.command("plan")
@OUT_DIR
@format_option(("text", "json"))
@POLICY_BASE
@click.pass_context
def ci_plan_cmd(ctx: click.Context, out_dir: Path, fmt: str, policy_base: str | None) -> None:
    """Validate and plan every environment in promotion order; save the plans and a
    Markdown report for the pull request (exit 0 none, 2 changes, 3 blocked, 1 error)."""
    context = state(ctx).context(quiet=fmt == "json")
    context.policy_base = policy_base
    _finish(ctx, context.ci_plan(out_dir), fmt)


@ci.command("deploy")
@OUT_DIR
@format_option(("text", "json"))
@click.pass_context
def ci_deploy_cmd(ctx: click.Context, out_dir: Path, fmt: str) -> None:
    """Apply each environment in promotion order, testing changed layers; stop at the first
    that needs an approval, leaving its saved plan (written to $GITHUB_OUTPUT as plan=…)."""
    context = state(ctx).context(quiet=fmt == "json")
    _finish(ctx, context.ci_deploy(out_dir), fmt)


@ci.command("drift")
@OUT_DIR
@format_option(("text", "json"))
@click.pass_context
def ci_drift_cmd(ctx: click.Context, out_dir: Path, fmt: str) -> None:
    """Drift of every environment and a Markdown report (exit 2 when anything drifted)."""
    context = state(ctx).context(quiet=fmt == "json")
    _finish(ctx, context.ci_drift(out_dir), fmt)
