"""Secrets: resolved from the environment at run time, hidden at the output boundary.

Every secret value the engine resolves is registered here. :func:`redact` hides them in
text meant for people (the console, rendered plans, incident reports, logs, error
messages, a state event's message) and to the string values of a saved plan; never to
state documents or plan keys, which hold ``${VAR}`` references and names, never the
values themselves.

What :func:`redact` hides:

* a password in a secret-bearing position, whatever its length: the user-info of a URL
  (``scheme://user:PASSWORD@``, spaces and ``@`` included), ``password=...`` /
  ``PGPASSWORD=...`` and ``"password": "..."``;
* anywhere else, a registered value of at least :data:`MIN_SECRET_LENGTH` characters, as
  it is and in its percent-encoded, JSON- and repr-escaped forms. A shorter value (a
  password ``dev`` or ``public``) cannot be told from ordinary words (an environment, a
  schema) and is not searched for in free text, unless it has 4 characters or more and
  one that no name has (a space, ``!``, ``@``...); neither is a value the configuration
  itself uses as a name (:func:`exempt`), which the repository publishes anyway.

:func:`check_dsn` and :func:`scrub_dsn_error` keep a connection string's password out of
libpq's own messages, which quote the DSN's parts.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus, unquote

from honua_plan.errors import DatabaseError, SecretError

MIN_SECRET_LENGTH = 8
"""Registered values shorter than this are hidden only where they sit in a password slot."""

MASK = "***"

_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# user-info of a URL: the password runs to the last "@" of the line before a "/", quote
# or angle bracket, so "u:Pa@ss-word@host" and "u:p a s s@host" are hidden whole
_DSN_PASSWORD = re.compile(
    r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/@\s'\"<>]*:)(?P<pw>[^\n\r/'\"<>]+)(?P<tail>@)", re.IGNORECASE
)
# password=... (libpq conninfo, PGPASSWORD=...): a quoted value, or everything up to the
# next " key=" (a password with spaces in a malformed conninfo) or the end of the line
_KV_PASSWORD = re.compile(
    r"(?P<head>\b(?:PG)?password\s*=\s*)(?P<pw>'(?:[^'\\\n]|\\.)*'?|(?:(?!\s+\w+\s*=)[^\n\r,}\]])+)",
    re.IGNORECASE,
)
# "password": "..." / 'password': '...' (JSON, a Python dict's repr)
_MAP_PASSWORD = re.compile(
    r"(?P<head>(?P<q>['\"])(?:PG)?password(?P=q)\s*:\s*(?P<vq>['\"]))(?P<pw>(?:(?!(?P=vq))[^\\\n]|\\.)*)",
    re.IGNORECASE,
)
# what _DSN_PASSWORD matches, without its scheme: found in a few ms where searching for
# _DSN_PASSWORD itself tries every word of a 40 MB text
_URL_PASSWORD = re.compile(r"://[^:/@\s'\"<>]*:[^\n\r/'\"<>]+@")

_known: set[str] = set()  # registered values of MIN_SECRET_LENGTH or more, and their encodings
_public: set[str] = set()  # names the configuration uses: never secrets


_NAME = re.compile(r"[\w.-]*")


def _searchable(value: str) -> bool:
    """Whether ``value`` is hidden in free text: long enough, or short but unlike any name."""
    return len(value) >= MIN_SECRET_LENGTH or (len(value) >= 4 and not _NAME.fullmatch(value))


def _forms(value: str) -> set[str]:
    """``value`` as it may appear in text: raw, percent-encoded, JSON- and repr-escaped."""
    return {value, quote(value, safe=""), quote_plus(value, safe=""), quote(value),
            json.dumps(value, ensure_ascii=False)[1:-1], json.dumps(value)[1:-1], repr(value)[1:-1]}


def register(value: str) -> None:
    """Remember a secret value so that :func:`redact` hides it (when it can be told from words)."""
    if value and _searchable(value) and value not in _public:
        _known.update(_forms(value))


def exempt(names: Iterable[str]) -> None:
    """Names the configuration uses (environments, schemas, tables, layers...).

    A value equal to one of them is public (it is in the repository) and is not hidden
    in free text, where hiding it would mangle every mention of that name.
    """
    new = {n for n in names if isinstance(n, str) and _searchable(n)} - _public
    if not new:
        return
    _public.update(new)
    for value in new:
        if value in _known:
            _known.difference_update(_forms(value))


def resolve_reference(text: str, *, environ: dict[str, str] | None = None) -> str:
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


def _parse(dsn: str) -> dict[str, Any] | None:
    """libpq's own reading of ``dsn`` (None when it cannot read it)."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        return dict(conninfo_to_dict(dsn))
    except Exception:  # psycopg.ProgrammingError: not a conninfo/URI
        return None


def dsn_passwords(dsn: str) -> list[str]:
    """Every reading of ``dsn``'s password: libpq's, the URL's up to its last ``@``, ``password=``.

    A malformed DSN is read differently by libpq and by a person (``u:pa@ss@host``: libpq
    takes ``pa``); each reading is a candidate, so none of them is printed.
    """
    found: list[str] = []
    parsed = _parse(dsn)
    if parsed and parsed.get("password"):
        found.append(str(parsed["password"]))
    for pattern in (_DSN_PASSWORD, _KV_PASSWORD, _MAP_PASSWORD):
        for m in pattern.finditer(dsn):
            pw = m.group("pw").strip()
            if pw.startswith("'"):
                pw = pw[1:-1] if len(pw) > 1 and pw.endswith("'") else pw[1:]
            if pw:
                found.extend([pw, unquote(pw)])
    return list(dict.fromkeys(found))


