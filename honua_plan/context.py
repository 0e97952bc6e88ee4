"""The one object behind every command: config, state backend and providers.

The CLI converts flags and calls one method here; the Python API is the same path
(``Context("path/to/repo").validate("dev")``). Methods return values; printing is
left to the console passed in.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from honua_plan.console import Console
from honua_plan.errors import ConfigError, Diagnostic, UsageError

if TYPE_CHECKING:
    from honua_plan.config.loader import DesiredState
    from honua_plan.connections import ResolvedDsn
    from honua_plan.facts import DatabaseFacts
    from honua_plan.pgserver import ClusterStatus, EmbeddedCluster
    from honua_plan.plan.builder import LiveState
    from honua_plan.plan.model import DriftRecord, Plan, Provenance
    from honua_plan.providers.sqlexec import StatementLog
    from honua_plan.state.base import StateBackend
    from honua_plan.state.model import StateDocument


@dataclass(frozen=True)
class ValidateResult:
    environments: tuple[str, ...]
    counts: dict[str, int]
    warnings: tuple[Diagnostic, ...]


class Context:
    def __init__(self, root: Path | str = ".", *, console: Console | None = None, debug: bool = False) -> None:
        self.root = Path(root).resolve()
        self.console = console or Console()
        self.debug = debug
        self._desired: dict[str, DesiredState] = {}

    # ------------------------------------------------------------------ config

    def load(self, environment: str | None = None) -> list[DesiredState]:
        from honua_plan.config.loader import load

        if environment is not None and environment in self._desired:
            return [self._desired[environment]]
        states = load(self.root, environment)
        for s in states:
            self._desired[s.environment] = s
        return states

    def desired(self, environment: str) -> DesiredState:
        return self.load(environment)[0]

    @cached_property
    def git_commit(self) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(self.root), "rev-parse", "HEAD"],
                capture_output=True, text=True, timeout=5, check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() or None if out.returncode == 0 else None

    def validate(self, environment: str | None = None) -> ValidateResult:
        """Schema, references, SQL parse and templates; raises ConfigError listing every problem."""
        states = self.load(environment)
        first = states[0]
        counts = {
            "datasources": len(first.datasources),
            "servers": len(first.servers),
            "migrations": len(first.migrations),
            "services": sum(len(s.services) for s in states),
            "layers": sum(len(s.layers) for s in states),
            "policies": sum(1 for s in states if s.policy is not None),
        }
        return ValidateResult(tuple(s.environment for s in states), counts, first.warnings)

    # ------------------------------------------------------------------ databases

    def resolve_dsn(self, environment: str, datasource: str | None = None, *, start_embedded: bool = True) -> ResolvedDsn:
        from honua_plan.connections import resolve

        desired = self.desired(environment)
        name = datasource or desired.project.spec.defaultDatasource or next(iter(desired.datasources), None)
        if name is None or name not in desired.datasources:
            raise UsageError(f"no datasource '{name}' in providers/")
        return resolve(desired.datasources[name], environment, self.root, start_embedded=start_embedded)

    @property
    def embedded(self) -> EmbeddedCluster:
        from honua_plan.connections import embedded_root
        from honua_plan.pgserver import EmbeddedCluster

        return EmbeddedCluster(embedded_root(self.root))

    def db_start(self) -> ClusterStatus:
        cluster = self.embedded
        cluster.start()
        return cluster.status()

    def db_stop(self) -> ClusterStatus:
        cluster = self.embedded
        cluster.stop()
        return cluster.status()

    def db_status(self) -> ClusterStatus:
        return self.embedded.status()

    def seed_data(self, environment: str, rows: int = 42) -> int:
        from honua_plan.providers.sqlexec import connect
        from honua_plan.sample import seed_bike_lanes

        if rows < 0:
            raise UsageError("--rows must be 0 or more")
        resolved = self.resolve_dsn(environment)
        with connect(resolved.dsn) as conn:
            return seed_bike_lanes(conn, rows)

    # ------------------------------------------------------------------ state

    def backend(self, environment: str) -> StateBackend:
        import os

        from honua_plan.state.base import open_backend

        project = self.desired(environment).project
        cfg = project.spec.state
        dsn = None
        if cfg.backend == "postgres":
            if cfg.dsnEnv and os.environ.get(cfg.dsnEnv):
                dsn = os.environ[cfg.dsnEnv]
            else:
                dsn = self.resolve_dsn(environment).dsn
        root = self.root if cfg.path == "state" else self.root / cfg.path / ".."
        return open_backend(cfg.backend, environment=environment, root=root, dsn=dsn,
                            lock_timeout=cfg.lockTimeout)

    def recorded(self, environment: str) -> StateDocument:
        with self.backend(environment) as b:
            return b.reader().read()

    # ------------------------------------------------------------------ refresh (read-only I/O)

    def read_facts(self, environment: str, log: StatementLog | None = None) -> DatabaseFacts:
        from honua_plan.providers import postgis
        from honua_plan.providers.sqlexec import Session, connect

        resolved = self.resolve_dsn(environment)
        with connect(resolved.dsn) as conn:
            return postgis.refresh(Session(conn, log=log))

    def refresh(self, desired: DesiredState, recorded: StateDocument, log: StatementLog | None = None) -> LiveState:
        """Read what the plan needs: one catalog pass, plus per-change checks only."""
        from honua_plan import checks
        from honua_plan.config import templating
        from honua_plan.diff import desired_resources, diff_migrations
        from honua_plan.plan.builder import LiveState
        from honua_plan.providers import postgis
        from honua_plan.providers.sqlexec import Session, connect
        from honua_plan.state.model import fingerprint

        env = desired.environment
        resolved = self.resolve_dsn(env)
        pending, _, _ = diff_migrations(desired, recorded)
        variables = desired.template_vars()
        health: dict[str, tuple[int, int, int]] = {}
        pre: dict[str, tuple[bool, str]] = {}
        texts: dict[str, str] = {}
        with connect(resolved.dsn) as conn:
            session = Session(conn, log=log)
            facts = postgis.refresh(session)
            resources = desired_resources(desired)
            for address, layer in desired.layers.items():
                rec = recorded.resources.get(address)
                if rec is not None and rec.fingerprint == fingerprint(resources[address][1]):
                    continue  # unchanged layer: no per-table query
                table = layer.spec.storage.qualified_table
                t = facts.table(table)
                col = layer.spec.storage.geometryColumn
                if t is not None and t.geometry(col) is not None:
                    health[f"{table}.{col}"] = postgis.count_invalid_geometries(session, table, col)
            for mc in pending:
                m = mc.migration
                for i, p in enumerate(m.spec.preConditions):
                    if p.type == "sql-check" and p.query and p.expected:
                        from honua_plan.config.expected import parse

                        try:
                            rows = session.execute(templating.render(p.query, variables), read=True)
                        except Exception as exc:  # a failing check query is a failed precondition
                            pre[f"{m.metadata.id}#{i}"] = (False, f"{p.label}: {exc}")
                            continue
                        v = checks.evaluate(parse(p.expected), rows)
                        pre[f"{m.metadata.id}#{i}"] = (v.ok, f"{p.message or p.label}: {v.message}")
                for step in m.spec.up:
                    if step.type == "metadata" and step.path:
                        rel = templating.render(step.path, variables)
                        path = self.root / rel
                        if path.exists():
                            texts[rel] = path.read_text()
        return LiveState(facts=facts, geometry_health=health, precondition_results=pre, file_texts=texts)

    # ------------------------------------------------------------------ plan

    def plan(
        self,
        environment: str,
        *,
        target: tuple[str, ...] = (),
        refresh_only: bool = False,
        provenance: Provenance | None = None,
        log: StatementLog | None = None,
    ) -> Plan:
        import shutil
        from datetime import UTC, datetime

        from honua_plan.plan.builder import PlanRequest, build_plan
        from honua_plan.plan.model import Provenance as Prov

        desired = self.desired(environment)
        recorded = self.recorded(environment)
        live = self.refresh(desired, recorded, log=log)
        source_state = None
        pol = desired.policy
        if pol is not None and pol.spec.cooldown is not None:
            source_state = self.recorded(pol.spec.cooldown.sourceEnvironment)
        req = PlanRequest(
            now=datetime.now(UTC),
            provenance=provenance or Prov(kind="ci" if _in_ci() else "human", actor=self.actor),
            target=target,
            refresh_only=refresh_only,
            config_commit=self.git_commit,
            source_state=source_state,
            pg_dump_available=shutil.which("pg_dump") is not None,
        )
        return build_plan(desired, recorded, live, req)

    def drift(self, environment: str) -> list[DriftRecord]:
        return self.plan(environment, refresh_only=True).drift

    @cached_property
    def actor(self) -> str:
        import getpass
        import os

        for var in ("HONUA_ACTOR", "GITHUB_ACTOR", "GIT_AUTHOR_EMAIL"):
            if os.environ.get(var):
                return os.environ[var]
        try:
            out = subprocess.run(["git", "-C", str(self.root), "config", "user.email"],
                                 capture_output=True, text=True, timeout=5, check=False)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
        return getpass.getuser()

    # ------------------------------------------------------------------ scaffolding

    def init(self, target: Path | str, *, force: bool = False) -> list[Path]:
        from honua_plan.scaffold import scaffold

        return scaffold(Path(target), force=force)

    def schema_export(self, out: Path | str | None = None) -> list[Path]:
        from honua_plan.schemas import export

        return export(Path(out) if out else self.root / "schemas")


def _in_ci() -> bool:
    import os

    return bool(os.environ.get("CI"))


def config_error_summary(exc: ConfigError) -> dict[str, Any]:
    """The JSON shape of a ConfigError for ``--format json``."""
    return {
        "valid": False,
        "errors": [
            {"path": d.location.path, "line": d.location.line, "column": d.location.column,
             "message": d.message, "severity": d.severity}
            for d in exc.diagnostics
        ],
    }
