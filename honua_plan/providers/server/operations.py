"""The server provider's operations: a plan publishes layers and services and reloads once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from honua_plan.providers.base import Provider, StepContext

if TYPE_CHECKING:
    from honua_plan.plan.model import Action, Operation


class ServerOperations(Provider):
    name: ClassVar[str] = "server"
    operations: ClassVar[frozenset[str]] = frozenset({"publish", "reload"})

    def run(self, ctx: StepContext, action: Action, op: Operation, step_id: str | None = None
            ) -> dict[str, Any] | None:
        """``publish`` steps (one per layer or service) are batched: the plan's one ``reload``
        step compiles and publishes them all, reloads the server and checks its health."""
        if op.kind == "reload":
            ctx.publish()
        return None
