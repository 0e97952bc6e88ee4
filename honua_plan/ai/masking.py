"""What the assistant never sends to a model nor keeps: secrets, by value and by shape.

Two nets, both applied before a request leaves the machine or enters the chat's history,
and to the model's words before they are shown or kept:

* by value: :func:`register_resolved` registers with :mod:`honua_plan.secrets` every
  connection string and key the engine could resolve (each environment's datasources,
  ``HONUA_PG_DSN*``, ``HONUA_PG_PLAN_DSN*``, ``HONUA_STATE_DSN*``, ``HONUA_SCRATCH_DSN``,
  ``HONUA_SERVER_KEY_*`` and the model provider's keys), so :func:`~honua_plan.secrets.redact`
  hides them wherever they appear;
* by shape (:func:`mask_typed`): what a person types that looks like a secret: a value
  after ``password``/``passwd``/``pwd`` or after ``pass``/``secret``/``token``/``key is``,
  a URL's ``user:password@``, ``password=…``, tokens with a known prefix (GitHub, OpenAI,
  Anthropic, AWS, Slack, GitLab, JWTs, PEM private keys) and high-entropy strings.

What is *not* masked, on purpose: ordinary words, lower-case identifiers and paths
(``parks_and_trails_2024``, ``environments/dev/layers/bike-lanes.yaml``), hexadecimal
strings (commit and plan ids) and UUIDs (resource ids): they are the project's names, and
masking them would make the request meaningless. A string is high-entropy when it has at
least :data:`ENTROPY_MIN_LENGTH` characters, upper- and lower-case letters and digits (or
symbols), changes character class often (:data:`ENTROPY_MIN_SWITCHES`) and has a Shannon
entropy of at least :data:`ENTROPY_MIN_BITS` bits per character.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from honua_plan import secrets

if TYPE_CHECKING:
    from honua_plan.context import Context

MASKED = "[REDACTED]"
ENTROPY_MIN_LENGTH = 20
ENTROPY_MIN_BITS = 3.5
ENTROPY_MIN_SWITCHES = 0.38  # share of adjacent characters of different classes (a-z, A-Z, 0-9, other)

#: environment variables whose values are connection strings (their passwords are registered)
DSN_VARIABLES = ("HONUA_PG_DSN", "HONUA_PG_PLAN_DSN", "HONUA_STATE_DSN", "HONUA_SCRATCH_DSN")
#: environment variables whose whole value is a secret
KEY_VARIABLES = re.compile(
    r"^HONUA_SERVER_KEY|(?:^|_)(?:API_?KEY|API_?TOKEN|TOKEN|SECRET|SECRET_ACCESS_KEY|ACCESS_KEY|PASSWORD|"
    r"SESSION_TOKEN|AUTH_TOKEN)$")

_VALUE = r"(?P<value>\"[^\"\n]*\"|'[^'\n]*'|`[^`\n]*`|[^\s,;]+)"
_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)",
                                 re.DOTALL)),
    ("a connection string's password", re.compile(
        r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/@\s'\"<>]*:)(?P<value>[^\s/'\"<>]+)(?=@)", re.IGNORECASE)),
    # password X, password: X, password is X, password for prod is X, password=X
    ("a password", re.compile(
        r"(?P<head>\b(?:PG)?(?:password|passwd|passphrase|pwd)s?\b(?:\s+(?:for|of|on|to)\s+(?:the\s+)?[\w.-]+)?"
        r"(?:\s+(?:db|database))?(?:\s*(?:[=:]|:=)\s*|\s+(?:is|was|=)\s+(?:now\s+)?|\s+))" + _VALUE, re.IGNORECASE)),
    ("a secret", re.compile(
        r"(?P<head>\b(?:pass|secret|token|(?<!primary )(?<!foreign )(?<!unique )(?<!sort )key|api[ _-]?key|"
        r"access[ _-]?key|client[ _-]?secret|credentials?)"
        r"(?:\s*(?:[=:]|:=)\s*|\s+(?:is|was)\s+(?:now\s+)?))" + _VALUE, re.IGNORECASE)),
    ("a token", re.compile(
        r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|sk-ant-[A-Za-z0-9_-]{16,}|"
        r"sk-(?:proj-|live-|test-)?[A-Za-z0-9_-]{16,}|(?:AKIA|ASIA)[A-Z0-9]{16}|xox[abposr]-[A-Za-z0-9-]{10,}|"
        r"glpat-[A-Za-z0-9_-]{16,}|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})")),
)
_CANDIDATE = re.compile(r"[A-Za-z0-9+/=_\-.~!@#$%^&*?]{" + str(ENTROPY_MIN_LENGTH) + ",}")
_HEX_OR_UUID = re.compile(r"^(?:[0-9a-fA-F]+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                          r"[0-9a-fA-F]{12})$")
_EMAIL = re.compile(r"^[\w.+-]+@[\w-]+(?:\.[\w-]+)+$")
#: a value that is one of these words is the sentence going on, not a secret ("the password is wrong")
_NOT_VALUES = frozenset({
    "is", "was", "for", "of", "on", "to", "the", "a", "an", "and", "or", "in", "it", "this", "that", "not", "wrong",
    "expired", "missing", "empty", "set", "unset", "correct", "incorrect", "invalid", "right", "same", "there",
    "here", "now", "still", "changed", "rotated", "reset", "required", "needed", "field", "column", "policy",
    "please", "again", "too", "with", "from", "at", "by", "be", "are", "were", "must", "should", "will", "can",
    "cannot", "does", "do", "did", "has", "have", "had", "expire", "expires", "works", "fails", "failed", "change",
    "manager", "rotation", "out", "safe", "known", "leaked", "compromised", MASKED.lower(), secrets.MASK})


def _class(c: str) -> int:
    return 0 if c.islower() else 1 if c.isupper() else 2 if c.isdigit() else 3


def shannon_bits(text: str) -> float:
    """Shannon entropy of ``text``, bits per character."""
    if not text:
        return 0.0
    n = len(text)
    return -sum(k / n * math.log2(k / n) for k in Counter(text).values())


def high_entropy(token: str) -> bool:
    """Whether ``token`` looks random enough to be a key (see the module doc for the rule)."""
    token = token.rstrip(".,")
    if len(token) < ENTROPY_MIN_LENGTH or _HEX_OR_UUID.match(token) or _EMAIL.match(token):
        return False
    classes = {_class(c) for c in token}
    if not ({0, 1} <= classes and classes & {2, 3}):  # upper and lower case, and digits or symbols
        return False
    switches = sum(1 for a, b in itertools.pairwise(token) if _class(a) != _class(b)) / (len(token) - 1)
    return switches >= ENTROPY_MIN_SWITCHES and shannon_bits(token) >= ENTROPY_MIN_BITS


def mask_typed(text: str, *, remember: bool = True) -> tuple[str, list[str]]:
    """``text`` with every secret-shaped value replaced by :data:`MASKED`, and what kinds were found.

    ``remember``: a masked value is registered (:func:`honua_plan.secrets.register`), so a
    model that repeats it, or a later message that quotes it without its ``password is``, is
    masked too (what a person typed; not the project data on its way out)."""
    found: list[str] = []

    def sub(kind: str) -> Callable[[re.Match[str]], str]:
        def repl(m: re.Match[str]) -> str:
            groups = m.groupdict()
            value = groups.get("value")
            if value is not None and (value.lower().strip(".,!?") in _NOT_VALUES or MASKED in value):
                return m.group(0)
            if kind not in found:
                found.append(kind)
            if remember:  # hidden from now on wherever it appears
                secrets.register((value or m.group(0)).strip("\"'`"))
            return (groups.get("head") or "") + MASKED if value is not None else MASKED
        return repl

    redacted = secrets.redact(text)  # registered values and password slots first: masked as everywhere else
    if redacted != text:
        found.append("a password or a registered secret")
    text = redacted
    for kind, rx in _SHAPES:
        text = rx.sub(sub(kind), text)

    def entropy(m: re.Match[str]) -> str:
        token = m.group(0)
        if not high_entropy(token):
            return token
        if "a random-looking key" not in found:
            found.append("a random-looking key")
        if remember:
            secrets.register(token)
        return MASKED

    return _CANDIDATE.sub(entropy, text), found


def mask(text: str) -> str:
    """:func:`mask_typed`'s text only, nothing registered (text on its way out, or shown)."""
    return mask_typed(text, remember=False)[0]


def register_resolved(context: Context) -> None:
    """Register every connection string and key the assistant could resolve (see the module doc),
    so that :func:`~honua_plan.secrets.redact` hides them before the first request to a model."""
    from honua_plan.errors import HonuaError

    for name, value in os.environ.items():
        if not value:
            continue
        if name.startswith(DSN_VARIABLES):
            secrets.register_dsn(value)
        elif KEY_VARIABLES.search(name):
            secrets.register(value)
    try:
        envs = list(context.load()[0].project.spec.environments)
    except HonuaError:
        return
    for env in envs:
        try:
            datasources = list(context.desired(env).datasources)
        except HonuaError:
            continue
        for ds in datasources:
            try:
                context.resolve_dsn(env, ds)  # registers what it resolves
            except HonuaError:
                continue


__all__ = ["MASKED", "high_entropy", "mask", "mask_typed", "register_resolved", "shannon_bits"]
