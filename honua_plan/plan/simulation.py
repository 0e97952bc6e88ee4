"""What a plan learns from running its migrations on a schema-only copy (``plan
--simulate``): the schema after the plan, against which layers are checked, the step
that fails, and the published columns whose type changes. Pure: the copy was made and
read by :mod:`honua_plan.providers.postgis.simulate`; this only judges the result."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from honua_plan.config.desired import DesiredState
from honua_plan.errors import Diagnostic
from honua_plan.plan.model import SimulatedFacts
from honua_plan.providers.postgis.facts import DatabaseFacts, TableFacts, table_facts_json

if TYPE_CHECKING:
    from honua_plan.plan import risk
else:  # imported on first use: a plan without migrations needs no SQL analysis
    from honua_plan.lazy import LazyModule

    risk = LazyModule("honua_plan.plan.risk")

__all__ = ["Simulation", "check_layer_after", "simulation_errors", "type_changes"]


@dataclass(frozen=True)
class Simulation:
    """The outcome. ``status``: ``simulated`` (every step ran), ``failed`` (a step failed:
    its SQL is wrong for the schema), ``partial`` (a step needs a privilege the simulation
    does not grant: checked up to there), ``unavailable`` (no copy: ``detail`` says why),
    ``skipped`` (not asked for, or nothing to simulate: ``detail`` says why)."""

    status: str
    where: str = ""
    detail: str = ""
    seconds: float = 0.0
    steps_run: int = 0
    migrations: tuple[str, ...] = ()
    failure: tuple[str, int, str] | None = None  # (migration id, step index, message)
    facts: DatabaseFacts | None = field(default=None, repr=False, compare=False)

    @property
    def complete(self) -> bool:
        """The copy holds the schema after every migration of the plan."""
        return self.status == "simulated" and self.facts is not None

    def describe(self) -> str:
        ids = ", ".join(self.migrations)
        if self.status == "simulated":
            return (f"migration{'s' if len(self.migrations) != 1 else ''} {ids} ran on a schema-only copy "
                    f"({self.where}, {self.seconds:.1f}s); layers checked against the result")
        if self.status == "failed" and self.failure:
            return f"migration {self.failure[0]} fails on a schema-only copy ({self.where}): {self.failure[2]}"
        if self.status == "partial" and self.failure:
            return (f"not complete: migration {self.failure[0]} needs a privilege the simulation does not "
                    f"grant ({self.failure[2]}); layers checked against the live schema")
        return f"{self.status}: {self.detail}" if self.detail else self.status


def simulation_errors(desired: DesiredState, sim: Simulation | None) -> list[Diagnostic]:
    """A step that fails on the copy fails the plan, at the step in its migration file."""
    if sim is None or sim.status != "failed" or sim.failure is None:
        return []
    mid, index, message = sim.failure
    m = desired.migration(mid)
    if m is None:
        return []
    step = m.spec.up[index]
    return [Diagnostic(desired.locate(m.address, "spec", "up", index, "content"),
                       f"migration {mid} step '{step.name}' fails on a schema-only copy of the database "
                       f"(plan --simulate): {message}")]


def check_layer_after(diagnostics: Iterable[Diagnostic], migrations: Sequence[str]) -> list[Diagnostic]:
    """Layer diagnostics found on the simulated schema name the migrations that made it."""
    after = f" (after migration{'s' if len(migrations) != 1 else ''} {', '.join(migrations)}, simulated)"
    return [replace(d, message=d.message + after) for d in diagnostics]


def type_changes(served: tuple[list[str], set[str]], before: TableFacts,
                 after: TableFacts | None) -> list[tuple[str, risk.Finding]]:
    """(column, SVC101) for each served column (``served``: the table's collections and
    columns) the migrations drop or retype (a view replaced with other column types, ALTER
    COLUMN TYPE): known only once the statements ran."""
    collections, columns = served
    out: list[tuple[str, risk.Finding]] = []
    for column in sorted(columns):
        old = before.column(column)
        if old is None:
            continue
        new = after.column(column) if after is not None else None
        if new is None:
            detail = f"column {before.qualified_name}.{column} no longer exists after the migrations"
        elif new.data_type != old.data_type:
            detail = f"column {before.qualified_name}.{column} changes type {old.data_type} → {new.data_type}"
        else:
            continue
        out += [(column, risk.finding("SVC101", c, detail=detail, collection=c)) for c in collections]
    return out


class SimulatedTables:
    """The simulation's tables as the plan looks them up, kept for the saved plan
    (:class:`~honua_plan.plan.model.SimulatedFacts`): apply re-derives with exactly these."""

    def __init__(self, facts: DatabaseFacts) -> None:
        self.facts = facts
        self.seen: dict[str, dict[str, Any] | None] = {}

    def table(self, name: str) -> TableFacts | None:
        t = self.facts.table(name)
        self.seen[name] = table_facts_json(t) if t is not None else None
        return t

    def record(self) -> SimulatedFacts | None:
        if not self.seen:
            return None
        return SimulatedFacts(search_path=list(self.facts.search_path), tables=dict(sorted(self.seen.items())))
