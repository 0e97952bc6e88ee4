"""The recorded state of one environment, as pydantic models.

A :class:`StateDocument` is what a state backend stores for one environment: its
identity (``lineage``, created once) and version (``serial``, +1 on every successful
write, never decreasing), the resources as last applied (with fingerprints), the
migration history, an append-only event log, the backups index and the journal of an
in-flight apply (``pending``).

Every model is strict (``extra="forbid"``) and frozen: change a document by building a
new one with the ``with_*`` helpers (or ``model_copy(update=...)``). Datetimes are
timezone-aware UTC; a naive datetime is taken to be UTC.

:func:`canonical_json` and :func:`fingerprint` (from :mod:`honua_plan.canonical`) are the one definition of "same value"
used for resource fingerprints and migration checksums.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from honua_plan import __version__
from honua_plan.canonical import _digest, _jsonable, canonical_json, fingerprint
from honua_plan.fielddefaults import empty_dict, empty_list
from honua_plan.secrets import redact

FORMAT_VERSION = 1
"""The state document format this engine reads and writes."""

ENVIRONMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
"""Environment names double as file names (``state/<env>.json``) and table keys."""


# --------------------------------------------------------------------------- helpers


def utcnow() -> datetime:
    """The current time, timezone-aware UTC, to the microsecond."""
    return datetime.now(UTC)


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


UTCDateTime = Annotated[datetime, AfterValidator(_as_utc)]
"""A datetime normalised to timezone-aware UTC (naive values are taken as UTC)."""


def new_lineage() -> str:
    """A fresh lineage: uuid4 in hex (32 characters)."""
    return uuid.uuid4().hex


def backup_id(environment: str, at: datetime | None = None) -> str:
    """The id of a backup taken at ``at``: ``dev-backup-20251004-140530`` (UTC)."""
    when = _as_utc(at) if at is not None else utcnow()
    return f"{environment}-backup-{when:%Y%m%d-%H%M%S}"


def check_environment_name(environment: str) -> str:
    """Return ``environment`` or raise ``ValueError`` when it is not a usable name."""
    if not ENVIRONMENT_NAME.match(environment):
        raise ValueError(
            f"invalid environment name {environment!r}: use letters, digits, '_', '.', '-' "
            "(starting with a letter or digit, at most 63 characters)"
        )
    return environment


JSON_CONTEXT = {"parsed_json": True}
"""Validation context for data that came out of a JSON parser: it is JSON already, so the
per-object check (a canonical dump of every resource's attributes: 0.5 s of a 10,000-layer
state) is skipped."""


def _check_jsonable(value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
    if info.context is None or not info.context.get("parsed_json"):
        canonical_json(value)  # raises ValueError with a readable message
    return value


JSONObject = Annotated[dict[str, Any], AfterValidator(_check_jsonable)]

RedactedText = Annotated[str, AfterValidator(redact)]
"""Free text for people (an event's message, a step's error): redacted however it is made.
Nothing else in a state document is: identifiers and attributes are stored as they are."""


# --------------------------------------------------------------------------- models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class ResourceRecord(_Model):
    """One applied resource, keyed in the document by its address."""

    address: str = Field(min_length=1)
    """``layer.transportation::bike-lanes``, ``service.transportation``, ``table.public.bike_lanes`` …"""
    kind: str = Field(min_length=1)
    attributes: JSONObject = Field(default_factory=empty_dict)
    """The applied spec, as JSON values."""
    fingerprint: str
    """``sha256:…`` of :func:`canonical_json` of ``attributes``."""
    source_path: str | None = None
    applied_at: UTCDateTime
    applied_by: str | None = None
    serial: int = Field(ge=0)
    """The state serial at which this resource was last applied."""

    @classmethod
    def create(
        cls,
        address: str,
        kind: str,
        attributes: Mapping[str, Any],
        *,
        serial: int,
        source_path: str | None = None,
        applied_by: str | None = None,
        applied_at: datetime | None = None,
    ) -> ResourceRecord:
        """Build a record, computing the fingerprint from ``attributes``."""
        text = canonical_json(dict(attributes))  # one text gives the JSON values and the hash
        return cls.model_validate(
            {
                "address": address,
                "kind": kind,
                "attributes": json.loads(text),
                "fingerprint": _digest(text),
                "source_path": source_path,
                "applied_at": applied_at or utcnow(),
                "applied_by": applied_by,
                "serial": serial,
            },
            context=JSON_CONTEXT,  # the attributes were just parsed from JSON text: no second check
        )


MigrationStatus = Literal["applied", "failed", "rolled_back", "pending"]


class MigrationRecord(_Model):
    """One run of one migration (a migration id may appear several times in the history)."""

    id: str = Field(min_length=1)
    description: str = ""
    checksum: str
    """``sha256:…`` of the canonical spec of the migration."""
    status: MigrationStatus
    started_at: UTCDateTime | None = None
    finished_at: UTCDateTime | None = None
    duration_s: float | None = Field(default=None, ge=0)
    applied_by: str | None = None
    backup_id: str | None = None
    error: str | None = None
    """Why it failed (redacted), when ``status`` is ``failed``."""


class Event(_Model):
    """One entry of the append-only event log."""

    at: UTCDateTime = Field(default_factory=utcnow)
    kind: str = Field(min_length=1)
    """plan, apply, rollback, drift, recover, lock, unlock, import, migrate, backup …"""
    serial: int = Field(default=0, ge=0)
    """The state serial of the write that recorded this event (stamped on append and write)."""
    actor: str | None = None
    message: RedactedText = ""
    details: JSONObject = Field(default_factory=empty_dict)


class IncidentRecord(_Model):
    """An automatic rollback, a failed deployment or a recovery, with its report."""

    id: str = Field(pattern=r"^INC-\d{8}-\d{3,}$")
    """``INC-YYYYMMDD-NNN``: per environment, numbered within the day, never reused."""
    at: UTCDateTime = Field(default_factory=utcnow)
    kind: Literal["rollback", "failed-deployment", "recovery"]
    summary: RedactedText = ""
    report: str | None = None
    """The report's path, relative to the state folder (``incidents/….md``)."""
    plan_id: str | None = None


