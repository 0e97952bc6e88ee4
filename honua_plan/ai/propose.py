"""``honua-ai propose layer``: introspect a live table, write one Layer file per environment.

The generation is pure (:func:`build_layer` takes the table's facts, :func:`render_layer_yaml`
returns the text in the seed's exact layout); :func:`propose_layer` does the I/O:
it reads the table through :meth:`Context.read_facts`, writes the files, plans the
introspection environment with provenance ``ai`` (targeted at the new layer), validates
every environment, and optionally commits the files on a new git branch. When the
plan or the validation fails, the files are removed again (or restored under
``--force``): a proposal either validates and plans, or it is not left behind.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from honua_plan.ai import AI_ACTOR
from honua_plan.config.models import IDENT_RE, NAME_RE, QUALIFIED_RE, Layer
from honua_plan.errors import HonuaError, UsageError
from honua_plan.providers.postgis.facts import ColumnFacts, TableFacts

if TYPE_CHECKING:
    from honua_plan.console import Console
    from honua_plan.context import Context
    from honua_plan.plan.model import Plan

__all__ = [
    "LayerDraft",
    "Proposal",
    "alias_for",
    "build_layer",
    "default_branch",
    "field_for",
    "geometry_type_name",
    "layer_name_for",
    "print_proposal",
    "propose_layer",
    "render_layer_yaml",
    "title_for",
]

SCHEMA_LINE = "# yaml-language-server: $schema=../../../schemas/layer.schema.json"
ACRONYMS = frozenset({"id", "gid", "fid", "oid", "uuid", "url", "srid", "osm", "gps", "zip", "api", "ogc"})
TEXT_UDTS = frozenset({"varchar", "text", "bpchar", "citext"})

# udt (pg_type.typname) -> Layer field type; see honua_plan.plan.diff._FIELD_TYPES for what plan accepts
_FIELD_TYPE: dict[str, str] = {
    "int2": "smallint",
    "int4": "integer",
    "int8": "long",
    "float4": "float",
    "float8": "double",
    "numeric": "decimal",
    "varchar": "string",
    "bpchar": "string",
    "text": "string",
    "citext": "string",
    "name": "string",
    "bool": "boolean",
    "date": "date",
    "timestamp": "datetime",
    "timestamptz": "datetime",
    "time": "time",
    "timetz": "time",
    "uuid": "guid",
    "json": "json",
    "jsonb": "json",
}

_GEOMETRY_TYPES = {
    "POINT": "Point",
    "LINESTRING": "LineString",
    "POLYGON": "Polygon",
    "MULTIPOINT": "MultiPoint",
    "MULTILINESTRING": "MultiLineString",
    "MULTIPOLYGON": "MultiPolygon",
    "GEOMETRYCOLLECTION": "GeometryCollection",
    "GEOMETRY": "Geometry",
}


# --------------------------------------------------------------------------- pure helpers


def layer_name_for(table: str) -> str:
    """``public.bike_lanes`` -> ``bike-lanes`` (a valid layer name)."""
    base = table.rsplit(".", 1)[-1].lower()
    name = re.sub(r"[^a-z0-9]+", "-", base).strip("-")[:63].strip("-")
    if not name or not NAME_RE.match(name):
        raise UsageError(f"cannot derive a layer name from table {table!r}: pass --name")
    return name


def _words(name: str) -> list[str]:
    return [w for w in re.split(r"[_\-\s]+", name) if w]


def title_for(name: str) -> str:
    """``bike_lanes`` / ``bike-lanes`` -> ``Bike Lanes``."""
    return " ".join(w.upper() if w.lower() in ACRONYMS else w[:1].upper() + w[1:] for w in _words(name))


def alias_for(column: str) -> str:
    """A field alias from the column name: ``lane_type`` -> ``Lane Type``, ``id`` -> ``ID``."""
    return title_for(column) or column


def geometry_type_name(geometry_type: str) -> str:
    """``LINESTRING`` (or ``LINESTRINGM``) from geometry_columns -> ``LineString``."""
    upper = geometry_type.upper()
    if upper not in _GEOMETRY_TYPES and upper.endswith("M"):
        upper = upper[:-1]
    return _GEOMETRY_TYPES.get(upper, "Geometry")


def _numeric_precision(data_type: str) -> tuple[int | None, int | None]:
    m = re.search(r"\((\d+)(?:\s*,\s*(\d+))?\)", data_type)
    if not m:
        return None, None
    return int(m.group(1)), int(m.group(2)) if m.group(2) is not None else None


def field_for(column: ColumnFacts, *, primary_key: Sequence[str] = ()) -> dict[str, Any] | None:
    """The Layer field of one column, or None when its type has no field type."""
    ftype = _FIELD_TYPE.get(column.udt)
    if ftype is None or not IDENT_RE.match(column.name):
        return None
    out: dict[str, Any] = {"name": column.name, "type": ftype, "alias": alias_for(column.name)}
    if column.udt in ("varchar", "bpchar") and column.max_length:
        out["maxLength"] = int(column.max_length)
    if ftype == "decimal":
        precision, scale = _numeric_precision(column.data_type)
        if precision:
            out["precision"] = precision
        if scale is not None:
            out["scale"] = scale
    if column.name in primary_key or not column.nullable:
        out["nullable"] = False
    return out


def _sql_ident(name: str) -> str:
    """``name`` as SQL: bare when PostgreSQL reads it back as written (lower-case, not a keyword
    that needs quoting: ``bike_lanes``), else quoted by psycopg (``"as"``, ``"Parks"``)."""
    from psycopg import sql

    if re.match(r"^[a-z_][a-z0-9_$]*$", name) and name not in _keywords():
        return name
    return sql.Identifier(name).as_string(None)


def _keywords() -> frozenset[str]:
    """PostgreSQL's keywords that cannot be a bare table or column name everywhere (pglast's list)."""
    from pglast import keywords

    return frozenset(keywords.RESERVED_KEYWORDS | keywords.TYPE_FUNC_NAME_KEYWORDS | keywords.COL_NAME_KEYWORDS)


def _sql_table(schema: str, table: str) -> str:
    return _sql_ident(table) if schema == "public" else f"{_sql_ident(schema)}.{_sql_ident(table)}"


@dataclass(frozen=True)
class LayerDraft:
    """What introspection found, and the document built from it."""

    document: dict[str, Any]
    geometry_type: str
    srid: int
    fields: tuple[str, ...]
    skipped: tuple[str, ...]  # "column (type)" that have no field type

    @property
    def name(self) -> str:
        return str(self.document["metadata"]["name"])


def build_layer(
    table: TableFacts,
    *,
    name: str,
    service: str,
    environment: str,
    created: datetime,
    title: str | None = None,
    description: str | None = None,
    geometry_column: str | None = None,
    default_crs: str | None = None,
) -> LayerDraft:
    """The Layer document (seed layout) for ``table``; raises UsageError when it cannot be one."""
    where = table.qualified_name
    if not QUALIFIED_RE.match(f"{table.schema}.{table.name}"):
        raise UsageError(f"table {where} is not a plain SQL name (letters, digits, _): rename it or use a view")
    if not table.geometry_columns:
        raise UsageError(f"table {where} has no PostGIS geometry column: only spatial tables can be layers")
    if geometry_column is not None:
        geo = table.geometry(geometry_column)
        if geo is None:
            known = ", ".join(g.column for g in table.geometry_columns)
            raise UsageError(f"{where} has no geometry column {geometry_column} (it has: {known})")
    else:
        geo = table.geometry_columns[0]
    if geo.srid == 0:
        raise UsageError(
            f"{where}.{geo.column} has no SRID (0): set one first, e.g. "
            f"SELECT UpdateGeometrySRID('{table.schema}', '{table.name}', '{geo.column}', 4326)")
    pk = table.primary_key
    if len(pk) > 1:
        raise UsageError(f"{where} has a composite primary key ({', '.join(pk)}): a layer needs one id column")
    if not pk:
        candidates = [c for c in ("id", "gid", "fid", "objectid") if table.column(c) is not None]
        if not candidates:
            raise UsageError(f"{where} has no primary key: add one (a layer needs a unique id column)")
        pk = (candidates[0],)
    id_field = pk[0]
    fields: list[dict[str, Any]] = []
    skipped: list[str] = []
    geometry_names = {g.column for g in table.geometry_columns}
    for col in table.columns:
        if col.name in geometry_names:
            continue
        f = field_for(col, primary_key=pk)
        if f is None:
            skipped.append(f"{col.name} ({col.data_type})")
        else:
            fields.append(f)
    if id_field not in {f["name"] for f in fields}:
        raise UsageError(f"the primary key {where}.{id_field} has a type a layer id cannot have")
    display = next((f["name"] for f in fields
                    if f["name"] != id_field and (c := table.column(f["name"])) is not None and c.udt in TEXT_UDTS), None)
    gtype = geometry_type_name(geo.geometry_type)
    layer_title = title or title_for(table.name)
    crs = [f"EPSG:{geo.srid}"] + (["EPSG:3857"] if geo.srid != 3857 else ["EPSG:4326"])
    default = default_crs or f"EPSG:{geo.srid}"
    if default not in crs:
        crs.append(default)
    storage: dict[str, Any] = {"table": table.name}
    if table.schema != "public":
        storage["schema"] = table.schema
    storage.update({"geometryColumn": geo.column, "primaryKey": id_field, "srid": geo.srid})
    sql_table = _sql_table(table.schema, table.name)
    spec: dict[str, Any] = {
        "title": layer_title,
        "description": description or f"{layer_title} from {where}",
        "geometryType": gtype,
        "idField": id_field,
    }
    if display:
        spec["displayField"] = display
    spec.update({
        "geometryField": geo.column,
        "crs": crs,
        "storage": storage,
        "fields": fields,
        "ogc": {"itemLimit": 1000, "defaultCrs": default},
        "validation": {"healthChecks": [
            {"type": "query", "query": f"SELECT COUNT(*) FROM {sql_table}", "expected": "> 0"},
            {"type": "geometry", "query": f"SELECT ST_IsValid({_sql_ident(geo.column)}) FROM {sql_table} LIMIT 10",
             "expected": "all true"},
        ]},
    })
    document = {
        "apiVersion": "honua.io/v1",
        "kind": "Layer",
        "metadata": {
            "name": name,
            "service": service,
            "environment": environment,
            "created": created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "createdBy": AI_ACTOR,
            "description": description or f"{layer_title} layer proposed by the AI consultant from {where}",
        },
        "spec": spec,
    }
    return LayerDraft(document, gtype, geo.srid, tuple(f["name"] for f in fields), tuple(skipped))


def _q(value: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(value, ensure_ascii=False)


def render_layer_yaml(document: dict[str, Any], rel_path: str) -> str:
    """The seed's layout: schema line, path comment, blank lines between spec sections."""
    md, spec = document["metadata"], document["spec"]
    lines = [SCHEMA_LINE, f"# {rel_path}", f"apiVersion: {document['apiVersion']}", f"kind: {document['kind']}",
             "metadata:", f"  name: {md['name']}", f"  service: {md['service']}",
             f"  environment: {md['environment']}", f"  created: {md['created']}", f"  createdBy: {md['createdBy']}",
             f"  description: {_q(md['description'])}", "spec:", f"  title: {_q(spec['title'])}",
             f"  description: {_q(spec['description'])}", f"  geometryType: {spec['geometryType']}",
             f"  idField: {spec['idField']}"]
    if "displayField" in spec:
        lines.append(f"  displayField: {spec['displayField']}")
    lines += [f"  geometryField: {spec['geometryField']}", "", "  crs:", *(f"    - {c}" for c in spec["crs"]), "",
              "  storage:"]
    lines += [f"    {k}: {v}" for k, v in spec["storage"].items()]
    lines += ["", "  fields:"]
    for f in spec["fields"]:
        lines.append(f"    - name: {f['name']}")
        lines.append(f"      type: {f['type']}")
        lines.append(f"      alias: {_q(f['alias'])}")
        for key in ("maxLength", "precision", "scale"):
            if key in f:
                lines.append(f"      {key}: {f[key]}")
        if f.get("nullable") is False:
            lines.append("      nullable: false")
    ogc = spec["ogc"]
    lines += ["", "  ogc:", f"    itemLimit: {ogc['itemLimit']}", f"    defaultCrs: {ogc['defaultCrs']}", "",
              "  validation:", "    healthChecks:"]
    for c in spec["validation"]["healthChecks"]:
        lines += [f"      - type: {c['type']}", f"        query: {_q(c['query'])}", f"        expected: {_q(c['expected'])}"]
    return "\n".join(lines) + "\n"


