"""Cross-resource checks of a loaded configuration: references between resources, the
migration order and dependencies, templates and the SQL they render."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from honua_plan.config import templating
from honua_plan.config.desired import _did_you_mean, resolve_migration
from honua_plan.config.models import (
    Datasource,
    Layer,
    Migration,
    Project,
    Server,
    Service,
)
from honua_plan.config.paths import PROJECT_FILE, _real, metadata_step_problem
from honua_plan.config.source import SourceMap
from honua_plan.config.yamlload import ParseCache
from honua_plan.errors import Diagnostic, Location


def _check_references(
    env: str,
    project: Project,
    datasources: Mapping[str, Datasource],
    servers: Mapping[str, Server],
    services: Mapping[str, Service],
    layers: Mapping[str, Layer],
    sources: Mapping[str, SourceMap],
    problems: list[Diagnostic],
) -> None:
    for name, svc in services.items():
        if svc.spec.datasource not in datasources:
            known = ", ".join(sorted(datasources)) or "none declared in providers/"
            problems.append(Diagnostic(sources[f"service.{name}"].locate(("spec", "datasource")),
                                       f"service '{name}' uses datasource '{svc.spec.datasource}', which does not exist (known: {known})"))
        if svc.spec.server and svc.spec.server not in servers:
            problems.append(Diagnostic(sources[f"service.{name}"].locate(("spec", "server")),
                                       f"service '{name}' uses server '{svc.spec.server}', which does not exist"))
    for address, layer in layers.items():
        if layer.metadata.service not in services:
            known = ", ".join(sorted(services)) or f"none in environments/{env}/services/"
            problems.append(Diagnostic(sources[address].locate(("metadata", "service")),
                                       f"layer '{layer.metadata.name}' belongs to service '{layer.metadata.service}', which does not exist in {env} (known: {known})"))
        spec = layer.spec
        src = sources[address]
        if spec.geometryField != spec.storage.geometryColumn:
            problems.append(Diagnostic(src.locate(("spec", "geometryField")),
                                       f"geometryField '{spec.geometryField}' differs from storage.geometryColumn '{spec.storage.geometryColumn}'"))
        field_names = {f.name for f in spec.fields}
        if spec.fields:
            for key in ("idField", "displayField"):
                value = getattr(spec, key)
                if value and value not in field_names:
                    problems.append(Diagnostic(src.locate(("spec", key)), f"{key} '{value}' is not one of the layer's fields"))
    if project.spec.defaultDatasource and project.spec.defaultDatasource not in datasources:
        problems.append(Diagnostic(Location(PROJECT_FILE), f"defaultDatasource '{project.spec.defaultDatasource}' does not exist"))
    if project.spec.defaultServer and project.spec.defaultServer not in servers:
        problems.append(Diagnostic(Location(PROJECT_FILE), f"defaultServer '{project.spec.defaultServer}' does not exist"))


def _order_migrations(
    migrations: list[Migration], sources: Mapping[str, SourceMap], problems: list[Diagnostic],
    broken: frozenset[str] | set[str] = frozenset(),
) -> tuple[Migration, ...]:
    if not any(m.spec.dependencies for m in migrations):
        # no edges: the lexicographical topological order is the order of the ids
        # (and networkx, ~0.25 s to import, is not needed)
        return tuple(sorted(migrations, key=lambda m: m.metadata.id))
    import networkx as nx

    graph: nx.DiGraph = nx.DiGraph()
    for m in migrations:
        graph.add_node(m.metadata.id)
    for m in migrations:
        for i, dep in enumerate(m.spec.dependencies):
            target = resolve_migration(dep, migrations)
            if target is None:
                if dep not in broken:  # a migration that failed validation exists: no false "missing"
                    problems.append(Diagnostic(
                        sources[m.address].locate(("spec", "dependencies", i)),
                        f"migration {m.metadata.id} depends on '{dep}', which does not exist in migrations/ "
                        f"(a dependency is a migration id or file name without .yaml){_did_you_mean(dep, migrations)}"))
                continue
            graph.add_edge(target.metadata.id, m.metadata.id)
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        cycle = None
    by_id = {m.metadata.id: m for m in migrations}
    if cycle:
        names = [a for a, _ in cycle] + [cycle[0][0]]
        first = by_id[cycle[0][1]]
        problems.append(Diagnostic(sources[first.address].locate(("spec", "dependencies")),
                                   f"migration dependencies form a cycle: {' -> '.join(names)}"))
        return tuple(sorted(migrations, key=lambda m: m.metadata.id))
    order = nx.lexicographical_topological_sort(graph)
    return tuple(by_id[i] for i in order)


def _check_templates_and_sql(
    root: Path,
    env: str,
    variables: dict[str, Any],
    migrations: Iterable[Migration],
    layers: Mapping[str, Layer],
    sources: Mapping[str, SourceMap],
    problems: list[Diagnostic],
    warnings: list[Diagnostic],
    cache: ParseCache | None = None,
) -> None:
    def compute(sql_text: str) -> list[tuple[int, int, str, str]]:
        from honua_plan.sql.analysis import diagnose as sql_diagnose

        return sql_diagnose(sql_text)

    def diagnose(sql_text: str) -> list[tuple[int, int, str, str]]:
        return cache.diagnose(sql_text, compute) if cache is not None else compute(sql_text)

    def check_sql(text: str, src: SourceMap, key: tuple[str | int, ...], *, query: bool = False) -> None:
        """Diagnose ``text`` after templating; a ``query`` (a precondition's, a check's) must
        also be one read-only SELECT (:func:`honua_plan.sql.readonly.check_read_only`)."""
        block = "\n" in text.rstrip("\n")

        def place(line: int, col: int) -> Location:
            """Line and column (1-based, within ``text``) in the file, where a block scalar allows.

            Only called for a problem: locating a cached file parses it again."""
            base = src.locate(key)
            if not block or line < 1:
                return base
            return Location(base.path, base.line + line, base.column + 1 + col)

        try:
            rendered = templating.render_template(text, variables)
        except templating.TemplateProblem as exc:
            problems.append(Diagnostic(place(exc.line, exc.column + 1), str(exc)))
            return
        found = diagnose(rendered)
        if query and not any(severity == "error" for *_, severity in found):
            from honua_plan.sql.readonly import check_read_only

            found = [*found, *((line, col, f"query is not read-only: {message}", "error")
                               for line, col, message in check_read_only(rendered))]
        if not found:
            return
        for line, col, message, severity in found:
            diag = Diagnostic(place(line, col), f"SQL: {message}", severity=severity)
            (problems if severity == "error" else warnings).append(diag)

    for m in migrations:
        if m.metadata.environments and env not in m.metadata.environments:
            continue
        src = sources[m.address]
        for section in ("up", "down"):
            for i, step in enumerate(getattr(m.spec, section)):
                if step.type == "sql" and step.content:
                    check_sql(step.content, src, ("spec", section, i, "content"))
                elif step.type == "metadata" and step.path:
                    try:
                        rel = templating.render_template(step.path, variables)
                    except templating.TemplateProblem as exc:
                        problems.append(Diagnostic(src.locate(("spec", section, i, "path")), str(exc)))
                        continue
                    _, unreadable = _real(root / rel)
                    if unreadable is not None:
                        problems.append(Diagnostic(src.locate(("spec", section, i, "path")),
                                                   f"path '{rel}': {unreadable}"))
                    elif (why := metadata_step_problem(root, env, rel)) is not None:
                        problems.append(Diagnostic(src.locate(("spec", section, i, "path")), why))
                    # whether the file exists is judged while the migration is pending (the plan):
                    # an applied migration's step pins no file (a layer file may be renamed)
        for i, pre in enumerate(m.spec.preConditions):
            if pre.query:
                check_sql(pre.query, src, ("spec", "preConditions", i, "query"), query=True)
        for section, checks in (("post-up", m.spec.validation.post_up), ("post-down", m.spec.validation.post_down)):
            for i, chk in enumerate(checks):
                if chk.query:
                    check_sql(chk.query, src, ("spec", "validation", section, i, "query"), query=True)
    for address, layer in layers.items():
        for i, chk in enumerate(layer.spec.validation.healthChecks):
            if chk.query:
                check_sql(chk.query, sources[address], ("spec", "validation", "healthChecks", i, "query"),
                          query=True)
