"""The plan builder: desired + recorded + live → one frozen :class:`Plan`. Pure.

Everything the builder needs from the outside world arrives in :class:`LiveState`
(read beforehand by ``Context.refresh``), so the same inputs always give the same
plan, and the builder is testable without a database.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from honua_plan import __version__
from honua_plan.config.desired import DesiredState
from honua_plan.errors import Diagnostic, Location, PlanError
from honua_plan.plan import policy as policy_mod
from honua_plan.plan.diff import (
    Change,
    Drift,
    apply_moves,
    check_layer,
    declared_index_drift,
    desired_resources,
    detect_drift,
    diff_migrations,
    diff_resources,
)
from honua_plan.plan.model import (
    Action,
    CheckRecord,
    DatabaseRef,
    DriftRecord,
    FindingRecord,
    MovedRecord,
    NoOp,
    Operation,
    Plan,
    Provenance,
    SimulationRecord,
)
from honua_plan.plan.policy import judged_changes, policy_base_record, policy_line
from honua_plan.plan.simulation import (
    SimulatedTables,
    check_layer_after,
    simulation_errors,
    type_changes,
)
from honua_plan.providers.postgis.facts import DatabaseFacts
from honua_plan.state.model import StateDocument

if TYPE_CHECKING:
    from honua_plan.config.models import Policy
    from honua_plan.config.policybase import Judge
    from honua_plan.plan import graph, risk
else:  # imported on first use: a no-op plan needs neither sqlglot nor networkx
    from honua_plan.lazy import LazyModule

    graph = LazyModule("honua_plan.plan.graph")
    risk = LazyModule("honua_plan.plan.risk")
from honua_plan.plan.migrations import (
    LiveState,
    MigrationDraft,
    Served,
    _step_operation,
    check_record,
    created_before_plan,
    finding_record,
    migration_draft,
    pending_indexes,
    served_columns,
)


@dataclass(frozen=True)
class PlanRequest:
    now: datetime
    provenance: Provenance = field(default_factory=Provenance)
    target: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()  # left out, with everything that depends on them
    replace: tuple[str, ...] = ()  # layers to re-derive and publish as new although unchanged (--replace)
    refresh_only: bool = False
    config_commit: str | None = None
    source_state: StateDocument | None = None  # for the cooldown policy
    pg_dump_available: bool = True
    plan_id: str | None = None
    database: DatabaseRef | None = None  # the database the live facts came from (shown, and checked by apply)
    judge: Judge | None = None  # the policy that judges (the base's: config.policybase); None: the working tree's

    @property
    def policy(self) -> Policy | None:
        """The policy approvals, windows and cooldown come from."""
        return self.judge.policy if self.judge is not None else None

    def judging(self, desired: DesiredState) -> Policy | None:
        return self.policy if self.judge is not None else desired.policy


# --------------------------------------------------------------------------- helpers


def _svc_findings(collection: str, change: Change) -> tuple[risk.Finding, ...]:
    """SVC101 for what in a layer update breaks clients of the published collection."""
    bs = (change.before or {}).get("spec", {})
    as_ = (change.after or {}).get("spec", {})
    gtype = (bs.get("geometryType"), as_.get("geometryType"))
    b_crs = f"{bs.get('crs')} srid {bs.get('storage', {}).get('srid')}"
    a_crs = f"{as_.get('crs')} srid {as_.get('storage', {}).get('srid')}"
    removed = sorted({f["name"] for f in bs.get("fields", [])} - {f["name"] for f in as_.get("fields", [])})
    found = risk.assess_service_change(
        collection,
        geometry_type=gtype if gtype[0] != gtype[1] else None,
        crs=(b_crs, a_crs) if b_crs != a_crs else None,
        removed_fields=removed,
    )
    if not found and change.action == "replace" and change.changed_paths:
        found = (risk.finding("SVC101", collection, detail="storage changed (table, schema or geometry column)",
                              collection=collection),)
    bm, am = (change.before or {}).get("metadata", {}), (change.after or {}).get("metadata", {})
    old_id = f"{bm.get('service')}::{bm.get('name')}"
    if bm and am and old_id != f"{am.get('service')}::{am.get('name')}":  # a moved (renamed) layer
        found += (risk.finding("SVC101", collection, collection=old_id,
                               detail=f"collection {old_id} is now served as {collection} (its URL changes)"),)
    return found


# --------------------------------------------------------------------------- build


def _simulated_contract(served: Served, drafts: list[MigrationDraft], facts: DatabaseFacts,
                        sim: SimulatedTables) -> None:
    """SVC101 on the last migration touching a published table whose served columns the
    simulated schema dropped or retyped (a rename already said so is not said twice)."""
    for table in sorted(served):
        before = facts.table(table)
        last = next((d for d in reversed(drafts) if table in d.touched), None)
        if before is None or last is None:
            continue
        said = " ".join(f.message for f in last.findings if f.code == "SVC101")
        last.findings += [f for column, f in type_changes(served[table], before, sim.table(table))
                          if not re.search(rf"{re.escape(table)}\.{re.escape(column)}\b", said)]


def _forced_replacements(desired: DesiredState, recorded: StateDocument, changes: list[Change],
                         replace: Sequence[str], errors: list[Diagnostic]) -> list[Change]:
    """``--replace ADDRESS`` (Terraform's ``-replace``): the layer is re-derived and published
    again as new (its table read again, extents rescanned, health checks run), changed or not."""
    if not replace:
        return changes
    by_address = {c.address: i for i, c in enumerate(changes)}
    for address in replace:
        i = by_address.get(address)
        c = changes[i] if i is not None else None
        problem = ("is unmanaged (state rm): `honua state import` it first" if address in recorded.unmanaged else
                   "is not in the configuration" if c is None or c.action == "delete" else
                   "is not a layer (only layers can be replaced)" if c.kind != "layer" else
                   "is not in the state yet (it is created anyway)" if c.action == "create" else "")
        if problem:
            errors.append(Diagnostic(Location(f"--replace {address}"), f"{address} {problem}"))
            continue
        assert c is not None and i is not None
        rec = recorded.resources[address]
        changes[i] = Change(address, c.kind, "replace", f"replacement requested (--replace){'; ' + c.reason if c.action != 'no-op' else ''}",
                            c.changed_paths, c.before or rec.attributes, c.after or desired_resources(desired)[address][1])
    return changes


def build_plan(desired: DesiredState, recorded: StateDocument, live: LiveState, req: PlanRequest) -> Plan:
    """Build the plan or raise PlanError listing every problem found."""
    facts = live.facts
    errors: list[Diagnostic] = []
    warnings: list[str] = [str(w) for w in desired.warnings]
    recorded, moves, move_errors = apply_moves(desired, recorded)  # honua.yaml's moved: renamed, not replaced
    errors.extend(move_errors)
    judging = req.judging(desired)
    production = bool(judging and judging.spec.production)
    managed_layers = [lyr for a, lyr in desired.layers.items() if a not in recorded.unmanaged]
    coming = pending_indexes(desired, [mc.migration for mc in diff_migrations(desired, recorded)[0]])
    drifts = detect_drift(recorded, facts, drift_ignored(desired)) + declared_index_drift(managed_layers, facts, coming)
    drift_records = [
        DriftRecord(address=d.address, kind="layer" if d.kind == "layer" else "table", change=d.change, summary=d.summary, details=list(d.details),
                    recorded_fingerprint=d.recorded_fingerprint, live_fingerprint=d.live_fingerprint,
                    last_applied=recorded.resources[d.address].applied_at if d.address in recorded.resources else None)
        for d in drifts
    ]

    changes = _forced_replacements(desired, recorded, diff_resources(desired_resources(desired), recorded),
                                   req.replace, errors)
    pending, _applied, mig_errors = diff_migrations(desired, recorded)
    errors.extend(mig_errors)

    # migrations, in dependency order, each seeing what the earlier ones create
    drafts: list[MigrationDraft] = []
    created: set[str] = set()
    served = served_columns(desired, recorded, facts) if pending else {}
    for mc in pending:
        d = migration_draft(desired, mc, live, created, served)
        created |= d.created
        errors.extend(d.errors)
        drafts.append(d)
    sim = live.simulation
    errors.extend(simulation_errors(desired, sim))
    simulated = SimulatedTables(sim.facts) if sim is not None and sim.complete and sim.facts is not None else None
    if simulated is not None and facts is not None:
        _simulated_contract(served, drafts, facts, simulated)
    created_by: dict[str, list[str]] = {}
    for d in drafts:
        for t in d.created - created_before_plan(d, drafts):
            created_by.setdefault(t, []).append(d.migration.address)

    actions: dict[str, Action] = {}
    no_ops: list[NoOp] = []
    edges: list[tuple[str, str]] = []  # hard: the target needs the source to succeed
    soft_edges: list[tuple[str, str]] = []  # ordering only
    order_key: dict[str, int] = {}
    kinds_order = {"datasource": 0, "migration": 1, "table": 2, "layer": 3, "service": 4, "server": 5, "validation": 6}

    def src(address: str) -> str | None:
        s = desired.source(address)
        if s is None:
            return None
        loc = s.locate(())
        return f"{loc.path}:{loc.line}"

    def level_of(findings: Sequence[risk.Finding]) -> risk.Level:
        return risk.overall(findings)

    def finish(findings: list[risk.Finding], subject: str) -> tuple[str, list[FindingRecord]]:
        findings = [*findings, *risk.assess_context(findings, production=production,
                                                    provenance=req.provenance.kind,
                                                    environment=desired.environment)]
        return level_of(findings).name, [finding_record(f) for f in findings]

    # datasource / server resources
    for ch in changes:
        if ch.action == "no-op":
            no_ops.append(NoOp(address=ch.address, kind=ch.kind, reason=ch.reason))

    ds_addresses = [f"datasource.{n}" for n in desired.datasources]
    for d in drafts:
        lvl, frs = finish(d.findings, d.migration.address)
        irreversible = any(o.irreversible for o in d.operations) or not d.rollback
        deps = [f"migration.{dep.metadata.id}" for dep in (desired.migration(x) for x in d.migration.spec.dependencies) if dep]
        deps += ds_addresses
        actions[d.migration.address] = Action(
            address=d.migration.address, kind="migration", action="apply",
            reason=f"{d.migration.metadata.description or d.migration.stem} ({d.reason})",
            source=src(d.migration.address), depends_on=deps, risk=lvl, findings=frs,
            estimated_s=round(sum(o.estimated_s for o in d.operations), 3),
            operations=d.operations, checks=d.checks, rollback=d.rollback, rollback_checks=d.rollback_checks,
            irreversible=irreversible, automatic_rollback=d.migration.spec.rollback.automatic and not irreversible,
            preconditions=d.preconditions, deferred=d.deferred,
            backup_tables=sorted(t for t in d.touched if t not in d.created and (facts is None or facts.table(t) is not None)),
        )
        order_key[d.migration.address] = kinds_order["migration"]
        for dep in deps:
            edges.append((dep, d.migration.address))

    # layers checked against live tables
    layer_changes = {c.address: c for c in changes if c.kind == "layer"}
    health_checks: dict[str, list[CheckRecord]] = {}  # per layer: a --target keeps its own layers' checks
    variables = desired.template_vars()
    unmanaged = frozenset(recorded.unmanaged)
    for address, layer in desired.layers.items():
        if address in unmanaged:
            continue  # left alone: neither checked nor changed while unmanaged
        table_name = layer.spec.storage.qualified_table
        live_table = facts.table(table_name) if facts else None
        created_in_plan = table_name in created or layer.spec.storage.table in created
        made_by = [d.migration.metadata.id for d in drafts if table_name in d.touched | d.created]
        if simulated is not None and made_by:
            # the table as the plan's migrations leave it (a schema-only copy ran them)
            errs, warns, deferred = check_layer(desired, layer, simulated.table(table_name), created_in_plan=False)
            errors.extend(check_layer_after(errs, made_by))
            warnings.extend(str(w) for w in warns)
        elif facts is not None:
            errs, warns, deferred = check_layer(desired, layer, live_table, created_in_plan=created_in_plan)
            errors.extend(errs)
            warnings.extend(str(w) for w in warns)
        else:
            deferred = ["live table not read (no datasource facts)"]
        lch = layer_changes.get(address)
        if lch is None or lch.action == "no-op":
            continue
        findings: list[risk.Finding] = []
        geom = layer.spec.storage.geometryColumn
        index_planned = any(
            o.kind == "sql" and o.sql and "gist" in o.sql.lower() and table_name in o.tables
            for d in drafts for o in d.operations
        )
        f301 = risk.assess_spatial_index(layer.collection_id, live_table, table_name, geom, index_planned=index_planned)
        if f301 is not None:
            findings.append(f301)
        invalid = live.geometry_health.get(f"{table_name}.{geom}")
        f101 = risk.assess_invalid_geometries(table_name, geom, invalid[0]) if invalid else None
        if f101 is not None:
            findings.append(f101)
        if lch.action in ("update", "replace"):
            findings.extend(_svc_findings(layer.collection_id, lch))
        lvl, frs = finish(findings, address)
        # a layer needs the migration that creates its table; other migrations on the table
        # (an index, say) do not block it: the server reload runs after them anyway
        layer_deps = list(created_by.get(table_name, [])) + ds_addresses
        actions[address] = Action(
            address=address, kind="layer", action=lch.action, reason=lch.reason, changed_paths=list(lch.changed_paths),
            before=dict(lch.before) if lch.before else None, after=dict(lch.after) if lch.after else None,
            source=src(address), depends_on=layer_deps, risk=lvl, findings=frs,
            estimated_s=0.05,
            operations=[Operation(kind="publish", name=f"{'Create' if lch.action == 'create' else 'Update'} layer: {layer.metadata.name}")],
            rollback=[Operation(kind="publish", name=f"{'Remove' if lch.action == 'create' else 'Restore'} layer: {layer.metadata.name}")],
            deferred=deferred,
        )
        order_key[address] = kinds_order["layer"]
        edges += [(d, address) for d in layer_deps]
        health_checks[address] = [check_record(c, "health", variables) for c in layer.spec.validation.healthChecks]

    # deleted layers, services; created/updated services, datasources, servers
    for ch in changes:
        if ch.action == "no-op" or ch.address in actions:
            continue
        findings = []
        if ch.kind == "layer" and ch.action == "delete":
            findings.extend(risk.assess_service_change(ch.address.removeprefix("layer."), removed=True))
        lvl, frs = finish(findings, ch.address)
        deps = []
        if ch.kind == "service":
            deps = [a for a, lyr in desired.layers.items() if lyr.metadata.service == ch.address.removeprefix("service.") and a in actions]
        verb = {"create": "Create", "update": "Update", "delete": "Remove", "replace": "Replace"}[ch.action]
        actions[ch.address] = Action(
            address=ch.address, kind=ch.kind, action=ch.action, reason=ch.reason,
            changed_paths=list(ch.changed_paths), before=dict(ch.before) if ch.before else None,
            after=dict(ch.after) if ch.after else None, source=src(ch.address), depends_on=deps, risk=lvl,
            findings=frs, estimated_s=0.05,
            operations=[Operation(kind="publish" if ch.kind in ("layer", "service") else "record",
                                  name=f"{verb} {ch.kind}: {ch.address.split('.', 1)[1]}")],
            rollback=[Operation(kind="publish" if ch.kind in ("layer", "service") else "record",
                                name=f"Revert {ch.kind}: {ch.address.split('.', 1)[1]}")],
        )
        order_key[ch.address] = kinds_order.get(ch.kind, 3)
        edges += [(d, ch.address) for d in deps]

    # the server reload after anything served changed (or when what it serves drifted)
    server = desired.server()
    server_changes = [e for e in live.server_entries if e.action != "skip"]
    layer_work = any(a.kind in ("layer", "service") for a in actions.values())
    # an update whose message starts "served extent" is the refresh's extent comparison: rows
    # were written outside the served bbox (the server's own dry run never says it)
    stale_extents = [e for e in server_changes if e.action == "update" and e.message.startswith("served extent ")]
    config_changes = [e for e in server_changes if e not in stale_extents]
    if server is not None and config_changes and not layer_work:
        drift_records.append(DriftRecord(
            address=f"server.{server.metadata.name}", kind="server", change="modified",
            summary="the published configuration differs from the recorded layers",
            details=[f"{e.action} {e.kind} {e.name}: {e.message}".rstrip(": ") for e in config_changes]))
    if server is not None and stale_extents:
        by_collection = {lyr.collection_id: address for address, lyr in desired.layers.items()}
        drift_records += [DriftRecord(
            address=by_collection.get(e.name, f"server.{server.metadata.name}"),
            kind="layer" if e.name in by_collection else "server", change="modified",
            summary=f"collection {e.name}: {e.message}") for e in stale_extents]
    if live.server_error:
        warnings.append(f"server.{server.metadata.name if server else '?'}: {live.server_error}")
    served_tables = {lyr.spec.storage.qualified_table for lyr in desired.layers.values()}
    publishing = [a for a, act in actions.items() if act.kind in ("layer", "service")]
    migr_on_served = [d.migration.address for d in drafts if d.touched & served_tables]
    if server is not None and server.spec.type != "none" and (publishing or migr_on_served or server_changes):
        addr = f"server.{server.metadata.name}"
        deps = publishing
        why = ("published layers changed" if publishing else
               "a migration altered a served table (schemas are cached per worker)" if migr_on_served else
               "the published configuration drifted from the layers: republish" if config_changes else
               f"served extent of {_names([e.name for e in stale_extents])} is stale: republish it")
        existing = actions.get(addr)
        actions[addr] = Action(
            address=addr, kind="server", action="reload",
            reason=(existing.reason + "; " if existing else "") + why, source=src(addr), depends_on=deps,
            runs_after=migr_on_served,
            before=existing.before if existing else None, after=existing.after if existing else None,
            changed_paths=existing.changed_paths if existing else [],
            estimated_s=1.5, operations=[Operation(kind="reload", name="Reload services", estimated_s=1.5)],
            rollback=[Operation(kind="reload", name="Reload services with the previous configuration")],
        )
        order_key[addr] = kinds_order["server"]
        edges += [(d, addr) for d in deps]
        soft_edges += [(d, addr) for d in migr_on_served]
        layer_checks = [c for cs in health_checks.values() for c in cs]
        if layer_checks:
            vaddr = f"validation.{desired.environment}"
            actions[vaddr] = Action(
                address=vaddr, kind="validation", action="validate", reason="health checks of the changed layers",
                depends_on=[addr], checks=layer_checks, estimated_s=0.5 * len(layer_checks),
                operations=[Operation(kind="check", name="Health checks")],
            )
            order_key[vaddr] = kinds_order["validation"]
            edges.append((addr, vaddr))

    # PG102-like rule errors become plan errors
    for act in actions.values():
        for f in act.findings:
            if f.error:
                errors.append(Diagnostic(desired.locate(act.address), f"{f.code} {f.message}"))
    if errors and not req.refresh_only:  # drift is reported even when the plan could not be built
        raise PlanError(f"the plan for {desired.environment} cannot be built ({len(errors)} problem(s))",
                        diagnostics=list(dict.fromkeys(errors)))

    ordered: list[Action] = []
    if actions:  # a no-op plan needs no graph (nor networkx)
        hard = graph.build(actions.keys(), edges)
        keep = set(hard.nodes)
        if req.target:
            missing = [t for t in req.target if t not in hard and t not in {n.address for n in no_ops}]
            keep = graph.ancestors_closure(hard, req.target)
            if missing and not keep:
                raise PlanError(f"--target {', '.join(missing)}: no such address in the plan")
        excluded: set[str] = set()
        if req.exclude:
            unknown = [e for e in req.exclude if e not in hard and e not in {n.address for n in no_ops}]
            if unknown:
                raise PlanError(f"--exclude {', '.join(unknown)}: no such address in the plan")
            excluded = graph.descendants_closure(hard, req.exclude)
            keep -= excluded
        if req.target or req.exclude:  # what is kept is published (and recorded) by the kept reload
            keep = graph.targeted_publish(actions, keep, soft_edges, health_checks,
                                          excluded=frozenset(req.exclude))
        hard = hard.subgraph(keep).copy()
        g = graph.build(keep, edges + soft_edges)
        generations = graph.levels(g, order_key)
        for lvl_no, gen in enumerate(generations):
            for address in gen:
                a = actions[address]
                hard_preds = set(hard.predecessors(address))
                ordered.append(a.model_copy(update={
                    "level": lvl_no,
                    "depends_on": sorted(hard_preds),
                    "runs_after": sorted(set(g.predecessors(address)) - hard_preds),
                }))
    if req.refresh_only:
        ordered = []
    elif req.judge is not None and req.judge.changed:  # never "no changes" while the policy differs from the base
        ordered = judged_changes(desired, req.judge, finish) + ordered

    plan_risk = max((a.risk for a in ordered), key=policy_mod.LEVELS.index, default="LOW")
    backup_needed = any(a.backup_tables for a in ordered)
    checks, required, approvers = policy_mod.evaluate_policy(
        judging, risk=plan_risk, provenance=req.provenance.kind, now=req.now,
        has_changes=bool(ordered), source_state=req.source_state, backup_needed=backup_needed,
        pg_dump_available=req.pg_dump_available,
    )
    if any(c.status == "fail" and c.name == "backup" for c in checks):
        raise PlanError("policy requires a backup before migrations, but none can be taken",
                        hint="install pg_dump (postgresql-client-15) or change the policy's requireBackup")
    for d in drafts:
        for c in d.checks:
            if c.predicted_failure:
                warnings.append(f"{d.migration.address}: validation '{c.name}' is predicted to fail: {c.predicted_failure}")

    fingerprints: dict[str, str] = {}
    if facts is not None:
        tables_read = set(served_tables) | {name for d in drafts for name in d.touched}
        for name in sorted(tables_read):
            read = facts.table(name)
            fingerprints[f"table.{name}"] = read.shape_fingerprint if read else "absent"

    return Plan(
        id=req.plan_id or uuid.uuid4().hex,
        created_at=req.now,
        environment=desired.environment,
        engine_version=__version__,
        config_commit=req.config_commit,
        config_hash=desired.config_hash,
        state_lineage=recorded.lineage,
        state_serial=recorded.serial,
        fingerprints=fingerprints,
        target=list(req.target),
        exclude=list(req.exclude),
        replace=list(req.replace),
        refresh_only=req.refresh_only,
        actions=ordered,
        no_ops=no_ops,
        drift=drift_records,
        server=list(live.server_entries),
        risk=plan_risk,
        estimated_s=round(sum(a.estimated_s for a in ordered), 3),
        policy=policy_line(req.judge, desired) + checks,
        approvals_required=required,
        approvers=approvers,
        provenance=req.provenance,
        warnings=list(dict.fromkeys(warnings)),
        database=req.database,
        moved=[MovedRecord(from_address=f, to_address=t) for f, t in moves],
        policy_base=policy_base_record(req.judge),
        simulation=SimulationRecord(status=sim.status, summary=sim.describe(), seconds=sim.seconds,
                                    migrations=list(sim.migrations)) if sim is not None else None,
        simulated=simulated.record() if simulated is not None else None,
    )


def _names(names: list[str], most: int = 3) -> str:
    """``a, b, c and 4 more``: a reason stays one line however many collections it names."""
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def drift_only(recorded: StateDocument, facts: DatabaseFacts | None) -> list[Drift]:
    return detect_drift(recorded, facts)


def drift_ignored(desired: DesiredState) -> dict[str, list[str]]:
    """``schema.table`` → the parts whose drift its layers ignore (``storage.ignoreDrift``)."""
    out: dict[str, list[str]] = {}
    for layer in desired.layers.values():
        if layer.spec.storage.ignoreDrift:
            out.setdefault(layer.spec.storage.qualified_table, []).extend(layer.spec.storage.ignoreDrift)
    return out


def build_down_plan(
    desired: DesiredState, recorded: StateDocument, live: LiveState, req: PlanRequest, migration_id: str
) -> Plan:
    """A plan with one action: the ``down`` steps of an applied migration, then ``post-down``."""
    m = desired.migration(migration_id)
    if m is None:
        raise PlanError(f"no migration {migration_id} in migrations/")
    latest = recorded.latest_migration(m.metadata.id)
    if latest is None or latest.status != "applied":
        raise PlanError(f"migration {m.metadata.id} is not applied in {desired.environment} "
                        f"({latest.status if latest else 'never applied'}): nothing to roll back")
    if not m.spec.down:
        raise PlanError(f"migration {m.metadata.id} has no down steps: restore from a backup with honua recover")
    errors: list[Diagnostic] = []
    ops: list[Operation] = []
    findings: list[risk.Finding] = []
    for i, step in enumerate(m.spec.down):
        op, _fs, stmts = _step_operation(desired, m, "down", i, step, live, set(), errors)
        ops.append(op)
        findings.extend(risk.assess_statements(stmts, live.facts, step_statement_count=len(stmts),
                                               in_transaction=op.transactional) if stmts else ())
    if errors:
        raise PlanError("the down plan cannot be built", diagnostics=errors)
    judging = req.judging(desired)
    production = bool(judging and judging.spec.production)
    findings += risk.assess_context(findings, production=production, provenance=req.provenance.kind,
                                    environment=desired.environment)
    level = risk.overall(findings)
    variables = desired.template_vars()
    tables = sorted({t for o in ops for t in o.tables})
    action = Action(
        address=m.address, kind="migration", action="delete",
        reason=f"roll back migration {m.metadata.id} ({m.metadata.description or m.stem})",
        source=None, risk=level.name, findings=[finding_record(f) for f in findings],
        estimated_s=round(sum(o.estimated_s for o in ops), 3), operations=ops,
        checks=[check_record(c, "post-down", variables) for c in m.spec.validation.post_down],
        irreversible=any(o.irreversible for o in ops),
        backup_tables=[t for t in tables if live.facts is None or live.facts.table(t) is not None],
    )
    checks, required, approvers = policy_mod.evaluate_policy(
        judging, risk=level.name, provenance=req.provenance.kind, now=req.now, has_changes=True,
        source_state=None, backup_needed=bool(action.backup_tables), pg_dump_available=req.pg_dump_available)
    return Plan(
        id=req.plan_id or uuid.uuid4().hex, created_at=req.now, environment=desired.environment,
        engine_version=__version__, config_commit=req.config_commit, config_hash=desired.config_hash,
        state_lineage=recorded.lineage, state_serial=recorded.serial, target=[m.address], actions=[action],
        risk=level.name, estimated_s=action.estimated_s,
        policy=policy_line(req.judge, desired) + checks, approvals_required=required, approvers=approvers,
        provenance=req.provenance, database=req.database, policy_base=policy_base_record(req.judge),
    )
