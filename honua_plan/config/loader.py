"""Load the config repository into a frozen desired state, reporting every problem at once.

Layout (DESIGN.md)::

    honua.yaml                                  Project
    providers/*.yaml                            Datasource, Server
    environments/<env>/services/*.yaml          Service
    environments/<env>/layers/*.yaml            Layer
    environments/<env>/policy.yaml              Policy (or policies/<env>-policy.yaml)
    migrations/*.yaml                           Migration

Nothing is printed and nothing raised until the end: all diagnostics of a run are
collected and raised together as one :class:`ConfigError`.
"""

from __future__ import annotations

import difflib
import errno
import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import pydantic

from honua_plan.config import templating
from honua_plan.config.models import (
    API_VERSION,
    KINDS,
    PATTERN_MESSAGES,
    Datasource,
    Layer,
    Migration,
    Policy,
    Project,
    Server,
    Service,
    Strict,
)
from honua_plan.config.source import Document, SourceMap
from honua_plan.config.yamlload import YAML_SUFFIXES, ParseCache
from honua_plan.errors import ConfigError, Diagnostic, Location

PROJECT_FILE = "honua.yaml"
M = TypeVar("M", bound=Strict)


@dataclass(frozen=True)
class Sourced:
    """A validated resource with the document it came from."""

    model: Any
    source: SourceMap

    @property
    def path(self) -> str:
        return self.source.path

    def locate(self, *key: str | int) -> Location:
        return self.source.locate(tuple(key))


@dataclass(frozen=True)
class DesiredState:
    """Everything one environment declares, validated and cross-referenced."""

    root: Path
    environment: str
    project: Project
    datasources: Mapping[str, Datasource]
    servers: Mapping[str, Server]
    services: Mapping[str, Service]
    layers: Mapping[str, Layer]  # by address: layer.<service>::<name>
    migrations: tuple[Migration, ...]  # in dependency order
    policy: Policy | None
    sources: Mapping[str, SourceMap]  # address (or kind name) -> where it was declared
    warnings: tuple[Diagnostic, ...] = ()
    config_hash: str = ""
    file_hashes: Mapping[str, str] = field(default_factory=dict)

    def source(self, address: str) -> SourceMap | None:
        return self.sources.get(address)

    def locate(self, address: str, *key: str | int) -> Location:
        src = self.sources.get(address)
        return src.locate(tuple(key)) if src else Location(address)

    def layers_of(self, service: str) -> list[Layer]:
        return [lyr for lyr in self.layers.values() if lyr.metadata.service == service]

    def migration(self, ref: str) -> Migration | None:
        return resolve_migration(ref, self.migrations)

    def migrations_for_env(self) -> tuple[Migration, ...]:
        return tuple(
            m for m in self.migrations
            if not m.metadata.environments or self.environment in m.metadata.environments
        )

    def datasource_for(self, service: Service) -> Datasource:
        return self.datasources[service.spec.datasource]

    def server(self) -> Server | None:
        name = self.project.spec.defaultServer
        if name and name in self.servers:
            return self.servers[name]
        return next(iter(self.servers.values()), None)

    def template_vars(self) -> dict[str, Any]:
        return templating.variables_for(self.environment, self.project.metadata.name)


def resolve_migration(ref: str, migrations: Iterable[Migration]) -> Migration | None:
    """A dependency names a migration by id (``002``) or exact file stem
    (``002_add_parcels_layer``). Nothing looser: ``002_does_not_exist`` matching ``002`` by
    its prefix let a typo or a stale name pass review."""
    for m in migrations:
        if ref in (m.metadata.id, m.stem):
            return m
    return None


def _did_you_mean(ref: str, migrations: Iterable[Migration]) -> str:
    """``: did you mean 'X'?`` for the closest migration name, or nothing when none is close."""
    ms = list(migrations)
    head = ref.split("_", 1)[0]
    close = [m.stem for m in ms if m.metadata.id == head]  # what the old prefix rule matched
    if not close:
        close = difflib.get_close_matches(ref, [m.stem for m in ms] + [m.metadata.id for m in ms], n=1)
    return f": did you mean '{close[0]}'?" if close else ""