def dsn_password(dsn: str) -> str | None:
    passwords = dsn_passwords(dsn)
    return passwords[0] if passwords else None


def register_dsn(dsn: str) -> None:
    """Register the password of ``dsn`` (every reading of it), unless it is its user or database name."""
    parsed = _parse(dsn) or {}
    names = {str(parsed.get(k)) for k in ("user", "dbname") if parsed.get(k)}
    for pw in dsn_passwords(dsn):
        if pw not in names:
            register(pw)


def might_change(json_text: str) -> bool:
    """Whether :func:`redact` could change any string of the JSON document ``json_text``.

    A cheap superset test (one pass over the text, no walk over the values): False is
    certain, True may be a false alarm. JSON escaping only adds backslashes before ``"``,
    ``\\`` and control characters, none of which can be inside what the URL pattern
    matches, and a registered value is also looked for in its escaped form.
    """
    if ("://" in json_text and _URL_PASSWORD.search(json_text)) or "password" in json_text.lower():
        return True
    return any(value in json_text or json.dumps(value, ensure_ascii=False)[1:-1] in json_text
               for value in _known)


def redact(text: str) -> str:
    """Hide every password slot and every registered secret in ``text`` (output only)."""
    if not text:
        return text
    if "://" in text:
        text = _DSN_PASSWORD.sub(lambda m: m.group("head") + MASK + m.group("tail"), text)
    if "assword" in text or "ASSWORD" in text:
        text = _KV_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
        text = _MAP_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    for value in sorted(_known, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    return text


# ------------------------------------------------------------------ libpq messages

_QUOTED = re.compile(r"\"[^\"\n]*\"|'[^'\n]*'")


def _libpq_keywords() -> frozenset[str]:
    try:
        from psycopg import pq

        return frozenset(o.keyword.decode() for o in pq.Conninfo.get_defaults())
    except Exception:
        return frozenset()


def _unquoted_message(message: str) -> str:
    """libpq's message with every quoted value but a connection keyword replaced by ``"…"``."""
    keywords = _libpq_keywords()

    def sub(m: re.Match[str]) -> str:
        inner = m.group(0)[1:-1]
        return m.group(0) if inner in keywords or len(inner) <= 1 else f'"{"…"}"'

    return _QUOTED.sub(sub, message.strip().splitlines()[0] if message.strip() else "")


def check_dsn(dsn: str, name: str) -> dict[str, Any]:
    """libpq's parts of ``dsn``; a :class:`DatabaseError` naming it as ``name`` if unusable.

    Refused: what libpq cannot parse, and what it parses into parts a person did not mean
    (a host holding an ``@``, a port that is not a number): both come from a password with
    an unescaped ``@``, ``:`` or space, and libpq's message would quote its pieces. The
    message names the variable and what is wrong, never any part of the value.
    """
    # no URL example here: redact() would rightly mask its "user:password@"
    hint = ("write it as a postgresql:// URL with the password percent-encoded (%40 for @, "
            "%20 for a space, %3A for :), or as key=value pairs with the password in single quotes")
    try:
        from psycopg.conninfo import conninfo_to_dict

        parts = dict(conninfo_to_dict(dsn))
    except Exception as exc:
        why = _unquoted_message(str(exc))
        raise DatabaseError(f"{name} cannot be parsed ({why})", hint=hint) from None
    problems: list[str] = []
    for key in ("host", "hostaddr"):
        for host in str(parts.get(key) or "").split(","):
            # a socket directory ("/...") or abstract socket ("@...") may hold anything
            if not host.startswith(("/", "@")) and ("@" in host or any(c.isspace() for c in host)):
                problems.append(f"its {key} holds an '@' or a space (a password with an unescaped '@'?)")
                break
    port = str(parts.get("port") or "")
    if port and not all(p.strip().isdigit() for p in port.split(",") if p.strip()):
        problems.append("its port is not a number (a password with an unescaped ':' or a missing '@'?)")
    if problems:
        raise DatabaseError(f"{name} cannot be used: {'; '.join(problems)}",
                            hint=hint)
    return parts


def scrub_dsn_error(message: str, dsn: str) -> str:
    """``message`` (from psycopg/libpq about ``dsn``) with the DSN and every reading of its password hidden.

    A password, and each of its space-separated pieces, is hidden wherever it appears
    when it has 4 characters or more, and as a whole word when shorter; then
    :func:`redact` runs as on any output.
    """
    if dsn:
        message = message.replace(dsn, MASK)
    readings = dsn_passwords(dsn)
    pieces = {p for pw in readings for p in re.split(r"[\s@:]+", pw) if len(p) >= 4}
    for pw in sorted({*readings, *pieces}, key=len, reverse=True):
        if len(pw) >= 4:
            message = message.replace(pw, MASK)
        elif pw:
            message = re.sub(rf"(?<!\w){re.escape(pw)}(?!\w)", MASK, message)
    return redact(message)


__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "check_dsn",
    "dsn_password",
    "dsn_passwords",
    "exempt",
    "might_change",
    "redact",
    "register",
    "register_dsn",
    "resolve_reference",
    "scrub_dsn_error",
]
