"""``honua apply`` and ``honua approve``: a plan (new, saved or resumed) checked and run
under the state lock by the executor, or an unfinished apply rolled back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from honua_plan.apply.executor import ApplyResult, Services
    from honua_plan.config.desired import DesiredState
    from honua_plan.config.policybase import Judge
    from honua_plan.plan.model import Plan
    from honua_plan.providers.postgis.connections import ResolvedDsn
    from honua_plan.providers.postgis.facts import DatabaseFacts
    from honua_plan.providers.postgis.sqlexec import Session
    from honua_plan.state.model import StateDocument
    from honua_plan.workspace import Workspace


def approve(ws: Workspace, plan_file: Path, by: str, comment: str = "", *, key: Path | None = None) -> Plan:
    """Record an approval of the plan file's digest, checked against the policy of its
    environment (groups, signatures) in this repository; ``key`` signs it."""
    import os

    from honua_plan.plan.approvals import check_approval
    from honua_plan.plan.signing import KEY_ENV
    from honua_plan.plan.store import record_approval

    if key is None and os.environ.get(KEY_ENV):
        key = Path(os.environ[KEY_ENV]).expanduser()

    def authorize(plan: Plan, approval: Any) -> None:  # by the base's approvers, not the change's
        check_approval(judge(ws, plan.environment).policy, approval, ws.root)

    from honua_plan.workflows.plans import keep_plan
    from honua_plan.workflows.plans import plan_file as find_plan

    plan_file = find_plan(ws, plan_file)
    approved = record_approval(plan_file, by, comment, key=key, authorize=authorize)
    keep_plan(ws, approved, plan_file)  # the approval travels with the state to another machine
    return approved


def judge(ws: Workspace, environment: str, recorded: StateDocument | None = None) -> Judge:
    """The policy that judges ``environment``'s plans and approvals (config.policybase)."""
    from honua_plan.config.policybase import judging_policy

    doc = recorded if recorded is not None else ws.recorded(environment, check=False)
    return judging_policy(ws.root, ws.desired(environment), doc.config_commit, explicit=ws.policy_base)


def services(ws: Workspace, desired: DesiredState, session: Session, dsn: str) -> Services:
    from honua_plan.apply.executor import Services
    from honua_plan.providers.postgis.connections import default_datasource

    ds = desired.datasources.get(default_datasource(desired.project, desired.datasources) or "")
    artifacts = ws.backend(desired.environment).artifacts()
    svc = Services(session=session, dsn=dsn, state_dir=ws.state_dir,
                   keep=lambda path: artifacts.keep(ws.state_dir, path), backup_store=ws.backup_store,
                   backup_lock_wait_s=ds.spec.lockTimeout if ds is not None else None,
                   backup_timeout_s=desired.policy.spec.backupTimeout if desired.policy else None)
    server = desired.server()
    if server is None or server.spec.type == "none":
        return svc
    from honua_plan.workflows.publish import publish_callbacks

    publish, unpublish_to, read = publish_callbacks(ws, desired, server)
    svc.publish, svc.unpublish_to, svc.read_published = publish, unpublish_to, read
    return svc


def _warm_up(ws: Workspace, desired: DesiredState, plan: Plan) -> None:
    """Let the server prepare a publish the plan will run (pygeoapi imports its generator)."""
    server = desired.server()
    if server is not None and server.spec.type != "none" and any(a.action == "reload" for a in plan.actions):
        with ws.server_provider(desired.environment) as provider:
            provider.warm_up()


