"""The provider contract: every live system the engine changes is a provider.

As in pygeoapi's plugin table, a provider kind is a class registered under a name; the
planner emits :class:`~honua_plan.plan.model.Operation` values whose ``kind`` names what
must run them, and the executor dispatches each through
:func:`honua_plan.providers.registry.provider_for` (an
operation no provider runs is an :class:`~honua_plan.errors.ApplyError`, never skipped).
Each provider also offers read-only facts, which refresh reads before a plan:

=========  ====================  ===========================================================
provider   operations            facts (read-only)
=========  ====================  ===========================================================
postgis    ``sql``               the catalog (:func:`honua_plan.providers.postgis.catalog.refresh`)
metadata   ``metadata``          the repository's YAML files (read by the config loader)
server     ``publish``,          the published configuration
           ``reload``            (:meth:`honua_plan.providers.server.base.ServerProvider.read`)
=========  ====================  ===========================================================

The executor itself handles ``record`` (the state write after an action) and ``check``
(an action's validations): they change no live system, so no provider runs them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from honua_plan.config.desired import DesiredState
    from honua_plan.plan.model import Action, Operation
    from honua_plan.providers.postgis.sqlexec import Session

#: Operation kinds the executor runs itself (see the module docstring).
EXECUTOR_KINDS = frozenset({"record", "check"})


class StepContext(Protocol):
    """What a provider may use of the apply that runs its operation (the executor)."""

    @property
    def session(self) -> Session:
        """The target database, in the apply's connection."""

    @property
    def desired(self) -> DesiredState: ...

    @property
    def apply_id(self) -> str:
        """This apply, as ``honua_plan.step_log`` keys it."""

    def step_details(self, address: str) -> Mapping[str, Any]:
        """What the journal holds of the action's step so far."""

    def journal_details(self, address: str, details: Mapping[str, Any]) -> None:
        """Write ``details`` into the action's journal step now, before the mutation."""

    def remember_file(self, path: str, original: bytes) -> None:
        """A file this apply edits, with its bytes before the first edit (for rollback)."""

    def forget_facts(self) -> None:
        """The catalog changed: read it again when next needed."""

    def publish(self) -> None:
        """Compile, publish and reload the server configuration; health-check it."""


class Provider(ABC):
    """One kind of live system: the operation kinds it runs."""

    name: ClassVar[str]
    operations: ClassVar[frozenset[str]]

    @abstractmethod
    def run(self, ctx: StepContext, action: Action, op: Operation, step_id: str | None = None
            ) -> dict[str, Any] | None:
        """Run ``op`` of ``action``. ``step_id`` is set for a journaled up step; the result
        is then what it changed (the journal's effects), else None."""