def check_rendered(text: str) -> Layer:
    """Parse the rendered text back and validate it as a Layer (a generator bug fails here)."""
    import yaml

    return Layer.model_validate(yaml.safe_load(text))


def default_branch(name: str) -> str:
    return f"feature/add-{name}-layer"


# --------------------------------------------------------------------------- the flow


@dataclass
class Proposal:
    name: str
    service: str
    table: str
    environments: list[str]
    files: list[tuple[str, str]] = field(default_factory=list)  # (relative path, "new" | "replaced")
    plan: Plan | None = None
    plan_environment: str = ""
    saved_plans: list[str] = field(default_factory=list)  # state/plans/ai-*.json, one per environment
    branch: str | None = None
    commit: str | None = None
    warnings: list[str] = field(default_factory=list)
    draft: LayerDraft | None = None
    declined: str | None = None  # "no", "not-interactive" or "plan-failed": shown, planned, not kept
    unplanned: list[str] = field(default_factory=list)  # "env (why)": the environments that could not be planned


    @property
    def address(self) -> str:
        return f"layer.{self.service}::{self.name}"


def _split_table(table: str) -> str:
    if not QUALIFIED_RE.match(table):
        raise UsageError(f"{table!r} is not a table name: use [schema.]table")
    return table


def propose_layer(
    context: Context,
    *,
    table: str,
    service: str,
    name: str | None = None,
    title: str | None = None,
    description: str | None = None,
    environments: Sequence[str] | None = None,
    introspect_env: str | None = None,
    geometry_column: str | None = None,
    branch: str | None = None,
    force: bool = False,
    now: datetime | None = None,
    model: str = "offline",
    ask: Callable[[], str] | None = None,
) -> Proposal:
    """Introspect ``table``, write the Layer files, plan and validate them (see the module doc).

    ``ask`` (a model's proposal): asked after the plans are shown and before anything is kept;
    any answer but "yes" puts the files back and sets :attr:`Proposal.declined`."""
    from honua_plan.ai.gate import plan_like_honua_plan
    from honua_plan.context import Context as _Context
    from honua_plan.plan.model import Provenance

    con = context.console
    _split_table(table)
    states = context.load()
    project_envs = list(states[0].project.spec.environments)
    envs = list(environments) if environments else project_envs
    unknown = [e for e in envs if e not in project_envs]
    if unknown:
        raise UsageError(f"unknown environment(s): {', '.join(unknown)} (the project has: {', '.join(project_envs)})")
    envs = [e for e in project_envs if e in envs]  # promotion order
    source_env = introspect_env or envs[0]
    if source_env not in project_envs:
        raise UsageError(f"unknown environment {source_env!r} for introspection")
    layer_name = name or layer_name_for(table)
    if not NAME_RE.match(layer_name):
        raise UsageError(f"{layer_name!r} is not a valid layer name: lower-case letters, digits, '-' and '_'")
    if branch is not None:
        from honua_plan.ai import gitops

        gitops.check_branch(context.root, branch)

    con.print("Analyzing current metadata...")
    missing = [e for e in envs if service not in context.desired(e).services]
    if missing:
        known = sorted(context.desired(missing[0]).services)
        raise UsageError(
            f"service '{service}' does not exist in {', '.join(missing)} "
            f"(known there: {', '.join(known) or 'none'})",
            hint=f"create environments/{missing[0]}/services/{service}.yaml first, or limit --environments")
    address = f"layer.{service}::{layer_name}"
    originals: dict[Path, bytes | None] = {}
    rels: list[tuple[str, str]] = []
    for env in envs:
        desired = context.desired(env)
        rel = f"environments/{env}/layers/{layer_name}.yaml"
        path = context.root / rel
        src = desired.source(address)
        if address in desired.layers and not (force and src is not None and src.path == rel):
            where = src.path if src is not None else f"environments/{env}/layers/"
            raise UsageError(f"layer {service}::{layer_name} already exists in {env} ({where})",
                             hint="choose another --name")
        if path.exists() and not force:
            raise UsageError(f"{rel} already exists", hint="pass --force to replace it, or choose another --name")
        originals[path] = path.read_bytes() if path.exists() else None
        rels.append((rel, "replaced" if path.exists() else "new"))

    facts = context.read_facts(source_env)
    found = facts.table(table)
    if found is None:
        spatial = sorted(t.qualified_name for t in facts.tables if t.geometry_columns)
        raise UsageError(f"table {table} does not exist in the {source_env} database"
                         + (f" (spatial tables: {', '.join(spatial[:10])})" if spatial else " (it has no spatial tables)"))
    used_by = [lyr.collection_id for lyr in context.desired(source_env).layers.values()
               if lyr.spec.storage.qualified_table == found.qualified_name]
    service_crs = context.desired(source_env).services[service].spec.ogc.defaultCrs
    created = now or datetime.now(UTC)
    drafts: dict[str, LayerDraft] = {}
    for env in envs:
        drafts[env] = build_layer(found, name=layer_name, service=service, environment=env, created=created,
                                  title=title, description=description, geometry_column=geometry_column,
                                  default_crs=service_crs)
    draft = drafts[envs[0]]
    proposal = Proposal(name=layer_name, service=service, table=found.qualified_name, environments=envs,
                        files=rels, plan_environment=source_env if source_env in envs else envs[0], draft=draft)
    con.ok(f"Table {found.qualified_name}: {draft.geometry_type}, SRID {draft.srid}, "
           f"{len(found.columns)} columns ({len(draft.fields)} fields), primary key {draft.document['spec']['idField']}",
           indent=2)
    if used_by:
        proposal.warnings.append(f"{found.qualified_name} is already published as {', '.join(used_by)}")
    if draft.skipped:
        proposal.warnings.append(f"columns without a field type, left out: {', '.join(draft.skipped)}")

    texts: dict[str, str] = {}
    for (rel, _), env in zip(rels, envs, strict=True):
        text = render_layer_yaml(drafts[env].document, rel)
        check_rendered(text)
        texts[rel] = text

    con.print("Creating deployment plan...")
    try:
        for rel, text in texts.items():
            path = context.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        fresh = _Context(context.root, console=context.console, debug=context.debug)
        plan_env = proposal.plan_environment
        prov = Provenance(kind="ai", actor=AI_ACTOR, model=model)
        proposal.plan = plan_like_honua_plan(fresh, plan_env, target=(address,), provenance=prov)
        from honua_plan.ai.migrations import risk_text
        from honua_plan.plan.render import findings_text, summary_line

        p = proposal.plan
        con.ok(f"Plan for {plan_env}: {summary_line(p)}; Risk Level: {risk_text(p)}; "
               f"Approval Required: {'YES' if p.approvals_required else 'NO'}", indent=2)
        for line in findings_text(p, "    "):  # every finding, as `honua plan` prints them
            con.print(line)
        proposal.saved_plans.append(_save_ai_plan(context, p))
        # the other environments, in promotion order: each plan is saved for review, and an
        # environment whose database cannot take the layer (no such table there) says so
        for env in [e for e in fresh.load()[0].project.spec.environments if e in envs and e != plan_env]:
            try:
                other = plan_like_honua_plan(fresh, env, target=(address,), provenance=prov)
            except HonuaError as exc:
                why = exc.message + (f": {exc.details.strip().splitlines()[0].strip()}" if exc.details else "")
                con.fail(f"Plan for {env}: not planned: {why}", indent=2)
                proposal.warnings.append(f"{env}: not planned ({why}); the layer cannot be applied there as it is")
                proposal.unplanned.append(f"{env} ({why})")
                continue
            con.ok(f"Plan for {env}: {summary_line(other)}; Risk Level: {risk_text(other)}; "
                   f"Approval Required: {'YES' if other.approvals_required else 'NO'}", indent=2)
            for line in findings_text(other, "    "):
                con.print(line)
            proposal.saved_plans.append(_save_ai_plan(context, other))
        con.print("Validating configuration...")
        result = fresh.validate()
        con.ok(f"Validated metadata syntax ({', '.join(result.environments)})", indent=2)
        for w in result.warnings:
            if any(w.location.path == rel for rel in texts):
                proposal.warnings.append(str(w))
        if ask is not None and proposal.unplanned:  # asked for in a chat: proposed only when it plans everywhere
            proposal.declined = "plan-failed"
            _restore(originals)
            return proposal
        if ask is not None and (answer := ask()) != "yes":
            proposal.declined = answer
            _restore(originals)
            return proposal
        if branch is not None:
            from honua_plan.ai import gitops

            message = _commit_message(proposal, p, model)
            proposal.commit = gitops.commit_files(context.root, branch, texts, message)
            proposal.branch = branch
            dirty = [line for line in gitops.status_porcelain(context.root) or []
                     if not any(line.endswith(rel) for rel in texts)]
            if dirty:
                proposal.warnings.append(
                    f"the working tree has {len(dirty)} uncommitted change(s): the branch holds HEAD plus "
                    "the proposed files only (it was validated and planned with your changes)")
    except BaseException:
        _restore(originals)
        raise
    if proposal.branch is not None:
        # the files live on the branch now; leave the working tree as it was (an untracked
        # copy would make `git checkout <branch>` refuse to overwrite it)
        _restore(originals)
    return proposal


