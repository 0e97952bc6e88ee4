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
    from honua_plan.pgserver import ClusterStatus, EmbeddedCluster


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

    # ------------------------------------------------------------------ scaffolding

    def init(self, target: Path | str, *, force: bool = False) -> list[Path]:
        from honua_plan.scaffold import scaffold

        return scaffold(Path(target), force=force)

    def schema_export(self, out: Path | str | None = None) -> list[Path]:
        from honua_plan.schemas import export

        return export(Path(out) if out else self.root / "schemas")


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
