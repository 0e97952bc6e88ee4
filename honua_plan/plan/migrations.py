"""A migration's steps as a plan runs them: SQL and metadata operations, their rollback,
checks and lock analysis, drafted from the migration and the live catalog. Used by the plan
builder, by resume (a migration edited since the interrupted apply) and by recovery."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from honua_plan.config import templating
from honua_plan.config.desired import DesiredState
from honua_plan.config.models import Check, Migration, MigrationStep
from honua_plan.errors import Diagnostic
from honua_plan.plan.model import (
    CheckRecord,
    FindingRecord,
    Operation,
    ServerEntry,
)
from honua_plan.providers.postgis.facts import DatabaseFacts, TableFacts

if TYPE_CHECKING:
    from honua_plan.plan import graph, risk
    from honua_plan.plan.simulation import Simulation
    from honua_plan.sql.statement import Statement
    from honua_plan.state.model import StateDocument
else:  # imported on first use: a no-op plan needs neither sqlglot nor networkx
    from honua_plan.lazy import LazyModule

    graph = LazyModule("honua_plan.plan.graph")
    risk = LazyModule("honua_plan.plan.risk")


def _statements(text: str) -> tuple[Statement, ...]:
    from honua_plan.sql.analysis import analyze as _analyze

    return _analyze(text)

SPATIAL_METHODS = frozenset({"gist", "spgist", "brin"})
SMALL_TABLE_ROWS = 1000  # below this the planner tends to prefer a sequential scan


@dataclass(frozen=True)
class LiveState:
    """What refresh read; the builder never does I/O itself."""

    facts: DatabaseFacts | None = None
    geometry_health: Mapping[str, tuple[int, int, int]] = field(default_factory=dict)  # "schema.table.col"
    precondition_results: Mapping[str, tuple[bool, str]] = field(default_factory=dict)  # "003#0"
    file_texts: Mapping[str, str | None] = field(default_factory=dict)  # metadata files steps edit (None: absent)
    rendered_required: bool = False  # a pending migration's metadata must be in the files (CI)
    server_entries: tuple[ServerEntry, ...] = ()  # the server's publish dry run
    server_error: str | None = None  # the server could not be asked
    probes: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)  # plan.probes answers
    simulation: Simulation | None = None  # the migrations run on a schema-only copy (plan --simulate)


def finding_record(f: risk.Finding) -> FindingRecord:
    return FindingRecord(code=f.code, level=f.level.name, message=f.message, suggestion=f.suggestion,
                         irreversible=f.irreversible, error=f.error, subject=f.subject or "")


def _qualify(name: str, facts: DatabaseFacts | None) -> str:
    if "." in name:
        return name
    if facts is not None:
        t = facts.table(name)
        if t is not None:
            return t.qualified_name
    return f"public.{name}"


def check_record(c: Check, phase: str, variables: dict[str, Any]) -> CheckRecord:
    return CheckRecord(name=c.label, type=c.type, query=templating.render_template(c.query, variables) if c.query else None,
                       expected=c.expected, phase=phase, timeout_s=c.timeout)


@dataclass
class MigrationDraft:
    migration: Migration
    checksum: str
    reason: str
    operations: list[Operation]
    rollback: list[Operation]
    findings: list[risk.Finding]
    created: set[str]
    touched: set[str]
    errors: list[Diagnostic]
    preconditions: list[str]
    deferred: list[str]
    checks: list[CheckRecord]
    rollback_checks: list[CheckRecord]


def _step_operation(
    desired: DesiredState,
    m: Migration,
    section: str,
    index: int,
    step: MigrationStep,
    live: LiveState,
    created: set[str],
    errors: list[Diagnostic],
) -> tuple[Operation, list[risk.Finding], list[Statement]]:
    variables = desired.template_vars()
    facts = live.facts
    ds = desired.datasources.get(desired.project.spec.defaultDatasource or "")
    lock_timeout = step.lockTimeout if step.lockTimeout is not None else (ds.spec.lockTimeout if ds else 2.0)
    stmt_timeout = step.statementTimeout if step.statementTimeout is not None else (ds.spec.statementTimeout if ds else 300.0)
    if step.type == "metadata":
        return _metadata_operation(desired, m, section, index, step, live, errors), [], []
    text = templating.render_template(step.content or "", variables)
    stmts = list(_statements(text))
    concurrently = any(not s.transactional for s in stmts)
    transactional = step.transaction if step.transaction is not None else not concurrently
    if step.transaction and concurrently:
        errors.append(Diagnostic(desired.locate(m.address, "spec", section, index, "transaction"),
                                 f"step '{step.name}' forces a transaction but holds a statement that cannot run in one"))
    findings = list(risk.assess_statements(
        stmts, facts, created_tables=frozenset(created), lock_timeout_set=lock_timeout is not None,
        step_statement_count=len(stmts), in_transaction=transactional, probes=live.probes,
    )) if section == "up" else []
    findings = _allowed(findings, step)
    tables = sorted({_qualify(s.table, facts) for s in stmts if s.table})
    estimate = sum(risk.estimate_seconds(s, facts, live.probes) for s in stmts)
    irreversible = any(s.destructive for s in stmts)
    op = Operation(kind="sql", name=step.name, sql=text.strip() + "\n", transactional=transactional,
                   lock_timeout_s=lock_timeout if not concurrently else None,
                   statement_timeout_s=stmt_timeout, tables=tables, estimated_s=round(estimate, 3),
                   irreversible=irreversible)
    return op, findings, stmts


def _metadata_operation(desired: DesiredState, m: Migration, section: str, index: int, step: MigrationStep,
                        live: LiveState, errors: list[Diagnostic]) -> Operation:
    """A metadata step: the diff it writes, or none when the file already holds the edit
    (``honua migrate render`` wrote it into the pull request; apply then verifies it).

    A pending migration's up step is judged here, not by the loader: its file must exist,
    and where edits must be in the pull request (``live.rendered_required``: under CI) the
    file must hold them. An applied migration's step is history and pins no file."""
    path = templating.render_template(step.path or "", desired.template_vars())
    before = live.file_texts.get(path)
    text_diff = None
    if section == "up" and path in live.file_texts and before is None:
        errors.append(Diagnostic(desired.locate(m.address, "spec", "up", index, "path"),
                                 f"metadata step of migration {m.metadata.id} edits '{path}', which does not "
                                 f"exist for environment {desired.environment}"))
    elif before is not None and step.changes is not None:
        from honua_plan.config.yamledit import edit_text, missing_changes, unified_diff

        missing = missing_changes(before, step.changes)
        if missing:
            text_diff = unified_diff(before, edit_text(before, step.changes, where=path), path)
        if missing and section == "up" and live.rendered_required:
            errors.append(Diagnostic(
                desired.locate(m.address, "spec", "up", index, "path"),
                f"{path} does not hold the metadata of migration {m.metadata.id} ({', '.join(missing)}): run "
                f"`honua migrate render --env {desired.environment} {m.metadata.id}` and commit the result in the "
                "pull request (under CI a deployment verifies the file, it does not edit it)"))
    return Operation(kind="metadata", name=step.name, path=path, changes=step.changes,
                     text_diff=text_diff, estimated_s=0.2)