def _restore(originals: dict[Path, bytes | None]) -> None:
    for path, data in originals.items():
        try:
            if data is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(data)
        except OSError:
            pass


def _save_ai_plan(context: Context, plan: Plan) -> str:
    """Save a proposal's plan for review (``state/plans/ai-<env>-<id>.json``); its path."""
    from honua_plan.plan.store import save_plan

    path = context.state_dir / "plans" / f"ai-{plan.environment}-{plan.id[:12]}.json"
    save_plan(plan, path)
    return path.relative_to(context.root).as_posix() if path.is_relative_to(context.root) else str(path)


def _commit_message(proposal: Proposal, plan: Plan, model: str = "offline") -> str:
    from honua_plan.config.provenance import trailer
    from honua_plan.plan.render import summary_line

    lines = [f"Add layer {proposal.service}::{proposal.name} ({proposal.table})", "",
             f"Proposed by the AI consultant (honua-ai propose layer) from the live table {proposal.table}.",
             f"Plan for {plan.environment} (provenance ai): {summary_line(plan)}; risk {plan.risk}.", "",
             *(f"- {rel} ({change})" for rel, change in proposal.files), "",
             trailer(model)]
    return "\n".join(lines) + "\n"


def print_proposal(con: Console, proposal: Proposal) -> None:
    """The seed's closing block: ``Created proposal: …`` and the files changed."""
    for w in proposal.warnings:
        con.warn(w, indent=2)
    con.print("")
    label = proposal.branch or f"layer {proposal.service}::{proposal.name}"
    con.print(f"Created proposal: {label}")
    con.print("Files changed:")
    for rel, change in proposal.files:
        con.print(f"  - {rel} ({change})")
    con.print("")
    if proposal.saved_plans:
        con.print(f"Plans saved for review: {', '.join(proposal.saved_plans)}")
    if proposal.branch is not None:
        con.print(f"Committed {(proposal.commit or '')[:12]} on branch {proposal.branch} "
                  "(your checkout and working tree are unchanged)")
        con.print(f"Review with: git checkout {proposal.branch}")
        con.print(f"Push with: git push origin {proposal.branch}")
        con.print("No pull request was opened (this engine does not reach a remote): push the branch "
                  "and open one.")
    else:
        con.print("The files are in the working tree, not committed. Review them, then commit them "
                  f"(or rerun with --branch {default_branch(proposal.name)}).")
    plan = proposal.plan
    if plan is not None:
        checkout = f"git checkout {proposal.branch} && " if proposal.branch else ""
        con.print(f"Next: {checkout}honua dev apply --environment {plan.environment}")
        con.print("Plans of this change carry provenance ai: policies may require a human approval.")


def describe_error(exc: HonuaError) -> str:
    return exc.message + (f" ({exc.hint})" if exc.hint else "")
