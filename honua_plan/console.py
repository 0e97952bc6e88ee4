"""Concise terminal output like the seed: ``✓``/``✗``, timings, colour only on a terminal.

Everything printed goes through :func:`honua_plan.secrets.redact`. Machine output
(``--format json``) bypasses this class and is written by the CLI directly.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from honua_plan.config.expected import format_duration
from honua_plan.secrets import redact

OK = "✓"
FAIL = "✗"
WARN = "⚠️ "


def _colour_wanted(stream: IO[str]) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return bool(getattr(stream, "isatty", lambda: False)())


class Console:
    """Human-facing output. ``quiet`` silences progress (used with --format json)."""

    def __init__(self, out: IO[str] | None = None, err: IO[str] | None = None, *, quiet: bool = False) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.quiet = quiet
        self.colour = _colour_wanted(self.out)

    def _style(self, text: str, **kw: Any) -> str:
        if not self.colour:
            return text
        import click

        return click.style(text, **kw)

    def print(self, text: str = "", *, err: bool = False) -> None:
        if self.quiet and not err:
            return
        stream = self.err if err else self.out
        stream.write(redact(text) + "\n")
        stream.flush()

    def ok(self, text: str, seconds: float | None = None, indent: int = 0) -> None:
        t = f" ({format_duration(seconds)})" if seconds is not None else ""
        self.print(" " * indent + self._style(OK, fg="green") + " " + text + t)

    def fail(self, text: str, seconds: float | None = None, indent: int = 0) -> None:
        t = f" ({format_duration(seconds)})" if seconds is not None else ""
        self.print(" " * indent + self._style(FAIL, fg="red") + " " + text + t)

    def warn(self, text: str, indent: int = 0) -> None:
        self.print(" " * indent + self._style(WARN + text, fg="yellow"))

    def heading(self, text: str) -> None:
        self.print(self._style(text, bold=True))

    def rule(self) -> None:
        self.print("─" * 45)

    def error(self, text: str) -> None:
        self.err.write(redact(self._style("Error: ", fg="red", bold=True) + text if self.colour else "Error: " + text) + "\n")
        self.err.flush()

    @contextmanager
    def step(self, index: int, total: int, label: str, indent: int = 2) -> Iterator[None]:
        """``[1/3] Creating spatial index... ✓ (1.8s)``: one line per step."""
        prefix = " " * indent + f"[{index}/{total}] {label}..."
        start = time.perf_counter()
        if not self.quiet:
            self.out.write(redact(prefix))
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
