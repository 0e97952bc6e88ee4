"""The server provider contract, and what every adapter shares.

A :class:`ServerProvider` publishes the document of :mod:`.compile` to one GIS server:

* ``read()``: what is published now (``None`` when nothing is);
* ``plan(doc)``: a dry run, one :class:`PlanEntry` per service and collection;
* ``publish(doc, prune=...)``: make the server's configuration say ``doc``;
* ``reload()``: make the running server serve it;
* ``health(ids, timeout_s)``: poll ``<ogc>/collections/<id>`` until each answers 200,
  or raise :class:`~honua_plan.errors.ServerError` at the timeout;
* ``close()``.

The apply sequence is always ``publish → reload → health``. After a successful
publish every adapter writes the document it published to
``state/<env>/published.json`` (:meth:`ServerProvider.write_published`).

HTTP goes through :func:`http_request` (``urllib``; no dependency): loopback URLs
bypass any configured proxy, network errors become ``ServerError`` with secrets
redacted.
"""

from __future__ import annotations

import copy
import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from honua_plan.errors import ServerError
from honua_plan.providers.server.compile import VOLATILE_KEYS, empty_published
from honua_plan.secrets import redact

if TYPE_CHECKING:
    from honua_plan.config.desired import DesiredState
    from honua_plan.config.models import Server
    from honua_plan.providers.postgis.facts import DatabaseFacts
    from honua_plan.state.model import StateDocument
from honua_plan.providers.server.http import (
    HealthResult,
    HttpResponse,
    check_served,
    collection_url,
    health_sample,
    http_request,
    is_loopback_url,
    poll_collections,
)

Action = Literal["create", "update", "delete", "skip"]
ACTIONS: tuple[Action, ...] = ("create", "update", "delete", "skip")
# a resolver gives the DSN of a datasource (by name), or of the environment's only one
DsnResolver = Callable[..., str]
PUBLISHED_FILE = "published.json"

__all__ = [
    "Action",
    "DsnResolver",
    "HealthResult",
    "HttpResponse",
    "NoopServer",
    "PlanEntry",
    "PublishResult",
    "ServerProvider",
    "changed_keys",
    "check_served",
    "collection_url",
    "compute_extents",
    "diff_published",
    "extent_columns",
    "extent_contains",
    "health_sample",
    "http_request",
    "is_loopback_url",
    "live_served_extents",
    "merge_published",
    "poll_collections",
    "stale_extents",
    "with_live_extents",
    "with_stale_extents",
]


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class PlanEntry:
    """One change a publish would make: ``action`` on ``collection`` (or a service)."""

    action: Action
    collection: str
    message: str = ""
    kind: Literal["collection", "service"] = "collection"

    def to_dict(self) -> dict[str, str]:
        return {"action": self.action, "kind": self.kind, "collection": self.collection, "message": self.message}

    def __str__(self) -> str:
        sym = {"create": "+", "update": "~", "delete": "-", "skip": " "}[self.action]
        return f"{sym} {self.kind} {self.collection}" + (f": {self.message}" if self.message else "")


def summarize(entries: Iterable[PlanEntry]) -> dict[str, int]:
    counts = {"created": 0, "updated": 0, "deleted": 0, "skipped": 0}
    key = {"create": "created", "update": "updated", "delete": "deleted", "skip": "skipped"}
    for e in entries:
        counts[key[e.action]] += 1
    return counts


@dataclass(frozen=True)
class PublishResult:
    entries: tuple[PlanEntry, ...]
    published: dict[str, Any]
    seconds: float = 0.0
    files: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def summary(self) -> dict[str, int]:
        return summarize(self.entries)

    @property
    def changed(self) -> bool:
        return any(e.action != "skip" for e in self.entries)


# --------------------------------------------------------------------------- diff (pure)


def _comparable(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in VOLATILE_KEYS}