def pending_indexes(desired: DesiredState, migrations: list[Migration]) -> dict[str, set[str]]:
    """Layer address → the index names the up metadata steps of ``migrations`` declare in it.

    For pending migrations: a layer file may already declare the index (the edit rendered
    into the pull request, ``honua migrate render``) while the database does not have it
    yet: the migration creates it. That is the change under review (the plan shows the
    migration), not drift."""
    variables = desired.template_vars()
    by_path: dict[str, set[str]] = {}
    for m in migrations:
        for s in m.spec.up:
            if s.type != "metadata" or not s.path:
                continue
            for key, value in (s.changes or {}).items():
                if str(key).split(".")[-1] == "indexes" and isinstance(value, list):
                    names = {str(ix.get("name")) for ix in value if isinstance(ix, dict) and ix.get("name")}
                    by_path.setdefault(templating.render_template(s.path, variables), set()).update(names)
    return {address: by_path[src.path] for address in desired.layers
            if (src := desired.sources.get(address)) is not None and src.path in by_path}


def _renames_breaking_layers(desired: DesiredState, m: Migration, stmts: list[Statement],
                              facts: DatabaseFacts | None) -> list[Diagnostic]:
    """A column or table a layer serves, renamed by a pending migration that does not update
    that layer's file itself: an error at plan time, at the layer's file:line (the next plan
    would fail with "field … does not exist" after the apply)."""
    edited = {templating.render_template(s.path or "", desired.template_vars())
              for s in m.spec.up if s.type == "metadata"}
    out: list[Diagnostic] = []
    for s in stmts:
        if s.op != "rename" or not s.table:
            continue
        table = _qualify(s.table, facts)
        for address, layer in desired.layers.items():
            st = layer.spec.storage
            src = desired.sources.get(address)
            if st.qualified_table != table or (src is not None and src.path in edited):
                continue
            if s.column:
                names = [f.name for f in layer.spec.fields]
                if s.column in names:
                    where = desired.locate(address, "spec", "fields", names.index(s.column), "name")
                elif s.column in (st.geometryColumn, st.primaryKey):
                    where = desired.locate(address, "spec", "storage")
                else:
                    continue
                out.append(Diagnostic(where, f"migration {m.metadata.id} renames column {table}.{s.column}, which "
                                             f"layer {layer.metadata.name} serves: after it, the layer's field does not "
                                             "exist; update the layer in the same change (or with a metadata step of "
                                             "the migration)"))
            elif s.object_name:
                out.append(Diagnostic(desired.locate(address, "spec", "storage", "table"),
                                      f"migration {m.metadata.id} renames table {table} to {s.object_name}, which "
                                      f"layer {layer.metadata.name} serves: update the layer's storage.table in the "
                                      "same change"))
    return out


