"""Load the config repository into a frozen desired state, reporting every problem at once.

Layout of a configuration repository (docs/architecture.md)::

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

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import pydantic

from honua_plan.config import slots, templating
from honua_plan.config.checks import _check_references, _check_templates_and_sql, _order_migrations
from honua_plan.config.desired import DesiredState
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
from honua_plan.config.paths import OUTSIDE, PROJECT_FILE, _outside, _real
from honua_plan.config.source import Document, SourceMap
from honua_plan.config.yamlload import YAML_SUFFIXES, ParseCache
from honua_plan.errors import ConfigError, Diagnostic, Location

M = TypeVar("M", bound=Strict)


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
                if isinstance(m, Server) and m.spec.honua is not None and m.spec.honua.apiKeyEnv:
                    problem = slots.server_key_problem(m.spec.honua.apiKeyEnv, m.metadata.name)
                    if problem:
                        self.problems.append(Diagnostic(doc.source.locate(("spec", "honua", "apiKeyEnv")), problem))
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

        policy_files = [p for p in (self.root / rel for rel in policy_paths(env))
                        if os.path.lexists(p) and not self.files.refused(p, self.problems)]
        policy = self.policy(env, policy_files, sources)
        return services, layers, policy, sources

    def policy(self, env: str, paths: list[Path], sources: dict[str, SourceMap]) -> Policy | None:
        """The one policy of ``env`` in ``paths`` (also read at a base revision: config.policybase)."""
        policy: Policy | None = None
        for path in paths:
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
        return policy

    def _check_env(self, declared: str | None, env: str, doc: Document) -> None:
        if declared is not None and declared != env:
            self.problems.append(
                Diagnostic(
                    doc.source.locate(("metadata", "environment")),
                    f"metadata.environment is '{declared}' but the file is under environments/{env}/",
                )
            )


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
                    name = slots.variable(templating.render_template(name_tpl, variables))
                    problem = slots.datasource_problem(name, env, project.spec.environments)
                except templating.TemplateProblem as exc:
                    problem = str(exc)
                if problem:  # the environment's own slot only (config/slots); located only then: a
                    # cached file is parsed again to locate a position
                    where = sources[f"datasource.{ds.metadata.name}"].locate(("spec", "connection", "env", i))
                    ld.problems.append(Diagnostic(where, problem))
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


def policy_paths(env: str) -> tuple[str, ...]:
    """Where the policy of ``env`` may live, relative to the repository (one of them at most)."""
    return (f"environments/{env}/policy.yaml", f"environments/{env}/policy.yml",
            f"policies/{env}-policy.yaml", f"policies/{env}-policy.yml")


def load_policy(root: Path | str, env: str, files: Mapping[str, bytes]) -> Policy | None:
    """The policy of ``env`` from ``files`` (relative path → content, e.g. read at a git
    revision) with the loader's checks; ConfigError with its problems."""
    ld = _Loader(Path(root).resolve())
    ld.files.overlay = dict(files)
    policy = ld.policy(env, [ld.root / rel for rel in policy_paths(env) if rel in files], {})
    errors = [d for d in ld.problems if d.severity == "error"]
    if errors:
        raise ConfigError(errors)
    return policy


def load_project(root: Path | str) -> Project:
    """The Project of ``honua.yaml`` alone (the state's folder and key, before any environment
    is loaded); ConfigError with its problems."""
    ld = _Loader(Path(root).resolve())
    project, _ = ld.project()
    errors = [d for d in ld.problems if d.severity == "error"]
    if project is None or errors:
        raise ConfigError(ld.problems)
    return project


def load_environment(root: Path | str, environment: str) -> DesiredState:
    return load(root, environment)[0]