def changed_keys(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    a, b = _comparable(before), _comparable(after)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def diff_published(
    current: Mapping[str, Any] | None, desired: Mapping[str, Any], *, prune: bool = True
) -> list[PlanEntry]:
    """Entries that turn ``current`` into ``desired``: services first, then collections, by id.

    The bbox is left out of the comparison (it is data). Without ``prune`` a published
    collection that is no longer declared is kept, and shows as a skip.
    """
    cur = current or {}
    entries: list[PlanEntry] = []
    kinds: tuple[tuple[Literal["collection", "service"], str], ...] = (
        ("service", "services"), ("collection", "collections"))
    for kind, key in kinds:
        before: Mapping[str, Any] = cur.get(key) or {}
        after: Mapping[str, Any] = desired.get(key) or {}
        for name in sorted(set(before) | set(after)):
            if name not in before:
                entries.append(PlanEntry("create", name, "not published yet", kind))
            elif name not in after:
                if prune:
                    entries.append(PlanEntry("delete", name, "published but no longer declared", kind))
                else:
                    entries.append(PlanEntry("skip", name, "no longer declared; kept (prune is off)", kind))
            else:
                changed = changed_keys(before[name], after[name])
                if changed:
                    entries.append(PlanEntry("update", name, f"{', '.join(changed)} changed", kind))
                else:
                    entries.append(PlanEntry("skip", name, "no changes", kind))
    return entries


def merge_published(
    current: Mapping[str, Any] | None, desired: Mapping[str, Any], *, prune: bool
) -> dict[str, Any]:
    """The document to publish: ``desired``, plus (without prune) what is published and undeclared."""
    doc = copy.deepcopy(dict(desired))
    doc.setdefault("services", {})
    doc.setdefault("collections", {})
    if not prune and current:
        for key in ("services", "collections"):
            for name, entry in (current.get(key) or {}).items():
                doc[key].setdefault(name, copy.deepcopy(entry))
    # a collection without a bbox keeps the one already published (same table)
    for cid, entry in doc["collections"].items():
        old = ((current or {}).get("collections") or {}).get(cid)
        if entry.get("bbox") is None and old and old.get("bbox") and old.get("table") == entry.get("table"):
            entry["bbox"] = list(old["bbox"])
    return doc


# --------------------------------------------------------------------------- HTTP


# --------------------------------------------------------------------------- extents


def call_resolver(resolver: DsnResolver | None, datasource: str) -> str:
    """Ask ``resolver`` for a datasource's DSN; it may take the name or nothing."""
    if resolver is None:
        raise ServerError(f"no connection for datasource '{datasource}' (no DSN resolver was given)")
    try:
        takes_name = any(
            p.default is inspect.Parameter.empty
            and p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            for p in inspect.signature(resolver).parameters.values()
        )
    except (TypeError, ValueError):  # no signature (a builtin): assume it takes the name
        takes_name = True
    return resolver(datasource) if takes_name else resolver()


def compute_extents(
    doc: Mapping[str, Any], resolver: DsnResolver | None, *, only_missing: bool = True
) -> tuple[dict[str, list[float] | None], list[str]]:
    """``ST_Extent`` (CRS84) of each collection's table, one connection per datasource.

    Returns ``(extents, warnings)``; a collection whose table is missing, empty or
    unreadable gets ``None`` and a warning, never an exception.
    """
    from honua_plan.errors import DatabaseError, HonuaError
    from honua_plan.providers.postgis import catalog as postgis
    from honua_plan.providers.postgis.sqlexec import Session, connect

    out: dict[str, list[float] | None] = {}
    warnings: list[str] = []
    by_ds: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for cid, entry in (doc.get("collections") or {}).items():
        if only_missing and entry.get("bbox"):
            continue
        by_ds.setdefault(entry.get("datasource") or "", []).append((cid, entry))
    for ds, items in sorted(by_ds.items()):
        try:
            dsn = call_resolver(resolver, ds)
            conn = connect(dsn, application_name="honua-plan extent", connect_timeout=10)
        except HonuaError as exc:
            for cid, _ in items:
                out[cid] = None
                warnings.append(f"{cid}: no extent ({exc.message})")
            continue
        with conn:
            session = Session(conn)
            for cid, entry in items:
                try:
                    box = postgis.table_extent(session, entry["table"], entry["geom_field"])
                except DatabaseError as exc:
                    box = None
                    warnings.append(redact(f"{cid}: no extent ({exc.message})"))
                else:
                    if box is None:
                        warnings.append(f"{cid}: table {entry['table']} has no geometries; extent is the whole world")
                out[cid] = list(box) if box is not None else None
    return out, warnings


WORLD_BBOX = [-180.0, -90.0, 180.0, 90.0]
# how far (a share of the served box's larger side, plus a floor in degrees) the live extent
# may pass the served one: the index and statistics boxes are float4, rounded outwards
EXTENT_TOLERANCE = (1e-3, 1e-5)
STALE_EXTENT = "served extent"


def extent_contains(outer: Sequence[float], inner: Sequence[float]) -> bool:
    """Whether the box ``inner`` lies in ``outer`` (CRS84, 4 numbers), within the tolerance."""
    share, floor = EXTENT_TOLERANCE
    tol = floor + share * max(float(outer[2]) - float(outer[0]), float(outer[3]) - float(outer[1]), 0.0)
    return (float(inner[0]) >= float(outer[0]) - tol and float(inner[1]) >= float(outer[1]) - tol
            and float(inner[2]) <= float(outer[2]) + tol and float(inner[3]) <= float(outer[3]) + tol)


def _box_text(box: Sequence[float]) -> str:
    return "[" + ", ".join(f"{float(v):.6f}".rstrip("0").rstrip(".") for v in box[:4]) + "]"


def extent_columns(
    facts: DatabaseFacts, current: Mapping[str, Any] | None
) -> dict[str, tuple[str, str, str, int, bool]]:
    """``{collection id: (schema, table, column, srid, has a valid GiST index)}`` of the
    collections ``current`` serves with a bbox from a table that exists with that geometry
    column: the ones whose served extent can be compared with the live one."""
    out: dict[str, tuple[str, str, str, int, bool]] = {}
    for cid, entry in ((current or {}).get("collections") or {}).items():
        if not isinstance(entry, Mapping) or not entry.get("bbox") or not entry.get("table"):
            continue
        t = facts.table(str(entry["table"]))
        g = t.geometry(str(entry.get("geom_field") or "geom")) if t is not None else None
        if t is not None and g is not None:
            # geography's index keys are geocentric: only a geometry column's box is read from it
            geometry = any(c.name == g.column and c.udt == "geometry" for c in t.columns)
            indexed = geometry and any(i.method == "gist" and i.is_valid and i.columns[:1] == (g.column,)
                                       for i in t.indexes)
            out[str(cid)] = (t.schema, t.name, g.column, int(g.srid), indexed)
    return out


def live_served_extents(session: Any, facts: DatabaseFacts, current: Mapping[str, Any] | None,
                        skip: Iterable[str] = ()) -> dict[str, tuple[float, float, float, float] | None]:
    """``{collection id: live CRS84 extent}`` of what ``current`` serves (but ``skip``),
    in one estimate statement and one exact one at most (:func:`live_extents`)."""
    from honua_plan.providers.postgis.catalog import live_extents

    skipped = set(skip)
    columns = {cid: col for cid, col in extent_columns(facts, current).items() if cid not in skipped}
    live = live_extents(session, list(columns.values())) if columns else {}
    return {cid: live.get((f"{s}.{t}", c)) for cid, (s, t, c, _, _) in columns.items()}


def with_stale_extents(entries: Sequence[PlanEntry], stale: Sequence[PlanEntry]) -> list[PlanEntry]:
    """A dry run's entries with each stale extent in place of its collection's skip (a
    collection that changes anyway has its extent computed again by the publish)."""
    by_id = {e.collection: e for e in stale}
    out = []
    for e in entries:
        mine = by_id.pop(e.collection, None) if e.kind == "collection" else None
        out.append(mine if mine is not None and e.action == "skip" else e)
    return out + list(by_id.values())


def dry_run(open_provider: Callable[[], ServerProvider], desired: DesiredState, recorded: StateDocument,
            facts: Any = None, session: Callable[[], Any] | None = None) -> tuple[tuple[Any, ...], str | None]:
    """Ask the server what publishing the layers would do (Honua: manifest dryRun): what the
    state forgot (``state rm``) stays as it is published; an update where a served extent no
    longer contains the live one (:func:`with_live_extents`, when ``session`` can read it)."""
    server = desired.server()
    if server is None or server.spec.type == "none":
        return (), None
    from honua_plan.errors import HonuaError
    from honua_plan.plan.model import ServerEntry
    from honua_plan.providers.server.compile import compile_published

    try:
        provider = open_provider()
        try:
            published = provider.read() if (session is not None or recorded.unmanaged) else None
            entries = provider.plan(compile_published(desired, unmanaged=recorded.unmanaged,
                                                      published=published if recorded.unmanaged else None))
            current = published if session is not None else None
        finally:
            provider.close()
    except HonuaError as exc:
        return (), f"publish dry run failed: {exc.message}"
    entries, server_error = with_live_extents(entries, current, facts, session)
    return tuple(ServerEntry(action=e.action, kind=e.kind, name=e.collection, message=e.message)
                 for e in entries), server_error


def with_live_extents(
    entries: Sequence[PlanEntry], current: Mapping[str, Any] | None, facts: DatabaseFacts | None,
    session: Callable[[], Any] | None,
) -> tuple[list[PlanEntry], str | None]:
    """A dry run's ``entries`` with an update for each collection of ``current`` whose
    served extent no longer contains the live one (``session`` is called only then), and
    the warning when the live extents could not be read."""
    from honua_plan.errors import HonuaError

    if not current or facts is None or session is None or not extent_columns(facts, current):
        return list(entries), None
    try:
        live = live_served_extents(session(), facts, current)
    except HonuaError as exc:
        return list(entries), f"live extents could not be read: {exc.message}"
    return with_stale_extents(entries, stale_extents(current, live)), None


def stale_extents(
    current: Mapping[str, Any] | None, live: Mapping[str, Sequence[float] | None]
) -> list[PlanEntry]:
    """An update per served collection whose bbox does not contain its ``live`` extent
    (rows were written outside it since the publish): the extent must be published again."""
    served: Mapping[str, Any] = (current or {}).get("collections") or {}
    out: list[PlanEntry] = []
    for cid in sorted(live):
        box, now = (served.get(cid) or {}).get("bbox"), live[cid]
        if box and now is not None and len(box) >= 4 and not extent_contains(box, now):
            out.append(PlanEntry("update", cid, f"{STALE_EXTENT} {_box_text(box)} does not contain the live extent "
                                                f"{_box_text(now)}"))
    return out


# --------------------------------------------------------------------------- provider


class ServerProvider(ABC):
    """One GIS server target of one environment."""

    kind: ClassVar[str] = "abstract"
    #: False for type ``none``: nothing is published, refresh has nothing to compare
    manages_publication: ClassVar[bool] = True

    def __init__(
        self,
        server: Server | None,
        *,
        root: Path,
        environment: str,
        dsn_resolver: DsnResolver | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.server = server
        self.root = Path(root)
        self.environment = environment
        self.dsn_resolver = dsn_resolver
        self.state_dir = Path(state_dir) if state_dir is not None else self.root / "state" / environment
        self.published_path = self.state_dir / PUBLISHED_FILE

    # -- contract -------------------------------------------------------------

    @abstractmethod
    def read(self) -> dict[str, Any] | None:
        """What is published now; None when nothing is."""

    @abstractmethod
    def plan(self, doc: Mapping[str, Any]) -> list[PlanEntry]:
        """What :meth:`publish` would do with ``doc`` (with prune), without doing it."""

    @abstractmethod
    def publish(self, doc: Mapping[str, Any], *, prune: bool = True) -> PublishResult:
        """Make the server's configuration say ``doc``."""

    @abstractmethod
    def reload(self) -> None:
        """Make the running server serve what was published."""

    @abstractmethod
    def health(self, collection_ids: Sequence[str], timeout_s: float = 30.0) -> HealthResult:
        """Poll until every collection answers 200; ServerError at the timeout."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the served process (if any) keeps running."""

    @property
    def ogc_url(self) -> str | None:
        """The OGC API – Features landing page the collections are served under."""
        return None

    @property
    def local_url(self) -> str | None:
        """Where this machine reaches the server (``ogc_url`` unless it runs here)."""
        return self.ogc_url

    def warm_up(self) -> None:  # noqa: B027 - optional hook
        """Start, in the background, what a coming publish will need (the apply calls this
        before its checks); others have nothing to prepare."""

    def use_catalog(self, datasource: str, facts: DatabaseFacts) -> None:  # noqa: B027 - optional hook
        """The catalog the engine read of ``datasource``, for a server that describes its
        collections from it (pygeoapi's OpenAPI fields); others ignore it."""

    def __enter__(self) -> ServerProvider:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- shared helpers ---------------------------------------------------------

    @property
    def health_timeout(self) -> float:
        return float(self.server.spec.healthTimeout) if self.server is not None else 30.0

    def read_published_file(self) -> dict[str, Any] | None:
        try:
            text = self.published_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ServerError(f"cannot read {self.published_path}: {exc.strerror}") from None
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ServerError(f"{self.published_path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(doc, dict):
            raise ServerError(f"{self.published_path} does not hold a published document")
        return doc

    def write_published(self, doc: Mapping[str, Any]) -> Path:
        from honua_plan.providers.metadata import write_atomic

        text = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        write_atomic(self.published_path, redact(text).encode("utf-8"))
        return self.published_path

    def fill_extents(self, doc: dict[str, Any]) -> list[str]:
        """Compute the missing bboxes of ``doc`` in place (world box when unknown); warnings back."""
        missing = [cid for cid, e in doc.get("collections", {}).items() if not e.get("bbox")]
        if not missing:
            return []
        extents, warnings = compute_extents(doc, self.dsn_resolver)
        for cid in missing:
            box = extents.get(cid)
            doc["collections"][cid]["bbox"] = list(box) if box else list(WORLD_BBOX)
        return warnings

    def merged_for_publish(
        self, doc: Mapping[str, Any], *, prune: bool
    ) -> tuple[list[PlanEntry], dict[str, Any], list[str]]:
        """What a file-based publish writes: its entries, the merged document (extents filled)
        and warnings; shared by the adapters that publish a document they keep themselves."""
        desired = self._normalized(doc)
        current = self.read()
        entries = diff_published(current, desired, prune=prune)
        merged = merge_published(current, desired, prune=prune)
        warnings = self.fill_extents(merged) if self.dsn_resolver is not None else []
        return entries, merged, warnings

    def _normalized(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(dict(doc))
        if not out:
            out = empty_published(self.environment)
        out.setdefault("format_version", 1)
        out.setdefault("environment", self.environment)
        out.setdefault("services", {})
        out.setdefault("collections", {})
        return out


class LocalServer(ServerProvider):
    """A server the engine runs as a process on this machine (pygeoapi): ``honua serve``,
    the dev loop and recovery start, stop and probe it."""

    port_override: int | None = None

    @abstractmethod
    def is_running(self) -> bool:
        """Whether its process answers now."""

    @abstractmethod
    def start(self, *, timeout_s: float | None = None) -> None:
        """Start it in the background; returns once it answers."""

    @abstractmethod
    def stop(self, timeout_s: float = 15.0) -> bool:
        """Stop it; False when it was not running."""

    @abstractmethod
    def serve_foreground(self, doc: Mapping[str, Any] | None = None) -> int:
        """Run it in this terminal until interrupted; the exit status."""


class NoopServer(ServerProvider):
    """Server type ``none``: nothing is published, reloaded or checked."""

    kind = "none"
    manages_publication = False

    def read(self) -> dict[str, Any] | None:
        return None

    def plan(self, doc: Mapping[str, Any]) -> list[PlanEntry]:
        return []

    def publish(self, doc: Mapping[str, Any], *, prune: bool = True) -> PublishResult:
        return PublishResult((), self._normalized(doc))

    def reload(self) -> None:
        return None

    def health(self, collection_ids: Sequence[str], timeout_s: float = 30.0) -> HealthResult:
        return HealthResult(True)
