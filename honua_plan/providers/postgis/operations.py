"""The PostGIS provider's operations: SQL steps, with what each actually changed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from honua_plan.providers.base import Provider, StepContext

if TYPE_CHECKING:
    from honua_plan.plan.model import Action, Operation


class PostgisProvider(Provider):
    name: ClassVar[str] = "postgis"
    operations: ClassVar[frozenset[str]] = frozenset({"sql"})

    def run(self, ctx: StepContext, action: Action, op: Operation, step_id: str | None = None
            ) -> dict[str, Any] | None:
        """A journaled up step (``step_id``): catalog before/after and the step_log row in the
        step's own transaction; outside a transaction, after it (from the snapshot journaled
        before). Any other SQL step (a down step) just runs."""
        from honua_plan.providers.postgis import effects as j
        from honua_plan.providers.postgis.sqlsteps import is_transactional, run_sql_operation

        ctx.forget_facts()
        session = ctx.session
        if step_id is None:
            run_sql_operation(session, op)
            return None
        tables = j.op_tables(op)
        apply_id = ctx.apply_id
        box: dict[str, Any] = {}
        if is_transactional(op):
            def before() -> None:
                box["before"] = j.snapshot(session, tables)

            def after() -> None:
                box["effects"] = j.effects(box["before"], j.snapshot(session, tables), j.xact_rows(session))
                j.record_done(session, apply_id, step_id, box["effects"])

            run_sql_operation(session, op, before=before, after=after)
            j.kill_point(step_id, "after-commit")
            return dict(box["effects"])
        snap = ctx.step_details(action.address).get("started", {}).get(step_id.rpartition("#")[2], {})
        run_sql_operation(session, op)
        j.kill_point(step_id, "after-commit")
        eff = j.effects(snap, j.snapshot(session, tables))
        if session.conn is not None and not session.dry_run:
            with session.conn.transaction():
                j.record_done(session, apply_id, step_id, eff)
        return eff
