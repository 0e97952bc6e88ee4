"""Promotion: compare two environments and carry the source's layers and services over.

The comparison is pure (:func:`compare`); :meth:`Context.promote` writes the target's
files (the source's, with ``metadata.environment`` rewritten), then plans and applies
the target like any other change, under the target's policy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from honua_plan.config.desired import DesiredState
from honua_plan.errors import UsageError
from honua_plan.plan.diff import migration_checksum, resource_attributes
from honua_plan.state.model import StateDocument

if TYPE_CHECKING:
    from honua_plan.apply.executor import ApplyResult
    from honua_plan.workspace import Workspace

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
                    path = templating.render_template(step.path, variables)
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

    from honua_plan.config.yamledit import edit_text

    target = yaml.safe_load(target_text) if target_text else None
    ours = yaml.safe_load(text)
    changes = {k: _get(target, k) for k in sorted(keys) if _get(ours, k) != _get(target, k)}
    return edit_text(text, changes, where=where) if changes else text


def migration_chain(ref: str, dst: DesiredState) -> tuple[list[str], list[str]]:
    """The ids of migration ``ref`` and of everything it depends on (transitively), and problems."""
    from honua_plan.config.desired import resolve_migration

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


def promote(ws: Workspace, src: str, dst: str, *, migration: str | None = None, auto_validate: bool = False,
            yes: bool = False, confirm: Callable[[str, bool], None] | None = None,
            allow_untested: bool = False, allow_predicted_failure: bool = False) -> ApplyResult | None:
    """Compare ``src`` with ``dst``, carry the layers and services over, plan and apply ``dst``.

    Everything is computed with the target's new files in memory (a loader overlay):
    nothing is written before the confirmation, so "no" leaves every file as it was. The
    summary shows the plan's risk and every finding as ``honua plan`` does; a plan whose
    validation is predicted to fail (VAL001) is not applied unattended (``yes``) unless
    ``allow_predicted_failure``: it would only roll back."""
    import time

    from honua_plan.config.loader import load
    from honua_plan.console import format_duration
    from honua_plan.errors import ApprovalRequired, PlanError
    from honua_plan.plan.render import findings_text
    from honua_plan.providers.metadata import write_atomic
    from honua_plan.state.health import assess
    from honua_plan.workflows.apply import apply
    from honua_plan.workflows.dev import test_layers
    from honua_plan.workspace import exempt_names

    con = ws.console
    started = time.perf_counter()
    envs = ws.load()[0].project.spec.environments
    if src == dst:
        raise UsageError("source and target environment are the same")
    if envs.index(dst) < envs.index(src):
        con.warn(f"{dst} comes before {src} in the promotion order ({' → '.join(envs)})")
    src_d, dst_d = ws.desired(src), ws.desired(dst)
    src_state, dst_state = ws.recorded(src), ws.recorded(dst)
    con.print("Comparing environments...")
    con.print("")
    cmp = compare(ws.root, src_d, dst_d, src_state, dst_state, migration=migration)
    if cmp.problems:
        raise PlanError("cannot promote: " + "; ".join(cmp.problems))
    con.print("Changes to be promoted:")
    con.rule()
    con.print("Metadata Changes:")
    shown = [f for f in cmp.files if f.change != "unchanged"]
    for f in shown:
        sym = {"new": "+", "modified": "~", "removed": "-"}[f.change]
        extra = " (kept: promotion never deletes)" if f.change == "removed" else ""
        con.print(f"  {sym} {f.path} ({f.change}){extra}")
    if not shown:
        con.print("  (none)")
    con.print("")
    con.print("Migrations:")
    for mid in cmp.migrations:
        m = dst_d.migration(mid)
        con.print(f"  + {m.stem if m else mid} (new)")
    if not cmp.migrations:
        con.print("  (none)")
    deployments = pending_deployments(src_d, dst_d, src_state, dst_state) if migration is None else []
    if deployments:
        con.print("")
        con.print(f"Applied in {src}, not yet in {dst}:")
        for address in deployments:
            con.print(f"  + {address}")
    con.print("")
    con.print("Configuration Diff:")
    con.print(f"  {src} → {dst}")
    new = sum(1 for f in cmp.files if f.change == "new") + len(cmp.migrations)
    modified = sum(1 for f in cmp.files if f.change == "modified")
    con.print(f"  - {new} new resource(s)")
    con.print(f"  - {modified} modified resource(s)")
    con.print(f"  - {len(cmp.removed)} removal(s)")
    if not cmp.changed and not cmp.migrations and not deployments:
        con.print("")
        con.print(f"Nothing to promote: {dst} already has what {src} has.")
        return None

    con.print("")
    con.print("Safety Checks:")
    problems: list[str] = []

    def check(ok: bool, text: str, bad: str) -> None:
        (con.ok if ok else con.fail)(text if ok else bad, indent=2)
        if not ok:
            problems.append(bad)

    if auto_validate:  # first: its result is recorded and counts in the health check below
        reports = test_layers(ws, src)
        failed = [c.name for r in reports for c in r.checks if not c.ok]
        check(not failed, f"All layer tests passed in {src}", f"layer tests failed in {src}: {', '.join(failed)}")
        src_state = ws.recorded(src)
    check(src_state.pending is None, f"No unfinished apply in {src}", f"{src} has an unfinished apply")
    health = assess(src_state)
    if health.status == "unknown" and allow_untested:
        con.warn(f"{health.describe(src)} (--allow-untested)", indent=2)
    else:
        check(health.status == "healthy", health.describe(src),
              health.describe(src) + (f" (run `honua test --env {src}`, or --auto-validate)"
                                      if health.status == "unknown" else ""))
    src_drift = ws.plan(src, refresh_only=True).drift
    check(not src_drift, f"No drift in {src}", f"{src} drifted: {src_drift[0].summary if src_drift else ''}")
    if problems:
        raise PlanError(f"promotion {src} → {dst} stopped by its safety checks", hint="; ".join(problems))

    # the target's new files, in memory: the plan reads them, nothing is written yet
    overlay = {f"environments/{dst}/{f.kind}/{f.name}": (f.source_text or "").encode() for f in cmp.changed}
    written = ws._desired.pop(dst, None)
    try:
        dst_d = load(ws.root, dst, overlay=overlay)[0]
        exempt_names(dst_d)
        ws._desired[dst] = dst_d
        # what was proven in the source: its changed files, its deployments, its migrations
        targets = {a for a in [*dst_d.layers, *(f"service.{s}" for s in dst_d.services)]
                   if (src_map := dst_d.source(a)) is not None and src_map.path in overlay}
        targets |= set(deployments) | {f"migration.{m}" for m in cmp.migrations}
        if targets and migration is None:  # the shared provider settings travel with them
            targets |= {f"datasource.{n}" for n in dst_d.datasources} | {f"server.{n}" for n in dst_d.servers}
        plan = ws.plan(dst, target=tuple(sorted(targets)))
    finally:
        ws._desired.pop(dst, None)
        if written is not None:
            ws._desired[dst] = written
    breaking = [f for a in plan.actions for f in a.findings if f.code == "SVC101"]
    check(not breaking, "No breaking changes", f"breaking change: {breaking[0].message if breaking else ''}")
    con.print("")
    policy_name = f"{dst}-policy.yaml" if dst_d.policy else "no policy"
    con.print(f"Policy Check ({policy_name}):")
    for p in plan.policy:
        mark = {"pass": "✓", "fail": "✗", "warn": "⚠", "skip": "-"}[p.status]
        con.print(f"  {mark} {p.message}")
    con.print("")
    con.print("Deployment Plan:")
    con.rule()
    backup_tables = sorted({t for a in plan.actions for t in a.backup_tables})
    con.print(f"Phase 1: Backup (est. {format_duration(max(1.0, 0.5 * len(backup_tables)))})")
    if backup_tables:  # a backup holds the metadata snapshot beside the dump (see apply/backup)
        con.print(f"  - Database snapshot of {', '.join(backup_tables)}")
        con.print(f"  - Metadata backup (state serial {dst_state.serial}, git {ws.git_commit or 'working tree'})")
    else:
        con.print("  - No table touched: no database snapshot, and no metadata backup (the state records the "
                  "deployed files)")
    con.print(f"Phase 2: Apply (est. {format_duration(plan.estimated_s)})")
    for a in plan.actions:
        con.print(f"  - {a.action} {a.address}")
    checks = sum(len(a.checks) for a in plan.actions)
    con.print(f"Phase 3: Validate ({checks} check(s))")
    con.print(f"Total estimated time: {format_duration(plan.estimated_s + 2)}")
    rollback = plan.rollback_summary
    con.print("Rollback available: " + {"YES": "Yes (automatic on failure)", "NO": "No (manual: `honua apply --rollback`)"}
              .get(rollback, rollback.replace("PARTIAL", "Partial") + ", the others manual"))
    con.print(f"Risk Level: {plan.risk}")
    findings = findings_text(plan)
    if findings:  # the plan's findings, as `honua plan` prints them: none is left out
        con.print("Findings:")
        for line in findings:
            con.print(line)
    predicted = [f for a in plan.actions for f in a.findings if f.code == "VAL001"]
    if predicted and yes and not allow_predicted_failure:
        raise PlanError(
            f"promotion {src} → {dst} stopped before apply: {predicted[0].code} {predicted[0].message}; "
            "its validation is predicted to fail, and the apply would roll back (nothing was changed)",
            hint=f"{predicted[0].suggestion}; or pass --allow-predicted-failure to apply anyway")
    needs_approval = bool(plan.approvals_required and not plan.approved)
    if confirm is not None:
        what = f"Write the {dst} files and save the plan for approval?" if needs_approval and overlay else (
            "Save the plan for approval?" if needs_approval else "Proceed with promotion?")
        if predicted:
            what += f" ({predicted[0].code}: its validation is predicted to fail and roll it back)"
        confirm(what, yes)
    for rel, data in overlay.items():  # confirmed: now the target's files change
        write_atomic(ws.root / rel, data)
    if overlay:
        ws._reload_desired(dst)
    if needs_approval:
        from honua_plan.plan.store import save_plan

        path = ws.state_dir / "plans" / f"promote-{src}-{dst}-{plan.id[:8]}.json"
        save_plan(plan, path)
        rel_plan = path.relative_to(ws.root) if path.is_relative_to(ws.root) else path
        files = f"the {dst} files were updated ({', '.join(sorted(overlay))}) and " if overlay else ""
        raise ApprovalRequired(
            f"the promotion to {dst} needs {plan.approvals_required} approval(s)"
            + (f" from {', '.join(plan.approvers)}" if plan.approvers else "")
            + f"; {files}the plan was saved to {rel_plan}",
            hint=f"honua approve {rel_plan} --by NAME && honua apply --env {dst} {rel_plan}",
        )
    con.print("")
    con.print(f"Starting promotion {src} → {dst}")
    result = apply(ws, dst, plan=plan, yes=True, show=False, banner=False, command="honua promote")
    con.print("")
    con.print(f"Promotion completed successfully! ({format_duration(time.perf_counter() - started)})")
    return result
