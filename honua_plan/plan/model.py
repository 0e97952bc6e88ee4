"""The plan: a frozen, versioned, JSON-serialisable list of typed steps.

The same :class:`Plan` is rendered (text, markdown, json), saved to a file for review,
approved, and applied: render and apply are two visitors over the same operations, so
what is shown is what runs. ``plan_json_schema()`` is the published contract
(``schemas/plan.schema.json``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from honua_plan.fielddefaults import empty_dict, empty_list

PLAN_FORMAT_VERSION = 2  # 2: content digest, approvals bound to it (and optionally signed)

ActionKind = Literal["create", "update", "delete", "replace", "no-op", "apply", "reload", "validate"]
ResourceKind = Literal["datasource", "server", "service", "layer", "migration", "table", "validation", "policy",
                       "project"]
LevelName = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class FindingRecord(_Frozen):
    """One risk rule that fired: code, level, why, and what to do instead."""

    code: str
    level: LevelName
    message: str
    suggestion: str = ""
    irreversible: bool = False
    error: bool = False
    subject: str = ""


class Operation(_Frozen):
    """One thing apply does, in order. ``kind`` selects the provider that runs it."""

    kind: Literal["sql", "metadata", "publish", "reload", "record", "check"]
    name: str
    sql: str | None = None
    transactional: bool = True
    lock_timeout_s: float | None = None
    statement_timeout_s: float | None = None
    path: str | None = None  # metadata: the file edited (relative to the repository)
    changes: dict[str, Any] | None = None  # metadata: dotted path -> new value
    text_diff: str | None = None  # metadata: the exact unified diff the edit makes
    tables: list[str] = Field(default_factory=empty_list)  # tables the operation touches
    estimated_s: float = 0.0
    irreversible: bool = False


class CheckRecord(_Frozen):
    """A validation or health check apply runs after the operations."""

    name: str
    type: str
    query: str | None = None
    expected: str
    phase: Literal["post-up", "post-down", "health"] = "post-up"
    timeout_s: float | None = None
    predicted_failure: str | None = None  # why the plan expects it to fail (VAL001)


class Action(_Frozen):
    """One change to one address, with its risk, estimate and rollback."""

    address: str
    kind: ResourceKind
    action: ActionKind
    reason: str
    changed_paths: list[str] = Field(default_factory=empty_list)
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    source: str | None = None  # path:line of the YAML that asks for it
    depends_on: list[str] = Field(default_factory=empty_list)  # must succeed first (a failure skips this)
    runs_after: list[str] = Field(default_factory=empty_list)  # ordering only (a failure does not skip this)
    level: int = 0  # graph generation: actions of one level are independent
    risk: LevelName = "LOW"
    findings: list[FindingRecord] = Field(default_factory=empty_list)
    estimated_s: float = 0.0
    operations: list[Operation] = Field(default_factory=empty_list)
    checks: list[CheckRecord] = Field(default_factory=empty_list)
    rollback: list[Operation] = Field(default_factory=empty_list)
    rollback_checks: list[CheckRecord] = Field(default_factory=empty_list)
    irreversible: bool = False
    automatic_rollback: bool = False
    preconditions: list[str] = Field(default_factory=empty_list)  # labels, re-checked at apply
    deferred: list[str] = Field(default_factory=empty_list)  # checks that can only run at apply time
    backup_tables: list[str] = Field(default_factory=empty_list)


class NoOp(_Frozen):
    """An explicit "nothing to do" with its reason."""

    address: str
    kind: ResourceKind
    reason: str


class DriftRecord(_Frozen):
    """Live differs from recorded."""

    address: str
    kind: ResourceKind
    change: Literal["modified", "missing", "unmanaged"]
    summary: str
    details: list[str] = Field(default_factory=empty_list)
    recorded_fingerprint: str | None = None
    live_fingerprint: str | None = None
    last_applied: datetime | None = None


class ServerEntry(_Frozen):
    """What publishing would do on the GIS server (the server's own dry run where it has one)."""

    action: Literal["create", "update", "delete", "skip"]
    kind: Literal["collection", "service"] = "collection"
    name: str
    message: str = ""


class PolicyCheck(_Frozen):
    name: str
    status: Literal["pass", "fail", "warn", "skip"]
    message: str


class PolicyBase(_Frozen):
    """Which policy judged the plan: the base's (a pull request's target, the last
    deployment, or ``--policy-base``), never the one the change itself writes. Part of the
    digest, so a saved plan is not applied under another policy."""

    revision: str | None = None  # the commit the policy was read at; None: the working tree
    source: str  # how that policy was chosen, for people
    digest: str  # sha256 of the environment's policy files and honua.yaml as judged
    changed: list[str] = Field(default_factory=empty_list)  # those files that differ in the working tree

    def describe(self) -> str:
        return f"Policy: from {self.source}"


class Approval(_Frozen):
    """Who approved which content (``digest``) when; ``signature``: an SSH signature
    (``ssh-keygen -Y sign``, namespace ``honua-plan``) of :func:`honua_plan.plan.signing.approval_message`."""

    by: str
    at: datetime
    digest: str
    comment: str = ""
    signature: str | None = None


class DatabaseRef(_Frozen):
    """Which database a plan was made against (never the user or the password): apply refuses
    a saved plan on any other. Compared as named by the connection string (with libpq's
    ``PG*`` defaults), so ``localhost`` and ``127.0.0.1`` are two names."""

    host: str  # a host name or address, or a Unix socket directory ("" for libpq's default socket)
    port: str
    dbname: str
    embedded: bool = False  # the embedded PostGIS of the dev loop

    def describe(self) -> str:
        where = f"{self.host or 'local socket'}:{self.port}/{self.dbname}"
        return where + (" (embedded PostGIS)" if self.embedded else "")


class MovedRecord(_Frozen):
    """A resource the plan records under a new address (honua.yaml ``moved:``)."""

    from_address: str
    to_address: str


class SimulationRecord(_Frozen):
    """What ``plan --simulate`` did: the plan's migrations run on a schema-only copy of the
    database, and the layers checked against the result (see plan.simulation)."""

    status: Literal["simulated", "failed", "partial", "unavailable", "skipped"]
    summary: str
    seconds: float = 0.0
    migrations: list[str] = Field(default_factory=empty_list)


class SimulatedFacts(_Frozen):
    """The tables the plan's layers were checked against on the simulation's copy, as the
    plan looked them up (``None``: the copy had no such table). Apply runs the migrations
    for real instead of simulating them; it re-derives the plan with these facts, so a plan
    saved with the simulation is the plan applied, and checks each layer's live table
    against them once its migrations ran."""

    search_path: list[str] = Field(default_factory=lambda: ["public"])
    tables: dict[str, dict[str, Any] | None] = Field(default_factory=empty_dict)


class Provenance(_Frozen):
    kind: Literal["human", "ci", "ai"] = "human"
    actor: str | None = None
    tool: str = "honua"
    # kind ai: the model (or "offline") whose proposal this plans. Absent when None, so plan
    # files (and their digests) made before the field existed read and verify the same.
    model: str | None = Field(default=None, exclude_if=lambda v: v is None)


class Plan(_Frozen):
    format_version: int = PLAN_FORMAT_VERSION
    id: str
    created_at: datetime
    environment: str
    engine_version: str
    config_commit: str | None = None
    config_hash: str
    state_lineage: str
    state_serial: int
    fingerprints: dict[str, str] = Field(default_factory=empty_dict)  # live objects read: address -> fingerprint
    target: list[str] = Field(default_factory=empty_list)
    exclude: list[str] = Field(default_factory=empty_list, exclude_if=lambda v: not v)
    replace: list[str] = Field(default_factory=empty_list, exclude_if=lambda v: not v)  # --replace
    refresh_only: bool = False
    actions: list[Action] = Field(default_factory=empty_list)  # in execution (topological) order
    no_ops: list[NoOp] = Field(default_factory=empty_list)
    drift: list[DriftRecord] = Field(default_factory=empty_list)
    server: list[ServerEntry] = Field(default_factory=empty_list)  # publish dry run (created/updated/deleted)
    risk: LevelName = "LOW"
    estimated_s: float = 0.0
    policy: list[PolicyCheck] = Field(default_factory=empty_list)
    approvals_required: int = 0
    approvers: list[str] = Field(default_factory=empty_list)
    approvals: list[Approval] = Field(default_factory=empty_list)
    provenance: Provenance = Field(default_factory=Provenance)
    warnings: list[str] = Field(default_factory=empty_list)
    # the database it read (host, port, dbname). Absent when None: plan files made before the
    # field existed read and verify the same, and apply refuses them (unknown database)
    database: DatabaseRef | None = Field(default=None, exclude_if=lambda v: v is None)
    # records apply moves to a new address before its steps (honua.yaml moved:); absent when none
    moved: list[MovedRecord] = Field(default_factory=empty_list, exclude_if=lambda v: not v)
    # plan --simulate's outcome; absent when the plan did not consider it (no migrations)
    simulation: SimulationRecord | None = Field(default=None, exclude_if=lambda v: v is None)
    # what the simulation established (absent without a simulation that checked a layer)
    simulated: SimulatedFacts | None = Field(default=None, exclude_if=lambda v: v is None)
    # the policy that judged it (absent in plan files made before it was recorded: apply refuses them)
    policy_base: PolicyBase | None = Field(default=None, exclude_if=lambda v: v is None)
    # sha256 of the canonical JSON of everything above but approvals (set when rendered
    # as JSON or saved); apply and show recompute it
    digest: str | None = None

    @property
    def rollback_summary(self) -> str:
        """Whether a failure undoes this plan by itself: YES when every action that can be
        rolled back is rolled back automatically, NO when none is, else PARTIAL (n of m).
        The one definition: plan text, Markdown, the assistant and promote all show this."""
        candidates = [a for a in self.actions if a.rollback or a.automatic_rollback]
        auto = [a for a in candidates if a.automatic_rollback]
        if not auto:
            return "NO"
        if len(auto) == len(candidates):
            return "YES"
        return f"PARTIAL ({len(auto)} of {len(candidates)} actions)"

    @property
    def has_changes(self) -> bool:
        return bool(self.actions or self.moved)

    def summary(self) -> dict[str, int]:
        counts = {"create": 0, "update": 0, "delete": 0, "replace": 0, "apply": 0, "reload": 0, "validate": 0}
        for a in self.actions:
            counts[a.action] = counts.get(a.action, 0) + 1
        return counts

    @property
    def approved(self) -> bool:
        """Enough distinct approvers (as recorded: apply also checks each one against the policy)."""
        return len({a.by.casefold() for a in self.approvals}) >= self.approvals_required


def plan_json_schema() -> dict[str, Any]:
    schema = Plan.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://honua.io/schemas/v1/plan.schema.json"
    return schema
