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
import ipaddress
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from honua_plan.errors import ServerError
from honua_plan.providers.server.compile import VOLATILE_KEYS, empty_published
from honua_plan.secrets import redact

if TYPE_CHECKING:
    from honua_plan.config.models import Server
    from honua_plan.providers.postgis.facts import DatabaseFacts

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
    "health_sample",
    "http_request",
    "is_loopback_url",
    "merge_published",
    "poll_collections",
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


@dataclass(frozen=True)
class HealthResult:
    ok: bool
    statuses: dict[str, int] = field(default_factory=dict)  # collection id -> last HTTP status (0 = no answer)
    seconds: float = 0.0
    url: str | None = None


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


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str
    seconds: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8") or "null")

    def text(self, limit: int = 500) -> str:
        return self.body.decode("utf-8", "replace")[:limit]


def is_loopback_url(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_DEFAULT = urllib.request.build_opener()


def http_request(
    method: str,
    url: str,
    *,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
    what: str = "the server",
) -> HttpResponse:
    """One HTTP request; any status comes back as a response, network errors raise ServerError.

    ``body`` may be bytes or any JSON-able value (sent as ``application/json``).
    """
    hdrs = {"Accept": "application/json", "User-Agent": "honua-plan"}
    hdrs.update(headers or {})
    data: bytes | None = None
    if body is not None:
        if isinstance(body, bytes):
            data = body
        else:
            data = json.dumps(body).encode("utf-8")
            hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, headers=hdrs, method=method)
    opener = _DIRECT if is_loopback_url(url) else _DEFAULT
    started = time.perf_counter()
    try:
        with opener.open(req, timeout=timeout) as resp:
            payload = resp.read()
            return HttpResponse(resp.status, dict(resp.headers.items()), payload, resp.geturl(),
                                time.perf_counter() - started)
    except urllib.error.HTTPError as exc:
        try:
            payload = exc.read()
        except OSError:
            payload = b""
        return HttpResponse(exc.code, dict(exc.headers.items()) if exc.headers else {}, payload, url,
                            time.perf_counter() - started)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ServerError(redact(f"cannot reach {what} at {_safe_url(url)}: {reason}")) from None


