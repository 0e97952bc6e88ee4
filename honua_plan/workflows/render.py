"""``honua migrate render``: a pending migration's metadata edits written into the working
tree, so that the pull request carries them.

A migration's ``metadata`` step describes an edit of a layer file. Made at deploy time, the
edit lives only on the machine that ran the apply: in CI the file is never committed, and
every later plan (a fresh clone) proposes to undo it. Rendered before, the edit is in the
pull request, reviewed with the migration; the deployment then only verifies that the file
holds it (:mod:`honua_plan.providers.metadata`), ``honua ci plan`` fails when a pending
migration's edit is missing (:func:`unrendered`), and under CI a plan refuses to edit.

Only pending migrations are rendered (the recorded state says which), in their order, so a
later migration's edit of the same key wins as it would at deploy, and an applied
migration never rewrites a key that was changed by hand since.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from honua_plan.errors import ContainmentError, UsageError

if TYPE_CHECKING:
    from honua_plan.config.desired import DesiredState
    from honua_plan.config.models import Migration
    from honua_plan.plan.model import Plan
    from honua_plan.workspace import Workspace


@dataclass(frozen=True)
class RenderedFile:
    """One file ``honua migrate render`` changed: the keys set and removed, in order."""

    path: str  # relative to the repository
    changed: tuple[tuple[str, bool], ...]  # (dotted key, set: True / removed: False)

    def line(self) -> str:
        return f"{self.path}: " + ", ".join(f"{k} {'set' if s else 'removed'}" for k, s in self.changed)


@dataclass
class RenderResult:
    environments: tuple[str, ...]
    migration: str | None  # the migration asked for, or None: every pending one
    files: list[RenderedFile] = field(default_factory=list)


def _pending(ws: Workspace, desired: DesiredState) -> list[Migration]:
    from honua_plan.plan.diff import diff_migrations

    pending, _, _ = diff_migrations(desired, ws.recorded(desired.environment))
    return [mc.migration for mc in pending]


def _edits(desired: DesiredState, migrations: list[Migration]) -> list[tuple[str, dict[str, Any]]]:
    """The up metadata steps of ``migrations``: (templated path, changes), in order."""
    from honua_plan.config import templating

    variables = desired.template_vars()
    return [(templating.render_template(step.path, variables), dict(step.changes))
            for m in migrations for step in m.spec.up
            if step.type == "metadata" and step.path and step.changes is not None]


def _target(root: Path, environment: str, rel: str) -> Path:
    """The real file a step edits, contained as at deploy: the environment's own folder."""
    from honua_plan.config.paths import metadata_step_problem

    why = metadata_step_problem(root, environment, rel)
    if why is not None:
        raise ContainmentError(f"cannot render {rel}: {why}")
    path = Path(os.path.realpath(root / rel))
    if not path.is_file():
        raise UsageError(f"cannot render {rel}: the file does not exist for environment {environment}")
    return path


def _get(data: Any, dotted: str) -> tuple[bool, Any]:
    node = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def render_metadata(ws: Workspace, environment: str | None = None, migration_id: str | None = None) -> RenderResult:
    """Write the metadata edits of the pending migrations (or of ``migration_id``) into the
    files of ``environment`` (default: every environment they target). Idempotent: a file
    that already holds an edit is not written."""
    import yaml

    from honua_plan.config.yamledit import edit_text, missing_changes
    from honua_plan.files import write_text_atomic

    project = ws.load()[0].project
    envs = list(project.spec.environments) if environment is None else [environment]
    if environment is not None and environment not in project.spec.environments:
        raise UsageError(f"unknown environment '{environment}' (known: {', '.join(project.spec.environments)})")
    wanted: Migration | None = None
    if migration_id is not None:
        wanted = ws.desired(envs[0]).migration(migration_id)
        if wanted is None:
            raise UsageError(f"no migration {migration_id} in migrations/")
        targets = wanted.metadata.environments or list(project.spec.environments)
        if environment is not None and environment not in targets:
            raise UsageError(f"migration {wanted.metadata.id} does not target {environment} "
                             f"(its environments: {', '.join(targets)})")
        envs = [e for e in envs if e in targets]
    result = RenderResult(tuple(envs), wanted.metadata.id if wanted is not None else None)
    for env in envs:
        desired = ws.desired(env)
        pending = _pending(ws, desired)
        if wanted is not None:
            pending = [m for m in pending if m.metadata.id == wanted.metadata.id]
        texts: dict[str, tuple[Path, str, str]] = {}  # rel -> (real path, original, rendered)
        keys: dict[str, list[str]] = {}
        for rel, changes in _edits(desired, pending):
            if rel not in texts:
                path = _target(ws.root, env, rel)
                original = path.read_text(encoding="utf-8")
                texts[rel] = (path, original, original)
            path, original, current = texts[rel]
            missing = missing_changes(current, changes)
            if missing:
                texts[rel] = (path, original, edit_text(current, {k: changes[k] for k in missing}, where=rel))
                keys.setdefault(rel, []).extend(k for k in missing if k not in keys.get(rel, []))
        for rel, (path, original, rendered) in texts.items():
            if rendered == original:
                continue
            before, after = yaml.safe_load(original), yaml.safe_load(rendered)
            changed = tuple((k, _get(after, k)[0]) for k in keys.get(rel, []) if _get(before, k) != _get(after, k))
            write_text_atomic(path, rendered)
            result.files.append(RenderedFile(rel, changed))
    return result


def unrendered(ws: Workspace, plan: Plan) -> list[str]:
    """The metadata edits of the plan's pending migrations that the working tree lacks, as
    ``path (migration ID: keys)``: what ``honua migrate render`` would write."""
    from honua_plan.config.yamledit import missing_changes

    out: list[str] = []
    for action in plan.actions:
        if action.kind != "migration" or action.action == "delete":
            continue
        for op in action.operations:
            if op.kind != "metadata" or not op.path or op.changes is None:
                continue
            path = ws.root / op.path
            text = path.read_text(encoding="utf-8") if path.is_file() else ""
            missing = missing_changes(text, op.changes)
            if missing:
                out.append(f"{op.path} ({action.address.removeprefix('migration.')}: {', '.join(missing)})")
    return out