_RENAME_TO = re.compile(r"\bTO\s+(\"[^\"]+\"|\w+)\s*;?\s*$", re.IGNORECASE)


Served = Mapping[str, tuple[list[str], set[str]]]
"""``{table: (collections, columns they serve)}``: what clients of the server can see."""


def served_columns(desired: DesiredState, recorded: StateDocument | None = None,
                   facts: DatabaseFacts | None = None) -> Served:
    """What the layers serve: as configured, and as last applied (``recorded``: a state
    document), since clients see the applied layer until this plan changes it."""
    out: dict[str, tuple[list[str], set[str]]] = {}

    def add(collection: str, table: str, names: list[str]) -> None:
        collections, columns = out.setdefault(_qualify(table, facts), ([], set()))
        if collection not in collections:
            collections.append(collection)
        columns.update(n for n in names if n)

    for layer in desired.layers.values():
        st = layer.spec.storage
        add(layer.collection_id, st.qualified_table,
            [f.name for f in layer.spec.fields] + [st.geometryColumn, st.primaryKey])
    for address, res in (recorded.resources if recorded is not None else {}).items():
        spec = (res.attributes or {}).get("spec") or {} if address.startswith("layer.") else {}
        storage: dict[str, Any] = spec.get("storage") or {}
        if not storage.get("table"):
            continue
        name = storage["table"]
        table = name if "." in name else f"{storage.get('schema') or 'public'}.{name}"
        add(address.removeprefix("layer."), table, [f.get("name", "") for f in spec.get("fields") or []]
            + [storage.get("geometryColumn", ""), storage.get("primaryKey", "")])
    return out


