"""The executor: walks a plan's actions in order and makes them so.

The module and its :class:`Executor` are one unit: every method reads or writes the one
journal (the state document under the apply's lock) in the order its invariants need
(written before each mutation, read back by resume and rollback); split, the parts would
share that writer and that order without a boundary between them. The providers run the
operations themselves (:mod:`honua_plan.providers.registry`).

Rules it keeps (docs/architecture.md, "Apply, state, rollback"):

* it runs under the state lock, given only the writer;
* every mutating step is journaled (``pending`` in the state document) *before* it
  runs and marked done after; state is persisted after every step, so a crash at
  any point leaves a valid state that ``apply --resume`` or ``--rollback`` resolves;
* a failed step, validation or health check runs the rollback operations of the
  action (when its migration says ``rollback.automatic``), restores edited metadata
  files byte for byte from the journal, validates the rollback and writes an incident
  report; irreversible operations are never rolled back automatically;
* the console output mirrors what the plan showed: the same operations, in order.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from honua_plan.apply.deployed import describe_backup, edited_details
from honua_plan.console import Console, format_duration
from honua_plan.errors import ApplyError, HonuaError, ValidationFailed
from honua_plan.plan.model import Action, CheckRecord, Operation, Plan
from honua_plan.secrets import redact
from honua_plan.state.model import (
    JournalRecord,
    JournalStep,
    MigrationRecord,
    ResourceRecord,
    StateDocument,
    utcnow,
)

if TYPE_CHECKING:
    from honua_plan.apply.backupstore import BackupStore
    from honua_plan.config.desired import DesiredState
    from honua_plan.providers.postgis.sqlexec import Session
    from honua_plan.state.base import StateWriter
    from honua_plan.state.model import BackupRecord

_GERUNDS = {"create": "Creating", "analyze": "Analyzing", "update": "Updating", "drop": "Dropping",
            "revert": "Reverting", "add": "Adding", "remove": "Removing", "reload": "Reloading",
            "publish": "Publishing", "alter": "Altering", "insert": "Inserting", "delete": "Deleting",
            "restore": "Restoring", "rename": "Renaming", "set": "Setting", "run": "Running",
            "load": "Loading", "backfill": "Backfilling", "vacuum": "Vacuuming", "fix": "Fixing",
            "health": "Checking health"}


def gerund(name: str) -> str:
    """``Create spatial index`` → ``Creating spatial index`` (the seed's progress lines)."""
    head, _, rest = name.partition(" ")
    g = _GERUNDS.get(head.lower())
    return f"{g} {rest}".strip() if g else name


@dataclass
class Outcome:
    """What happened to one action."""

    address: str
    status: str  # done, failed, rolled_back, skipped
    seconds: float = 0.0
    message: str = ""


@dataclass
class ApplyResult:
    plan_id: str
    environment: str
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0
    serial: int = 0
    incident_report: Path | None = None

    @property
    def ok(self) -> bool:
        return all(o.status in ("done", "skipped") for o in self.outcomes)


class StepFailed(Exception):
    """Internal: an action failed; ``trigger`` names the rollback trigger."""

    def __init__(self, message: str, trigger: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.trigger = trigger
        self.detail = detail


@dataclass
class Services:
    """The I/O the executor needs, injected so tests and dry runs can swap parts."""

    session: Session
    dsn: str
    state_dir: Path
    backup_lock_wait_s: float | None = None  # the datasource's lockTimeout
    backup_timeout_s: float | None = None  # the policy's backupTimeout
    publish: Callable[[DesiredState, StateDocument], None] | None = None  # publish what the state records, reload, health
    unpublish_to: Callable[[dict[str, Any] | None], None] | None = None  # restore a published doc
    read_published: Callable[[], dict[str, Any] | None] | None = None
    keep: Callable[[Path], None] | None = None  # a durable file written under state_dir, kept with the state
    backup_store: BackupStore | None = None  # where backups are kept beyond this machine (None: the state folder)


class Executor:
    """Runs one plan under the state lock; one unit with its journal (see the module docstring)."""

    def __init__(
        self,
        plan: Plan,
        desired: DesiredState,
        writer: StateWriter,
        services: Services,
        console: Console,
        *,
        actor: str,
        command: str = "honua apply",
        reload_desired: Callable[[], DesiredState] | None = None,
        facts: Any = None,
        allow_destroy: bool = False,
        assume_done: frozenset[str] = frozenset(),
        assume_not_done: frozenset[str] = frozenset(),
    ) -> None:
        """``facts``: live facts already read for this apply (the saved plan's freshness check).
        ``allow_destroy``: a rollback may run a down step that destroys data (after a backup);
        ``assume_done``/``assume_not_done``: the user's answer for steps resume cannot tell."""
        self.plan = plan
        self.desired = desired
        self.writer = writer
        self.svc = services
        self.con = console
        self.actor = actor
        self.command = command
        self.reload_desired = reload_desired
        self.doc = writer.read()
        self.edited_files: dict[str, bytes] = {}
        self._facts_cache: Any = facts
        self.allow_destroy = allow_destroy
        self.assume_done = assume_done
        self.assume_not_done = assume_not_done
        steps = {f"{a.address}#{i}" for a in plan.actions for i in range(1, len(a.operations) + 1)}
        unknown = sorted((assume_done | assume_not_done) - steps)
        if unknown:  # a typo must not silently leave the question unanswered
            raise ApplyError(f"--assume-done/--assume-not-done name no step of this apply: {', '.join(unknown)}",
                             hint="steps are written ADDRESS#N, as the refusal of --resume printed them")
        self._logged: dict[str, dict[str, Any]] = {}
        self.last_rollback_ok = True
        self.incident: str | None = None  # the id of the incident this apply logged (a rollback's)

    @property
    def apply_id(self) -> str:
        """This apply in ``honua_plan.step_log``: its plan and the moment its journal began."""
        assert self.doc.pending is not None
        return f"{self.doc.pending.plan_id[:16]}@{self.doc.pending.started_at.isoformat()}"

    def _has_sql(self) -> bool:
        return any(op.kind == "sql" for a in self.plan.actions for op in (*a.operations, *a.rollback))

    # ------------------------------------------------------------------ state

    def _save(self, doc: StateDocument) -> None:
        self.doc = self.writer.write(doc, expected_serial=self.doc.serial)

    def _journal(self, step_id: str, status: str, **kw: Any) -> None:
        assert self.doc.pending is not None
        journal = self.doc.pending.with_step(step_id, status, **kw)  # type: ignore[arg-type]
        self._save(self.doc.with_pending(journal))

    def begin(self, *, resume: bool = False) -> None:
        """Write the journal of this apply (all steps pending) before anything runs."""
        if resume and self.doc.pending is not None and self.doc.pending.plan_id == self.plan.id:
            return
        steps = [JournalStep(id=a.address, address=a.address, action=a.action, description=a.reason)
                 for a in self.plan.actions]
        journal = JournalRecord(plan_id=self.plan.id, actor=self.actor, command=self.command, steps=steps)
        doc = self.doc
        for mv in self.plan.moved:  # honua.yaml moved: in the same write as the journal
            if mv.from_address in doc.resources and mv.to_address not in doc.resources:
                doc = doc.with_moved(mv.from_address, mv.to_address).record_event(
                    "state-mv", f"{mv.from_address} → {mv.to_address} (moved: in honua.yaml)", actor=self.actor,
                    details={"from": mv.from_address, "to": mv.to_address})
        self._save(doc.with_pending(journal).record_event(
            "apply-start", f"apply of plan {self.plan.id[:12]} started ({len(steps)} steps)", actor=self.actor,
            details=self._database()))

    # ------------------------------------------------------------------ run

    def run(self, *, resume: bool = False) -> ApplyResult:
        """Apply every action in order. A failed action skips what depends on it (like
        Terraform); independent actions still run. Raises at the end if anything failed."""
        started = time.perf_counter()
        result = ApplyResult(self.plan.id, self.plan.environment)
        self.begin(resume=resume)
        assert self.doc.pending is not None
        if self._has_sql():
            from honua_plan.providers.postgis.effects import completed, ensure_step_log

            ensure_step_log(self.svc.session)
            if resume:  # what the database says this apply committed, whatever the journal says
                self._logged = completed(self.svc.session, self.apply_id)
        if resume:  # files edited before the interruption: recorded again when the apply finishes
            for st in self.doc.pending.steps:
                for key, value in st.details.items():
                    if key.startswith("file:"):
                        self.edited_files.setdefault(key.removeprefix("file:"), base64.b64decode(value))
        done = {s.id for s in self.doc.pending.steps if s.status == "done"}
        self._compact_output()
        try:
            return self._run(result, done, started)
        finally:
            self.con.end_compact()

    def _compact_output(self) -> None:
        """A long apply prints a few ✓ per phase, a progress bar on a terminal, and a summary."""
        actions = self.plan.actions
        if len(actions) <= COMPACT_OVER:
            return
        layers = sum(1 for a in actions if a.kind == "layer" and a.action in ("create", "update", "replace"))
        self.con.compact({
            "resources": ("resources recorded", sum(1 for a in actions if _recordable(a))),
            "verify": ("layers verified against their tables (2 checks each)", 2 * layers),
            "checks": ("health checks", sum(len(a.checks) for a in actions if a.kind == "validation")),
        })

    def _run(self, result: ApplyResult, done: set[str], started: float) -> ApplyResult:
        assert self.doc.pending is not None
        failed: dict[str, str] = {}
        batch: list[Action] = []
        for action in [*self.plan.actions, None]:
            # consecutive metadata-only records are journaled and persisted together:
            # recording them again after a crash is harmless, and 1,000 layers must not
            # mean 3,000 state writes
            if action is not None and _recordable(action) and action.address not in done and not any(
                    d in failed for d in action.depends_on):
                batch.append(action)
                continue
            if batch:
                self._resource_batch(batch, result, failed)
                batch = []
            if action is None:
                break
            if action.address in done:
                result.outcomes.append(Outcome(action.address, "skipped", message="already done"))
                continue
            if self._blocked(action, failed, result):
                continue
            if action.action == "reload" and self._nothing_to_serve(action, result, done):
                msg = "no step that changes what the server serves completed"
                self.con.print(f"– Services not reloaded: {msg}")
                self._journal(action.address, "done")
                result.outcomes.append(Outcome(action.address, "skipped", message=msg))
                continue
            t0 = time.perf_counter()
            self._journal(action.address, "running")
            try:
                self._dispatch(action)
            except StepFailed as exc:
                outcome = self._handle_failure(action, exc, result, t0)
                result.outcomes.append(outcome)
                failed[action.address] = exc.message
                continue
            except HonuaError as exc:
                self._journal(action.address, "failed", error=exc.message)
                raise
            self._journal(action.address, "done")
            _kill_point(action.address, "after-journal")
            result.outcomes.append(Outcome(action.address, "done", time.perf_counter() - t0))
        result.seconds = time.perf_counter() - started
        unresolved = [o for o in result.outcomes if o.status == "failed"]
        rolled_back = [o for o in result.outcomes if o.status == "rolled_back"]
        if unresolved:
            # leave the journal: the next apply offers --resume / --rollback; record the
            # tables as they are now, so what this apply did is not reported as drift
            self._save(self._record_tables(self.doc))
            self._save(self.doc.record_event("apply-failed", f"{unresolved[0].address} failed: {unresolved[0].message}",
                                             actor=self.actor))
            result.serial = self.doc.serial
            raise ApplyError(
                f"{unresolved[0].address} failed: {unresolved[0].message}",
                hint=f"state is saved; fix the cause in the database or its environment and run `honua apply --env "
                     f"{self.plan.environment} --resume` (it re-runs the saved plan), or undo what this apply did "
                     f"with `honua apply --env {self.plan.environment} --rollback` and apply again",
            )
        self._finish(result, kind="apply" if not rolled_back else "rollback",
                     message=f"applied plan {self.plan.id[:12]}" + (
                         f"; rolled back {', '.join(o.address for o in rolled_back)}" if rolled_back else ""))
        if rolled_back:
            first = rolled_back[0]
            raise ValidationFailed(
                f"{first.address} was rolled back: {first.message}"
                + (f" ({len(result.outcomes) - len(rolled_back)} other action(s) processed)" if len(result.outcomes) > 1 else ""),
                hint=f"incident report: {result.incident_report}" if result.incident_report else "",
            )
        return result

    def rollback_all(self) -> ApplyResult:
        """Undo what an unfinished apply did, newest first (``honua apply --rollback``)."""
        started = time.perf_counter()
        result = ApplyResult(self.plan.id, self.plan.environment)
        assert self.doc.pending is not None
        touched = {s.id for s in self.doc.pending.steps if s.status in ("done", "running", "failed")}
        if self._has_sql():
            from honua_plan.providers.postgis.effects import ensure_step_log

            ensure_step_log(self.svc.session)
        self.con.print(f"Rolling back the unfinished apply of {self.plan.environment} (plan {self.plan.id[:12]})...")
        for action in reversed(self.plan.actions):
            if action.address not in touched:
                continue
            t0 = time.perf_counter()
            if action.kind == "migration":
                report = self.rollback_action(action, reason="rollback requested after an interrupted apply")
                if not self.last_rollback_ok:
                    # the journal stays: a second --rollback (with --allow-destroy) continues here
                    self._save(self.doc.record_event(
                        "rollback-failed", f"rollback of plan {self.plan.id[:12]} stopped at {action.address}",
                        actor=self.actor))
                    raise ApplyError(
                        f"the rollback stopped at {action.address}; what was rolled back before it stays rolled back",
                        hint=(f"incident report: {report}; " if report else "")
                        + f"see above; to continue: `honua apply --env {self.plan.environment} --rollback"
                          " --allow-destroy` (a backup is taken first)")
            elif action.action in ("reload", "validate"):
                self._rollback_publication(action)
            else:
                self._rollback_resource(action)
            result.outcomes.append(Outcome(action.address, "rolled_back", time.perf_counter() - t0))
        result.seconds = time.perf_counter() - started
        self._finish(result, kind="rollback", message=f"rolled back plan {self.plan.id[:12]}")
        return result

    def _rollback_resource(self, action: Action) -> None:
        assert self.doc.pending is not None
        prev = self.doc.pending.step(action.address).details.get("previous", "missing")
        if prev == "missing":
            return  # the step never wrote its record
        doc = self.doc.with_resource(ResourceRecord.model_validate(prev)) if prev else self.doc.without_resource(action.address)
        self._save(doc)
        self.con.ok(f"Restored {action.address}")

    def _finish(self, result: ApplyResult, *, kind: str, message: str) -> None:
        """Record tables and edited layers, clear the journal, log the event."""
        doc = self.doc
        if self.reload_desired is not None and self.edited_files:
            # metadata steps edited layer files: record what the files say now
            from honua_plan.plan.diff import desired_resources

            self.desired = self.reload_desired()
            current = desired_resources(self.desired)
            for address, (kind_, attrs) in current.items():
                rec = doc.resources.get(address)
                src = self.desired.source(address)
                if rec is not None and src is not None and src.path in self.edited_files:
                    doc = doc.with_resource(ResourceRecord.create(address, kind_, attrs, serial=doc.next_serial,
                                                                  source_path=src.path, applied_by=self.actor))
        doc = self._record_tables(doc)
        doc = doc.with_pending(None).with_config_commit(self.plan.config_commit).record_event(
            kind, message, actor=self.actor,
            details={"plan_id": self.plan.id, "commit": self.plan.config_commit, "seconds": round(result.seconds, 3),
                     "outcomes": {o.address: o.status for o in result.outcomes}, **self._database(),
                     **edited_details(self.desired.root, self.edited_files)})  # the files as deployed
        self._save(doc)
        result.serial = self.doc.serial

    def _database(self) -> dict[str, Any]:
        """The database this apply changes, for its events (host, port, dbname; no user, no password)."""
        db = self.plan.database
        return {"database": db.model_dump()} if db else {}

    def _record_tables(self, doc: StateDocument) -> StateDocument:
        """Remember the shape of every served or migrated table, for drift detection."""
        from honua_plan.plan.diff import table_address, table_attributes

        facts = self._facts()  # the facts read before (none if SQL ran since): one catalog read, not two
        self._facts_cache = None  # their last use: ~40 MB at 10,000 tables, not kept past this apply
        wanted = {lyr.spec.storage.qualified_table for lyr in self.desired.layers.values()}
        for a in self.plan.actions:
            for op in a.operations:
                wanted |= set(op.tables)
        wanted |= {k.removeprefix("table.") for k, r in doc.resources.items() if r.kind == "table"}
        records: list[ResourceRecord] = []
        removed: set[str] = set()
        for name in sorted(wanted):
            t = facts.table(name)
            address = f"table.{name}"
            if t is None:
                if address in doc.resources:
                    removed.add(address)
                continue
            attrs = table_attributes(t)
            rec = doc.resources.get(table_address(t))
            if rec is None or rec.attributes != attrs:
                records.append(ResourceRecord.create(table_address(t), "table", attrs,
                                                     serial=doc.next_serial, applied_by=self.actor))
        return doc.with_resources(records, frozenset(removed))

    # ------------------------------------------------------------------ dispatch (the apply visitor)

    def _dispatch(self, action: Action) -> None:
        if action.kind == "migration":
            self._migration(action)
        elif action.action == "reload":
            self._reload(action)
        elif action.action == "validate":
            self._health(action)
        elif action.kind in ("policy", "project"):  # nothing runs: the finished apply records the commit
            self.con.ok(f"{action.address}: {', '.join(action.changed_paths)} approved under the base's policy")
        else:
            self._resource(action)

    def _resource(self, action: Action, *, quiet: bool = False) -> None:
        doc = self._record(self.doc, action, quiet=quiet)
        # keep the previous record in the journal so a rollback can restore it
        prev = self.doc.resources.get(action.address)
        assert doc.pending is not None
        journal = doc.pending.with_step(action.address, "running", details={
            "previous": prev.model_dump(mode="json") if prev else None})
        self._save(doc.with_pending(journal))

    def _nothing_to_serve(self, action: Action, result: ApplyResult, done: set[str]) -> bool:
        """Whether a reload would serve nothing new: the plan had steps before it and none of
        them completed (a migration that failed or was rolled back entirely), and the server's
        own settings are unchanged. A plan whose only step is the reload (a hand-edited server
        configuration) still reloads."""
        if action.after is not None:
            return False
        before = [a.address for a in self.plan.actions[: self.plan.actions.index(action)]
                  if a.action not in ("reload", "validate")]
        if not before:
            return False
        completed = {o.address for o in result.outcomes if o.status == "done"} | done
        return not any(address in completed for address in before)

    def _blocked(self, action: Action, failed: dict[str, str], result: ApplyResult) -> bool:
        """Whether ``action`` depends on one that failed (then it is reported, not run)."""
        blocked = [d for d in action.depends_on if d in failed]
        if not blocked:
            return False
        msg = f"not applied: it depends on {', '.join(blocked)}, which did not apply"
        self.con.fail(f"{action.address} {msg}")
        failed[action.address] = msg
        result.outcomes.append(Outcome(action.address, "blocked", message=msg))
        return True

    def _resource_batch(self, batch: list[Action], result: ApplyResult, failed: dict[str, str]) -> None:
        """Record a run of metadata-only actions with two state writes instead of three each."""
        t0 = time.perf_counter()
        assert self.doc.pending is not None
        previous = {a.address: self.doc.resources.get(a.address) for a in batch}
        journal = _with_steps(self.doc.pending, {
            address: ("running", {"previous": rec.model_dump(mode="json") if rec is not None else None})
            for address, rec in previous.items()})
        self._save(self.doc.with_pending(journal))
        records: list[ResourceRecord] = []
        removed: set[str] = set()
        statuses: dict[str, tuple[str, dict[str, Any]]] = {}
        for action in batch:
            if self._blocked(action, failed, result):
                statuses[action.address] = ("pending", {})
                continue
            try:
                rec = self._recorded(action)
            except StepFailed as exc:
                self.con.fail(exc.message)
                failed[action.address] = exc.message
                result.outcomes.append(Outcome(action.address, "failed", message=exc.message))
                statuses[action.address] = ("failed", {})
                continue
            if rec is None:
                removed.add(action.address)
            else:
                records.append(rec)
            statuses[action.address] = ("done", {})
            result.outcomes.append(Outcome(action.address, "done", (time.perf_counter() - t0) / len(batch)))
        doc = self.doc.with_resources(records, frozenset(removed))
        assert doc.pending is not None
        self._save(doc.with_pending(_with_steps(doc.pending, statuses)))
        for action in batch:
            _kill_point(action.address, "after-journal")

    def _record(self, doc: StateDocument, action: Action, *, quiet: bool = False) -> StateDocument:
        """The document with ``action``'s resource recorded (or removed); layers verified first."""
        rec = self._recorded(action, quiet=quiet)
        return doc.without_resource(action.address) if rec is None else doc.with_resource(rec)

    def _recorded(self, action: Action, *, quiet: bool = False) -> ResourceRecord | None:
        """The record ``action`` leaves (None: removed); a layer is verified against the live table first."""
        name = action.address.split(".", 1)[1]
        if action.kind == "layer":
            name = name.split("::", 1)[-1]
        if action.action == "delete":
            if not quiet:
                self.con.ok(f"Removed {action.kind}: {name}", phase="resources")
            return None
        assert action.after is not None
        if action.kind == "layer" and not quiet:
            self._verify_layer(action)
        src = self.desired.source(action.address)
        if not quiet:
            self.con.ok(f"{'Created' if action.action == 'create' else 'Updated'} {action.kind}: {name}",
                        phase="resources")
        return ResourceRecord.create(action.address, action.kind, action.after, serial=self.doc.next_serial,
                                     source_path=src.path if src else None, applied_by=self.actor)

    def _facts(self) -> Any:
        """Live facts, read once and again only after SQL ran (one refresh, not one per layer)."""
        from honua_plan.providers.postgis import catalog as postgis

        if self._facts_cache is None:
            self._facts_cache = postgis.refresh(self.svc.session)
        return self._facts_cache

    def _verify_layer(self, action: Action) -> None:
        """Check the layer against its table as it is now (migrations of this apply ran)."""
        from honua_plan.plan.diff import check_layer

        layer = self.desired.layers.get(action.address)
        if layer is None:
            return
        facts = self._facts()
        st = layer.spec.storage
        table = facts.table(st.qualified_table)
        errors, _warnings, _ = check_layer(self.desired, layer, table, created_in_plan=False)
        if errors:
            raise StepFailed("; ".join(str(e) for e in errors), "step-failure")
        differs = _differs_from_simulation(self.plan, layer, table)
        if differs:
            raise StepFailed(f"{st.qualified_table} is not the table the plan was reviewed against (its "
                             f"simulation made it with {differs}): plan again", "step-failure")
        self.con.ok(f"Verified table exists: {st.table}", phase="verify")
        self.con.ok(f"Validated geometry column: {st.geometryColumn}", phase="verify")

    def _reload(self, action: Action) -> None:
        if self.svc.publish is None:
            self.con.ok("No GIS server to reload")
            return
        previous = self.svc.read_published() if self.svc.read_published else None
        assert self.doc.pending is not None
        self._save(self.doc.with_pending(self.doc.pending.with_step(
            action.address, "running", details={"previous_published": previous})))
        t0 = time.perf_counter()
        try:
            self.svc.publish(self.desired, self.doc)
        except HonuaError as exc:
            self.con.fail("Services reloaded", time.perf_counter() - t0)
            raise StepFailed(f"server reload or health check failed: {exc.message}", "health-check-failure") from None
        self.con.ok("Services reloaded", time.perf_counter() - t0)
        if action.after is not None:  # the server's own settings changed too: record them
            self._resource(action, quiet=True)

    def _health(self, action: Action) -> None:
        from honua_plan.checks.validate import run_check

        failed: list[str] = []
        for c in action.checks:
            r = run_check(self.svc.session, c)
            (self.con.ok if r.ok else self.con.fail)(_check_label(c, r, None), phase="checks")
            if not r.ok:
                failed.append(f"{c.name}: {r.message}")
        if failed:
            raise StepFailed("health check failed: " + "; ".join(failed), "health-check-failure")

    # ------------------------------------------------------------------ migrations

    def _migration(self, action: Action) -> None:
        from honua_plan.checks.validate import measure_query_ms, run_check

        mid = action.address.removeprefix("migration.")
        migration = self.desired.migration(mid)
        assert migration is not None
        con = self.con
        started_at = utcnow()
        t_start = time.perf_counter()
        down = action.action == "delete"
        con.print(f"{'Rolling back' if down else 'Deploying'} migration {mid} "
                  f"{'on' if down else 'to'} {self.plan.environment}...")
        if not down:
            self._preconditions(action, migration)
        if action.preconditions:
            con.ok("Pre-conditions verified")
        backup_id = self._backup(action, mid)

        # a performance check's "before" timing, for "Performance improved (250ms → 12ms)"
        before_ms: dict[str, float | None] = {}
        for c in action.checks:
            if c.type == "performance" and c.query:
                try:
                    before_ms[c.name] = measure_query_ms(self.svc.session, c.query)
                except HonuaError:
                    before_ms[c.name] = None

        con.print("")
        con.print("Executing:")
        from honua_plan.providers.postgis.effects import kill_point

        ops = action.operations
        done_ops: list[int] = self._done_ops(action.address)
        for i, op in enumerate(ops, 1):
            sid = f"{action.address}#{i}"
            if i - 1 in done_ops:
                con.ok(f"[{i}/{len(ops)}] {gerund(op.name)} (already done)", indent=2)
                continue
            known = self._known_done(action, i, op)
            if known is not None:
                con.ok(f"[{i}/{len(ops)}] {gerund(op.name)} ({known})", indent=2)
                done_ops.append(i - 1)
                self._mark_op(action.address, done_ops, i, self._logged.get(sid))
                continue
            self._journal_start(action, i, op)
            kill_point(sid, "before")
            try:
                with con.step(i, len(ops), gerund(op.name)):
                    eff = self._run_operation(action, i - 1, op, step_id=sid)
            except HonuaError as exc:
                self._record_migration(migration, action, "failed", started_at, t_start, backup_id, exc.message)
                raise StepFailed(exc.message if op.name in exc.message else f"step '{op.name}' failed: {exc.message}",
                                 "step-failure") from None
            if op.kind == "metadata" and op.path in self.edited_files:  # the dev loop edited it
                con.print(f"    commit {op.path}: this apply wrote the migration's metadata into it")
            elif op.kind == "metadata":  # rendered in the pull request: verified, nothing written
                con.ok(f"{op.path} already holds the migration's metadata", indent=4)
            if op.kind != "sql":
                kill_point(sid, "after-commit")
            done_ops.append(i - 1)
            self._mark_op(action.address, done_ops, i, eff)
            kill_point(sid, "after-journal")
            timeout = migration.spec.rollback.timeout
            if timeout and time.perf_counter() - t_start > timeout:
                raise StepFailed(f"migration exceeded its timeout of {format_duration(timeout)}", "timeout")

        if action.checks:
            con.print("")
            con.print("Validating:")
        failures: list[tuple[CheckRecord, Any]] = []
        for c in action.checks:
            r = run_check(self.svc.session, c)
            label = _rollback_label(c, r) if down else _check_label(c, r, before_ms.get(c.name))
            (con.ok if r.ok else con.fail)(label, indent=2)
            if not r.ok:
                failures.append((c, r))
        if failures:
            c, r = failures[0]
            kind = "Performance" if c.type == "performance" else "Validation"
            self._record_migration(migration, action, "failed", started_at, t_start, backup_id, r.message)
            named = "" if c.name.startswith(f"{c.type}: ") else f" ({c.name})"
            raise StepFailed(f"{kind} validation failed{named}: {r.message}", "validation-failure",
                             detail=getattr(r, "detail", "") or r.message)
        self._record_migration(migration, action, "rolled_back" if down else "applied", started_at, t_start,
                               backup_id, None)
        con.print("")
        con.print(f"Migration {mid} {'rolled back' if down else 'completed'} successfully on "
                  f"{self.plan.environment} ({format_duration(time.perf_counter() - t_start)})")

    def _done_ops(self, address: str) -> list[int]:
        assert self.doc.pending is not None
        try:
            return list(self.doc.pending.step(address).details.get("ops_done", []))
        except KeyError:
            return []

    def _mark_op(self, address: str, done: list[int], index: int | None = None,
                 effects: dict[str, Any] | None = None) -> None:
        """Journal step ``index`` (1-based) of ``address`` as done, with what it changed."""
        assert self.doc.pending is not None
        details: dict[str, Any] = {"ops_done": sorted(done)}
        if index is not None and effects is not None:
            previous = dict(self.doc.pending.step(address).details.get("effects", {}))
            details["effects"] = {**previous, str(index): effects}
        self._save(self.doc.with_pending(self.doc.pending.with_step(address, "running", details=details)))

    def _journal_start(self, action: Action, index: int, op: Operation) -> None:
        """Before a step outside a transaction: journal the catalog as it is, so a crash
        leaves what is needed to tell (and undo) what the step did."""
        from honua_plan.providers.postgis.effects import op_tables, snapshot
        from honua_plan.providers.postgis.sqlsteps import is_transactional

        if op.kind != "sql" or is_transactional(op):
            return
        assert self.doc.pending is not None
        started = dict(self.doc.pending.step(action.address).details.get("started", {}))
        started[str(index)] = snapshot(self.svc.session, op_tables(op))
        self._save(self.doc.with_pending(self.doc.pending.with_step(action.address, "running",
                                                                    details={"started": started})))

    def _known_done(self, action: Action, index: int, op: Operation) -> str | None:
        """On resume: why step ``index`` needs no run (None: run it). The database's
        step_log decides for a transactional step; for one outside a transaction the
        catalog, the user's --assume-done/--assume-not-done, or a question decides."""
        from honua_plan.providers.postgis.effects import index_valid
        from honua_plan.providers.postgis.sqlsteps import is_transactional

        sid = f"{action.address}#{index}"
        if sid in self._logged:
            return "already done: committed before the interruption"
        assert self.doc.pending is not None
        started = self.doc.pending.step(action.address).details.get("started", {})
        if op.kind != "sql" or is_transactional(op) or str(index) not in started:
            return None  # never started, or rolled back with its transaction
        if sid in self.assume_done:
            return "assumed done: --assume-done"
        if sid in self.assume_not_done:
            return None
        valid, name = index_valid(self.svc.session, op)
        if valid is True:
            return f"already done: index {name} exists and is valid"
        if valid is False:
            return None  # missing or INVALID: running it again drops the INVALID one first
        env = self.plan.environment
        question = (f"cannot tell whether step {sid} ({op.name}) ran before the interruption: it runs outside "
                    "a transaction and leaves nothing the catalog shows")
        import sys

        if sys.stdin.isatty() and sys.stdout.isatty():
            import click

            if click.confirm(f"{question}. Did it complete?", default=False):
                return "done, as confirmed"
            return None
        raise ApplyError(question, hint=(
            f"check the database, then continue with `honua apply --env {env} --resume --assume-done {sid}` "
            f"(it completed) or `honua apply --env {env} --resume --assume-not-done {sid}` (run it again)"))

    def _preconditions(self, action: Action, migration: Any) -> None:
        """Re-check preconditions against the database as it is now."""
        from honua_plan.checks.preconditions import query_preconditions
        from honua_plan.plan.diff import MigrationChange
        from honua_plan.plan.migrations import LiveState, migration_draft
        from honua_plan.providers.postgis import catalog as postgis

        if not migration.spec.preConditions:
            return
        facts = postgis.refresh(self.svc.session)
        results = query_preconditions(self.svc.session, migration, self.desired.template_vars())
        live = LiveState(facts=facts, precondition_results=results)
        draft = migration_draft(self.desired, MigrationChange(migration, "", ""), live, set())
        if draft.errors:
            raise ApplyError("; ".join(d.message for d in draft.errors))

    def _backup(self, action: Action, mid: str) -> str | None:
        if not action.backup_tables:
            return None
        from honua_plan.apply.backup import take_backup
        from honua_plan.providers.embedded.pgserver import pg_dump_available

        required = bool(self.desired.policy and self.desired.policy.spec.requireBackup)
        if not pg_dump_available():
            if required:
                raise ApplyError("policy requires a backup but pg_dump is not installed")
            self.con.warn("pg_dump is not installed: no backup taken")
            return None
        from honua_plan.apply.backup import format_size

        n = len(action.backup_tables)
        self.con.print(f"Backing up {n} table{'s' if n != 1 else ''} ({', '.join(action.backup_tables)})…")
        t0 = time.perf_counter()
        rec = take_backup(self.svc.dsn, action.backup_tables, directory=self.svc.state_dir / "backups",
                          environment=self.plan.environment, migration_id=mid,
                          lock_wait_s=self.svc.backup_lock_wait_s, timeout_s=self.svc.backup_timeout_s)
        rec = self._store_backup(rec)
        self._save(self.doc.with_backup(rec))
        self.con.ok(f"Backup created: {rec.id} ({format_size(rec.size_bytes)})", time.perf_counter() - t0)
        if self.desired.policy is not None:
            from honua_plan.apply.backup import prune_backups

            kept, removed = prune_backups(self.doc.backups, retention_s=self.desired.policy.spec.backupRetention,
                                          state_dir=self.svc.state_dir)
            if removed:
                for old in removed:
                    if self.svc.backup_store is not None:
                        self.svc.backup_store.delete(old)
                self._save(self.doc.model_copy(update={"backups": kept}))
        return rec.id

    def _run_operation(self, action: Action, index: int, op: Operation, *,
                       step_id: str | None = None) -> dict[str, Any] | None:
        """Run one operation through the provider of its kind; for a journaled up step
        (``step_id``), return what it changed."""
        from honua_plan.providers.base import EXECUTOR_KINDS
        from honua_plan.providers.registry import provider_for

        if op.kind in EXECUTOR_KINDS:  # recorded / checked by this executor around the operations
            return None
        return provider_for(op.kind).run(self, action, op, step_id)

    # ------------------------------------------------------------------ StepContext (providers/base.py)

    @property
    def session(self) -> Session:
        return self.svc.session

    def step_details(self, address: str) -> Mapping[str, Any]:
        assert self.doc.pending is not None
        return self.doc.pending.step(address).details

    def journal_details(self, address: str, details: Mapping[str, Any]) -> None:
        assert self.doc.pending is not None
        self._save(self.doc.with_pending(self.doc.pending.with_step(address, "running", details=dict(details))))

    def remember_file(self, path: str, original: bytes) -> None:
        self.edited_files.setdefault(path, original)

    def forget_facts(self) -> None:
        self._facts_cache = None

    def publish(self) -> None:
        if self.svc.publish is not None:
            self.svc.publish(self.desired, self.doc)

    def _record_migration(self, migration: Any, action: Action, status: str, started_at: datetime,
                          t_start: float, backup_id: str | None, error: str | None) -> None:
        from honua_plan.plan.diff import migration_checksum

        rec = MigrationRecord(
            id=migration.metadata.id, description=migration.metadata.description or "",
            checksum=migration_checksum(migration), status=status,
            started_at=started_at, finished_at=utcnow(), duration_s=round(time.perf_counter() - t_start, 3),
            applied_by=self.actor, backup_id=backup_id, error=redact(error) if error else None,
        )
        self._save(self.doc.with_migration(rec))

    # ------------------------------------------------------------------ failure and rollback

    def _handle_failure(self, action: Action, exc: StepFailed, result: ApplyResult, t0: float) -> Outcome:
        self._journal(action.address, "failed", error=exc.message)
        triggers: list[str] = []
        automatic = action.automatic_rollback
        if action.kind == "migration":
            m = self.desired.migration(action.address.removeprefix("migration."))
            if m is not None:
                triggers = list(m.spec.rollback.triggers)
        elif action.action in ("reload", "validate"):
            automatic, triggers = True, ["health-check-failure", "validation-failure"]
        if not automatic or exc.trigger not in triggers:
            self.con.fail(exc.message)
            return Outcome(action.address, "failed", time.perf_counter() - t0, exc.message)
        self.con.print("")
        label = "Validation failed" if exc.trigger == "validation-failure" else (
            "Health check failed" if exc.trigger == "health-check-failure" else "Step failed")
        self.con.warn(f" {label}! Automatic rollback initiated...")
        report = self.rollback_action(action, reason=exc.message, detail=exc.detail, elapsed=time.perf_counter() - t0)
        result.incident_report = report
        if not self.last_rollback_ok:  # not undone: the journal stays for --rollback / --resume
            return Outcome(action.address, "failed", time.perf_counter() - t0, exc.message)
        return Outcome(action.address, "rolled_back", time.perf_counter() - t0, exc.message)

    def rollback_action(self, action: Action, *, reason: str, detail: str = "", elapsed: float = 0.0) -> Path | None:
        """Undo one action: inverse operations, files restored byte for byte, rollback validated."""
        from honua_plan.checks.validate import run_check

        con = self.con
        t0 = time.perf_counter()
        assert self.doc.pending is not None
        step = self.doc.pending.step(action.address)
        files = {k.removeprefix("file:"): base64.b64decode(v) for k, v in step.details.items() if k.startswith("file:")}
        irreversible = [op.name for op in action.operations if op.irreversible]
        con.print("")
        con.print("Rolling back:")
        ops = action.rollback if action.kind == "migration" else []
        if action.kind == "migration" and irreversible:
            con.warn(f"irreversible step(s) not rolled back automatically: {', '.join(irreversible)}")
            ops = []
        ok = True
        stopped = False
        fresh_backup: str | None = None
        applied = self._applied_effects(action) if action.kind == "migration" else None
        down_done: list[int] = list(step.details.get("down_done", []))
        for i, op in enumerate(ops, 1):
            if i - 1 in down_done:
                con.ok(f"[{i}/{len(ops)}] {gerund(op.name)} (already done)", indent=2)
                continue
            skip = self._undo_skipped(op, applied, files)
            if skip:
                con.print(f"  [{i}/{len(ops)}] Skipped: {op.name} ({skip})")
                down_done = self._mark_down(action.address, down_done, i - 1)
                continue
            if op.kind == "sql":
                from honua_plan.providers.postgis.effects import destroys

                lost = destroys(self.svc.session, op)
                if lost and not self.allow_destroy:
                    ok, stopped = False, True
                    what = ", ".join(f"{x} holds rows" if x.count(".") == 1 else f"column {x} holds values"
                                     for x in lost)
                    con.fail(f"Stopped before '{op.name}': it would destroy data ({what})", indent=2)
                    con.print(f"    it runs only with `honua apply --env {self.plan.environment} --rollback "
                              "--allow-destroy`, after a fresh backup of what it drops")
                    break
                if lost:
                    try:
                        fresh_backup = self._destroy_backup(action, lost)
                    except HonuaError as exc:
                        ok, stopped = False, True
                        con.fail(f"Stopped before '{op.name}': no backup of {', '.join(lost)}: {exc.message}",
                                 indent=2)
                        break
            try:
                with con.step(i, len(ops), gerund(op.name)):
                    if op.kind == "metadata" and op.path in files:
                        self._restore_file(op.path, files.pop(op.path))
                    elif op.kind == "metadata":
                        self._run_operation(action, 0, op)
                    else:
                        self._run_operation(action, i - 1, op)
            except HonuaError as exc:
                ok = False
                con.fail(f"rollback step failed: {exc.message}", indent=2)
                break
            down_done = self._mark_down(action.address, down_done, i - 1)
        for path, data in files.items():  # anything a down step did not cover
            self._restore_file(path, data)
        served = {lyr.spec.storage.qualified_table for lyr in self.desired.layers.values()}
        touched = {t for op in action.operations for t in op.tables}
        if action.kind == "migration" and touched & served and self.svc.publish is not None and self._published():
            try:  # served table schemas are cached per worker: reload after the down steps
                self.svc.publish(self.desired, self.doc)
                con.ok("Services reloaded", indent=2)
            except HonuaError as exc:
                ok = False
                con.fail(f"services reload failed: {exc.message}", indent=2)
        if action.action in ("reload", "validate"):
            ok = self._rollback_publication(action) and ok
        checks_ok = True
        if action.rollback_checks:
            con.print("")
            con.print("Validating rollback:")
            for c in action.rollback_checks:
                r = run_check(self.svc.session, c)
                (con.ok if r.ok else con.fail)(_rollback_label(c, r), indent=2)
                checks_ok = checks_ok and r.ok
        status = "ROLLED BACK" if ok and checks_ok else ("ROLLBACK STOPPED" if stopped else "ROLLBACK FAILED")
        self.last_rollback_ok = ok
        if action.kind == "migration":
            m = self.desired.migration(action.address.removeprefix("migration."))
            if m is not None:
                self._record_migration(m, action, "rolled_back" if ok else "failed", utcnow(), t0, None, reason)
        self._journal(action.address, "rolled_back" if ok else "failed", error=reason)
        con.print("")
        if ok and checks_ok:
            con.print(f"Rollback completed successfully ({format_duration(time.perf_counter() - t0)})")
        elif stopped:
            con.fail("Rollback stopped before a step that would destroy data: that step and the ones after it "
                     "did not run")
        else:
            con.fail("Rollback did not complete: restore from the backup with `honua recover`")
        return self._incident_report(action, reason, detail, status, elapsed + time.perf_counter() - t0,
                                     irreversible, backup=fresh_backup)

    def _applied_effects(self, action: Action) -> list[dict[str, Any]] | None:
        """What the up steps of ``action`` changed in this apply (None: not known, e.g. a
        journal of an older version): journaled effects, step_log rows (a crash between
        COMMIT and the journal), and, for a step outside a transaction that started,
        the catalog now against the snapshot journaled before it."""
        from honua_plan.providers.postgis import effects as j

        assert self.doc.pending is not None
        step = self.doc.pending.step(action.address)
        found: dict[str, Any] = dict(step.details.get("effects", {}))
        logged = j.completed(self.svc.session, self.apply_id) if self._has_sql() else {}
        prefix = f"{action.address}#"
        for sid, eff in logged.items():
            if sid.startswith(prefix):
                found.setdefault(sid.removeprefix(prefix), eff)
        for n, snap in step.details.get("started", {}).items():
            if n not in found and n.isdigit() and int(n) <= len(action.operations):
                op = action.operations[int(n) - 1]
                found[n] = j.effects(snap, j.snapshot(self.svc.session, j.op_tables(op)))
        for idx in step.details.get("ops_done", []):
            if idx < len(action.operations) and action.operations[idx].kind == "sql" and str(idx + 1) not in found:
                return None
        return list(found.values())

    def _undo_skipped(self, op: Operation, applied: list[dict[str, Any]] | None, files: dict[str, bytes]) -> str:
        """Why down step ``op`` is skipped ("" = run it): the apply changed nothing it undoes."""
        from honua_plan.providers.postgis.effects import undo_needed

        if applied is None:
            return ""
        if op.kind == "sql" and not undo_needed(op, applied):
            return "this apply created or changed nothing it undoes"
        if op.kind == "metadata" and op.path not in files:
            return f"this apply did not edit {op.path}"
        return ""

    def _mark_down(self, address: str, down_done: list[int], index: int) -> list[int]:
        assert self.doc.pending is not None
        down_done = sorted({*down_done, index})
        self._save(self.doc.with_pending(self.doc.pending.with_step(address, "running",
                                                                    details={"down_done": down_done})))
        return down_done

    def _destroy_backup(self, action: Action, lost: list[str]) -> str:
        """A backup of the tables a down step is about to destroy data in, taken just before."""
        from honua_plan.apply.backup import take_backup
        from honua_plan.providers.embedded.pgserver import pg_dump_available

        if not pg_dump_available():
            raise ApplyError("pg_dump is not installed")
        tables = sorted({".".join(x.split(".")[:2]) for x in lost})
        rec = take_backup(self.svc.dsn, tables, directory=self.svc.state_dir / "backups",
                          environment=self.plan.environment,
                          migration_id=action.address.removeprefix("migration."),
                          lock_wait_s=self.svc.backup_lock_wait_s, timeout_s=self.svc.backup_timeout_s)
        rec = self._store_backup(rec)
        self._save(self.doc.with_backup(rec))
        self.con.ok(f"Backup created: {rec.id} ({', '.join(tables)})", indent=2)
        return rec.id

    def _store_backup(self, rec: BackupRecord) -> BackupRecord:
        """Record the metadata the backup's data goes with, then upload it to the store before
        the state records it: a recorded backup is one another machine can restore."""
        rec = describe_backup(rec, root=self.desired.root, state_dir=self.svc.state_dir,
                              environment=self.plan.environment, doc=self.doc)
        if self.svc.backup_store is not None:
            self.svc.backup_store.upload(self.svc.state_dir, rec)
        return rec

    def _published(self) -> bool:
        """Whether this environment has anything published yet (nothing to reload otherwise)."""
        try:
            return bool(self.svc.read_published and self.svc.read_published())
        except HonuaError:
            return False

    def _restore_file(self, rel: str, data: bytes) -> None:
        from honua_plan.providers.metadata import write_atomic

        write_atomic(self.desired.root / rel, data)
        self.edited_files.pop(rel, None)

    def _rollback_publication(self, action: Action) -> bool:
        """Put back the published document, then the resource records of this apply.

        In that order: the records say what is served, so they go back only once the server
        serves the previous document again. When that fails, the records and the journal
        stay as they are, and ``--resume`` (which re-runs the reload) or ``--rollback`` finds
        them."""
        assert self.doc.pending is not None
        doc = self.doc
        for s in self.doc.pending.steps:
            if s.status == "done" and "previous" in s.details and s.address:
                prev = s.details["previous"]
                doc = doc.with_resource(ResourceRecord.model_validate(prev)) if prev else doc.without_resource(s.address)
        previous = None
        try:
            previous = self.doc.pending.step(next(a.address for a in self.plan.actions if a.action == "reload")).details.get(
                "previous_published") if self.doc.pending else None
        except (StopIteration, KeyError):
            previous = None
        if self.svc.unpublish_to is not None:
            try:
                self.svc.unpublish_to(previous)
            except HonuaError as exc:
                self.con.fail(f"could not restore the previous publication: {exc.message}", indent=2)
                return False
            self.con.ok("Previous publication restored and services reloaded", indent=2)
        self._save(doc)
        return True

    def _incident_report(self, action: Action, reason: str, detail: str, status: str, seconds: float,
                         irreversible: list[str], backup: str | None = None) -> Path:
        from honua_plan.apply.incident import write_incident_report
        from honua_plan.state.model import IncidentRecord

        incident = self.incident = self.doc.next_incident_id()
        path = write_incident_report(
            self.svc.state_dir, plan=self.plan, action=action, desired=self.desired, reason=reason,
            detail=detail, status=status, seconds=seconds, irreversible=irreversible, actor=self.actor,
            backups=[backup] if backup else [b.id for b in self.doc.backups[-1:]], incident=incident,
        )
        if self.svc.keep is not None:
            self.svc.keep(path)
        try:
            rel: str | None = path.resolve().relative_to(self.svc.state_dir.resolve()).as_posix()
        except ValueError:
            rel = None
        self._save(self.doc.with_incident(IncidentRecord(
            id=incident, kind="rollback" if status.startswith("ROLLED BACK") else "failed-deployment",
            summary=f"{action.address} on {self.plan.environment}: {status.lower()} ({reason})",
            report=rel, plan_id=self.plan.id)))
        self.con.print("")
        self.con.print("Incident Report:")
        mig = self.desired.migration(action.address.removeprefix("migration.")) if action.kind == "migration" else None
        self.con.print(f"  Migration: {mig.stem}" if mig else f"  Action: {action.address}")
        self.con.print(f"  Environment: {self.plan.environment}")
        self.con.print(f"  Status: {status}")
        self.con.print(f"  Reason: {reason}")
        self.con.print(f"  Duration: {format_duration(seconds)}")
        restore = backup or (self.doc.backups[-1].id if self.doc.backups else None)
        self.con.print(f"  Restore from backup: {restore or 'none taken'}")
        self.con.print(f"  Report: {path}")
        from honua_plan.apply.incident import recommendations

        recs = recommendations(action, reason)
        if recs:
            self.con.print("")
            self.con.print("Recommendations:")
            for i, r in enumerate(recs, 1):
                self.con.print(f"  {i}. {r}")
        self.con.print("")
        self.con.print("Next steps:")
        self.con.print(f"  - Incident logged: {incident} (`honua incidents show {incident} --env {self.plan.environment}`)")
        from honua_plan.apply.notify import notify

        delivery = notify(self.desired.policy, "rolled-back", environment=self.plan.environment, actor=self.actor,
                          title=f"honua rolled-back: {action.address} on {self.plan.environment}",
                          lines=[f"Incident: {incident}", f"Status: {status}", f"Reason: {reason}",
                                 f"Report: {path}", f"Plan: {self.plan.id}"])
        self.con.print(f"  - {delivery.line or 'Stakeholders: not notified (no notification is configured)'}")
        policy = self.desired.policy
        if restore and policy is not None:
            self.con.print(f"  - Database backup retained for {format_duration(policy.spec.backupRetention)}")
        elif restore:
            self.con.print("  - Database backup retained (no retention policy: kept until deleted)")
        else:
            self.con.print("  - No database backup was taken")
        return path


def _kill_point(step: str, point: str) -> None:
    """The kill matrix's test hook (see :func:`honua_plan.providers.postgis.effects.kill_point`)."""
    import os

    if os.environ.get("HONUA_TEST_KILL_AT"):
        from honua_plan.providers.postgis.effects import kill_point

        kill_point(step, point)


def _check_label(c: CheckRecord, r: Any, before_ms: float | None) -> str:
    if c.type == "performance":
        if r.ok:
            after = getattr(r, "observed_ms", None)
            if before_ms is not None and after is not None:
                return f"Performance improved ({before_ms:.0f}ms → {after:.0f}ms): {r.message}"
            return f"Performance validated: {r.message}"
        return f"Performance test FAILED: {r.message}"
    if c.query and "pg_indexes" in c.query and r.ok:
        return "Index exists"
    name = f"{c.type.capitalize()} check" if c.name.startswith(f"{c.type}: ") else c.name
    return f"{name} passed ({r.message})" if r.ok else f"{name} FAILED: {r.message}"


def _rollback_label(c: CheckRecord, r: Any) -> str:
    if c.query and "pg_indexes" in c.query and r.ok:
        return "Index removed"
    name = f"{c.type.capitalize()} check" if c.name.startswith(f"{c.type}: ") else c.name
    return f"{name} {'passed' if r.ok else 'FAILED'} ({r.message})"


COMPACT_OVER = 30  # actions: more, and the ✓ lines of each phase are summarized (not with --verbose)


def _differs_from_simulation(plan: Plan, layer: Any, table: Any) -> str:
    """How the live table's served columns differ from those the plan's simulation made
    (the layer was checked against those at plan time); empty when they agree or when the
    plan did not simulate this table."""
    from honua_plan.providers.postgis.facts import table_facts_from_json

    recorded = plan.simulated.tables.get(layer.spec.storage.qualified_table) if plan.simulated else None
    if not recorded or table is None:
        return ""
    simulated = table_facts_from_json(recorded)
    out = []
    for name in [layer.spec.storage.geometryColumn, *(f.name for f in layer.spec.fields)]:
        want, got = simulated.column(name), table.column(name)
        if want is not None and (got is None or (got.data_type, got.nullable) != (want.data_type, want.nullable)):
            out.append(f"{name} {want.data_type}{'' if want.nullable else ' not null'}, live: "
                       + ("missing" if got is None else f"{got.data_type}{'' if got.nullable else ' not null'}"))
    return "; ".join(out)


def _recordable(action: Action) -> bool:
    """Metadata-only actions: recording them is all apply does (the publish is the reload)."""
    return action.kind in ("layer", "service", "datasource", "server") and action.action in (
        "create", "update", "delete", "replace")


def _with_steps(journal: JournalRecord, updates: dict[str, tuple[str, dict[str, Any]]]) -> JournalRecord:
    """Many journal steps moved at once (one pass, not one copy of the journal per step)."""
    now = utcnow()
    steps = []
    for s in journal.steps:
        if s.id in updates:
            status, details = updates[s.id]
            change: dict[str, Any] = {"status": status}
            if status == "running" and s.started_at is None:
                change["started_at"] = now
            if status in ("done", "failed"):
                change["finished_at"] = now
            if details:
                change["details"] = {**s.details, **details}
            s = s.model_copy(update=change)
        steps.append(s)
    return journal.model_copy(update={"steps": steps})
