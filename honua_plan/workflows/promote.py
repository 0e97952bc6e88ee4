"""Promotion: compare two environments and carry the source's layers and services over.

The comparison is pure (:func:`compare`); :meth:`Context.promote` writes the target's
files (the source's, with ``metadata.environment`` rewritten), then plans and applies
the target like any other change, under the target's policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from honua_plan.config.loader import DesiredState
from honua_plan.plan.diff import migration_checksum, resource_attributes
from honua_plan.state.model import StateDocument

KINDS = ("layers", "services")


@dataclass(frozen=True)
class FileChange:
    kind: str  # layers | services
    name: str  # file name
    change: str  # new | modified | removed | unchanged
    source_text: str | None = None

    @property
    def path(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass
class Comparison:
    src: str
    dst: str
    files: list[FileChange] = field(default_factory=list)
    migrations: list[str] = field(default_factory=list)  # ids applied in src, pending in dst
    problems: list[str] = field(default_factory=list)

    @property
    def changed(self) -> list[FileChange]:
        return [f for f in self.files if f.change in ("new", "modified")]

    @property
    def removed(self) -> list[FileChange]:
        return [f for f in self.files if f.change == "removed"]


def retarget(text: str, src: str, dst: str) -> str:
    """The source file's text as the target's: only ``environment: <src>`` changes."""
    out = []
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped == f"environment: {src}":
            line = line.replace(f"environment: {src}", f"environment: {dst}")
        elif stripped.startswith("# environments/") and f"/{src}/" in stripped:
            line = line.replace(f"/{src}/", f"/{dst}/")
        out.append(line)
    return "".join(out)


def migration_managed(desired: DesiredState, environment: str) -> dict[str, set[str]]:
    """File (relative path) → the keys that migrations' metadata steps set in it for ``environment``.

    Promotion never copies those keys: the migration makes that change itself when it is
    applied in the target (and undoes it when it rolls back)."""
    from honua_plan.config import templating

    variables = templating.variables_for(environment, desired.project.metadata.name)
    out: dict[str, set[str]] = {}
    for m in desired.migrations:
        for step in [*m.spec.up, *m.spec.down]:
            if step.type == "metadata" and step.path and step.changes:
                try:
                    path = templating.render(step.path, variables)
                except templating.TemplateProblem:
                    continue  # reported by validate
                out.setdefault(path, set()).update(step.changes)
    return out


def _get(data: Any, dotted: str) -> Any:
    node = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _without_managed(text: str, target_text: str | None, keys: set[str], where: str) -> str:
    """``text`` with each migration-managed key set to what the target has (absent: removed)."""
    import yaml

    from honua_plan.providers.metadata import edit_text

    target = yaml.safe_load(target_text) if target_text else None
    ours = yaml.safe_load(text)
    changes = {k: _get(target, k) for k in sorted(keys) if _get(ours, k) != _get(target, k)}
    return edit_text(text, changes, where=where) if changes else text


def migration_chain(ref: str, dst: DesiredState) -> tuple[list[str], list[str]]:
    """The ids of migration ``ref`` and of everything it depends on (transitively), and problems."""
    from honua_plan.config.loader import resolve_migration

    ids: list[str] = []
    problems: list[str] = []
    todo = [ref]
    while todo:
        r = todo.pop()
        m = resolve_migration(r, dst.migrations)
        if m is None:
            problems.append(f"no migration {r!r}")
            continue
        if m.metadata.id in ids:
            continue
        ids.append(m.metadata.id)
        todo.extend(m.spec.dependencies)
    return ids, problems


def compare(root: Path, src: DesiredState, dst: DesiredState, src_state: StateDocument,
            dst_state: StateDocument, *, migration: str | None = None) -> Comparison:
    """``migration``: only that migration and the ones it depends on, pending in ``dst``; no files."""
    import yaml

    cmp = Comparison(src.environment, dst.environment)
    src_attrs = {a: resource_attributes(m) for a, m in {**src.layers, **{f"service.{k}": v for k, v in src.services.items()}}.items()}
    dst_attrs = {a: resource_attributes(m) for a, m in {**dst.layers, **{f"service.{k}": v for k, v in dst.services.items()}}.items()}
    by_file: dict[str, str] = {}
    for address in list(src.layers) + [f"service.{k}" for k in src.services]:
        s = src.source(address)
        if s is not None:
            by_file[s.path] = address
    managed = migration_managed(src, src.environment)
    for kind in KINDS if migration is None else ():
        sdir = root / "environments" / src.environment / kind
        ddir = root / "environments" / dst.environment / kind
        names = sorted({p.name for p in sdir.glob("*.y*ml")} | {p.name for p in ddir.glob("*.y*ml")})
        for name in names:
            sp, dp = sdir / name, ddir / name
            if not sp.exists():
                cmp.files.append(FileChange(kind, name, "removed"))
                continue
            text = retarget(sp.read_text(), src.environment, dst.environment)
            target_text = dp.read_text() if dp.exists() else None
            keys = managed.get(f"environments/{src.environment}/{kind}/{name}")
            if keys:
                text = _without_managed(text, target_text, keys, f"environments/{src.environment}/{kind}/{name}")
            if target_text is None:
                cmp.files.append(FileChange(kind, name, "new", text))
                continue
            if keys:
                same = yaml.safe_load(text) == yaml.safe_load(target_text)
            else:
                known = by_file.get(f"environments/{src.environment}/{kind}/{name}")
                same = known is not None and src_attrs.get(known) == dst_attrs.get(known)
            cmp.files.append(FileChange(kind, name, "unchanged" if same else "modified", text))
    wanted: set[str] | None = None
    if migration is not None:
        chain, problems = migration_chain(migration, dst)
        cmp.problems.extend(problems)
        wanted = set(chain)
    applied_src = set(src_state.applied_migrations())
    for m in dst.migrations_for_env():
        if wanted is not None and m.metadata.id not in wanted:
            continue
        latest = dst_state.latest_migration(m.metadata.id)
        if latest is not None and latest.status == "applied":
            continue
        if m.metadata.id not in applied_src:
            if wanted is not None:
                cmp.problems.append(f"migration {m.metadata.id} is not applied in {src.environment} yet")
            continue
        src_rec = src_state.latest_migration(m.metadata.id)
        if src_rec is not None and src_rec.checksum != migration_checksum(m):
            cmp.problems.append(f"migration {m.metadata.id} changed since it was applied in {src.environment}")
            continue
        cmp.migrations.append(m.metadata.id)
    return cmp


def pending_deployments(src: DesiredState, dst: DesiredState, src_state: StateDocument,
                        dst_state: StateDocument) -> list[str]:
    """Layers and services applied in ``src`` as declared, but not (or differently) in ``dst``."""
    from honua_plan.plan.diff import desired_resources
    from honua_plan.state.model import fingerprint

    src_res, dst_res = desired_resources(src), desired_resources(dst)
    out = []
    for address, (kind, attrs) in src_res.items():
        if kind not in ("layer", "service") or address not in dst_res:
            continue
        rec = src_state.resources.get(address)
        if rec is None or rec.fingerprint != fingerprint(attrs):
            continue  # not deployed in the source as declared: nothing proven to promote
        theirs = dst_state.resources.get(address)
        if theirs is None or theirs.fingerprint != fingerprint(dst_res[address][1]):
            out.append(address)
    return sorted(out)


def summary(cmp: Comparison) -> dict[str, Any]:
    return {
        "source": cmp.src, "target": cmp.dst,
        "files": [{"path": f.path, "change": f.change} for f in cmp.files if f.change != "unchanged"],
        "migrations": cmp.migrations, "problems": cmp.problems,
    }
