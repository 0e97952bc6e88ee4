"""Saved plan files kept with the state, so another machine applies one by its id."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from honua_plan.plan.model import Plan
    from honua_plan.workspace import Workspace


def keep_plan(ws: Workspace, plan: Plan, path: Path) -> None:
    """Keep a saved plan file with the state too (``plans/<id>.json``), so another
    machine sharing the state applies, shows or approves it by its id."""
    artifacts = ws.backend(plan.environment).artifacts()
    if artifacts.remote:
        artifacts.put(f"plans/{plan.id}.json", path.read_bytes())


def plan_file(ws: Workspace, ref: Path, environment: str | None = None) -> Path:
    """``ref`` when the file exists; else, when ``ref`` is a plan id, the plan of that id
    kept with the state (fetched into the state folder); else ``ref`` (reported missing)."""
    if ref.exists() or str(ref.parent) not in ("", "."):
        return ref
    plan_id = ref.name.removesuffix(".json")
    if not re.fullmatch(r"[0-9a-f]{32}", plan_id):
        return ref
    env = environment or ws.project.spec.environments[0]
    path = ws.backend(env).artifacts().fetch(ws.state_dir, f"plans/{plan_id}.json")
    return path if path.exists() else ref