def _safe_url(url: str) -> str:
    """The URL without user info or query (which may carry tokens)."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def collection_url(base: str, collection_id: str) -> str:
    return f"{base.rstrip('/')}/collections/{urllib.parse.quote(collection_id, safe=':-_.~')}"


def poll_collections(
    base: str,
    collection_ids: Sequence[str],
    timeout_s: float,
    *,
    headers: Mapping[str, str] | None = None,
    what: str = "the OGC API",
    alive: Callable[[], str | None] | None = None,
) -> HealthResult:
    """GET ``<base>/collections/<id>`` for each id until all answer 200; ServerError at the timeout.

    ``alive`` (optional) is asked between rounds; a string it returns is a fatal
    problem (e.g. the server process died) and is raised at once.
    """
    started = time.monotonic()
    deadline = started + max(float(timeout_s), 0.0)
    pending = list(dict.fromkeys(collection_ids))
    statuses: dict[str, int] = dict.fromkeys(pending, 0)
    last_error: dict[str, str] = {}
    delay = 0.1
    while True:
        for cid in list(pending):
            remaining = max(deadline - time.monotonic(), 0.5)
            try:
                resp = http_request("GET", collection_url(base, cid), headers=headers,
                                    timeout=min(5.0, remaining), what=what)
                statuses[cid] = resp.status
                if resp.status == 200:
                    pending.remove(cid)
                    last_error.pop(cid, None)
            except ServerError as exc:
                statuses[cid] = 0
                last_error[cid] = exc.message
        if not pending:
            return HealthResult(True, statuses, time.monotonic() - started, base)
        if alive is not None:
            problem = alive()
            if problem:
                raise ServerError(problem)
        if time.monotonic() >= deadline:
            detail = ", ".join(
                f"{cid} ({'no answer' if statuses[cid] == 0 else f'HTTP {statuses[cid]}'})" for cid in pending
            )
            msg = f"{what} at {_safe_url(base)} did not serve {len(pending)} collection(s) within {timeout_s:g}s: {detail}"
            first = next((last_error[c] for c in pending if c in last_error), "")
            raise ServerError(redact(msg + (f"; last error: {first}" if first else "")))
        time.sleep(min(delay, max(deadline - time.monotonic(), 0.0)))
        delay = min(delay * 1.5, 1.0)


HEALTH_SAMPLE_CHANGED = 100  # changed collections asked one by one, at most (spread over all)
HEALTH_SAMPLE_UNCHANGED = 3
HEALTH_CONCURRENCY = 4


def health_sample(collection_ids: Sequence[str], changed: Sequence[str] | None) -> list[str]:
    """The collections asked one by one after a reload: the changed ones (at most
    :data:`HEALTH_SAMPLE_CHANGED`, evenly spread) and a few unchanged ones."""
    ids = list(dict.fromkeys(collection_ids))
    wanted = set(ids)
    moved = [c for c in dict.fromkeys(changed if changed is not None else ids) if c in wanted]

    def spread(items: list[str], k: int) -> list[str]:
        if len(items) <= k:
            return items
        return [items[(i * len(items)) // k] for i in range(k)]

    moved_set = set(moved)
    still = [c for c in ids if c not in moved_set]
    return spread(moved, HEALTH_SAMPLE_CHANGED) + spread(still, HEALTH_SAMPLE_UNCHANGED)


def check_served(
    base: str,
    collection_ids: Sequence[str],
    timeout_s: float,
    *,
    changed: Sequence[str] | None = None,
    headers: Mapping[str, str] | None = None,
    what: str = "the OGC API",
    alive: Callable[[], str | None] | None = None,
) -> HealthResult:
    """Health after a reload, in a number of requests bounded whatever N.

    One ``GET <base>/collections`` until it answers 200 and lists every id of
    ``collection_ids`` (which proves the new configuration is loaded), then
    ``<base>/collections/<id>`` for :func:`health_sample` (the changed collections and a
    few unchanged ones), :data:`HEALTH_CONCURRENCY` at a time. ServerError at the timeout.
    """
    import concurrent.futures

    started = time.monotonic()
    deadline = started + max(float(timeout_s), 0.0)
    expected = list(dict.fromkeys(collection_ids))
    delay = 0.1
    missing: list[str] = expected
    status, error = 0, ""
    while True:
        remaining = max(deadline - time.monotonic(), 0.5)
        try:
            resp = http_request("GET", f"{base.rstrip('/')}/collections?f=json", headers=headers,
                                timeout=min(30.0, remaining), what=what)
            status, error = resp.status, ""
            if resp.status == 200:
                try:
                    listed = {str(c.get("id")) for c in (resp.json() or {}).get("collections") or []
                              if isinstance(c, dict)}
                except (ValueError, AttributeError):
                    listed = set()
                missing = [c for c in expected if c not in listed]
                if not missing:
                    break
        except ServerError as exc:
            status, error = 0, exc.message
        if alive is not None:
            problem = alive()
            if problem:
                raise ServerError(problem)
        if time.monotonic() >= deadline:
            got = "no answer" if status == 0 else f"HTTP {status}"
            detail = (f"{len(missing)} collection(s) not listed, e.g. {', '.join(missing[:5])}"
                      if status == 200 else f"/collections: {got}")
            raise ServerError(redact(f"{what} at {_safe_url(base)} did not serve the published collections within "
                                     f"{timeout_s:g}s: {detail}" + (f"; last error: {error}" if error else "")))
        time.sleep(min(delay, max(deadline - time.monotonic(), 0.0)))
        delay = min(delay * 1.5, 1.0)
    sample = health_sample(expected, changed)
    if not sample:
        return HealthResult(True, {}, time.monotonic() - started, base)
    left = max(deadline - time.monotonic(), 1.0)
    with concurrent.futures.ThreadPoolExecutor(HEALTH_CONCURRENCY) as pool:
        parts = list(pool.map(
            lambda chunk: poll_collections(base, chunk, left, headers=headers, what=what, alive=alive),
            [sample[i::HEALTH_CONCURRENCY] for i in range(HEALTH_CONCURRENCY) if sample[i::HEALTH_CONCURRENCY]]))
    statuses: dict[str, int] = {}
    for part in parts:
        statuses.update(part.statuses)
    return HealthResult(True, statuses, time.monotonic() - started, base)


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
