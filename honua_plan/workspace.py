"""The workspace: a configuration repository's handle on its environments.

Everything a command reads before it acts: the desired state (loaded once per
environment), the recorded state (reader and the serial guard), the state backend, the
datasource's DSN (resolved once per environment and command, without side effects), the
live facts (refresh, read-only) and the plan built from the three. It has no verbs: apply,
promote, recover and the dev loop are in :mod:`honua_plan.workflows`, over a workspace.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from honua_plan.console import Console
from honua_plan.errors import ConfigError, Diagnostic, UsageError

if TYPE_CHECKING:
    from honua_plan.apply.backupstore import BackupStore
    from honua_plan.config.desired import DesiredState
    from honua_plan.config.models import Project
    from honua_plan.plan.builder import PlanRequest
    from honua_plan.plan.migrations import LiveState
    from honua_plan.plan.model import DriftRecord, Plan, Provenance
    from honua_plan.plan.simulation import Simulation
    from honua_plan.providers.embedded.pgserver import EmbeddedCluster
    from honua_plan.providers.postgis.connections import ResolvedDsn
    from honua_plan.providers.postgis.facts import DatabaseFacts
    from honua_plan.providers.postgis.prefetch import Prefetch
    from honua_plan.providers.postgis.sqlexec import StatementLog
    from honua_plan.providers.server.base import ServerProvider
    from honua_plan.state.base import StateBackend
    from honua_plan.state.model import StateDocument
    from honua_plan.state.serialguard import SerialGuard


@dataclass(frozen=True)
class ValidateResult:
    environments: tuple[str, ...]
    counts: dict[str, int]
    warnings: tuple[Diagnostic, ...]


class Workspace:
    """One repository and its environments, read for one command.

    Its methods are one unit: the pipeline's reading half (load → recorded → refresh →
    plan), sharing the caches that make a command read each input once (desired states,
    resolved DSNs); split, every part would need the others' caches.
    """

    def __init__(self, root: Path | str = ".", *, console: Console | None = None, debug: bool = False) -> None:
        self.root = Path(root).resolve()
        self.console = console or Console()
        self.debug = debug
        self._desired: dict[str, DesiredState] = {}
        self._dsn: dict[tuple[str, str, bool], ResolvedDsn] = {}
        self._started: set[str] = set()  # embedded databases this command made sure of
        # extents the last plan's geometry scan gave, per environment; publish uses them only
        # when the apply runs no SQL after that scan (``fresh_extents``)
        self.scanned_extents: dict[str, dict[tuple[str, str], Any]] = {}
        self.fresh_extents: set[str] = set()
        self.policy_base: str | None = None  # --policy-base (else HONUA_POLICY_BASE): see judging_policy

    def load(self, environment: str | None = None) -> list[DesiredState]:
        from honua_plan.config.loader import load

        if environment is not None and environment in self._desired:
            return [self._desired[environment]]
        states = load(self.root, environment)
        for s in states:
            self._desired[s.environment] = s
            exempt_names(s)
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
        self._check_history(states)
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

    def _check_history(self, states: list[DesiredState]) -> None:
        """Like Flyway's validate: an applied migration whose spec changed is an error."""
        from honua_plan.plan.diff import diff_migrations

        problems: list[Diagnostic] = []
        for desired in states:
            if desired.project.spec.state.backend != "local":
                continue  # reading a remote state needs the database: plan does it
            backend = self.backend(desired.environment)
            if not backend.exists():
                continue
            _, _, errs = diff_migrations(desired, backend.read())
            problems.extend(errs)
        if problems:
            raise ConfigError(list(dict.fromkeys(problems)))

    def resolve_dsn(self, environment: str, datasource: str | None = None, *, read_only: bool = False) -> ResolvedDsn:
        """Where the datasource's DSN comes from and what it is: resolved once per command
        (cached), without side effects (never starts the embedded cluster: :meth:`database`).
        ``read_only``: a plan's (``HONUA_PG_PLAN_DSN_<ENV>`` first, transactions read-only)."""
        from honua_plan.providers.postgis import connections as c

        desired = self.desired(environment)
        name = datasource or c.default_datasource(desired.project, desired.datasources)
        if name is None or name not in desired.datasources:
            raise UsageError(f"no datasource '{name}' in providers/")
        key = (environment, name, read_only)
        if key not in self._dsn:
            self._dsn[key] = c.resolve_datasource(desired.datasources[name], environment, self.root,
                                                  state_path=desired.project.spec.state.path, read_only=read_only,
                                                  refuse_embedded=c.embedded_refusal(environment, desired.policy),
                                                  environments=desired.project.spec.environments)
        return self._dsn[key]

    def database(self, environment: str, datasource: str | None = None, *, read_only: bool = False) -> ResolvedDsn:
        """The environment's database, ready to connect to: the one call that starts the
        embedded cluster (and creates the environment's database in it) when the DSN is its.
        ``read_only``: what a plan reads with (:meth:`resolve_dsn`); apply writes with the other."""
        from honua_plan.providers.postgis.connections import ensure_embedded

        resolved = self.resolve_dsn(environment, datasource, read_only=read_only)
        if resolved.embedded_db is not None and resolved.embedded_db not in self._started:
            ensure_embedded(self.root, resolved)
            self._started.add(resolved.embedded_db)
        return resolved

    @property
    def embedded(self) -> EmbeddedCluster:
        from honua_plan.providers.embedded.pgserver import EmbeddedCluster

        return EmbeddedCluster(self.state_dir / ".pg")  # as connections.embedded_root

    def backend(self, environment: str) -> StateBackend:
        from honua_plan.state import open_backend, state_dsn

        project = self.desired(environment).project
        cfg = project.spec.state
        dsn = None
        if cfg.backend == "postgres":
            dsn = (cfg.dsnEnv and state_dsn(cfg.dsnEnv)) or self.database(environment).dsn
        backend = open_backend(cfg.backend, environment=environment, root=self.root, state_dir=self.state_dir,
                               project=self.state_project, dsn=dsn, lock_timeout=cfg.lockTimeout)
        guard = self._serial_guard(environment)
        backend.after_write, backend.on_close = guard.record, guard.close
        return backend

    def _serial_guard(self, environment: str, *, read_only: bool = False) -> SerialGuard:
        from honua_plan.state.keys import repository_identity
        from honua_plan.state.serialguard import SerialGuard

        return SerialGuard(environment, lambda: self.database(environment, read_only=read_only).dsn,
                           project=self.state_project, identity=repository_identity(self.root.resolve()))

    def check_state(self, environment: str, backend: StateBackend, doc: StateDocument) -> None:
        """Refuse a state that went backwards (see :mod:`honua_plan.state.serialguard`)."""
        import json

        from honua_plan.state.local import LocalBackend

        backup: tuple[str, int | None] | None = None
        where = backend.describe()
        if isinstance(backend, LocalBackend):
            where = self._rel(backend.path)
            bak = backend.reader().backup_path
            if doc.serial == 0 and bak.is_file():
                try:
                    serial: int | None = int(json.loads(bak.read_text(encoding="utf-8"))["serial"])
                except (OSError, ValueError, KeyError, TypeError):
                    serial = None
                backup = (self._rel(bak), serial)
        guard = self._serial_guard(environment, read_only=True)  # check only reads
        try:
            guard.check(doc, where, backup)
        finally:
            guard.close()

    def _rel(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def recorded(self, environment: str, *, check: bool = True) -> StateDocument:
        """The recorded state; ``check``: refuse one that went backwards."""
        with self.backend(environment) as b:
            doc = b.reader().read()
            if check:
                self.check_state(environment, b, doc)
            return doc

    def _recorded_early(self, environment: str, early: Prefetch) -> StateDocument:
        """The recorded state, from what the prefetch parsed when it is the backend's file."""
        from honua_plan.state.local import LocalBackend

        with self.backend(environment) as b:
            if isinstance(b, LocalBackend):
                found = early.take_state(b.path)
                if found is not None:
                    doc = b.reader().read_prefetched(*found)
                    if doc is not None:
                        self.check_state(environment, b, doc)
                        return doc
            doc = b.reader().read()
            self.check_state(environment, b, doc)
            return doc

    def read_facts(self, environment: str, log: StatementLog | None = None) -> DatabaseFacts:
        from honua_plan.providers.postgis import catalog as postgis
        from honua_plan.providers.postgis.sqlexec import Session, connect

        resolved = self.database(environment, read_only=True)
        with connect(resolved.dsn) as conn:
            return postgis.refresh(Session(conn, log=log))

    def refresh(self, desired: DesiredState, recorded: StateDocument, log: StatementLog | None = None,
                *, facts: DatabaseFacts | None = None, simulate: bool | Simulation | None = False) -> LiveState:
        """Read what the plan needs: one catalog pass, plus per-change checks only.

        ``facts`` read elsewhere (the prefetch) are used as they are; a connection is then
        opened only when a change needs a query. ``simulate``: run the pending migrations
        on a schema-only copy (True: required; None: where a scratch database is at hand).
        """
        from honua_plan.config import templating
        from honua_plan.plan.diff import attributes_fingerprint, desired_resources, diff_migrations
        from honua_plan.plan.migrations import LiveState

        env = desired.environment
        pending, _, _ = diff_migrations(desired, recorded)
        variables = desired.template_vars()
        health: dict[str, tuple[int, int, int]] = {}
        pre: dict[str, tuple[bool, str]] = {}
        texts: dict[str, str | None] = {}
        probes: dict[str, tuple[Any, ...]] = {}
        conn = None

        def session() -> Any:
            from honua_plan.providers.postgis.sqlexec import Session, connect

            nonlocal conn
            if conn is None:
                conn = connect(self.database(env, read_only=True).dsn)
            return Session(conn, log=log)

        try:
            if facts is None:
                from honua_plan.providers.postgis import catalog as postgis

                facts = postgis.refresh(session())
            resources = desired_resources(desired)
            to_count: list[tuple[str, str]] = []
            for address, layer in desired.layers.items():
                rec = recorded.resources.get(address)
                if rec is not None and rec.fingerprint == attributes_fingerprint(resources[address][1]):
                    continue  # unchanged layer: nothing to count
                table = layer.spec.storage.qualified_table
                t = facts.table(table)
                col = layer.spec.storage.geometryColumn
                if t is not None and t.geometry(col) is not None:
                    to_count.append((table, col))
            if to_count or pending:  # only a plan with work queries more than the catalog
                from honua_plan.checks.preconditions import query_preconditions
                from honua_plan.providers.postgis import catalog as postgis

                s = session()
                extents = self.scanned_extents[env] = {}  # this scan only: older ones may be stale
                for (table, col), counts in postgis.count_invalid_geometries_many(s, to_count, extents=extents).items():
                    health[f"{table}.{col}"] = counts
                for mc in pending:
                    m = mc.migration
                    pre.update(query_preconditions(s, m, variables))
                    for step in m.spec.up:
                        if step.type == "metadata" and step.path:
                            rel = templating.render_template(step.path, variables)
                            path = self.root / rel
                            texts[rel] = path.read_text() if path.exists() else None  # None: judged by the planner
                if pending:
                    from honua_plan.providers.postgis.probing import probe_pending

                    probes.update(probe_pending(s, desired, [mc.migration for mc in pending], facts))
            entries, server_error = self._server_dry_run(desired, recorded, facts, session)
        finally:
            if conn is not None:
                conn.close()
        from honua_plan.plan.simulation import Simulation

        sim = None
        if pending and isinstance(simulate, Simulation):  # what a saved plan's simulation established
            sim = simulate
        elif pending and simulate is not False:
            from honua_plan.providers.postgis.simulate import simulate_pending

            sim = simulate_pending(self.database(env, read_only=True).dsn, desired, [mc.migration for mc in pending],
                                   self.embedded, force=simulate is True)
        return LiveState(simulation=sim, facts=facts, geometry_health=health, precondition_results=pre, file_texts=texts,
                         server_entries=entries, server_error=server_error, probes=probes,
                         rendered_required=_in_ci())  # in CI, metadata edits come in the pull request

    def _server_dry_run(self, desired: DesiredState, recorded: StateDocument, facts: DatabaseFacts | None = None,
                        session: Callable[[], Any] | None = None) -> tuple[tuple[Any, ...], str | None]:
        """What publishing would do (``providers.server.base.dry_run``), with this workspace's server."""
        from honua_plan.providers.server.base import dry_run

        return dry_run(lambda: self.server_provider(desired.environment), desired, recorded, facts, session)

    def _provenance(self) -> Provenance:
        """Who this plan is for: ``ai`` when a commit of this branch that touched the
        configuration carries the AI trailer (:mod:`honua_plan.config.provenance`), even when
        a person or CI runs the plan; else ``ci`` or ``human``."""
        from honua_plan.config.provenance import ai_model
        from honua_plan.plan.model import Provenance as Prov

        model = ai_model(self.root)
        if model is not None:
            return Prov(kind="ai", actor=self.actor, model=model)
        return Prov(kind="ci" if _in_ci() else "human", actor=self.actor)

    def _request(self, desired: DesiredState, recorded: StateDocument, *, target: tuple[str, ...] = (),
                 refresh_only: bool = False, provenance: Provenance | None = None, exclude: tuple[str, ...] = (),
                 replace: tuple[str, ...] = ()) -> PlanRequest:
        from datetime import UTC, datetime

        from honua_plan.config.policybase import judging_policy
        from honua_plan.plan.builder import PlanRequest
        from honua_plan.providers.postgis.connections import database_ref

        pg_dump = True
        if desired.migrations:  # only a migration takes a backup: no PATH search, no pg_config run without
            from honua_plan.providers.embedded.pgserver import pg_dump_available

            pg_dump = pg_dump_available()
        pol = (judge := judging_policy(self.root, desired, recorded.config_commit, explicit=self.policy_base,
                                       read=not refresh_only)).policy  # the base's, not the change's
        cooldown = pol.spec.cooldown if pol is not None else None
        source_state = self.recorded(cooldown.sourceEnvironment, check=False) if cooldown is not None else None
        return PlanRequest(
            now=datetime.now(UTC),
            provenance=provenance or self._provenance(),
            target=target,
            exclude=exclude,
            replace=replace,
            refresh_only=refresh_only,
            config_commit=self.git_commit,
            source_state=source_state,
            pg_dump_available=pg_dump,
            database=database_ref(self.resolve_dsn(desired.environment, read_only=True)), judge=judge,
        )

    def plan(
        self,
        environment: str,
        *,
        target: tuple[str, ...] = (),
        refresh_only: bool = False,
        provenance: Provenance | None = None,
        exclude: tuple[str, ...] = (),
        log: StatementLog | None = None,
        refuse_unfinished: bool = False,
        facts: DatabaseFacts | None = None,
        simulate: bool | Simulation | None = False,
        replace: tuple[str, ...] = (),
    ) -> Plan:
        """``refuse_unfinished``: raise when an apply is in flight or was interrupted (what
        ``plan``/``drift`` would compare against is then neither the old nor the new state).
        ``facts``: the catalog this command already read (apply's freshness check), not read again.
        ``simulate``: see :meth:`refresh` (``honua plan`` asks for None, where a scratch database is at hand;
        apply does not simulate: it runs the migrations for real, journaled)."""
        from honua_plan.providers.postgis.prefetch import Prefetch

        # the catalog and the state file are read while this process imports the plan
        # engine and loads the repository (the catalog only when not given)
        early = Prefetch(self.root, environment, catalog=facts is None)
        from honua_plan.plan.builder import build_plan
        from honua_plan.plan.diff import desired_resources

        try:
            desired = self.desired(environment)
            recorded = self._recorded_early(environment, early)
            if refuse_unfinished:
                self.refuse_unfinished(environment, recorded)
            # what does not need the catalog, while the reader may still be at it
            req = self._request(desired, recorded, target=target, refresh_only=refresh_only, provenance=provenance,
                                exclude=exclude, replace=replace)
            desired_resources(desired, recorded)  # memoized: the refresh and the diff use it
            rows = early.take_catalog(self.database(environment, read_only=True).dsn, log) if facts is None else None
        except BaseException:
            early.discard()
            raise
        if rows is not None:
            from honua_plan.providers.postgis.facts import facts_from_rows

            facts = facts_from_rows(rows)
            del rows  # ~35 MB of row tuples at 10,000 tables: not part of the peak
        live = self.refresh(desired, recorded, log=log, facts=facts, simulate=simulate)
        return build_plan(desired, recorded, live, req)

    def refuse_unfinished(self, environment: str, recorded: StateDocument) -> None:
        """Raise when an apply of ``environment`` holds the state lock or left its journal."""
        from honua_plan.errors import ApplyError

        next_steps = (f"`honua apply --env {environment} --resume` continues it, "
                      f"`honua apply --env {environment} --rollback` undoes it")
        with self.backend(environment) as backend:
            holder = backend.holder()
        if holder is not None:
            what = f"an apply of {environment}" if "apply" in holder.command else f"`{holder.command}` on {environment}"
            raise ApplyError(
                f"{what} is in flight ({holder.describe()}): the database and the state may be between the old "
                "and the new configuration",
                hint=f"wait for it to finish; if it was killed, {next_steps}")
        if recorded.pending is not None:
            steps = recorded.pending.steps
            done = sum(1 for s in steps if s.status == "done")
            stopped = [s.id for s in steps if s.status in ("running", "failed")]
            raise ApplyError(
                f"an apply of {environment} was interrupted (plan {recorded.pending.plan_id[:12]}, {done} of "
                f"{len(steps)} steps done{', stopped at ' + stopped[0] if stopped else ''}): the database and the "
                "state are between the old and the new configuration",
                hint=next_steps)

    def down_plan(self, environment: str, migration_id: str) -> Plan:
        from honua_plan.plan.builder import build_down_plan

        desired = self.desired(environment)
        recorded = self.recorded(environment)
        live = self.refresh(desired, recorded)
        return build_down_plan(desired, recorded, live, self._request(desired, recorded), migration_id)

    def migration_address(self, environment: str, ref: str) -> str:
        m = self.desired(environment).migration(ref)
        if m is None:
            raise UsageError(f"no migration {ref} in migrations/")
        return m.address

    def migration_targets(self, environment: str, migration_id: str | None = None) -> tuple[str, ...]:
        """One migration (with what it needs), or every migration still to apply."""
        if migration_id:
            return (self.migration_address(environment, migration_id),)
        return tuple(f"migration.{r['id']}" for r in self.migrate_status(environment)
                     if r["status"] in ("pending", "rolled_back", "failed"))

    def migrate_status(self, environment: str) -> list[dict[str, Any]]:
        from honua_plan.plan.diff import migration_checksum

        desired = self.desired(environment)
        recorded = self.recorded(environment)
        rows = []
        for m in desired.migrations:
            latest = recorded.latest_migration(m.metadata.id)
            listed = not m.metadata.environments or environment in m.metadata.environments
            status = latest.status if latest else ("pending" if listed else "not for this environment")
            changed = bool(latest and latest.status == "applied" and latest.checksum != migration_checksum(m))
            rows.append({
                "id": m.metadata.id, "name": m.stem, "description": m.metadata.description or "",
                "status": "CHANGED AFTER APPLY" if changed else status,
                "applied_at": latest.finished_at.isoformat() if latest and latest.finished_at else None,
                "applied_by": latest.applied_by if latest else None,
                "duration_s": latest.duration_s if latest else None,
            })
        return rows

    def backups(self, environment: str) -> list[Any]:
        return list(self.recorded(environment).backups)

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

    @cached_property
    def project(self) -> Project:
        """honua.yaml's Project (from an environment already loaded, else read alone)."""
        if self._desired:
            return next(iter(self._desired.values())).project
        from honua_plan.config.loader import load_project

        return load_project(self.root)

    @cached_property
    def backup_store(self) -> BackupStore:
        """Where backups are kept beyond this machine (``backups:`` of honua.yaml)."""
        from honua_plan.apply.backupstore import open_store

        return open_store(self.project.spec.backups, self.state_project)

    @cached_property
    def state_project(self) -> str:
        """The project key of the state (:mod:`honua_plan.state.keys`)."""
        from honua_plan.state.keys import project_key

        return project_key(self.project.metadata.name, self.project.spec.state.project)

    @cached_property
    def state_dir(self) -> Path:
        """The local files' folder, ``spec.state.path`` (``state`` where there is no honua.yaml)."""
        from honua_plan.config.paths import PROJECT_FILE, resolve_state_dir

        if not self._desired and not (self.root / PROJECT_FILE).exists():
            return self.root / "state"
        return resolve_state_dir(self.root, self.project.spec.state.path)

    def _clean_partial_backups(self, environment: str) -> None:
        """Remove the files of a backup interrupted by a crash (call under the state lock)."""
        from honua_plan.apply.backup import clean_partial_backups

        removed = clean_partial_backups(self.state_dir / "backups", environment)
        if removed:
            self.console.print(f"Removed {len(removed)} incomplete backup file(s) left by an interrupted "
                               f"backup: {', '.join(p.name for p in removed)}")

    def server_provider(self, environment: str) -> ServerProvider:
        from honua_plan.providers.server import open_server

        desired = self.desired(environment)
        return open_server(desired.server(), root=self.root, environment=environment,
                           state_dir=desired.state_dir / environment,
                           dsn_resolver=lambda *_: self.database(environment).dsn)

    def _reload_desired(self, environment: str) -> DesiredState:
        self._desired.pop(environment, None)
        return self.desired(environment)



def exempt_names(desired: DesiredState) -> None:
    """Tell :mod:`honua_plan.secrets` the names this configuration publishes.

    A password equal to one of them (an environment, a schema, a table, a layer) is then
    not hidden in free text, where hiding it would mangle every mention of the name.
    """
    from honua_plan.secrets import exempt

    names = {desired.environment, *desired.project.spec.environments, desired.project.metadata.name}
    for address in desired.sources:
        names.add(address)
        names.update(address.replace("::", ".").split("."))
    for layer in desired.layers.values():
        names.update(layer.spec.storage.qualified_table.split("."))
    exempt(names)


def _in_ci() -> bool:
    import os

    return bool(os.environ.get("CI"))
