"""The CLI's one error boundary and shared options.

``HonuaGroup.invoke`` catches every :class:`HonuaError`, prints its (redacted) message
and exits with its code; any other exception is a bug: a one-line message, and the
traceback only under ``--debug``.
"""

from __future__ import annotations

import contextlib
import gc
import json
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click


def apply_result(ctx: click.Context, result: object) -> None:
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

def default_env(ctx: click.Context, environment: str | None) -> str:
    """Commands of the local loop default to the first environment (dev in the example)."""
    if environment:
        return environment
    context = state(ctx).context()
    from honua_plan.config.loader import load

    return load(context.root)[0].project.spec.environments[0]



if TYPE_CHECKING:
    from honua_plan.context import Context

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class AppState:
    root: Path
    debug: bool = False
    actor: str | None = None
    _context: Context | None = None

    def context(self, *, quiet: bool = False) -> Context:
        from honua_plan.console import Console
        from honua_plan.context import Context

        if self._context is None:
            self._context = Context(self.root, console=Console(quiet=quiet), debug=self.debug)
            if self.actor:
                self._context.actor = self.actor
        elif quiet:
            self._context.console.quiet = True
        return self._context


QUICK_EXIT = {"armed": False, "set": False}
"""Set by commands that only read and print (plan, drift, validate) when run as the console
script (:func:`run` arms it): the process then ends without tearing the interpreter down
object by object (~0.2 s for the few hundred MB of a 10,000-layer plan; the OS takes the
memory back at once), and without the cyclic GC turned back on (see :meth:`HonuaGroup.invoke`).
Run in-process (tests, ``CliRunner``) it stays unset."""


def quick_exit() -> None:
    if QUICK_EXIT["armed"]:
        QUICK_EXIT["set"] = True


SIGPIPE_EXIT = 141
"""Exit status when the reader of our output went away (``honua plan | head``).

git, coreutils (``seq 1000000 | head``) and most Unix tools die of SIGPIPE there, which a
shell reports as 128 + 13 = 141; they print nothing. Python ignores SIGPIPE and raises
BrokenPipeError instead, so we end quietly with that same status (as Python's
documentation advises: stdout to /dev/null, then exit) rather than killing ourselves with
the signal: ``set -o pipefail`` scripts see what they see for git, and cleanup (state lock,
journal, child processes) still runs."""


def _silence_output() -> None:
    """Point the real stdout/stderr at /dev/null: no later flush (ours, click's, the
    interpreter's at exit) can raise again, and nothing more is printed."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for stream in (sys.stdout, sys.stderr):
            try:
                fd = stream.fileno()
            except (OSError, ValueError, AttributeError):  # not a real file (CliRunner)
                continue
            with contextlib.suppress(OSError):
                os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def broken_pipe() -> NoReturn:
    """End quietly with :data:`SIGPIPE_EXIT` after a write to a closed pipe."""
    _silence_output()
    raise click.exceptions.Exit(SIGPIPE_EXIT)


def _flush_output() -> bool:
    """Flush stdout and stderr; False when the reader is gone (then both are silenced)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            _silence_output()
            return False
        except (OSError, ValueError):  # closed or otherwise unusable: nothing more to say
            pass
    return True


def run(main: click.Group, args: list[str] | None = None, prog_name: str = "honua") -> None:
    """Run ``main`` as a console script (``honua``, ``python -m honua_plan``, ``honua-ai``)."""
    import os

    QUICK_EXIT["armed"] = True
    try:
        main(args, prog_name=prog_name)
    except SystemExit as exc:
        code = exc.code
        if not _flush_output():  # output buffered until now met a closed pipe
            code = SIGPIPE_EXIT
        if QUICK_EXIT["set"] and (code is None or isinstance(code, int)):
            os._exit(code or 0)  # flushed above, so nothing is lost
        raise SystemExit(code) from None


def _redact(text: str) -> str:
    """What the boundary prints: redacted, and inert on a terminal (an error names files and
    config values: their control characters and escape sequences are removed, the message's
    own newlines kept)."""
    from honua_plan.secrets import redact
    from honua_plan.textsafe import terminal_text

    return terminal_text(redact(text))


USAGE_EXIT = 1
"""A usage error (unknown option, missing argument) exits 1, not click's 2: pipelines read
2 as "changes present" (``plan --detailed-exitcode``) or "drift found"."""


