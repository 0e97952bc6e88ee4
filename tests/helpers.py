"""Shared test helpers: a copy of the example repository and a CLI runner."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner, Result

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_PARTS = ("honua.yaml", "providers", "environments", "migrations", "policies", "schemas")


def copy_example(dest: Path, *, server: bool = True) -> Path:
    """Copy the example config repository (not the code, not the state) into ``dest``.

    ``server=False`` switches the GIS server to ``type: none``, for tests where only the
    database matters (the served-layer tests cover the server)."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in EXAMPLE_PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, dest / part)
        elif src.exists():
            shutil.copy2(src, dest / part)
    (dest / "state").mkdir(exist_ok=True)
    if not server:
        edit(dest / "providers/gis-server.yaml", "  type: pygeoapi", "  type: none")
    return dest


def run(root: Path, *args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
    from honua_plan.cli import main

    runner = CliRunner()
    return runner.invoke(main, ["-C", str(root), *args], env=env, input=input, catch_exceptions=False)


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count))


def drop_performance_check(repo: Path) -> None:
    """Remove migration 003's performance validation, which needs a large table (10,000+
    rows for the planner to choose the index): tests on 42 rows would roll it back."""
    import re

    path = repo / "migrations/003_optimize_bike_lanes.yaml"
    text, n = re.subn(r"      - type: performance\n(?:.*\n)*?(?=\n    post-down:)", "", path.read_text())
    assert n == 1
    path.write_text(text)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server a test starts)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