def _contract_findings(served: Served, stmts: list[Statement],
                       facts: DatabaseFacts | None) -> list[risk.Finding]:
    """SVC101 for SQL that changes what a collection serves: a published column or table
    renamed, a published view dropped (and not created again by the migration), or a view
    replaced by one without a published column. A column's new type is only known after
    the statements ran: ``plan --simulate`` checks that."""
    from honua_plan.sql.syntax import view_columns

    out: list[risk.Finding] = []
    for i, s in enumerate(stmts):
        table = _qualify(s.table, facts) if s.table else ""
        if table not in served:
            continue
        collections, columns = served[table]
        detail = ""
        if s.op == "rename" and s.column and s.column in columns:
            to = _RENAME_TO.search(s.sql)
            detail = f"RENAME COLUMN {table}.{s.column}" + (f" to {to.group(1)}" if to else "")
        elif s.op == "rename" and s.object_name:
            detail = f"RENAME of table {table} to {s.object_name}"
        elif s.op == "drop_view" and not any(
                later.op == "create_view" and later.table and _qualify(later.table, facts) == table
                for later in stmts[i + 1:]):
            detail = f"DROP VIEW {table}"
        elif s.op == "create_view":
            names = view_columns(s.sql)
            missing = sorted(columns - set(names)) if names is not None else []
            if missing:
                detail = (f"view {table} no longer has published column{'s' if len(missing) > 1 else ''} "
                          + ", ".join(missing))
        out += [risk.finding("SVC101", c, detail=detail, collection=c) for c in collections if detail]
    return out


def _allowed(findings: list[risk.Finding], step: MigrationStep) -> list[risk.Finding]:
    """Findings the step allows (``allowHazards``) drop to LOW and say so, with the reason;
    an error (the plan cannot run as written) is never allowed."""
    reasons = {a.code: a.reason for a in step.allowHazards}
    if not reasons:
        return findings
    return [replace(f, level=risk.Level.LOW, message=f"{f.message} (allowed by the step: {reasons[f.code]})")
            if f.code in reasons and not f.error else f for f in findings]


