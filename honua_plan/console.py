"""Concise terminal output like the seed: ``✓``/``✗``, timings, colour only on a terminal.

Everything printed goes through :func:`honua_plan.secrets.redact` and
:func:`honua_plan.textsafe.terminal_text`: a file name, a config value or a model's answer
cannot set the window title, clear the screen or move the cursor (control characters and
escape sequences are removed; the console's own colours are kept). Machine output
(``--format json``) bypasses this class and is written by the CLI directly.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from honua_plan.secrets import redact
from honua_plan.textsafe import terminal_text

OK = "✓"
FAIL = "✗"
WARN = "⚠️ "


def _colour_wanted(stream: IO[str]) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return bool(getattr(stream, "isatty", lambda: False)())


SHOW_FIRST = 3  # ✓ lines shown per phase of a long apply (failures: all of them)


class _Phase:
    """One kind of repeated ✓ line in a long apply: counted, the first few shown."""

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.shown = 0
        self.failed = 0
        self.task: Any = None


class Console:
    """Human-facing output. ``quiet`` silences progress (used with --format json).

    A long apply (:meth:`compact`) prints, per phase (resources recorded, layers verified,
    checks run), its first :data:`SHOW_FIRST` ✓ lines and every ✗, then one summary
    line; on a terminal a ``rich`` progress bar per phase shows how far it is. The full
    per-resource list is kept (:attr:`held`) and printed with ``verbose``.
    """

    def __init__(self, out: IO[str] | None = None, err: IO[str] | None = None, *, quiet: bool = False,
                 verbose: bool = False) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.quiet = quiet
        self.verbose = verbose
        self.colour = _colour_wanted(self.out)
        self.phases: dict[str, _Phase] | None = None  # None: every line printed as it comes
        self.held: list[str] = []  # the ✓ lines a compact apply did not print
        self._progress: Any = None

    # -- long applies ---------------------------------------------------------------

    def compact(self, phases: dict[str, tuple[str, int]]) -> None:
        """Summarize the phases ``{key: (label, expected lines)}`` of a long apply (not with verbose)."""
        if self.verbose or self.quiet:
            return
        self.phases = {k: _Phase(label, total) for k, (label, total) in phases.items()}
        if getattr(self.out, "isatty", lambda: False)() and not os.environ.get("HONUA_NO_PROGRESS"):
            from rich.console import Console as RichConsole
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=RichConsole(file=self.out), transient=True)

    def _phase_line(self, phase: str, text: str, failed: bool) -> bool:
        """Count a ✓/✗ line of ``phase``; True when it is printed now."""
        assert self.phases is not None
        ph = self.phases.get(phase)
        if ph is None:
            ph = self.phases[phase] = _Phase(phase, 0)
        ph.done += 1
        if failed:
            ph.failed += 1
        if self._progress is not None and ph.total > SHOW_FIRST:
            if ph.task is None:
                if not self._progress.live.is_started:
                    self._progress.start()
                ph.task = self._progress.add_task(ph.label, total=ph.total)
            self._progress.update(ph.task, completed=ph.done)
        if failed or ph.shown < SHOW_FIRST:
            ph.shown += 0 if failed else 1
            return True
        self.held.append(text)
        return False

    def end_compact(self) -> None:
        """Stop the progress bars and print one summary line per phase that held lines back."""
        if self.phases is None:
            return
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        phases, self.phases = self.phases, None
        for ph in phases.values():
            hidden = ph.done - ph.shown - ph.failed
            if hidden > 0:
                self._write(f"  … {ph.label}: {ph.done - ph.failed:,} ✓, {ph.failed:,} ✗"
                            f" ({hidden:,} ✓ not listed: `--verbose` lists them)")

    def _safe(self, text: str) -> str:
        """Redacted, and inert on a terminal (the console's own SGR colours kept when it colours)."""
        return terminal_text(redact(text), keep_colour=self.colour)

    def _write(self, text: str, *, err: bool = False) -> None:
        stream = self.err if err else self.out
        if self._progress is not None and self._progress.live.is_started and not err:
            self._progress.console.print(self._safe(text), markup=False, highlight=False)
            return
        stream.write(self._safe(text) + "\n")
        stream.flush()

    def _style(self, text: str, **kw: Any) -> str:
        """``text`` (cleaned of escape sequences first, so only the style's survive) in a style."""
        if not self.colour:
            return text
        import click

        return click.style(terminal_text(text), **kw)

    def print(self, text: str = "", *, err: bool = False) -> None:
        if self.quiet and not err:
            return
        self._write(text, err=err)

    def ok(self, text: str, seconds: float | None = None, indent: int = 0, *, phase: str | None = None) -> None:
        t = f" ({format_duration(seconds)})" if seconds is not None else ""
        text = terminal_text(text)
        line = " " * indent + self._style(OK, fg="green") + " " + text + t
        if self.quiet:
            return
        if phase is not None and self.phases is not None:
            if self._phase_line(phase, " " * indent + OK + " " + text + t, failed=False):
                self._write(line)
            return
        self.print(line)

    def fail(self, text: str, seconds: float | None = None, indent: int = 0, *, phase: str | None = None) -> None:
        t = f" ({format_duration(seconds)})" if seconds is not None else ""
        text = terminal_text(text)
        line = " " * indent + self._style(FAIL, fg="red") + " " + text + t
        if self.quiet:
            return
        if phase is not None and self.phases is not None:
            self._phase_line(phase, line, failed=True)
            self._write(line)
            return
        self.print(line)

    def warn(self, text: str, indent: int = 0) -> None:
        self.print(" " * indent + self._style(WARN + text, fg="yellow"))

    def heading(self, text: str) -> None:
        self.print(self._style(text, bold=True))

    def rule(self) -> None:
        self.print("─" * 45)

    def error(self, text: str) -> None:
        text = terminal_text(text)
        self.err.write(self._safe(self._style("Error: ", fg="red", bold=True) + text if self.colour else "Error: " + text)
                       + "\n")
        self.err.flush()

    @contextmanager
    def step(self, index: int, total: int, label: str, indent: int = 2) -> Iterator[None]:
        """``[1/3] Creating spatial index... ✓ (1.8s)``: one line per step."""
        prefix = " " * indent + f"[{index}/{total}] {terminal_text(label)}..."
        start = time.perf_counter()
        if not self.quiet:
            self.out.write(self._safe(prefix))
            self.out.flush()
        try:
            yield
        except BaseException:
            if not self.quiet:
                self.out.write(" " + self._style(FAIL, fg="red") + f" ({format_duration(time.perf_counter() - start)})\n")
                self.out.flush()
            raise
        if not self.quiet:
            self.out.write(" " + self._style(OK, fg="green") + f" ({format_duration(time.perf_counter() - start)})\n")
            self.out.flush()

    @contextmanager
    def timed(self, label: str, indent: int = 0) -> Iterator[None]:
        """Print ``✓ label (0.4s)`` when the block ends, ``✗ label`` if it raises."""
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            self.fail(label, time.perf_counter() - start, indent)
            raise
        self.ok(label, time.perf_counter() - start, indent)


def format_duration(seconds: float) -> str:
    """``850ms``, ``2.5s``, ``1m 5s``, ``2h 3m``: how the engine prints every duration."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s".replace(".0s", "s")
    minutes, sec = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {sec}s" if sec else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m" if minutes else f"{hours}h"
