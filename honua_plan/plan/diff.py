"""Diff: desired + recorded + live → frozen change records. Pure: no I/O, no printing.

* resources (datasource, server, service, layer): desired attributes against the
  recorded ones, by fingerprint first; a deep diff (:func:`_paths`) only when fingerprints
  differ, so a no-op plan over thousands of layers costs a hash per layer;
* migrations: pending ones, and applied ones whose checksum changed (an error, as
  Flyway's ``validate``);
* layers against live tables: table, geometry column (type, SRID), fields, primary key;
* drift: recorded tables against live ones.

"No change" is an explicit :class:`Change` with action ``no-op`` and a reason.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from honua_plan.config.desired import DesiredState
from honua_plan.config.models import Layer, Migration
from honua_plan.errors import Diagnostic
from honua_plan.providers.postgis.facts import DatabaseFacts, TableFacts
from honua_plan.state.model import StateDocument, fingerprint

ChangeAction = Literal["create", "update", "delete", "replace", "no-op"]
MANAGED_KINDS = ("datasource", "server", "service", "layer")
# Keys that describe who wrote a file, not what is served: editing them is not a change.
_IGNORED_METADATA = ("created", "createdBy", "environment", "annotations")


@dataclass(frozen=True)
class Change:
    address: str
    kind: str
    action: ChangeAction
    reason: str
    changed_paths: tuple[str, ...] = ()
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class MigrationChange:
    migration: Migration
    checksum: str
    reason: str


@dataclass(frozen=True)
class Drift:
    address: str
    kind: str
    change: Literal["modified", "missing", "unmanaged"]
    summary: str
    details: tuple[str, ...] = ()
    recorded_fingerprint: str | None = None
    live_fingerprint: str | None = None


# --------------------------------------------------------------------------- attributes


def resource_attributes(model: Any) -> dict[str, Any]:
    """What is recorded and compared for a resource: its spec and identifying metadata."""
    data = model.model_dump(mode="json", by_alias=True, exclude_defaults=False)
    meta = {k: v for k, v in data.get("metadata", {}).items() if k not in _IGNORED_METADATA}
    return {"metadata": meta, "spec": data["spec"]}


# desired_resources() of a DesiredState, computed once (the refresh and the diff both need
# it); dropped when the DesiredState is. The attribute dicts also remember their
# fingerprint, keyed by id while the cache holds them.
_RESOURCES: dict[int, dict[str, tuple[str, dict[str, Any]]]] = {}
_ATTR_FINGERPRINTS: dict[int, str] = {}


def _forget(key: int) -> None:
    for _kind, attrs in _RESOURCES.pop(key, {}).values():
        _ATTR_FINGERPRINTS.pop(id(attrs), None)


def attributes_fingerprint(attrs: dict[str, Any]) -> str:
    """The fingerprint of attributes from :func:`desired_resources` (computed once per run)."""
    fp = _ATTR_FINGERPRINTS.get(id(attrs))
    if fp is None:
        fp = fingerprint(attrs)
    return fp



def desired_resources(desired: DesiredState, recorded: StateDocument | None = None
                      ) -> dict[str, tuple[str, dict[str, Any]]]:
    """Address → (kind, attributes) of every managed resource ``desired`` declares.

    Memoized per DesiredState (a frozen value); callers get a fresh outer dict, the
    attribute dicts are shared and must not be modified. Given the ``recorded`` state on
    the first call, attributes equal to their record's are the record's own
    dict (equal values, one copy in memory: ~50 MB less at 10,000 unchanged layers)."""
    key = id(desired)
    cached = _RESOURCES.get(key)
    if cached is None:
        cached = _desired_resources(desired)
        try:
            weakref.finalize(desired, _forget, key)
        except TypeError:  # not weak-referenceable: do not cache
            return cached
        _RESOURCES[key] = cached
        records = recorded.resources if recorded is not None else {}
        for address, (kind, attrs) in cached.items():
            rec = records.get(address)
            if rec is not None and rec.kind == kind and rec.attributes == attrs:
                # Equal JSON values have the same canonical text, so this is the record's
                # fingerprint, without a dump and a hash (~10% of a no-op plan). Exact only
                # because no resource field's JSON type depends on its value (True == 1 and
                # 1 == 1.0 never meet at one place): test_diff locks that property down.
                attrs, fp = rec.attributes, rec.fingerprint
                cached[address] = (kind, attrs)
            else:
                fp = fingerprint(attrs)
            _ATTR_FINGERPRINTS[id(attrs)] = fp
    return dict(cached)


def _desired_resources(desired: DesiredState) -> dict[str, tuple[str, dict[str, Any]]]:
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, ds in desired.datasources.items():
        out[f"datasource.{name}"] = ("datasource", resource_attributes(ds))
    for name, srv in desired.servers.items():
        out[f"server.{name}"] = ("server", resource_attributes(srv))
    for name, svc in desired.services.items():
        out[f"service.{name}"] = ("service", resource_attributes(svc))
    for address, layer in desired.layers.items():
        out[address] = ("layer", resource_attributes(layer))
    return out


def migration_checksum(m: Migration) -> str:
    """Checksum of the canonical spec (comments and formatting do not count)."""
    data = m.model_dump(mode="json", by_alias=True)
    return fingerprint({"id": data["metadata"]["id"], "spec": data["spec"]})


def _paths(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[str, ...]:
    """The dotted paths at which two JSON documents differ (``spec.ogc.title``, ``spec.fields.2``).

    A key added or removed is its own path; a list of named objects (a layer's fields) is
    compared by name (``spec.fields.width_ft``), so removing one field is one path, not a
    rename of every field after it; another list item changed, added or removed is its index
    (a list of plain values is aligned first, so one keyword inserted at the front is one
    path, not every index after it); a value whose type changed (``1`` → ``1.0``) differs.
    """
    out: set[str] = set()
    _walk(before, after, (), out)
    return tuple(sorted(out))


_PLAIN = (str, int, float, bool, type(None))


def _walk(a: Any, b: Any, path: tuple[Any, ...], out: set[str]) -> None:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in a.keys() | b.keys():
            if key in a and key in b:
                _walk(a[key], b[key], (*path, key), out)
            else:
                out.add(".".join(map(str, (*path, key))))
    elif isinstance(a, list | tuple) and isinstance(b, list | tuple):
        names_a, names_b = _names(a), _names(b)
        if names_a is not None and names_b is not None:  # fields: by name, not by position
            for name in dict.fromkeys([*names_a, *names_b]):
                if name in names_a and name in names_b:
                    _walk(names_a[name], names_b[name], (*path, name), out)
                else:
                    out.add(".".join(map(str, (*path, name))))
        elif len(a) != len(b) and all(isinstance(x, _PLAIN) for x in (*a, *b)):
            import difflib

            matcher = difflib.SequenceMatcher(a=[(type(x), x) for x in a], b=[(type(x), x) for x in b],
                                              autojunk=False)
            for tag, i1, i2, j1, j2 in matcher.get_opcodes():
                if tag != "equal":
                    _pairs(a, b, (i1, i2, j1, j2), path, out)
        else:
            _pairs(a, b, (0, len(a), 0, len(b)), path, out)
    elif type(a) is not type(b) or a != b:
        out.add(".".join(map(str, path)))


def _names(items: Sequence[Any]) -> dict[str, Any] | None:
    """``{name: item}`` when every item is an object with a distinct string ``name``, else None."""
    if not items or not all(isinstance(x, Mapping) and isinstance(x.get("name"), str) for x in items):
        return None
    named = {x["name"]: x for x in items}
    return named if len(named) == len(items) else None


def _pairs(a: Sequence[Any], b: Sequence[Any], span: tuple[int, int, int, int], path: tuple[Any, ...],
           out: set[str]) -> None:
    """Items ``a[i1:i2]`` and ``b[j1:j2]`` compared pairwise; the longer side's rest is added or removed."""
    i1, i2, j1, j2 = span
    for k in range(max(i2 - i1, j2 - j1)):
        i, j = i1 + k, j1 + k
        if i < i2 and j < j2:
            _walk(a[i], b[j], (*path, i), out)
        else:
            out.add(".".join(map(str, (*path, i if i < i2 else j))))


_REPLACE_PATHS = ("spec.storage.table", "spec.storage.schema", "spec.storage.geometryColumn")


def unmanaged_reason(address: str, declared: bool = True) -> str:
    """Why a forgotten address is left alone (a plan's no-op)."""
    where = "" if declared else ", not in the configuration"
    return (f"unmanaged (state rm{where}): not changed by apply; "
            f"`honua state import {address}` to manage it again")


def diff_resources(
    desired: Mapping[str, tuple[str, dict[str, Any]]], recorded: StateDocument
) -> list[Change]:
    """Desired against recorded; an unmanaged address (``state rm``) is a no-op whatever
    the configuration says of it, never a create or a delete."""
    changes: list[Change] = []
    unmanaged = frozenset(recorded.unmanaged)
    for address in recorded.unmanaged:
        kind = desired[address][0] if address in desired else address.split(".", 1)[0]
        changes.append(Change(address, kind, "no-op", unmanaged_reason(address, address in desired)))
    for address, (kind, attrs) in desired.items():
        if address in unmanaged:
            continue
        rec = recorded.resources.get(address)
        if rec is None:
            changes.append(Change(address, kind, "create", f"{address} is new", after=attrs))
            continue
        if rec.fingerprint == attributes_fingerprint(attrs):
            # same canonical hash: no deep diff (deepdiff is only for what changed)
            changes.append(Change(address, kind, "no-op", f"unchanged since serial {rec.serial}"))
            continue
        paths = _paths(rec.attributes, attrs)
        replace = kind == "layer" and any(p.startswith(_REPLACE_PATHS) for p in paths)
        action: ChangeAction = "replace" if replace else "update"
        shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
        reason = f"{'storage changed' if replace else 'changed'}: {shown}"
        changes.append(Change(address, kind, action, reason, paths, rec.attributes, attrs))
    for address, rec in recorded.resources.items():
        if rec.kind in MANAGED_KINDS and address not in desired:
            changes.append(Change(address, rec.kind, "delete", f"{address} was removed from the configuration",
                                  before=rec.attributes))
    return changes


def diff_migrations(
    desired: DesiredState, recorded: StateDocument
) -> tuple[list[MigrationChange], list[str], list[Diagnostic]]:
    """Pending migrations, the applied ones, and errors for applied specs that changed."""
    pending: list[MigrationChange] = []
    applied: list[str] = []
    problems: list[Diagnostic] = []
    for m in desired.migrations_for_env():
        checksum = migration_checksum(m)
        latest = recorded.latest_migration(m.metadata.id)
        if latest is None:
            pending.append(MigrationChange(m, checksum, "not applied yet"))
        elif latest.status == "applied":
            if latest.checksum != checksum and m.spec.repeatable:
                pending.append(MigrationChange(m, checksum, "changed since applied (repeatable: runs again)"))
                continue
            if latest.checksum != checksum:
                problems.append(Diagnostic(
                    desired.locate(m.address, "spec"),
                    f"migration {m.metadata.id} was applied to {desired.environment} with checksum "
                    f"{latest.checksum[:19]}… but its spec has changed since: an applied migration must "
                    "not be edited; revert the edit and add a new migration (or roll it back first)",
                ))
            applied.append(m.metadata.id)
        else:
            pending.append(MigrationChange(m, checksum, f"last run {latest.status}"))
    return pending, applied, problems


# --------------------------------------------------------------------------- layers vs live

_FIELD_TYPES: dict[str, frozenset[str]] = {
    "integer": frozenset({"int2", "int4"}),
    "smallint": frozenset({"int2"}),
    "long": frozenset({"int2", "int4", "int8"}),
    "double": frozenset({"float4", "float8", "numeric"}),
    "float": frozenset({"float4", "float8"}),
    "decimal": frozenset({"numeric"}),
    "string": frozenset({"varchar", "text", "bpchar", "citext", "name"}),
    "text": frozenset({"varchar", "text", "bpchar", "citext"}),
    "boolean": frozenset({"bool"}),
    "date": frozenset({"date"}),
    "datetime": frozenset({"timestamp", "timestamptz"}),
    "time": frozenset({"time", "timetz"}),
    "guid": frozenset({"uuid"}),
    "json": frozenset({"json", "jsonb"}),
}


def check_layer(
    desired: DesiredState, layer: Layer, table: TableFacts | None, *, created_in_plan: bool
) -> tuple[list[Diagnostic], list[Diagnostic], list[str]]:
    """Errors, warnings, and checks deferred to apply time (table created by the plan)."""
    errors: list[Diagnostic] = []
    warnings: list[Diagnostic] = []
    deferred: list[str] = []
    addr = layer.address
    st = layer.spec.storage

    def err(key: tuple[str | int, ...], msg: str) -> None:
        errors.append(Diagnostic(desired.locate(addr, *key), msg))

    def warn(key: tuple[str | int, ...], msg: str) -> None:
        warnings.append(Diagnostic(desired.locate(addr, *key), msg, severity="warning"))

    if table is None:
        if created_in_plan:
            deferred.append(f"table {st.qualified_table} is created by a migration in this plan")
            return errors, warnings, deferred
        err(("spec", "storage", "table"),
            f"layer {layer.metadata.name}: table {st.qualified_table} does not exist "
            "(create it with a migration, or fix storage.table)")
        return errors, warnings, deferred
    col = table.column(st.geometryColumn)
    geo = table.geometry(st.geometryColumn)
    if col is None:
        err(("spec", "storage", "geometryColumn"),
            f"layer {layer.metadata.name}: column {st.geometryColumn} does not exist in {table.qualified_name}")
    elif geo is None:
        err(("spec", "storage", "geometryColumn"),
            f"layer {layer.metadata.name}: column {table.qualified_name}.{st.geometryColumn} is "
            f"{col.data_type}, not a PostGIS geometry")
    else:
        declared = layer.spec.geometryType.upper()
        if geo.geometry_type == "GEOMETRY" and declared != "GEOMETRY":
            warn(("spec", "geometryType"),
                 f"layer {layer.metadata.name}: {table.qualified_name}.{geo.column} has no geometry type "
                 f"constraint; declared {layer.spec.geometryType}")
        elif declared != "GEOMETRY" and geo.geometry_type != declared:
            err(("spec", "geometryType"),
                f"layer {layer.metadata.name}: declares {layer.spec.geometryType} but "
                f"{table.qualified_name}.{geo.column} holds {geo.geometry_type}")
        if geo.srid == 0:
            warn(("spec", "storage", "srid"),
                 f"layer {layer.metadata.name}: {table.qualified_name}.{geo.column} has no SRID constraint")
        elif geo.srid != st.srid:
            err(("spec", "storage", "srid"),
                f"layer {layer.metadata.name}: declares SRID {st.srid} but "
                f"{table.qualified_name}.{geo.column} has SRID {geo.srid}")
    pk = table.primary_key
    if pk and pk != (st.primaryKey,):
        err(("spec", "storage", "primaryKey"),
            f"layer {layer.metadata.name}: primaryKey is {st.primaryKey} but the primary key of "
            f"{table.qualified_name} is ({', '.join(pk)})")
    elif not pk and table.column(st.primaryKey) is None:
        err(("spec", "storage", "primaryKey"),
            f"layer {layer.metadata.name}: column {st.primaryKey} does not exist in {table.qualified_name}")
    for i, f in enumerate(layer.spec.fields):
        c = table.column(f.name)
        if c is None:
            err(("spec", "fields", i, "name"),
                f"layer {layer.metadata.name}: field {f.name} does not exist in {table.qualified_name}")
            continue
        allowed = _FIELD_TYPES.get(f.type, frozenset())
        if c.udt not in allowed:
            err(("spec", "fields", i, "type"),
                f"layer {layer.metadata.name}: field {f.name} is declared {f.type} but the column is {c.data_type}")
        elif f.maxLength and c.max_length and f.maxLength > c.max_length:
            err(("spec", "fields", i, "maxLength"),
                f"layer {layer.metadata.name}: field {f.name} allows {f.maxLength} characters but the "
                f"column is {c.data_type}")
        if not f.nullable and c.nullable and f.name not in pk:
            warn(("spec", "fields", i, "nullable"),
                 f"layer {layer.metadata.name}: field {f.name} is declared not nullable but the column allows NULL")
    return errors, warnings, deferred


# --------------------------------------------------------------------------- drift


def table_attributes(t: TableFacts) -> dict[str, Any]:
    """The recorded shape of a table: what drift compares (not sizes or row counts)."""
    return t.shape


def table_address(t: TableFacts) -> str:
    return f"table.{t.schema}.{t.name}"


_SINGULAR = {"columns": "column", "geometry": "geometry column", "indexes": "index", "constraints": "constraint"}


def _describe_dict_change(section: str, before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    noun = _SINGULAR[section]
    out: list[str] = []
    for k in sorted(set(before) | set(after)):
        if k not in after:
            out.append(f"{noun} {k} removed (was: {before[k]})")
        elif k not in before:
            out.append(f"{noun} {k} added: {after[k]}")
        elif before[k] != after[k]:
            out.append(f"{noun} {k}: {before[k]} → {after[k]}")
    return out


def _ignoring(shape: Mapping[str, Any], ignored: Sequence[str]) -> dict[str, Any]:
    """The recorded shape of a table without the parts whose drift a layer ignores."""
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in shape.items()}
    for path in ignored:
        section, _, name = path.partition(".")
        if not name:
            out.pop(section, None)
        elif isinstance(out.get(section), dict):
            out[section].pop(name, None)
    return out


def detect_drift(recorded: StateDocument, facts: DatabaseFacts | None,
                 ignore: Mapping[str, Sequence[str]] | None = None) -> list[Drift]:
    """Recorded tables against live ones; ``ignore``: per ``schema.table``, the parts whose
    drift is not reported (``storage.ignoreDrift`` of the layers on the table)."""
    drifts: list[Drift] = []
    if facts is None:
        return drifts
    for address, rec in recorded.resources.items():
        if rec.kind != "table":
            continue
        name = address.removeprefix("table.")
        live = facts.table(name)
        if live is None:
            drifts.append(Drift(address, "table", "missing", f"table {name} no longer exists",
                                recorded_fingerprint=rec.fingerprint))
            continue
        live_fp = live.shape_fingerprint
        if live_fp == rec.fingerprint:
            continue
        attrs = live.shape
        ignored = (ignore or {}).get(name, ())
        before, after = _ignoring(rec.attributes, ignored), _ignoring(attrs, ignored)
        if ignored and before == after:
            continue  # what changed is ignored
        details: list[str] = []
        for section in ("columns", "geometry", "indexes", "constraints"):
            if section in after or section in before:
                details += _describe_dict_change(section, before.get(section, {}), after.get(section, {}))
        if before.get("primary_key") != after.get("primary_key"):
            details.append(f"primary key: {before.get('primary_key')} → {after.get('primary_key')}")
        drifts.append(Drift(address, "table", "modified", f"table {name} changed outside honua",
                            tuple(details), rec.fingerprint, live_fp))
    return drifts


def declared_index_drift(layers: Iterable[Layer], facts: DatabaseFacts | None,
                         pending: Mapping[str, set[str]] | None = None) -> list[Drift]:
    """An index a layer declares in ``storage.indexes`` that its table does not have live,
    unless a pending migration creates it (``pending``: layer address → index names).

    The recorded table shape cannot show it when the state was written without the index
    (e.g. a hand-dropped index, or a migration marked applied that never created it)."""
    drifts: list[Drift] = []
    if facts is None:
        return drifts
    for layer in layers:
        st = layer.spec.storage
        if not st.indexes:
            continue
        live = facts.table(st.qualified_table)
        if live is None:
            continue  # a missing table is reported (and planned) on its own
        coming = (pending or {}).get(layer.address, set())
        missing = [ix.name for ix in st.indexes if live.index(ix.name) is None and ix.name not in coming]
        if missing:
            drifts.append(Drift(layer.address, "layer", "modified",
                                f"layer {layer.metadata.name} declares index(es) missing on {st.qualified_table}: "
                                f"{', '.join(missing)}",
                                tuple(f"index {n} declared in storage.indexes, not in the database" for n in missing)))
    return drifts


def tables_of(layers: Iterable[Layer]) -> set[str]:
    return {lyr.spec.storage.qualified_table for lyr in layers}


# --------------------------------------------------------------------------- moved


def apply_moves(desired: DesiredState, recorded: StateDocument
                ) -> tuple[StateDocument, list[tuple[str, str]], list[Diagnostic]]:
    """The recorded state as the plan sees it after ``spec.moved`` of honua.yaml: a record
    still under a ``from`` address is read as ``to`` (the plan then updates it instead of
    deleting and creating), and the moves that are due. A move whose ``from`` is no longer
    recorded was done already (or never needed): nothing to do, as Terraform. Errors: a
    ``to`` the configuration does not declare, a ``from`` it still declares, or a ``to``
    already recorded while ``from`` is too."""
    moves: list[tuple[str, str]] = []
    errors: list[Diagnostic] = []
    declared = desired_resources(desired)
    view = recorded
    for i, mv in enumerate(desired.project.spec.moved):
        where = desired.locate("project", "spec", "moved", i)
        if mv.to not in declared:
            errors.append(Diagnostic(where, f"moved: {mv.to} is not in the configuration of {desired.environment}"))
        elif mv.from_ in declared:
            errors.append(Diagnostic(where, f"moved: {mv.from_} is still in the configuration; remove it, or "
                                            "remove this move"))
        elif mv.from_ in recorded.resources and mv.to in recorded.resources:
            errors.append(Diagnostic(where, f"moved: both {mv.from_} and {mv.to} are in the {desired.environment} "
                                            f"state; forget one with `honua state rm`"))
        elif mv.from_ in recorded.resources:
            moves.append((mv.from_, mv.to))
            view = view.with_moved(mv.from_, mv.to)
    return view, moves, errors
