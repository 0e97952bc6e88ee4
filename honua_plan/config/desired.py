"""The desired state of one environment: every resource its configuration declares, with
where each came from. Built by the loader; read by the planner, the workspace and the workflows."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from honua_plan.config import templating
from honua_plan.config.models import (
    Datasource,
    Layer,
    Migration,
    Policy,
    Project,
    Server,
    Service,
)
from honua_plan.config.paths import resolve_state_dir
from honua_plan.config.source import SourceMap
from honua_plan.errors import Diagnostic, Location


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

    @property
    def state_dir(self) -> Path:
        """The local files' folder (``spec.state.path``, inside the repository, or the operator's
        ``HONUA_STATE_DIR``): state, plans, backups, server files."""
        return resolve_state_dir(self.root, self.project.spec.state.path)

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
