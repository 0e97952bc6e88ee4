"""Notifications through Apprise: the policy of an environment names URLs per event.

Apprise speaks Slack, Teams, e-mail, webhooks (``json://``), ntfy and about a hundred
more, each by a URL. A URL's secret (a token, a password) is written ``${HONUA_NOTIFY_…}``
in the policy and read from the environment when sending; the expanded URL is never
printed, logged or stored. Only the notification slot (``HONUA_NOTIFY_*``) is read: the
loader refuses any other name at its line, and :func:`_expand` refuses it again. A message carries the environment, what happened (the plan's summary,
the incident), who, and where the reports are.

Sending never fails a deployment: each outcome is reported (``✓ Stakeholders notified``
only when Apprise delivered to every URL, ``✗`` naming the service otherwise) and the
command goes on. Apprise is imported only when there is something to send.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from honua_plan.config.slots import notify_problems
from honua_plan.secrets import redact, register

if TYPE_CHECKING:
    from honua_plan.config.models import Policy

__all__ = ["Delivery", "notify"]

_VAR = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")


@dataclass(frozen=True)
class Delivery:
    """What happened to one event's notifications."""

    event: str
    configured: int = 0
    delivered: int = 0
    failed: list[str] = field(default_factory=list)  # service names (the URL's scheme), never the URL

    @property
    def line(self) -> str | None:
        """The line to print, or None when nothing is configured for the event."""
        if not self.configured:
            return None
        if not self.failed:
            return "Stakeholders notified"
        return (f"Stakeholders not notified: {len(self.failed)} of {self.configured} notification(s) failed "
                f"({', '.join(self.failed)}); the deployment goes on")


def _expand(url: str) -> str | None:
    """``url`` with its ``${VAR}`` read from the environment (registered as secrets), or None
    when a variable is not set or not in the notification slot (nothing is read then)."""
    if notify_problems(url):
        return None
    missing = [v for v in _VAR.findall(url) if v not in os.environ]
    if missing:
        return None
    for var in _VAR.findall(url):
        register(os.environ[var])
    return _VAR.sub(lambda m: os.environ[m.group(1)], url)


def _service(url: str) -> str:
    return url.split("://", 1)[0] or "?"


def notify(policy: Policy | None, event: str, *, environment: str, title: str, lines: Sequence[str],
           actor: str | None = None) -> Delivery:
    """Send ``event`` to the URLs the policy lists for it; never raises."""
    rules = [n for n in (policy.spec.notifications if policy is not None else []) if event in n.events]
    urls = [u for n in rules for u in n.urls]
    if not urls:
        return Delivery(event)
    body = "\n".join([f"Environment: {environment}", f"Event: {event}", *( [f"Who: {actor}"] if actor else []),
                      *lines])
    failed: list[str] = []
    delivered = 0
    try:
        import apprise
    except ImportError:
        return Delivery(event, len(urls), 0, ["apprise is not installed"])
    import logging

    log = logging.getLogger("apprise")  # its warnings name hosts and errors: we report, it stays quiet
    log.propagate = False
    if not log.handlers:
        log.addHandler(logging.NullHandler())
    for url in urls:
        expanded = _expand(url)
        if expanded is None:
            why = "names a variable outside HONUA_NOTIFY_*" if notify_problems(url) else "is not set"
            failed.append(f"{_service(url)} (a ${{VAR}} of its URL {why})")
            continue
        sender = apprise.Apprise()
        try:
            ok = sender.add(expanded) and sender.notify(title=redact(title), body=redact(body))
        except Exception:  # a broken plugin must not stop a deployment
            ok = False
        if ok:
            delivered += 1
        else:
            failed.append(_service(url))
    return Delivery(event, len(urls), delivered, failed)
