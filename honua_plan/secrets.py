"""Secrets: resolved from the environment at run time, redacted everywhere else.

Every secret value the engine resolves is registered here; :func:`redact` replaces
them (and the password part of any DSN) in text before it is printed, logged or
written to a plan, state, journal or report.
"""

from __future__ import annotations

import os
import re

from honua_plan.errors import SecretError

_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_DSN_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?P<tail>@)")
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<pw>'[^']*'|\S+)", re.IGNORECASE)
_known: set[str] = set()
MASK = "***"


def register(value: str) -> None:
    """Remember a secret value so that :func:`redact` hides it."""
    if value and len(value) >= 3:
        _known.add(value)


def resolve(text: str, *, environ: dict[str, str] | None = None) -> str:
    """Replace ``${VAR}`` / ``${VAR:-default}`` with values from the environment."""
    env = os.environ if environ is None else environ

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            value = env[name]
        elif default is not None:
            value = default
        else:
            raise SecretError(f"environment variable {name} is not set (referenced as ${{{name}}})")
        register(value)
        return value

    return _REF.sub(sub, text)


def dsn_password(dsn: str) -> str | None:
    m = _DSN_PASSWORD.search(dsn) or _KV_PASSWORD.search(dsn)
    return m.group("pw").strip("'") if m else None


def register_dsn(dsn: str) -> None:
    pw = dsn_password(dsn)
    if pw:
        register(pw)


# what _DSN_PASSWORD matches, without its scheme: found in a few ms where searching for
# _DSN_PASSWORD itself tries every word of a 40 MB state text
_URL_PASSWORD = re.compile(r"://[^:/@\s]*:[^@\s]+@")


def might_change(json_text: str) -> bool:
    """Whether :func:`redact` could change any string of the JSON document ``json_text``.

    A cheap superset test (one pass over the text, no walk over the values): False is
    certain, True may be a false alarm. JSON escaping only adds backslashes before ``"``,
    ``\\`` and control characters, none of which can be inside what the DSN pattern
    matches, and a registered value is also looked for in its escaped form.
    """
    if ("://" in json_text and _URL_PASSWORD.search(json_text)) or "password" in json_text.lower():
        return True
    import json

    return any(value in json_text or json.dumps(value, ensure_ascii=False)[1:-1] in json_text
               for value in _known)


def redact(text: str) -> str:
    """Hide every known secret and any DSN password in ``text``."""
    if not text:
        return text
    text = _DSN_PASSWORD.sub(lambda m: m.group("head") + MASK + m.group("tail"), text)
    text = _KV_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    for value in sorted(_known, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    return text