def apply(
    ws: Workspace,
    environment: str,
    plan_file: Path | None = None,
    *,
    yes: bool = False,
    resume: bool = False,
    rollback: bool = False,
    allow_destroy: bool = False,
    assume_done: frozenset[str] = frozenset(),
    assume_not_done: frozenset[str] = frozenset(),
    confirm: Callable[[str, bool], None] | None = None,
    plan: Plan | None = None,
    command: str = "honua apply",
    show: bool = True,
    banner: bool = True,
    target: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
    replace: tuple[str, ...] = (),
) -> ApplyResult | None:
    """Plan (or load a saved plan), check it, and apply it under the state lock."""
    from honua_plan.apply.executor import Executor
    from honua_plan.errors import ApplyError, ApprovalRequired, HonuaError, PolicyError
    from honua_plan.plan.approvals import valid_approvers
    from honua_plan.plan.render import render_text
    from honua_plan.plan.store import load_plan, save_plan, verify_digest
    from honua_plan.providers.postgis.connections import database_ref
    from honua_plan.providers.postgis.sqlexec import Session, connect

    desired = ws.desired(environment)
    con = ws.console
    backend = ws.backend(environment)
    facts: DatabaseFacts | None = None  # read by the freshness check of a saved plan
    policy_checks: list[Any] = []
    with backend:
        recorded = backend.read()
        ws.check_state(environment, backend, recorded)
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
            # a fresh clone (another CI runner) fetches the plan kept with the state
            saved = backend.artifacts().fetch(ws.state_dir, f"plans/{recorded.pending.plan_id}.json")
            plan = load_plan(saved)
            verify_digest(plan, source=str(saved))
            same_database(ws, plan, ws.database(environment), str(saved), interrupted=True)
            if resume:
                plan = resumable(ws, plan, desired, recorded)
        elif plan_file is not None:
            from honua_plan.workflows.plans import plan_file as find_plan

            plan_file = find_plan(ws, plan_file, environment)
            plan = load_plan(plan_file)
            verify_digest(plan, source=str(plan_file))
            same_database(ws, plan, ws.database(environment), str(plan_file))
            _warm_up(ws, desired, plan)
            facts = check_fresh(ws, plan, desired, recorded)
            derived = rederive(ws, plan, desired, str(plan_file), facts)
            names, signed = valid_approvers(plan, judge(ws, environment, recorded).policy, ws.root)
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
                plan = ws.plan(environment, target=target, exclude=exclude, replace=replace)
            _warm_up(ws, desired, plan)
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
        resolved = ws.database(environment)
        if plan_file is not None or resume or rollback or not show:  # else the plan's header said it
            con.print(f"Database: {database_ref(resolved).describe()}")
        with backend.lock(command) as writer, connect(resolved.dsn) as conn:
            fresh = writer.read()
            if not (resume or rollback) and (fresh.serial != plan.state_serial or (
                    fresh.serial and fresh.lineage != plan.state_lineage)):
                from honua_plan.errors import StalePlanError

                raise StalePlanError(f"the state changed while planning (serial {plan.state_serial} → {fresh.serial})")
            ws._clean_partial_backups(environment)
            save_plan(plan, ws.state_dir / "plans" / f"{plan.id}.json")
            backend.artifacts().keep(ws.state_dir, ws.state_dir / "plans" / f"{plan.id}.json")
            session = Session(conn)
            executor = Executor(plan, desired, writer, services(ws, desired, session, resolved.dsn), con,
                                actor=ws.actor, command=command,
                                reload_desired=lambda: ws._reload_desired(environment), facts=facts,
                                allow_destroy=allow_destroy, assume_done=assume_done,
                                assume_not_done=assume_not_done)
            if rollback:
                return executor.rollback_all()
            if banner:
                con.print(f"Applying changes to {environment} environment...")
            # extents from this process's geometry scan stay true while no SQL runs before the publish
            ws.fresh_extents.discard(environment)
            if not (resume or rollback) and not any(op.kind == "sql" for a in plan.actions
                                                    for op in (*a.operations, *a.rollback)):
                ws.fresh_extents.add(environment)
            _notify(ws, desired, plan, "deploy-started", quiet=True)
            try:
                result = executor.run(resume=resume)
            except HonuaError:
                if executor.incident is None:  # a rollback told its own story ("rolled-back")
                    _notify(ws, desired, plan, "deploy-failed")
                raise
            if executor.incident is None:
                _notify(ws, desired, plan, "deploy-succeeded" if result.ok else "deploy-failed")
            return result


def _notify(ws: Workspace, desired: DesiredState, plan: Plan, event: str, *, quiet: bool = False) -> None:
    """Tell the stakeholders the policy names; say what was and was not delivered."""
    from honua_plan.apply.notify import notify
    from honua_plan.plan.render import summary_line

    delivery = notify(desired.policy, event, environment=plan.environment, actor=ws.actor,
                      title=f"honua {event}: {plan.environment}",
                      lines=[f"Plan: {plan.id} ({summary_line(plan)})", f"Risk: {plan.risk}"])
    if delivery.line is None or (quiet and not delivery.failed):
        return
    (ws.console.fail if delivery.failed else ws.console.ok)(delivery.line)


def check_fresh(ws: Workspace, plan: Plan, desired: DesiredState, recorded: StateDocument) -> DatabaseFacts | None:
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
        facts = ws.read_facts(desired.environment)
        for key, fp in sorted(plan.fingerprints.items()):
            t = facts.table(key.removeprefix("table."))
            now = t.shape_fingerprint if t else "absent"
            if now != fp:
                problems.append(f"{key} changed in the database since the plan was made")
    if problems:
        raise StalePlanError("the saved plan is stale: " + "; ".join(problems),
                             hint=f"make a new plan: honua plan --env {desired.environment} --out plan.json")
    return facts