def _real(p: Path) -> tuple[str, str | None]:
    """``p`` with its symbolic links resolved, and why it cannot be read (a loop, a link to
    nothing) or None. A missing plain path is not a problem here: callers report that."""
    try:
        return os.path.realpath(p, strict=True), None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return str(p), "symbolic link loop (too many levels of symbolic links); refused"
        if os.path.islink(p):
            return str(p), "symbolic link to a file that does not exist"
        return os.path.realpath(p), None


def _outside(real: str, root: Path) -> bool:
    base = str(root)
    return real != base and not real.startswith(base.rstrip(os.sep) + os.sep)


OUTSIDE = ("symbolic link to a path outside the repository; refused (config is read only from "
           "inside the repository)")


# --------------------------------------------------------------------------- errors


def _pydantic_diagnostics(exc: pydantic.ValidationError, src: SourceMap) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    seen: set[tuple[Any, ...]] = set()
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        typ = err["type"]
        key = ".".join(str(p) for p in loc)
        if typ == "extra_forbidden":
            msg = f"unknown field '{loc[-1]}'" + (f" in {'.'.join(str(p) for p in loc[:-1])}" if len(loc) > 1 else "")
        elif typ == "missing":
            msg = f"missing required field '{key}'"
            # point at the parent mapping, which exists in the file
        elif typ == "literal_error":
            expected = err.get("ctx", {}).get("expected", "")
            msg = f"{key}: invalid value {err.get('input')!r}; expected {expected}"
        elif typ == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") in PATTERN_MESSAGES:
            text = PATTERN_MESSAGES[err["ctx"]["pattern"]].format(err["input"])
            msg = f"{key}: {text}" if key else text
        else:
            text = err["msg"]
            for prefix in ("Value error, ", "Assertion failed, "):
                if text.startswith(prefix):
                    text = text[len(prefix):]
            msg = f"{key}: {text}" if key else text
        dedup = (loc, msg)
        if dedup in seen:
            continue
        seen.add(dedup)
        out.append(Diagnostic(src.locate(loc), msg))
    return out


def _validate(model: type[M], doc: Document, problems: list[Diagnostic]) -> M | None:
    try:
        return model.model_validate(doc.data)
    except pydantic.ValidationError as exc:
        problems.extend(_pydantic_diagnostics(exc, doc.source))
        return None


# --------------------------------------------------------------------------- loader


@dataclass
class _Files:
    root: Path
    hashes: dict[str, str] = field(default_factory=dict)
    cache: ParseCache | None = None
    overlay: Mapping[str, bytes] = field(default_factory=dict)
    """Relative path → content read instead of the file (promotion plans before it writes)."""

    def rel(self, p: Path) -> str:
        text, root = str(p), str(self.root)
        if text.startswith(root) and text[len(root):len(root) + 1] == os.sep:
            return text[len(root) + 1:]  # what relative_to gives, without its cost per file
        try:
            return str(p.relative_to(self.root))
        except ValueError:
            return str(p)

    def read(self, p: Path, problems: list[Diagnostic]) -> list[Document]:
        rel = self.rel(p)
        if rel in self.overlay:
            raw = self.overlay[rel]
        else:
            try:
                with open(p, "rb") as fh:
                    raw = fh.read()
            except OSError as exc:
                problems.append(Diagnostic(Location(rel), f"cannot read file: {exc.strerror}"))
                return []
        digest = self.hashes[rel] = hashlib.sha256(raw).hexdigest()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(Diagnostic(Location(rel), "file is not UTF-8 text"))
            return []
        if self.cache is None:
            self.cache = ParseCache(self.root)
        return self.cache.documents(digest, text, rel, problems)

    def refused(self, p: Path, problems: list[Diagnostic]) -> bool:
        """True (and a ``path:1:1`` error) when ``p`` is a symbolic link that loops, dangles or
        leads outside the repository: config is untrusted, and must not make the engine read
        files the repository does not hold."""
        real, why = _real(p)
        if why is None and _outside(real, self.root):
            why = OUTSIDE
        if why is not None:
            problems.append(Diagnostic(Location(self.rel(p), 1, 1), why))
            return True
        return False

    def yaml_files(self, folder: Path, problems: list[Diagnostic]) -> list[Path]:
        """The YAML files of ``folder``, in name order; a link that cannot be followed safely
        (see :meth:`refused`) is reported and skipped."""
        if self.refused(folder, problems):  # the folder or one of its parents is a bad link
            return []
        here = self.rel(folder)
        extra = {r.rsplit("/", 1)[1] for r in self.overlay if r.rsplit("/", 1)[0] == here and r.endswith(YAML_SUFFIXES)}
        names = []
        try:
            # os.scandir: the file type comes with the directory entry (no stat per file)
            with os.scandir(folder) as entries:
                for e in entries:
                    if not e.name.endswith(YAML_SUFFIXES):
                        continue
                    if e.is_symlink() and self.refused(folder / e.name, problems):
                        continue
                    if e.is_file():
                        names.append(e.name)
        except (FileNotFoundError, NotADirectoryError):
            return [folder / n for n in sorted(extra)]
        except OSError as exc:
            problems.append(Diagnostic(Location(self.rel(folder), 1, 1), f"cannot read folder: {exc.strerror}"))
            return []
        return [folder / n for n in sorted(set(names) | extra)]


