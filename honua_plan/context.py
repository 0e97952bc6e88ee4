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
    from honua_plan.plan.builder import LiveState
    from honua_plan.plan.model import DriftRecord, Plan, Provenance
    from honua_plan.providers.embedded.pgserver import ClusterStatus, EmbeddedCluster
    from honua_plan.providers.postgis.facts import DatabaseFacts
    from honua_plan.providers.postgis.prefetch import Prefetch
    from honua_plan.providers.postgis.sqlexec import StatementLog
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
            _exempt_names(s)
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

    # ------------------------------------------------------------------ databases

    def resolve_dsn(self, environment: str, datasource: str | None = None, *, start_embedded: bool = True) -> ResolvedDsn:
        from honua_plan.connections import default_datasource, resolve

        desired = self.desired(environment)
        name = datasource or default_datasource(desired.project, desired.datasources)
        if name is None or name not in desired.datasources:
            raise UsageError(f"no datasource '{name}' in providers/")
        return resolve(desired.datasources[name], environment, self.root, start_embedded=start_embedded)

    @property
    def embedded(self) -> EmbeddedCluster:
        from honua_plan.connections import embedded_root
        from honua_plan.providers.embedded.pgserver import EmbeddedCluster

        return EmbeddedCluster(embedded_root(self.root))

    def db_start(self) -> ClusterStatus:
        cluster = self.embedded
        cluster.start()
        return cluster.status()

    def db_stop(self) -> tuple[int | None, ClusterStatus]:
        """Stop the embedded cluster: (the pid it stopped, or None when none ran; the status after)."""
        cluster = self.embedded
        stopped = cluster.stop()
        return stopped, cluster.status()

    def db_status(self) -> ClusterStatus:
        return self.embedded.status()

    def seed_data(self, environment: str, rows: int = 42, *, replace: bool = False) -> int:
        """Load the sample bike lanes, under the state lock; never into production, and over
        rows seed-data did not make only with ``replace``, after a pg_dump backup."""
        from honua_plan.errors import ApplyError
        from honua_plan.providers.postgis.sqlexec import connect
        from honua_plan.workflows.sample import seed_bike_lanes

        if rows < 0:
            raise UsageError("--rows must be 0 or more")
        desired = self.desired(environment)
        if desired.policy is not None and desired.policy.spec.production:
            where = desired.locate(f"policy.{environment}", "spec", "production")
            raise UsageError(
                f"{where}: environment '{environment}' is a production environment (production: true); "
                "sample data is for development and is never loaded there"
            )
        table = "public.bike_lanes"
        resolved = self.resolve_dsn(environment)
        with self.backend(environment) as backend, \
                backend.lock(f"honua dev seed-data --env {environment}") as writer, \
                connect(resolved.dsn) as conn:
            doc = writer.read()
            self.check_state(environment, backend, doc)
            if doc.pending is not None:
                raise ApplyError(
                    f"an apply of {environment} did not finish; seed-data does not change its tables meanwhile",
                    hint=f"finish it first: `honua apply --env {environment} --resume` or `--rollback`",
                )

            def guard(foreign: int) -> None:
                if not replace:
                    raise UsageError(
                        f"{table} holds {foreign} row(s) not made by seed-data (no seed-data marker, "
                        "or the rows changed since it loaded them); refusing to replace them",
                        hint=f"`honua dev seed-data --env {environment} --replace` replaces them after "
                             "taking a pg_dump backup",
                    )
                rec = self._seed_backup(environment, resolved.dsn, table, desired)
                writer.write(doc.with_backup(rec).record_event(
                    "backup", f"backup {rec.id} before seed-data replaced {foreign} row(s) of {table}",
                    actor=self.actor), expected_serial=doc.serial)

            return seed_bike_lanes(conn, rows, table=table, guard=guard)

    def _seed_backup(self, environment: str, dsn: str, table: str, desired: DesiredState) -> Any:
        import time

        from honua_plan.apply.backup import format_size, take_backup
        from honua_plan.connections import default_datasource
        from honua_plan.errors import ApplyError
        from honua_plan.providers.embedded.pgserver import pg_dump_available

        if not pg_dump_available():
            raise ApplyError("--replace takes a backup first, but pg_dump is not installed; nothing was changed")
        ds = desired.datasources.get(default_datasource(desired.project, desired.datasources) or "")
        self.console.print(f"Backing up 1 table ({table})…")
        t0 = time.perf_counter()
        rec = take_backup(dsn, [table], directory=self.state_dir / "backups", environment=environment,
                          migration_id=None, lock_wait_s=ds.spec.lockTimeout if ds else None,
                          timeout_s=desired.policy.spec.backupTimeout if desired.policy else None)
        self.console.ok(f"Backup created: {rec.id} ({format_size(rec.size_bytes)}) in state/{rec.path}",
                        time.perf_counter() - t0)
        return rec

    # ------------------------------------------------------------------ state

    def backend(self, environment: str) -> StateBackend:
        import os

        from honua_plan.state.base import open_backend

        project = self.desired(environment).project
        cfg = project.spec.state
        dsn = None
        if cfg.backend == "postgres":
            if cfg.dsnEnv and os.environ.get(cfg.dsnEnv):
                from honua_plan.secrets import check_dsn, register_dsn

                dsn = os.environ[cfg.dsnEnv]
                register_dsn(dsn)
                check_dsn(dsn, f"the connection string in environment variable {cfg.dsnEnv}")
            else:
                dsn = self.resolve_dsn(environment).dsn
        root = self.root if cfg.path == "state" else self.root / cfg.path / ".."
        backend = open_backend(cfg.backend, environment=environment, root=root, dsn=dsn,
                               lock_timeout=cfg.lockTimeout)
        guard = self._serial_guard(environment)
        backend.after_write, backend.on_close = guard.record, guard.close
        return backend

    def _serial_guard(self, environment: str) -> Any:
        from honua_plan.state.serialguard import SerialGuard

        return SerialGuard(environment, lambda: self.resolve_dsn(environment).dsn)

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
        guard = self._serial_guard(environment)
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

    def restore_state_backup(self, environment: str, *, force: bool = False) -> tuple[StateDocument, int, str | None]:
        """Make ``state/<env>.json.bak`` the state again, under the lock; returns the stored
        document, the backup's serial and where the replaced file was kept."""
        from honua_plan.errors import HonuaError, StateError
        from honua_plan.state.local import LocalBackend

        with self.backend(environment) as backend:
            if not isinstance(backend, LocalBackend):
                raise UsageError(
                    "restore-backup is for the local state backend; the postgres backend keeps every "
                    "version in honua_plan.state_history"
                )
            bak = backend.reader().backup_path
            if not bak.is_file():
                raise StateError(f"no {self._rel(bak)} to restore the state of '{environment}' from")
            current = backend.reader().read()
            if not force:
                try:
                    self.check_state(environment, backend, current)
                except HonuaError:
                    pass  # the state went backwards or is missing: what this command is for
                else:
                    if current.serial:
                        raise UsageError(
                            f"{self._rel(backend.path)} (serial {current.serial}) is newer than "
                            f"{self._rel(bak)} and nothing says it went backwards; refusing to replace it",
                            hint=f"`honua state restore-backup --env {environment} --force` replaces it anyway",
                        )
            guard = self._serial_guard(environment)
            try:
                recorded = guard.recorded()
            except Exception:  # the database may be unreachable: restore all the same
                recorded = None
            finally:
                guard.close()
            replaced = backend.path.is_file()
            with backend.lock("honua state restore-backup") as writer:
                doc, bak_serial = writer.restore_backup_file(min_serial=recorded[1] if recorded else 0)
            return doc, bak_serial, self._rel(backend.path.with_name(f"{environment}.json.replaced")) \
                if replaced else None

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

    # ------------------------------------------------------------------ refresh (read-only I/O)

    def read_facts(self, environment: str, log: StatementLog | None = None) -> DatabaseFacts:
        from honua_plan.providers.postgis import catalog as postgis
        from honua_plan.providers.postgis.sqlexec import Session, connect

        resolved = self.resolve_dsn(environment)
        with connect(resolved.dsn) as conn:
            return postgis.refresh(Session(conn, log=log))

    def refresh(self, desired: DesiredState, recorded: StateDocument, log: StatementLog | None = None,
                *, facts: DatabaseFacts | None = None) -> LiveState:
        """Read what the plan needs: one catalog pass, plus per-change checks only.

        ``facts`` read elsewhere (the prefetch) are used as they are; a connection is then
        opened only when a change needs a query.
        """
        from honua_plan.config import templating
        from honua_plan.plan.builder import LiveState
        from honua_plan.plan.diff import attributes_fingerprint, desired_resources, diff_migrations

        env = desired.environment
        pending, _, _ = diff_migrations(desired, recorded)
        variables = desired.template_vars()
        health: dict[str, tuple[int, int, int]] = {}
        pre: dict[str, tuple[bool, str]] = {}
        texts: dict[str, str] = {}
        conn = None

        def session() -> Any:
            from honua_plan.providers.postgis.sqlexec import Session, connect

            nonlocal conn
            if conn is None:
                conn = connect(self.resolve_dsn(env).dsn)
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
                for (table, col), counts in postgis.count_invalid_geometries_many(s, to_count).items():
                    health[f"{table}.{col}"] = counts
                for mc in pending:
                    m = mc.migration
                    pre.update(query_preconditions(s, m, variables))
                    for step in m.spec.up:
                        if step.type == "metadata" and step.path:
                            rel = templating.render(step.path, variables)
                            path = self.root / rel
                            if path.exists():
                                texts[rel] = path.read_text()
        finally:
            if conn is not None:
                conn.close()
        entries, server_error = self._server_dry_run(desired)
        return LiveState(facts=facts, geometry_health=health, precondition_results=pre, file_texts=texts,
                         server_entries=entries, server_error=server_error)

    def _server_dry_run(self, desired: DesiredState) -> tuple[tuple[Any, ...], str | None]:
        """Ask the server what publishing the layers would do (Honua: manifest dryRun)."""
        server = desired.server()
        if server is None or server.spec.type == "none":
            return (), None
        from honua_plan.errors import HonuaError
        from honua_plan.plan.model import ServerEntry
        from honua_plan.providers.server.compile import compile_published

        try:
            provider = self.server_provider(desired.environment)
            try:
                entries = provider.plan(compile_published(desired))
            finally:
                provider.close()
        except HonuaError as exc:
            return (), f"publish dry run failed: {exc.message}"
        return tuple(ServerEntry(action=e.action, kind=e.kind, name=e.collection, message=e.message)
                     for e in entries), None

    # ------------------------------------------------------------------ plan

    def _request(self, desired: DesiredState, *, target: tuple[str, ...] = (), refresh_only: bool = False,
                 provenance: Provenance | None = None) -> Any:
        from datetime import UTC, datetime

        from honua_plan.plan.builder import PlanRequest
        from honua_plan.plan.model import Provenance as Prov

        pg_dump = True
        if desired.migrations:  # only a migration takes a backup: no PATH search, no pg_config run without
            from honua_plan.providers.embedded.pgserver import pg_dump_available

            pg_dump = pg_dump_available()
        source_state = None
        pol = desired.policy
        if pol is not None and pol.spec.cooldown is not None:
            source_state = self.recorded(pol.spec.cooldown.sourceEnvironment, check=False)
        return PlanRequest(
            now=datetime.now(UTC),
            provenance=provenance or Prov(kind="ci" if _in_ci() else "human", actor=self.actor),
            target=target,
            refresh_only=refresh_only,
            config_commit=self.git_commit,
            source_state=source_state,
            pg_dump_available=pg_dump,
        )

    def plan(
        self,
        environment: str,
        *,
        target: tuple[str, ...] = (),
        refresh_only: bool = False,
        provenance: Provenance | None = None,
        log: StatementLog | None = None,
        refuse_unfinished: bool = False,
    ) -> Plan:
        """``refuse_unfinished``: raise when an apply is in flight or was interrupted (what
        ``plan``/``drift`` would compare against is then neither the old nor the new state)."""
        from honua_plan.providers.postgis.prefetch import Prefetch

        # the catalog and the state file are read while this process imports the plan
        # engine and loads the repository
        early = Prefetch(self.root, environment)
        from honua_plan.plan.builder import build_plan
        from honua_plan.plan.diff import desired_resources

        try:
            desired = self.desired(environment)
            recorded = self._recorded_early(environment, early)
            if refuse_unfinished:
                self.refuse_unfinished(environment, recorded)
            # what does not need the catalog, while the reader may still be at it
            req = self._request(desired, target=target, refresh_only=refresh_only, provenance=provenance)
            desired_resources(desired, recorded)  # memoized: the refresh and the diff use it
            rows = early.take_catalog(self.resolve_dsn(environment).dsn, log)
        except BaseException:
            early.discard()
            raise
        facts = None
        if rows is not None:
            from honua_plan.providers.postgis.facts import facts_from_rows

            facts = facts_from_rows(rows)
            del rows  # ~35 MB of row tuples at 10,000 tables: not part of the peak
        live = self.refresh(desired, recorded, log=log, facts=facts)
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
        return build_down_plan(desired, recorded, live, self._request(desired), migration_id)

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

    # ------------------------------------------------------------------ apply

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def _clean_partial_backups(self, environment: str) -> None:
        """Remove the files of a backup interrupted by a crash (call under the state lock)."""
        from honua_plan.apply.backup import clean_partial_backups

        removed = clean_partial_backups(self.state_dir / "backups", environment)
        if removed:
            self.console.print(f"Removed {len(removed)} incomplete backup file(s) left by an interrupted "
                               f"backup: {', '.join(p.name for p in removed)}")

    def check_fresh(self, plan: Plan, desired: DesiredState, recorded: StateDocument) -> DatabaseFacts | None:
        """Refuse a saved plan whose state, configuration or live objects changed since.

        Returns the live facts it read (None if the plan pins no table), for apply to reuse.
        """
        from honua_plan.errors import StalePlanError

        problems: list[str] = []
        if plan.environment != desired.environment:
            raise StalePlanError(f"the plan is for environment '{plan.environment}', not '{desired.environment}'")
        if recorded.serial and plan.state_serial and plan.state_lineage != recorded.lineage:
            problems.append(f"the state lineage changed ({plan.state_lineage[:8]} → {recorded.lineage[:8]})")
        elif plan.state_serial != recorded.serial:
            problems.append(f"the state changed since the plan was made (serial {plan.state_serial} → {recorded.serial})")
        if plan.config_hash != desired.config_hash:
            problems.append("the configuration files changed since the plan was made")
        facts = None
        if plan.fingerprints:
            facts = self.read_facts(desired.environment)
            for key, fp in sorted(plan.fingerprints.items()):
                t = facts.table(key.removeprefix("table."))
                now = t.shape_fingerprint if t else "absent"
                if now != fp:
                    problems.append(f"{key} changed in the database since the plan was made")
        if problems:
            raise StalePlanError("the saved plan is stale: " + "; ".join(problems),
                                 hint=f"make a new plan: honua plan --env {desired.environment} --out plan.json")
        return facts

    def _rederive(self, saved: Plan, desired: DesiredState, source: str) -> Plan:
        """Plan again from the configuration, the state and the database, and refuse a saved
        plan whose actions differ: the file is a record of what was reviewed, never the source
        of what runs."""
        from honua_plan.plan.approvals import compare_actions
        from honua_plan.plan.render import redacted

        derived = self.plan(desired.environment, target=tuple(saved.target), refresh_only=saved.refresh_only,
                            provenance=saved.provenance)
        compare_actions(saved.actions, redacted(derived).actions, source=source, environment=desired.environment)
        return derived

    def approve(self, plan_file: Path, by: str, comment: str = "", *, key: Path | None = None) -> Plan:
        """Record an approval of the plan file's digest, checked against the policy of its
        environment (groups, signatures) in this repository; ``key`` signs it."""
        import os

        from honua_plan.plan.approvals import check_approval
        from honua_plan.plan.signing import KEY_ENV
        from honua_plan.plan.store import approve

        if key is None and os.environ.get(KEY_ENV):
            key = Path(os.environ[KEY_ENV]).expanduser()

        def authorize(plan: Plan, approval: Any) -> None:
            check_approval(self.desired(plan.environment).policy, approval, self.root)

        return approve(plan_file, by, comment, key=key, authorize=authorize)

    def _services(self, desired: DesiredState, session: Any, dsn: str) -> Any:
        from honua_plan.apply.executor import Services
        from honua_plan.connections import default_datasource

        ds = desired.datasources.get(default_datasource(desired.project, desired.datasources) or "")
        svc = Services(session=session, dsn=dsn, state_dir=self.state_dir,
                       backup_lock_wait_s=ds.spec.lockTimeout if ds is not None else None,
                       backup_timeout_s=desired.policy.spec.backupTimeout if desired.policy else None)
        server = desired.server()
        if server is None or server.spec.type == "none":
            return svc
        from honua_plan.apply.publish import publish_callbacks

        publish, unpublish_to, read = publish_callbacks(self, desired, server)
        svc.publish, svc.unpublish_to, svc.read_published = publish, unpublish_to, read
        return svc

    def apply(
        self,
        environment: str,
        plan_file: Path | None = None,
        *,
        yes: bool = False,
        resume: bool = False,
        rollback: bool = False,
        allow_destroy: bool = False,
        assume_done: frozenset[str] = frozenset(),
        assume_not_done: frozenset[str] = frozenset(),
        confirm: Any = None,
        plan: Plan | None = None,
        command: str = "honua apply",
        show: bool = True,
        banner: bool = True,
    ) -> Any:
        """Plan (or load a saved plan), check it, and apply it under the state lock."""
        from honua_plan.apply.executor import Executor
        from honua_plan.errors import ApplyError, ApprovalRequired, PolicyError
        from honua_plan.plan.approvals import valid_approvers
        from honua_plan.plan.render import render_text
        from honua_plan.plan.store import load_plan, save_plan, verify_digest
        from honua_plan.providers.postgis.sqlexec import Session, connect

        desired = self.desired(environment)
        con = self.console
        backend = self.backend(environment)
        facts: DatabaseFacts | None = None  # read by the freshness check of a saved plan
        policy_checks: list[Any] = []
        with backend:
            recorded = backend.read()
            self.check_state(environment, backend, recorded)
            if recorded.pending is not None and not (resume or rollback):
                steps = recorded.pending.steps
                done = sum(1 for s in steps if s.status == "done")
                failed = [s.id for s in steps if s.status in ("running", "failed")]
                raise ApplyError(
                    f"a previous apply of {environment} did not finish (plan {recorded.pending.plan_id[:12]}, "
                    f"{done} of {len(steps)} steps done{', stopped at ' + failed[0] if failed else ''})",
                    hint=f"continue it with `honua apply --env {environment} --resume`, or undo it with "
                         f"`honua apply --env {environment} --rollback`",
                )
            if resume or rollback:
                if recorded.pending is None:
                    raise ApplyError(f"nothing to {'resume' if resume else 'roll back'}: no unfinished apply in {environment}")
                saved = self.state_dir / "plans" / f"{recorded.pending.plan_id}.json"
                plan = load_plan(saved)
                verify_digest(plan, source=str(saved))
                if resume:
                    plan = self._resumable(plan, desired, recorded)
            elif plan_file is not None:
                plan = load_plan(plan_file)
                verify_digest(plan, source=str(plan_file))
                facts = self.check_fresh(plan, desired, recorded)
                derived = self._rederive(plan, desired, str(plan_file))
                names, signed = valid_approvers(plan, desired.policy, self.root)
                # what the policy asks of the content now (a window is judged at apply time)
                required = max(plan.approvals_required, derived.approvals_required)
                if required > len(names):
                    raise ApprovalRequired(
                        f"the plan needs {required} approval(s)"
                        + (f" from {', '.join(derived.approvers)}" if derived.approvers else "")
                        + f", it has {len(names)}",
                        hint="record one with `honua approve PLAN --by NAME`")
                policy_checks = derived.policy
                if names:
                    con.ok(f"Approval verified (approved by: {', '.join(names)}{', signed' if signed else ''})")
            else:
                if plan is None:
                    plan = self.plan(environment)
                if show:
                    con.print(render_text(plan, colour=con.colour).rstrip("\n"))
                if plan.has_changes and plan.approvals_required and not plan.approved:
                    raise ApprovalRequired(
                        f"this plan needs {plan.approvals_required} approval(s)"
                        + (f" from {', '.join(plan.approvers)}" if plan.approvers else ""),
                        hint=f"save it with `honua plan --env {environment} --out plan.json`, approve it with "
                             f"`honua approve plan.json --by NAME`, then `honua apply --env {environment} plan.json`",
                    )
                if plan.has_changes and confirm is not None:
                    confirm("Continue?", yes)
                policy_checks = list(plan.policy)
            if not plan.has_changes and not (resume or rollback):
                con.print(f"No changes. The {environment} environment matches the configuration.")
                return None
            if not (resume or rollback):
                if plan_file is None and plan.approvals_required and not plan.approved:
                    raise ApprovalRequired(
                        f"the plan needs {plan.approvals_required} approval(s), it has {len(plan.approvals)}",
                        hint="record one with `honua approve PLAN --by NAME`",
                    )
                failed_policy = [c for c in policy_checks if c.status == "fail"]
                if failed_policy:
                    raise PolicyError("policy forbids this apply: " + "; ".join(c.message for c in failed_policy))
            resolved = self.resolve_dsn(environment)
            with backend.lock(command) as writer, connect(resolved.dsn) as conn:
                fresh = writer.read()
                if not (resume or rollback) and (fresh.serial != plan.state_serial or (
                        fresh.serial and fresh.lineage != plan.state_lineage)):
                    from honua_plan.errors import StalePlanError

                    raise StalePlanError(f"the state changed while planning (serial {plan.state_serial} → {fresh.serial})")
                self._clean_partial_backups(environment)
                save_plan(plan, self.state_dir / "plans" / f"{plan.id}.json")
                session = Session(conn)
                executor = Executor(plan, desired, writer, self._services(desired, session, resolved.dsn), con,
                                    actor=self.actor, command=command,
                                    reload_desired=lambda: self._reload_desired(environment), facts=facts,
                                    allow_destroy=allow_destroy, assume_done=assume_done,
                                    assume_not_done=assume_not_done)
                if rollback:
                    return executor.rollback_all()
                if banner:
                    con.print(f"Applying changes to {environment} environment...")
                return executor.run(resume=resume)

    # ------------------------------------------------------------------ served layers

    def server_provider(self, environment: str) -> Any:
        from honua_plan.providers.server import open_server

        desired = self.desired(environment)
        return open_server(desired.server(), root=self.root, environment=environment,
                           dsn_resolver=lambda *_: self.resolve_dsn(environment).dsn)

    def serve(self, environment: str, *, port: int | None = None, stop: bool = False, foreground: bool = True) -> Any:
        """Run (or stop) the local OGC API server of an environment."""
        from honua_plan.errors import ServerError

        provider = self.server_provider(environment)
        if port is not None:
            provider.port_override = port
        if stop:
            return provider.stop() if hasattr(provider, "stop") else False
        if not hasattr(provider, "serve_foreground"):
            raise ServerError(f"the {environment} server is not a local pygeoapi: nothing to serve here")
        if provider.read() is None:
            raise ServerError(f"nothing is published for {environment} yet",
                              hint=f"run `honua apply --env {environment}` (or `honua dev apply`) first")
        if foreground:
            return provider.serve_foreground()
        if not provider.is_running():
            provider.start()
        return provider

    def test_layers(self, environment: str, layer: str | None = None) -> Any:
        """``honua test``; the result is recorded in the state's event log (a ``test`` event):
        promotion and the cooldown policy count healthy time from it."""
        from honua_plan.checks.layertest import test_layers
        from honua_plan.errors import StateLockedError
        from honua_plan.state.model import Event

        reports = test_layers(self, environment, layer)
        failed = sorted({f"{r.layer}: {c.name}" for r in reports for c in r.checks if not c.ok})
        # a failure is a failure; a pass proves the environment healthy only when every layer ran
        ok: bool | None = False if failed else (True if reports and layer is None else None)
        message = ("layer tests failed: " + "; ".join(failed) if failed else
                   f"layer tests passed ({', '.join(sorted(r.layer for r in reports)) or 'no layer'})")
        event = Event(kind="test", actor=self.actor, message=message,
                      details={"ok": ok, "layers": sorted(r.layer for r in reports), "failed": failed})
        try:
            with self.backend(environment) as backend:
                if backend.exists():  # never applied: nothing to be healthy yet, no state to create
                    with backend.lock("honua test", timeout=5) as writer:
                        writer.append_event(event)
        except StateLockedError as exc:
            self.console.warn(f"test result not recorded in the {environment} state: {exc.message}")
        return reports

    def dev_apply(self, environment: str, *, confirm: Any = None, yes: bool = True) -> Any:
        """The seed's local loop: validate, apply layers/services (+ what they need), then test them."""
        import time

        from honua_plan.checks import ogc as ogctest
        from honua_plan.errors import HonuaError

        con = self.console
        con.print(f"Applying changes to {environment} environment...")
        t0 = time.perf_counter()
        self.validate(environment)
        con.ok("Validated metadata syntax", time.perf_counter() - t0)
        desired = self.desired(environment)
        ds_name = desired.project.spec.defaultDatasource or next(iter(desired.datasources))
        t0 = time.perf_counter()
        facts = self.read_facts(environment)
        con.ok(f"Connected to datasource: {ds_name}", time.perf_counter() - t0)
        full = self.plan(environment)
        targets = tuple(a.address for a in full.actions if a.kind in ("layer", "service", "server", "validation",
                                                                       "datasource"))
        plan = self.plan(environment, target=targets) if targets else None
        skipped = [a.address for a in full.actions if a.kind == "migration"
                   and (plan is None or a.address not in {b.address for b in plan.actions})]
        result = None
        if plan is not None and plan.has_changes:
            result = self.apply(environment, plan=plan, yes=yes, confirm=confirm, show=False, banner=False,
                                command="honua dev apply")
        else:
            con.ok("Layers and services already up to date")
        for address in skipped:
            mid = address.removeprefix("migration.")
            con.print(f"  Pending migration {mid} was not applied: `honua deploy migration {mid} --environment {environment}`")
        provider = self.server_provider(environment)
        try:
            if getattr(provider, "manages_publication", True) and hasattr(provider, "is_running") \
                    and provider.read() is not None and not provider.is_running():
                provider.start()
            con.print("")
            con.print("Testing layer...")
            variables = desired.template_vars()
            from honua_plan.apply.validate import run_check
            from honua_plan.plan.builder import _check_record
            from honua_plan.providers.postgis.sqlexec import Session, connect

            ok = True
            with connect(self.resolve_dsn(environment).dsn) as conn:
                session = Session(conn)
                for layer in desired.layers.values():
                    results = [run_check(session, _check_record(c, "health", variables))
                               for c in layer.spec.validation.healthChecks]
                    failed = [r for r in results if not r.ok]
                    if failed:
                        ok = False
                        con.fail(f"Health check failed: {failed[0].name}: {failed[0].message}")
                    elif results:
                        con.ok("Health check passed")
            if getattr(provider, "manages_publication", True) and provider.ogc_url:
                url = provider.ogc_url
                for layer in desired.layers.values():
                    cid = layer.collection_id
                    con.ok(f"OGC endpoint: {url.rstrip('/')}/collections/{cid}")
                    limit = min(layer.spec.ogc.itemLimit or 1000, 10_000)
                    try:
                        n = ogctest.sample_query(url, cid, limit)
                        con.ok(f"Sample query returned {n} features")
                    except HonuaError as exc:
                        ok = False
                        con.fail(exc.message)
        finally:
            provider.close()
        _ = facts
        return result, ok

    def _resumable(self, plan: Plan, desired: DesiredState, recorded: StateDocument) -> Plan:
        """--resume re-runs the saved plan. A migration edited since (to fix the step that
        failed) takes its new steps, as long as the steps already done are unchanged."""
        from honua_plan.errors import StalePlanError
        from honua_plan.plan.builder import LiveState, _migration_draft
        from honua_plan.plan.diff import MigrationChange, migration_checksum

        assert recorded.pending is not None
        actions = []
        facts = None
        for action in plan.actions:
            if action.kind != "migration" or action.action != "apply":
                actions.append(action)
                continue
            m = desired.migration(action.address.removeprefix("migration."))
            if m is None:
                raise StalePlanError(f"{action.address} no longer exists in migrations/: use --rollback")
            if facts is None:
                facts = self.read_facts(desired.environment)
            draft = _migration_draft(desired, MigrationChange(m, migration_checksum(m), "resume"),
                                     LiveState(facts=facts), set())
            old = [(o.kind, o.sql, o.path, o.changes) for o in action.operations]
            new = [(o.kind, o.sql, o.path, o.changes) for o in draft.operations]
            if old == new:
                actions.append(action)
                continue
            try:
                done = recorded.pending.step(action.address).details.get("ops_done", [])
            except KeyError:
                done = []
            if any(i >= len(new) or old[i] != new[i] for i in done):
                raise StalePlanError(
                    f"migration {m.metadata.id} changed in steps that already ran: --resume cannot continue it",
                    hint=f"undo the interrupted apply with `honua apply --env {desired.environment} --rollback`, "
                         "then apply again")
            self.console.warn(f"migration {m.metadata.id} changed since the interrupted apply: "
                              "resuming with its new steps")
            actions.append(action.model_copy(update={
                "operations": draft.operations, "rollback": draft.rollback, "checks": draft.checks,
                "rollback_checks": draft.rollback_checks}))
        return plan.model_copy(update={"actions": actions})

    # ------------------------------------------------------------------ promotion

    def promote(self, src: str, dst: str, *, migration: str | None = None, auto_validate: bool = False,
                yes: bool = False, confirm: Any = None, allow_untested: bool = False) -> Any:
        """Compare ``src`` with ``dst``, carry the layers and services over, plan and apply ``dst``.

        Everything is computed with the target's new files in memory (a loader overlay):
        nothing is written before the confirmation, so "no" leaves every file as it was."""
        import time

        from honua_plan.checks.health import assess
        from honua_plan.config.expected import format_duration
        from honua_plan.config.loader import load
        from honua_plan.errors import ApprovalRequired, PlanError
        from honua_plan.providers.metadata import write_atomic
        from honua_plan.workflows.promote import compare, pending_deployments

        con = self.console
        started = time.perf_counter()
        envs = self.load()[0].project.spec.environments
        if src == dst:
            raise UsageError("source and target environment are the same")
        if envs.index(dst) < envs.index(src):
            con.warn(f"{dst} comes before {src} in the promotion order ({' → '.join(envs)})")
        src_d, dst_d = self.desired(src), self.desired(dst)
        src_state, dst_state = self.recorded(src), self.recorded(dst)
        con.print("Comparing environments...")
        con.print("")
        cmp = compare(self.root, src_d, dst_d, src_state, dst_state, migration=migration)
        if cmp.problems:
            raise PlanError("cannot promote: " + "; ".join(cmp.problems))
        con.print("Changes to be promoted:")
        con.rule()
        con.print("Metadata Changes:")
        shown = [f for f in cmp.files if f.change != "unchanged"]
        for f in shown:
            sym = {"new": "+", "modified": "~", "removed": "-"}[f.change]
            extra = " (kept: promotion never deletes)" if f.change == "removed" else ""
            con.print(f"  {sym} {f.path} ({f.change}){extra}")
        if not shown:
            con.print("  (none)")
        con.print("")
        con.print("Migrations:")
        for mid in cmp.migrations:
            m = dst_d.migration(mid)
            con.print(f"  + {m.stem if m else mid} (new)")
        if not cmp.migrations:
            con.print("  (none)")
        deployments = pending_deployments(src_d, dst_d, src_state, dst_state) if migration is None else []
        if deployments:
            con.print("")
            con.print(f"Applied in {src}, not yet in {dst}:")
            for address in deployments:
                con.print(f"  + {address}")
        con.print("")
        con.print("Configuration Diff:")
        con.print(f"  {src} → {dst}")
        new = sum(1 for f in cmp.files if f.change == "new") + len(cmp.migrations)
        modified = sum(1 for f in cmp.files if f.change == "modified")
        con.print(f"  - {new} new resource(s)")
        con.print(f"  - {modified} modified resource(s)")
        con.print(f"  - {len(cmp.removed)} removal(s)")
        if not cmp.changed and not cmp.migrations and not deployments:
            con.print("")
            con.print(f"Nothing to promote: {dst} already has what {src} has.")
            return None

        con.print("")
        con.print("Safety Checks:")
        problems: list[str] = []

        def check(ok: bool, text: str, bad: str) -> None:
            (con.ok if ok else con.fail)(text if ok else bad, indent=2)
            if not ok:
                problems.append(bad)

        if auto_validate:  # first: its result is recorded and counts in the health check below
            reports = self.test_layers(src)
            failed = [c.name for r in reports for c in r.checks if not c.ok]
            check(not failed, f"All layer tests passed in {src}", f"layer tests failed in {src}: {', '.join(failed)}")
            src_state = self.recorded(src)
        check(src_state.pending is None, f"No unfinished apply in {src}", f"{src} has an unfinished apply")
        health = assess(src_state)
        if health.status == "unknown" and allow_untested:
            con.warn(f"{health.describe(src)} (--allow-untested)", indent=2)
        else:
            check(health.status == "healthy", health.describe(src),
                  health.describe(src) + (f" (run `honua test --env {src}`, or --auto-validate)"
                                          if health.status == "unknown" else ""))
        src_drift = self.plan(src, refresh_only=True).drift
        check(not src_drift, f"No drift in {src}", f"{src} drifted: {src_drift[0].summary if src_drift else ''}")
        if problems:
            raise PlanError(f"promotion {src} → {dst} stopped by its safety checks", hint="; ".join(problems))

        # the target's new files, in memory: the plan reads them, nothing is written yet
        overlay = {f"environments/{dst}/{f.kind}/{f.name}": (f.source_text or "").encode() for f in cmp.changed}
        written = self._desired.pop(dst, None)
        try:
            dst_d = load(self.root, dst, overlay=overlay)[0]
            _exempt_names(dst_d)
            self._desired[dst] = dst_d
            # what was proven in the source: its changed files, its deployments, its migrations
            targets = {a for a in [*dst_d.layers, *(f"service.{s}" for s in dst_d.services)]
                       if (src_map := dst_d.source(a)) is not None and src_map.path in overlay}
            targets |= set(deployments) | {f"migration.{m}" for m in cmp.migrations}
            if targets and migration is None:  # the shared provider settings travel with them
                targets |= {f"datasource.{n}" for n in dst_d.datasources} | {f"server.{n}" for n in dst_d.servers}
            plan = self.plan(dst, target=tuple(sorted(targets)))
        finally:
            self._desired.pop(dst, None)
            if written is not None:
                self._desired[dst] = written
        breaking = [f for a in plan.actions for f in a.findings if f.code == "SVC101"]
        check(not breaking, "No breaking changes", f"breaking change: {breaking[0].message if breaking else ''}")
        con.print("")
        policy_name = f"{dst}-policy.yaml" if dst_d.policy else "no policy"
        con.print(f"Policy Check ({policy_name}):")
        for p in plan.policy:
            mark = {"pass": "✓", "fail": "✗", "warn": "⚠", "skip": "-"}[p.status]
            con.print(f"  {mark} {p.message}")
        con.print("")
        con.print("Deployment Plan:")
        con.rule()
        backup_tables = sorted({t for a in plan.actions for t in a.backup_tables})
        con.print(f"Phase 1: Backup (est. {format_duration(max(1.0, 0.5 * len(backup_tables)))})")
        con.print(f"  - Database snapshot of {', '.join(backup_tables)}" if backup_tables else "  - No table touched: no database snapshot")
        con.print(f"  - Metadata backup (state serial {dst_state.serial}, git {self.git_commit or 'working tree'})")
        con.print(f"Phase 2: Apply (est. {format_duration(plan.estimated_s)})")
        for a in plan.actions:
            con.print(f"  - {a.action} {a.address}")
        checks = sum(len(a.checks) for a in plan.actions)
        con.print(f"Phase 3: Validate ({checks} check(s))")
        con.print(f"Total estimated time: {format_duration(plan.estimated_s + 2)}")
        con.print(f"Rollback available: {'Yes (automatic on failure)' if any(a.automatic_rollback for a in plan.actions) or not any(a.kind == 'migration' for a in plan.actions) else 'Partial'}")
        needs_approval = bool(plan.approvals_required and not plan.approved)
        if confirm is not None:
            what = f"Write the {dst} files and save the plan for approval?" if needs_approval and overlay else (
                "Save the plan for approval?" if needs_approval else "Proceed with promotion?")
            confirm(what, yes)
        for rel, data in overlay.items():  # confirmed: now the target's files change
            write_atomic(self.root / rel, data)
        if overlay:
            self._reload_desired(dst)
        if needs_approval:
            from honua_plan.plan.store import save_plan

            path = self.state_dir / "plans" / f"promote-{src}-{dst}-{plan.id[:8]}.json"
            save_plan(plan, path)
            rel_plan = path.relative_to(self.root) if path.is_relative_to(self.root) else path
            files = f"the {dst} files were updated ({', '.join(sorted(overlay))}) and " if overlay else ""
            raise ApprovalRequired(
                f"the promotion to {dst} needs {plan.approvals_required} approval(s)"
                + (f" from {', '.join(plan.approvers)}" if plan.approvers else "")
                + f"; {files}the plan was saved to {rel_plan}",
                hint=f"honua approve {rel_plan} --by NAME && honua apply --env {dst} {rel_plan}",
            )
        con.print("")
        con.print(f"Starting promotion {src} → {dst}")
        result = self.apply(dst, plan=plan, yes=True, show=False, banner=False, command="honua promote")
        con.print("")
        con.print(f"Promotion completed successfully! ({format_duration(time.perf_counter() - started)})")
        return result

    # ------------------------------------------------------------------ recovery

    def recover(self, environment: str, *, backup_id: str | None = None, latest: bool = False,
                last_deployment: bool = False, commit: str | None = None, include_shared: bool = False,
                yes: bool = False, confirm: Any = None, reason: str = "") -> Any:
        """Disaster recovery: restore a point in time (a backup's data and its commit's metadata)."""
        from honua_plan.workflows.recover import recover

        return recover(self, environment, backup_id=backup_id, latest=latest, deployment=last_deployment,
                       commit=commit, include_shared=include_shared, yes=yes, confirm=confirm, reason=reason)

    def backup_create(self, environment: str) -> Any:
        """``honua backup create``: the environment's tables, their contents, its metadata and commit."""
        from honua_plan.workflows.recover import create_backup

        return create_backup(self, environment)

    def _reload_desired(self, environment: str) -> DesiredState:
        self._desired.pop(environment, None)
        return self.desired(environment)

    # ------------------------------------------------------------------ scaffolding

    def init(self, target: Path | str, *, force: bool = False) -> list[Path]:
        from honua_plan.config.scaffold import scaffold

        return scaffold(Path(target), force=force)

    def schema_export(self, out: Path | str | None = None) -> list[Path]:
        from honua_plan.config.schemas import export

        return export(Path(out) if out else self.root / "schemas")


def _exempt_names(desired: DesiredState) -> None:
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