def rederive(ws: Workspace, saved: Plan, desired: DesiredState, source: str,
             facts: DatabaseFacts | None = None) -> Plan:
    """Plan again from the configuration, the state and the database, and refuse a saved
    plan whose actions differ: the file is a record of what was reviewed, never the source
    of what runs."""
    from honua_plan.plan.approvals import compare_actions
    from honua_plan.plan.render import redacted

    derived = ws.plan(desired.environment, target=tuple(saved.target), refresh_only=saved.refresh_only,
                      provenance=saved.provenance, facts=facts, exclude=tuple(saved.exclude),
                      replace=tuple(saved.replace), simulate=simulated(saved))
    def said(p: Any) -> str:
        return (f"the policy from {p.source} ({p.digest[:19]})" if p is not None else
                "a policy it does not name (made by an older honua-plan)")

    def key(p: Any) -> tuple[str | None, str] | None:
        return (p.revision, p.digest) if p is not None else None

    if key(saved.policy_base) != key(derived.policy_base):  # a plan is applied under the policy that judged it
        from honua_plan.errors import PlanTamperedError

        raise PlanTamperedError(f"{source} was judged by {said(saved.policy_base)}; applying it now would be judged "
                                f"by {said(derived.policy_base)}",
                                hint="apply it with the --policy-base it was made with, or make a new plan: "
                                     f"honua plan --env {desired.environment} --out plan.json")
    compare_actions(saved.actions, redacted(derived).actions, source=source, environment=desired.environment)
    if saved.moved != derived.moved:
        from honua_plan.errors import PlanTamperedError

        raise PlanTamperedError(f"{source} does not match the configuration: its moves differ from honua.yaml's "
                                "moved: and the recorded state now",
                                hint=f"make a new plan: honua plan --env {desired.environment} --out plan.json")
    return derived


def simulated(saved: Plan) -> Any:
    """What the saved plan's simulation established, as the simulation it came from: apply
    runs the migrations for real, so it re-derives the plan with these facts (False: the plan
    had none, and is re-derived without simulating)."""
    if saved.simulated is None:
        return False
    from honua_plan.plan.simulation import Simulation
    from honua_plan.providers.postgis.facts import DatabaseFacts, table_facts_from_json

    tables = {t.qualified_name: t for t in (table_facts_from_json(d) for d in saved.simulated.tables.values() if d)}
    return Simulation(status="simulated", where="the saved plan's simulation",
                      migrations=tuple(saved.simulation.migrations) if saved.simulation else (),
                      facts=DatabaseFacts(tables=tuple(tables.values()),
                                          search_path=tuple(saved.simulated.search_path)))


def same_database(ws: Workspace, plan: Plan, resolved: ResolvedDsn, source: str, *, interrupted: bool = False) -> None:
    """Refuse a saved plan made against another database than the one this run would change.

    A plan file without a database (made before plans recorded it) is refused too: which
    database it was reviewed against is unknown. The plan of an interrupted apply
    (``interrupted``: --resume, --rollback) is only warned about: its journal belongs to the
    state, the serial guard checks that state against this database, and the database may
    legitimately answer to another name since (a failover, a restored copy); refusing would
    leave no way to finish or undo the apply."""
    from honua_plan.errors import StalePlanError
    from honua_plan.providers.postgis.connections import database_ref

    here = database_ref(resolved)
    if plan.database == here:
        return
    made = (f"was made against database {plan.database.describe()}" if plan.database is not None else
            "does not say which database it was made against (made by an older honua-plan)")
    if interrupted:
        ws.console.warn(f"{source} {made}; continuing on {here.describe()}")
        return
    raise StalePlanError(
        f"{source} {made}; refusing to apply it to {here.describe()}",
        hint="apply it where its database is configured (the same HONUA_PG_DSN_<ENV> / HONUA_PG_DSN), or make "
             f"a new plan for this database: honua plan --env {plan.environment} --out plan.json")


def resumable(ws: Workspace, plan: Plan, desired: DesiredState, recorded: StateDocument) -> Plan:
    """--resume re-runs the saved plan. A migration edited since (to fix the step that
    failed) takes its new steps, as long as the steps already done are unchanged."""
    from honua_plan.errors import StalePlanError
    from honua_plan.plan.diff import MigrationChange, migration_checksum
    from honua_plan.plan.migrations import LiveState, migration_draft

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
            facts = ws.read_facts(desired.environment)
        draft = migration_draft(desired, MigrationChange(m, migration_checksum(m), "resume"),
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
        ws.console.warn(f"migration {m.metadata.id} changed since the interrupted apply: "
                          "resuming with its new steps")
        actions.append(action.model_copy(update={
            "operations": draft.operations, "rollback": draft.rollback, "checks": draft.checks,
            "rollback_checks": draft.rollback_checks}))
    return plan.model_copy(update={"actions": actions})