class TableContent(_Model):
    """What a table held when it was backed up, to compare with after a restore."""

    rows: int = Field(ge=0)
    checksum: str
    """``md5`` over the rows' md5s in key order, computed in SQL (see ``apply.backup.table_contents``)."""
    indexes: dict[str, str] = Field(default_factory=empty_dict)
    """Index name → ``pg_get_indexdef``."""
    constraints: dict[str, str] = Field(default_factory=empty_dict)
    """Constraint name → ``pg_get_constraintdef``."""


class BackupRecord(_Model):
    """One backup of an environment's tables (before a migration, or ``honua backup create``)."""

    id: str = Field(min_length=1)
    """``<env>-backup-YYYYMMDD-HHMMSS`` (see :func:`backup_id`)."""
    created_at: UTCDateTime
    path: str
    """Relative to the state directory (or the backup root)."""
    size_bytes: int = Field(ge=0)
    sha256: str
    tables: list[str] = Field(default_factory=empty_list)
    migration_id: str | None = None
    kind: Literal["pg_dump"] = "pg_dump"
    commit: str | None = None
    """The git commit of the metadata deployed when the data was dumped (None: not recorded)."""
    contents: dict[str, TableContent] = Field(default_factory=empty_dict)
    """Per table: rows, checksum, indexes, constraints, read in the dump's own snapshot."""
    metadata_path: str | None = None
    """A tar.gz of the environment's metadata files as deployed, relative to the state directory."""
    metadata_sha256: str | None = None
    """The snapshot's SHA-256: a copy downloaded from a backup store is checked against it."""


StepStatus = Literal["pending", "running", "done", "failed", "rolled_back"]