def _kind_of(doc: Document, problems: list[Diagnostic]) -> str | None:
    data = doc.data
    if data is None:
        return None  # an empty document (e.g. only comments) is fine
    if not isinstance(data, dict):
        problems.append(Diagnostic(doc.source.locate(()), "a resource must be a mapping with apiVersion, kind, metadata and spec"))
        return None
    api = data.get("apiVersion")
    if api != API_VERSION:
        where = doc.source.locate(("apiVersion",))
        got = "missing" if api is None else repr(api)
        problems.append(Diagnostic(where, f"apiVersion must be '{API_VERSION}' (got {got})"))
        return None
    kind = data.get("kind")
    if kind not in KINDS:
        where = doc.source.locate(("kind",))
        problems.append(
            Diagnostic(where, f"unknown kind {kind!r}; expected one of {', '.join(sorted(KINDS))}")
        )
        return None
    return str(kind)


def _expect_kind(
    doc: Document, allowed: tuple[str, ...], where: str, problems: list[Diagnostic]
) -> str | None:
    kind = _kind_of(doc, problems)
    if kind is not None and kind not in allowed:
        problems.append(
            Diagnostic(
                doc.source.locate(("kind",)),
                f"a {kind} does not belong in {where} (expected {' or '.join(allowed)})",
            )
        )
        return None
    return kind