def migration_draft(desired: DesiredState, mc: Any, live: LiveState, created_before: set[str],
                    served: Served | None = None) -> MigrationDraft:
    """``served``: what clients see (:func:`served_columns`); default: the configured layers."""
    m: Migration = mc.migration
    facts = live.facts
    errors: list[Diagnostic] = []
    created = set(created_before)
    touched: set[str] = set()
    ops: list[Operation] = []
    findings: list[risk.Finding] = []
    variables = desired.template_vars()
    for i, step in enumerate(m.spec.up):
        op, fs, stmts = _step_operation(desired, m, "up", i, step, live, created, errors)
        ops.append(op)
        findings.extend(fs)
        if live.simulation is None or not live.simulation.complete:  # else the layers are checked on the copy
            errors.extend(_renames_breaking_layers(desired, m, stmts, facts))
        if served is None:
            served = served_columns(desired, None, facts)
        findings.extend(_allowed(_contract_findings(served, stmts, facts), step))
        for s in stmts:
            if s.table:
                q = _qualify(s.table, facts)
                touched.add(q)
                # CREATE TABLE IF NOT EXISTS on an existing table creates nothing
                if s.op == "create_table" and (facts is None or facts.table(q) is None):
                    created.add(q)
                    created.add(s.table)
    # the down steps run as written (the seed: drop the index, then revert the metadata)
    rollback = [
        _step_operation(desired, m, "down", i, step, live, created, errors)[0]
        for i, step in enumerate(m.spec.down)
    ]
    # a file the up steps only verify (rendered in the pull request) is left as committed by
    # a rollback (the executor skips a down step on a file the apply did not edit): no diff
    verified = {op.path for op in ops if op.kind == "metadata" and op.text_diff is None
                and live.file_texts.get(op.path or "") is not None}
    rollback = [op.model_copy(update={"text_diff": None}) if op.kind == "metadata" and op.path in verified else op
                for op in rollback]
    # preconditions at plan time, against facts plus what earlier migrations create
    pre_labels: list[str] = []
    deferred: list[str] = []
    for i, pre in enumerate(m.spec.preConditions):
        pre_labels.append(pre.label)
        where = desired.locate(m.address, "spec", "preConditions", i)
        table = _qualify(pre.table, facts) if pre.table else None
        t: TableFacts | None = facts.table(table) if (facts and table) else None
        created_here = table is not None and (table in created_before or (pre.table or "") in created_before)
        if pre.type in ("table-exists", "column-exists", "srid-is", "row-count") and t is None:
            if created_here:
                deferred.append(f"{pre.label} (table created earlier in this plan)")
                continue
            if facts is not None:
                errors.append(Diagnostic(where, f"precondition failed for migration {m.metadata.id}: "
                                                f"{pre.message or f'table {pre.table} does not exist'}"))
            continue
        if pre.type == "table-not-exists" and t is not None:
            errors.append(Diagnostic(where, f"precondition failed for migration {m.metadata.id}: table {pre.table} already exists"))
        elif pre.type == "column-exists" and t is not None and t.column(pre.column or "") is None:
            errors.append(Diagnostic(where, f"precondition failed for migration {m.metadata.id}: "
                                            f"column {pre.table}.{pre.column} does not exist"))
        elif pre.type == "srid-is" and t is not None:
            geos = t.geometry(pre.column) if pre.column else (t.geometry_columns[0] if t.geometry_columns else None)
            if geos is None or geos.srid != pre.srid:
                errors.append(Diagnostic(where, f"precondition failed for migration {m.metadata.id}: "
                                                f"SRID of {pre.table} is {geos.srid if geos else 'unknown'}, expected {pre.srid}"))
        elif pre.type in ("index-exists", "index-not-exists") and facts is not None:
            found = facts.find_index(pre.index or "") is not None
            if found != (pre.type == "index-exists"):
                errors.append(Diagnostic(where, f"precondition failed for migration {m.metadata.id}: index {pre.index} "
                                                f"{'does not exist' if pre.type == 'index-exists' else 'already exists'}"))
        elif pre.type == "extension-exists" and facts is not None and facts.extension_version(pre.extension or "") is None:
            errors.append(Diagnostic(where, f"precondition failed for migration {m.metadata.id}: extension {pre.extension} is not installed"))
        elif pre.type in ("sql-check", "row-count"):
            result = live.precondition_results.get(f"{m.metadata.id}#{i}")
            if result is None:
                deferred.append(pre.label)
            elif not result[0]:
                errors.append(Diagnostic(where, f"precondition failed for migration {m.metadata.id}: {result[1]}"))
    checks = [check_record(c, "post-up", variables) for c in m.spec.validation.post_up]
    rollback_checks = [check_record(c, "post-down", variables) for c in m.spec.validation.post_down]
    # VAL001: a performance check expecting an index on a small (or new) table
    final: list[CheckRecord] = []
    for c in checks:
        expectation = None
        if c.type == "performance":
            from honua_plan.config import expected as exp

            expectation = exp.parse(c.expected, "performance")
        if expectation is not None and expectation.kind == "index":
            # the table the check queries (EXPLAIN … FROM bike_lanes), else one the migration touches
            queried = [st.table for st in _statements(c.query or "") if st.table]
            idx_table = _qualify(queried[0], facts) if queried else next(iter(sorted(touched)), None)
            f = risk.assess_performance_validation(idx_table, facts, created_tables=frozenset(created)) if idx_table else None
            if f is not None:
                findings.append(f)
                c = c.model_copy(update={"predicted_failure": f.message})
        final.append(c)
    return MigrationDraft(m, mc.checksum, mc.reason, ops, rollback, findings, created, touched, errors,
                           pre_labels, deferred, final, rollback_checks)


def created_before_plan(draft: MigrationDraft, drafts: list[MigrationDraft]) -> set[str]:
    """Tables in ``draft.created`` that an earlier migration of the plan already created."""
    earlier: set[str] = set()
    for d in drafts:
        if d is draft:
            break
        earlier |= d.created
    return earlier
