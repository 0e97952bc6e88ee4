"""HTTP to a served OGC API: one request function (proxy-free for loopback, redacted URLs),
collection polling after a reload, and the bounded health sample."""

from __future__ import annotations

import ipaddress
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from honua_plan.errors import ServerError
from honua_plan.secrets import redact


@dataclass(frozen=True)
class HealthResult:
    ok: bool
    statuses: dict[str, int] = field(default_factory=dict)  # collection id -> last HTTP status (0 = no answer)
    seconds: float = 0.0
    url: str | None = None


if TYPE_CHECKING:
    pass


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