class _Loader:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = _Files(root)
        self.problems: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []
        # ids and file stems of migrations that exist but did not validate: a dependency on
        # one is not "missing" (its own errors are reported)
        self.broken_migrations: set[str] = set()

    def documents(self, path: Path, what: str) -> list[Document]:
        """The documents of ``path``; a file that declares nothing is an error at ``path:1:1``.

        An emptied or commented-out file would otherwise silently remove what it declared
        (a layer, a migration...), and a plan would then drop it."""
        before = len(self.problems)
        docs = self.files.read(path, self.problems)
        if len(self.problems) == before and all(d.data is None for d in docs):
            why = (f"{PROJECT_FILE} must hold the Project" if what == "Project" else
                   f"an empty or comment-only file is an error, so that emptying it cannot delete "
                   f"its {what} (delete the file to remove the {what})")
            self.problems.append(Diagnostic(Location(self.files.rel(path), 1, 1), f"declares nothing: {why}"))
        return docs

    # -- shared parts (project, providers, migrations) ---------------------------

    def project(self) -> tuple[Project | None, SourceMap | None]:
        path = self.root / PROJECT_FILE
        if os.path.lexists(path) and self.files.refused(path, self.problems):
            return None, None
        if not path.exists():
            self.problems.append(
                Diagnostic(Location(PROJECT_FILE), f"no {PROJECT_FILE} here: is {self.root} a honua config repository? (honua init DIR creates one)")
            )
            return None, None
        docs = [d for d in self.documents(path, "Project") if d.data is not None]
        if len(docs) != 1:
            if docs:
                self.problems.append(Diagnostic(docs[1].source.locate(()), f"{PROJECT_FILE} must hold exactly one Project"))
            return None, None
        if _expect_kind(docs[0], ("Project",), PROJECT_FILE, self.problems) is None:
            return None, None
        return _validate(Project, docs[0], self.problems), docs[0].source

    def providers(self) -> tuple[dict[str, Datasource], dict[str, Server], dict[str, SourceMap]]:
        datasources: dict[str, Datasource] = {}
        servers: dict[str, Server] = {}
        sources: dict[str, SourceMap] = {}
        for path in self.files.yaml_files(self.root / "providers", self.problems):
            for doc in self.documents(path, "datasource or server"):
                kind = _expect_kind(doc, ("Datasource", "Server"), "providers/", self.problems)
                if kind is None:
                    continue
                model_cls: type[Datasource] | type[Server] = Datasource if kind == "Datasource" else Server
                m: Datasource | Server | None = _validate(model_cls, doc, self.problems)
                if m is None:
                    continue
                table: dict[str, Any] = datasources if kind == "Datasource" else servers
                address = f"{kind.lower()}.{m.metadata.name}"
                self._unique(address, doc, sources, ("metadata", "name"))
                table[m.metadata.name] = m
                sources[address] = doc.source
        return datasources, servers, sources

    def migrations(self) -> tuple[list[Migration], dict[str, SourceMap]]:
        found: list[Migration] = []
        sources: dict[str, SourceMap] = {}
        for path in self.files.yaml_files(self.root / "migrations", self.problems):
            for doc in self.documents(path, "migration"):
                m = None
                if _expect_kind(doc, ("Migration",), "migrations/", self.problems) is not None:
                    m = _validate(Migration, doc, self.problems)
                if m is None:
                    self._broken_migration(path, doc)
                    continue
                m._stem = path.stem
                if not self._unique(m.address, doc, sources, ("metadata", "id")):
                    self._broken_migration(path, doc)
                    continue
                sources[m.address] = doc.source
                found.append(m)
        return found, sources

    def _broken_migration(self, path: Path, doc: Document) -> None:
        if doc.data is None:
            return
        self.broken_migrations.add(path.stem)
        meta = doc.data.get("metadata") if isinstance(doc.data, dict) else None
        ident = meta.get("id") if isinstance(meta, dict) else None
        if isinstance(ident, str | int) and not isinstance(ident, bool):
            self.broken_migrations.add(str(ident))

    def _unique(self, address: str, doc: Document, sources: Mapping[str, SourceMap], key: tuple[str, ...]) -> bool:
        if address in sources:
            first = sources[address].locate(key)
            self.problems.append(
                Diagnostic(doc.source.locate(key), f"duplicate {address} (first declared at {first})")
            )
            return False
        return True

    # -- one environment -------------------------------------------------------

    def environment(
        self, env: str
    ) -> tuple[dict[str, Service], dict[str, Layer], Policy | None, dict[str, SourceMap]]:
        base = self.root / "environments" / env
        services: dict[str, Service] = {}
        layers: dict[str, Layer] = {}
        sources: dict[str, SourceMap] = {}
        policy: Policy | None = None

        for path in self.files.yaml_files(base / "services", self.problems):
            for doc in self.documents(path, "service"):
                if _expect_kind(doc, ("Service",), f"environments/{env}/services/", self.problems) is None:
                    continue
                svc = _validate(Service, doc, self.problems)
                if svc is None:
                    continue
                self._check_env(svc.metadata.environment, env, doc)
                address = f"service.{svc.metadata.name}"
                if self._unique(address, doc, sources, ("metadata", "name")):
                    services[svc.metadata.name] = svc
                    sources[address] = doc.source

        for path in self.files.yaml_files(base / "layers", self.problems):
            for doc in self.documents(path, "layer"):
                if _expect_kind(doc, ("Layer",), f"environments/{env}/layers/", self.problems) is None:
                    continue
                layer = _validate(Layer, doc, self.problems)
                if layer is None:
                    continue
                self._check_env(layer.metadata.environment, env, doc)
                if self._unique(layer.address, doc, sources, ("metadata", "name")):
                    layers[layer.address] = layer
                    sources[layer.address] = doc.source

        policy_files = [p for p in (base / "policy.yaml", base / "policy.yml",
                                    self.root / "policies" / f"{env}-policy.yaml",
                                    self.root / "policies" / f"{env}-policy.yml")
                        if os.path.lexists(p) and not self.files.refused(p, self.problems)]
        for path in policy_files:
            for doc in self.documents(path, "policy"):
                if _expect_kind(doc, ("Policy",), self.files.rel(path), self.problems) is None:
                    continue
                pol = _validate(Policy, doc, self.problems)
                if pol is None:
                    continue
                if pol.metadata.environment != env:
                    self.problems.append(Diagnostic(doc.source.locate(("metadata", "environment")),
                                                    f"policy is for environment '{pol.metadata.environment}' but lives in the files of '{env}'"))
                    continue
                if policy is not None:
                    self.problems.append(Diagnostic(doc.source.locate(()), f"a second policy for environment '{env}' (one is allowed)"))
                    continue
                policy = pol
                sources[f"policy.{env}"] = doc.source
        return services, layers, policy, sources

    def _check_env(self, declared: str | None, env: str, doc: Document) -> None:
        if declared is not None and declared != env:
            self.problems.append(
                Diagnostic(
                    doc.source.locate(("metadata", "environment")),
                    f"metadata.environment is '{declared}' but the file is under environments/{env}/",
                )
            )


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
        from honua_plan.sql.analysis import (
            diagnose as sql_diagnose,  # sqlglot: imported on a cache miss only
        )

        return sql_diagnose(sql_text)

    def diagnose(sql_text: str) -> list[tuple[int, int, str, str]]:
        return cache.diagnose(sql_text, compute) if cache is not None else compute(sql_text)

    def check_sql(text: str, src: SourceMap, key: tuple[str | int, ...]) -> None:
        block = "\n" in text.rstrip("\n")

        def place(line: int, col: int) -> Location:
            """Line and column (1-based, within ``text``) in the file, where a block scalar allows.

            Only called for a problem: locating a cached file parses it again."""
            base = src.locate(key)
            if not block or line < 1:
                return base
            return Location(base.path, base.line + line, base.column + 1 + col)

        try:
            rendered = templating.render(text, variables)
        except templating.TemplateProblem as exc:
            problems.append(Diagnostic(place(exc.line, exc.column + 1), str(exc)))
            return
        found = diagnose(rendered)
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
                        rel = templating.render(step.path, variables)
                    except templating.TemplateProblem as exc:
                        problems.append(Diagnostic(src.locate(("spec", section, i, "path")), str(exc)))
                        continue
                    target, unreadable = _real(root / rel)
                    if unreadable is not None:
                        problems.append(Diagnostic(src.locate(("spec", section, i, "path")),
                                                   f"path '{rel}': {unreadable}"))
                    elif _outside(target, root.resolve()):
                        problems.append(Diagnostic(src.locate(("spec", section, i, "path")),
                                                   f"path '{rel}' leaves the config repository"))
                    elif not os.path.exists(target):
                        problems.append(Diagnostic(src.locate(("spec", section, i, "path")),
                                                   f"metadata step of migration {m.metadata.id} edits '{rel}', which does not exist for environment {env}"))
        for i, pre in enumerate(m.spec.preConditions):
            if pre.query:
                check_sql(pre.query, src, ("spec", "preConditions", i, "query"))
        for section, checks in (("post-up", m.spec.validation.post_up), ("post-down", m.spec.validation.post_down)):
            for i, chk in enumerate(checks):
                if chk.query:
                    check_sql(chk.query, src, ("spec", "validation", section, i, "query"))
    for address, layer in layers.items():
        for i, chk in enumerate(layer.spec.validation.healthChecks):
            if chk.query:
                check_sql(chk.query, sources[address], ("spec", "validation", "healthChecks", i, "query"))


