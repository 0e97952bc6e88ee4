"""Record the state an ``apply`` of the first plan leaves, without running the executor.

The benchmark measures ``apply`` itself; this helper only exists so that the steps after
it (no-op plan, drift) can still be measured when ``apply`` did not finish within the
benchmark's timeout, and so that the structural test can set up an applied environment
in a fraction of a second. It records what ``Executor`` records for a plan of creates:
one resource per created datasource/server/service/layer (the plan's ``after``), the
shape of every served table (``table.<schema>.<name>``), and an ``apply`` event.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def record_applied_state(root: Path | str, environment: str = "dev", *, actor: str = "benchmarks") -> int:
    """Plan ``environment`` of the repository at ``root`` and record it as applied.

    Returns the number of resources recorded. The state must be empty (no earlier apply).
    """
    from honua_plan.context import Context
    from honua_plan.plan.diff import table_address, table_attributes
    from honua_plan.providers.postgis import catalog as postgis
    from honua_plan.providers.postgis.sqlexec import Session, connect
    from honua_plan.state.model import ResourceRecord

    ctx = Context(root)
    plan = ctx.plan(environment)
    desired = ctx.desired(environment)
    backend = ctx.backend(environment)
    with backend, backend.lock("benchmarks: record applied state") as writer:
        doc = writer.read()
        if doc.serial != plan.state_serial:
            raise RuntimeError("the state changed while planning")
        serial = doc.next_serial
        resources: dict[str, Any] = dict(doc.resources)
        for action in plan.actions:
            if action.after is None or action.action not in ("create", "update", "replace"):
                continue
            src = desired.source(action.address)
            resources[action.address] = ResourceRecord.create(
                action.address, action.kind, action.after, serial=serial,
                source_path=src.path if src else None, applied_by=actor)
        with connect(ctx.database(environment).dsn) as conn:
            facts = postgis.refresh(Session(conn))
        for layer in desired.layers.values():
            t = facts.table(layer.spec.storage.qualified_table)
            if t is not None:
                resources[table_address(t)] = ResourceRecord.create(
                    table_address(t), "table", table_attributes(t), serial=serial, applied_by=actor)
        doc = doc.model_copy(update={"resources": resources}).record_event(
            "apply", f"recorded by benchmarks.state (plan {plan.id[:12]})", actor=actor)
        writer.write(doc, expected_serial=doc.serial)
    return len(resources)