class HonuaGroup(click.Group):
    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:  # eager options (--help, --version) print while the context is made
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            exc.exit_code = USAGE_EXIT  # type: ignore[misc]  # click reads it from the instance
            raise
        except BrokenPipeError:
            broken_pipe()

    def invoke(self, ctx: click.Context) -> Any:
        # No cyclic garbage collection while a command runs: a plan builds a few hundred MB
        # of long-lived objects (models, state, facts) and the collector's full passes over
        # them cost ~40% of a 10,000-layer plan. Reference counting still frees everything
        # that is not in a cycle; the collector is back on when the command returns (and
        # `serve`, which runs for long, turns it back on itself). Not when the process is
        # about to end with os._exit (QUICK_EXIT): the first allocation after gc.enable()
        # would start a collection over everything the command built (~0.05 s at 1,000
        # layers, ~0.5 s at 10,000) only to throw its result away.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._invoke(ctx)
        finally:
            if collecting and not QUICK_EXIT["set"]:
                gc.enable()

    def _invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a subcommand's arguments: 1, as Terraform (2 means changes)
            exc.exit_code = USAGE_EXIT  # type: ignore[misc]  # click reads it from the instance
            raise
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except BrokenPipeError:  # `honua plan | head`: the reader has what it wanted
            broken_pipe()
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)
        except Exception as exc:  # the one boundary
            from honua_plan.errors import HonuaError

            debug = bool(ctx.obj and getattr(ctx.obj, "debug", False)) or "--debug" in sys.argv
            if debug:
                click.echo(_redact(traceback.format_exc()), err=True)
            if isinstance(exc, HonuaError):
                if exc.details:
                    click.echo(_redact(exc.details), err=True)
                click.echo(_redact(f"Error: {exc.message}"), err=True)
                if exc.hint:
                    click.echo(_redact(f"Hint: {exc.hint}"), err=True)
                ctx.exit(exc.exit_code)
            click.echo(
                _redact(f"internal error: {type(exc).__name__}: {exc}")
                + ("" if debug else " (rerun with --debug for the traceback)"),
                err=True,
            )
            ctx.exit(1)


def env_option(required: bool = True) -> Callable[[F], F]:
    return click.option(
        "--env", "--environment", "-e", "environment",
        required=required, metavar="ENV", help="Environment (as listed in honua.yaml).",
    )


def yes_option(f: F) -> F:
    return click.option(
        "--auto-approve", "--yes", "-y", "yes", is_flag=True,
        help="Do not ask for confirmation (for CI).",
    )(f)


def format_option(choices: tuple[str, ...] = ("text", "markdown", "json")) -> Callable[[F], F]:
    return click.option(
        "--format", "fmt", type=click.Choice(choices), default="text", show_default=True,
        help="Output format; json is a versioned contract for machines.",
    )


def by_option(f: F) -> F:
    """``--by NAME``: who applies, recorded in the history (default: git user.email)."""

    def remember(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
        if value:
            obj = ctx.find_object(AppState)
            if obj is not None:
                obj.actor = value
        return value

    return click.option("--by", "by", expose_value=False, callback=remember, metavar="NAME",
                        help="Who applies (recorded in the history; default: git user.email).")(f)


def state(ctx: click.Context) -> AppState:
    obj = ctx.find_object(AppState)
    assert obj is not None
    return obj


def echo_text(text: str, *, err: bool = False) -> None:
    """Print human output that carries data (file names, config values, state, reports):
    redacted, control characters and escape sequences removed, its newlines kept."""
    click.echo(_redact(text), err=err)


def echo_line(text: str, *, err: bool = False) -> None:
    """Print one line of a listing: as :func:`echo_text`, and a newline in the data becomes
    a space (a value cannot start a line of its own and pass for another row)."""
    from honua_plan.textsafe import one_line

    click.echo(_redact(one_line(text)), err=err)


def echo_json(data: Any) -> None:
    click.echo(_redact(json.dumps(data, indent=2, sort_keys=False, default=str)))


def confirm(question: str, yes: bool) -> None:
    """Ask ``question (yes/no)``; never prompt without a terminal."""
    from honua_plan.errors import NotInteractiveError, UsageError

    if yes:
        return
    if not sys.stdin.isatty():
        raise NotInteractiveError(
            "confirmation needed but stdin is not a terminal",
            hint="pass --auto-approve (or --yes), or apply a saved plan file",
        )
    answer = click.prompt(f"{question} (yes/no)", default="", show_default=False)
    if answer.strip().lower() not in ("yes", "y"):
        raise UsageError("cancelled: nothing was changed")