def load(root: Path | str, environment: str | None = None, *,
         overlay: Mapping[str, bytes] | None = None) -> list[DesiredState]:
    """Load and check the repository for one environment (or all): raise ConfigError on problems.

    ``overlay`` (relative path → content) is read instead of those files, so that a change
    can be planned before anything is written."""
    root = Path(root).resolve()
    ld = _Loader(root)
    ld.files.overlay = dict(overlay or {})
    try:
        return _load(root, environment, ld)
    finally:
        if ld.files.cache is not None:
            ld.files.cache.save()


def _load(root: Path, environment: str | None, ld: _Loader) -> list[DesiredState]:
    project, project_src = ld.project()
    datasources, servers, provider_sources = ld.providers()
    migrations, migration_sources = ld.migrations()
    states: list[DesiredState] = []
    if project is None:
        raise ConfigError(ld.problems)
    envs = list(project.spec.environments)
    if environment is not None:
        if environment not in envs:
            raise ConfigError([Diagnostic(project_src.locate(("spec", "environments")) if project_src else Location(PROJECT_FILE),
                                          f"unknown environment '{environment}' (known: {', '.join(envs)})")])
        envs = [environment]
    for m in migrations:
        for i, e in enumerate(m.metadata.environments):
            if e not in project.spec.environments:
                ld.problems.append(Diagnostic(migration_sources[m.address].locate(("metadata", "environments", i)),
                                              f"migration {m.metadata.id} names environment '{e}', which is not in {PROJECT_FILE}"))
    ordered = _order_migrations(migrations, migration_sources, ld.problems, ld.broken_migrations)
    for env in envs:
        services, layers, policy, env_sources = ld.environment(env)
        sources: dict[str, SourceMap] = {**provider_sources, **migration_sources, **env_sources}
        if project_src is not None:
            sources["project"] = project_src
        _check_references(env, project, datasources, servers, services, layers, sources, ld.problems)
        variables = templating.variables_for(env, project.metadata.name)
        _check_templates_and_sql(root, env, variables, ordered, layers, sources, ld.problems, ld.warnings,
                                 ld.files.cache)
        for ds in datasources.values():  # connection.env names are templates too (HONUA_PG_DSN_{{ env | upper }})
            for i, name_tpl in enumerate(ds.spec.connection.env):
                try:
                    templating.render(name_tpl, variables)
                except templating.TemplateProblem as exc:
                    ld.problems.append(Diagnostic(
                        sources[f"datasource.{ds.metadata.name}"].locate(("spec", "connection", "env", i)), str(exc)))
        states.append(
            DesiredState(
                root=root,
                environment=env,
                project=project,
                datasources=MappingProxyType(dict(datasources)),
                servers=MappingProxyType(dict(servers)),
                services=MappingProxyType(services),
                layers=MappingProxyType(layers),
                migrations=ordered,
                policy=policy,
                sources=MappingProxyType(sources),
            )
        )
    errors = [d for d in ld.problems if d.severity == "error"]
    warnings = tuple(sorted(set(ld.warnings) | {d for d in ld.problems if d.severity != "error"},
                            key=lambda d: (d.location, d.message)))
    if errors:
        raise ConfigError(list(dict.fromkeys(ld.problems + list(warnings))))
    digest = hashlib.sha256()
    for rel, h in sorted(ld.files.hashes.items()):
        digest.update(f"{rel}\0{h}\n".encode())
    config_hash = "sha256:" + digest.hexdigest()
    hashes = MappingProxyType(dict(ld.files.hashes))
    return [
        DesiredState(**{**s.__dict__, "warnings": warnings, "config_hash": config_hash, "file_hashes": hashes})
        for s in states
    ]


def load_environment(root: Path | str, environment: str) -> DesiredState:
    return load(root, environment)[0]