class JournalStep(_Model):
    """One mutating step of an apply, journaled before it runs."""

    id: str = Field(min_length=1)
    address: str | None = None
    action: str | None = None
    """create, update, delete, migrate, reload …"""
    description: str = ""
    status: StepStatus = "pending"
    started_at: UTCDateTime | None = None
    finished_at: UTCDateTime | None = None
    error: RedactedText | None = None
    details: JSONObject = Field(default_factory=empty_dict)
    """Whatever the apply engine needs to resume or roll back the step (JSON values)."""


class JournalRecord(_Model):
    """The journal of the in-flight apply; ``None`` in the document when none is running."""

    plan_id: str = Field(min_length=1)
    started_at: UTCDateTime = Field(default_factory=utcnow)
    actor: str | None = None
    command: str | None = None
    steps: list[JournalStep] = Field(default_factory=empty_list)

    @model_validator(mode="after")
    def _unique_step_ids(self) -> JournalRecord:
        counts = Counter(s.id for s in self.steps)  # list.count per id was quadratic: 6 s at 10,000 steps
        dupes = sorted(i for i, c in counts.items() if c > 1)
        if dupes:
            raise ValueError(f"journal step ids must be unique, repeated: {', '.join(dupes)}")
        return self

    def step(self, step_id: str) -> JournalStep:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    def with_step(
        self,
        step_id: str,
        status: StepStatus,
        *,
        error: str | None = None,
        at: datetime | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> JournalRecord:
        """A copy with step ``step_id`` moved to ``status`` (timestamps filled in)."""
        when = at or utcnow()
        steps: list[JournalStep] = []
        found = False
        for s in self.steps:
            if s.id == step_id:
                found = True
                update: dict[str, Any] = {"status": status}
                if status == "running" and s.started_at is None:
                    update["started_at"] = when
                if status in ("done", "failed", "rolled_back"):
                    update["finished_at"] = when
                if error is not None:
                    update["error"] = error  # redacted by the field
                if details is not None:
                    update["details"] = {**s.details, **_jsonable(dict(details))}
                s = JournalStep.model_validate({**s.model_dump(), **update})
            steps.append(s)
        if not found:
            raise KeyError(step_id)
        return self.model_copy(update={"steps": steps})

    @property
    def unfinished(self) -> list[JournalStep]:
        """Steps not yet ``done`` or ``rolled_back`` (what a resume or rollback must look at)."""
        return [s for s in self.steps if s.status in ("pending", "running", "failed")]


class StateDocument(_Model):
    """Everything recorded about one environment."""

    format_version: int = FORMAT_VERSION
    environment: str
    lineage: str = Field(min_length=1)
    serial: int = Field(default=0, ge=0)
    engine_version: str = __version__
    updated_at: UTCDateTime = Field(default_factory=utcnow)
    config_commit: str | None = None
    resources: dict[str, ResourceRecord] = Field(default_factory=empty_dict)
    migrations: list[MigrationRecord] = Field(default_factory=empty_list)
    events: list[Event] = Field(default_factory=empty_list)
    backups: list[BackupRecord] = Field(default_factory=empty_list)
    incidents: list[IncidentRecord] = Field(default_factory=empty_list)
    pending: JournalRecord | None = None
    unmanaged: list[str] = Field(default_factory=empty_list)
    """Addresses forgotten by ``honua state rm`` while the configuration may still declare
    them: apply leaves them as they are live (the server keeps publishing them as it does
    now) until ``honua state import`` manages them again. Sorted, none of them recorded."""

    @field_validator("format_version")
    @classmethod
    def _known_format(cls, value: int) -> int:
        if value > FORMAT_VERSION:
            raise ValueError(
                f"state format {value} was written by a newer honua-plan "
                f"(this one reads format {FORMAT_VERSION}); upgrade honua-plan"
            )
        if value < 1:
            raise ValueError(f"unknown state format {value}")
        return value

    @field_validator("environment")
    @classmethod
    def _env_name(cls, value: str) -> str:
        return check_environment_name(value)

    @model_validator(mode="after")
    def _keys_match_addresses(self) -> StateDocument:
        wrong = [k for k, r in self.resources.items() if k != r.address]
        if wrong:
            raise ValueError(
                "resources must be keyed by their address; mismatched: " + ", ".join(sorted(wrong))
            )
        return self

    # -- construction ------------------------------------------------------------

    @classmethod
    def new(cls, environment: str, *, engine_version: str | None = None) -> StateDocument:
        """An empty document (serial 0) with a fresh lineage."""
        return cls(
            environment=environment,
            lineage=new_lineage(),
            serial=0,
            engine_version=engine_version or __version__,
            updated_at=utcnow(),
        )

    # -- queries ---------------------------------------------------------------

    @property
    def next_serial(self) -> int:
        """The serial the next successful write of this document will get."""
        return self.serial + 1

    def resource(self, address: str) -> ResourceRecord | None:
        return self.resources.get(address)

    def latest_migration(self, migration_id: str) -> MigrationRecord | None:
        """The most recent record of ``migration_id`` (its current status), if any."""
        for rec in reversed(self.migrations):
            if rec.id == migration_id:
                return rec
        return None

    def applied_migrations(self) -> list[str]:
        """Ids whose latest record is ``applied``, in the order they were first applied."""
        seen: list[str] = []
        for rec in self.migrations:
            if rec.id not in seen:
                seen.append(rec.id)
        out: list[str] = []
        for mid in seen:
            latest = self.latest_migration(mid)
            if latest is not None and latest.status == "applied":
                out.append(mid)
        return out

    def backup(self, backup_id: str) -> BackupRecord | None:
        for b in self.backups:
            if b.id == backup_id:
                return b
        return None

    def latest_backup(self) -> BackupRecord | None:
        return max(self.backups, key=lambda b: b.created_at, default=None)

    # -- copies with one change -------------------------------------------------

    def with_resource(self, record: ResourceRecord) -> StateDocument:
        return self.with_resources([record])

    def with_resources(self, records: list[ResourceRecord], removed: frozenset[str] = frozenset()) -> StateDocument:
        """Many records set and removed in one copy (one per record is quadratic in N)."""
        resources = {k: v for k, v in self.resources.items() if k not in removed}
        resources.update((r.address, r) for r in records)
        if self.unmanaged and records:  # what is recorded is managed again
            return self.model_copy(update={"resources": resources,
                                           "unmanaged": [a for a in self.unmanaged if a not in resources]})
        return self.model_copy(update={"resources": resources})

    def with_unmanaged(self, forgotten: frozenset[str] = frozenset(), managed: frozenset[str] = frozenset()
                       ) -> StateDocument:
        """``forgotten`` added to :attr:`unmanaged` (and their records removed), ``managed`` taken out of it."""
        unmanaged = sorted((set(self.unmanaged) | forgotten) - managed)
        return self.with_resources([], forgotten).model_copy(update={"unmanaged": unmanaged})

    def with_moved(self, source: str, destination: str) -> StateDocument:
        """The record of ``source`` kept under ``destination`` (``state mv``, ``moved:``)."""
        rec = self.resources[source]
        return self.with_resources([rec.model_copy(update={"address": destination})], frozenset({source}))

    def without_resource(self, address: str) -> StateDocument:
        return self.with_resources([], frozenset({address}))

    def with_migration(self, record: MigrationRecord) -> StateDocument:
        """Append ``record`` to the migration history."""
        return self.model_copy(update={"migrations": [*self.migrations, record]})

    def with_backup(self, record: BackupRecord) -> StateDocument:
        return self.model_copy(update={"backups": [*self.backups, record]})

    def next_incident_id(self, now: datetime | None = None) -> str:
        """``INC-<day>-<n>``: one more than the highest number of that day ever recorded here."""
        day = f"{(now or utcnow()):%Y%m%d}"
        taken = [int(i.id.rsplit("-", 1)[1]) for i in self.incidents if i.id.startswith(f"INC-{day}-")]
        return f"INC-{day}-{max(taken, default=0) + 1:03d}"

    def with_incident(self, record: IncidentRecord) -> StateDocument:
        return self.model_copy(update={"incidents": [*self.incidents, record]})

    def with_event(self, event: Event) -> StateDocument:
        """Append ``event``, stamped with :attr:`next_serial` (the log is append-only)."""
        stamped = event.model_copy(update={"serial": self.next_serial})
        return self.model_copy(update={"events": [*self.events, stamped]})

    def record_event(
        self,
        kind: str,
        message: str = "",
        *,
        actor: str | None = None,
        details: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> StateDocument:
        """Append a new event stamped with :attr:`next_serial` (the serial of the next write)."""
        event = Event(
            at=at or utcnow(),
            kind=kind,
            actor=actor,
            message=message,
            details=_jsonable(dict(details or {})),
        )
        return self.with_event(event)

    def with_pending(self, journal: JournalRecord | None) -> StateDocument:
        return self.model_copy(update={"pending": journal})

    def with_config_commit(self, commit: str | None) -> StateDocument:
        return self.model_copy(update={"config_commit": commit})

    # -- storage ---------------------------------------------------------------

    def to_json_data(self) -> dict[str, Any]:
        """The document as plain JSON values (what backends store).

        Resource records are turned over field by field, their attributes as they are:
        those are JSON values already (checked when the record was made, or read from
        JSON), and walking 20,000 of them value by value cost seconds per state write.
        """
        data: dict[str, Any] = _jsonable(self.model_dump(mode="python", exclude={"resources", "pending"}))
        data["resources"] = {address: _record_json(rec) for address, rec in self.resources.items()}
        data["pending"] = _journal_json(self.pending) if self.pending is not None else None
        return data


_RECORD_FIELDS = tuple(ResourceRecord.model_fields)
_STEP_FIELDS = tuple(f for f in JournalStep.model_fields if f != "details")


def _fields_json(obj: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    """Fields that are JSON values already (or datetimes) taken one by one: no dump-and-walk."""
    out: dict[str, Any] = {}
    for name in fields:
        value = getattr(obj, name)
        out[name] = value.isoformat() if isinstance(value, datetime) else value
    return out


def _journal_json(journal: JournalRecord) -> dict[str, Any]:
    """The journal field by field: an apply of 10,000 layers journals 10,000 steps, and a
    generic dump-and-walk of them cost a second per state write."""
    out: dict[str, Any] = _jsonable(journal.model_dump(mode="python", exclude={"steps"}))
    out["steps"] = [{**_fields_json(step, _STEP_FIELDS), "details": _jsonable(step.details) if step.details else {}}
                    for step in journal.steps]
    return out


class IdentityCache:
    """A value computed once per object while that object lives.

    An apply rewrites the whole state document at every journal step, and between two
    writes only a few of its thousands of (frozen) records change: each record's JSON,
    and its text, is made once. Keyed by ``id`` with the object kept, so an id is never
    reused while its entry exists; cleared when it grows past ``limit`` entries.
    """

    def __init__(self, limit: int = 200_000) -> None:
        self._entries: dict[int, tuple[Any, Any]] = {}
        self._limit = limit

    def get(self, obj: Any, make: Callable[[Any], Any]) -> Any:
        hit = self._entries.get(id(obj))
        if hit is not None and hit[0] is obj:
            return hit[1]
        if len(self._entries) >= self._limit:
            self._entries.clear()
        value = make(obj)
        self._entries[id(obj)] = (obj, value)
        return value


_RECORD_JSON = IdentityCache()


def _record_json(rec: ResourceRecord) -> dict[str, Any]:
    """The record's JSON (shared between writes of the same record: never mutate it)."""
    return _RECORD_JSON.get(rec, lambda r: _fields_json(r, _RECORD_FIELDS))


__all__ = [
    "FORMAT_VERSION",
    "BackupRecord",
    "Event",
    "IdentityCache",
    "IncidentRecord",
    "JournalRecord",
    "JournalStep",
    "MigrationRecord",
    "MigrationStatus",
    "ResourceRecord",
    "StateDocument",
    "StepStatus",
    "TableContent",
    "UTCDateTime",
    "backup_id",
    "canonical_json",
    "check_environment_name",
    "fingerprint",
    "new_lineage",
    "utcnow",
]
