"""Which environment variables a configuration may name: every secret has a slot.

Config is untrusted until reviewed, and the engine reads the variables a config names. So
a config names only variables of its own slot, and nothing else (not ``HOME``, not another
environment's DSN, not the state database's):

=====================  ========================================================================
secret                 slot
=====================  ========================================================================
datasource             ``HONUA_PG_DSN_<ENV>`` of the environment being loaded, a name in its
(``connection.env``)   namespace ``HONUA_PG_DSN_<ENV>_<SUFFIX>`` (a second datasource), or the
                       generic ``HONUA_PG_DSN``; for plans the read-only twin of each,
                       ``HONUA_PG_PLAN_DSN…`` (derived, never named by the config)
server key             ``HONUA_SERVER_KEY_<NAME>`` (``<NAME>``: the server's metadata.name), or
(``apiKeyEnv``)        the name before slots, ``HONUA_API_KEY``
server port            ``HONUA_SERVER_PORT_…`` (not a secret, but read on the config's behalf,
(``portEnv``)          so it has its slot too)
notification URL       ``${HONUA_NOTIFY_…}``
state database         ``HONUA_STATE_DSN`` or ``HONUA_STATE_DSN_…``
(``dsnEnv``)
object storage         the AWS variables, read by the S3 client itself (no config names them)
=====================  ========================================================================

``<ENV>`` and ``<NAME>`` are upper-cased with ``-`` (and any other character a variable
name cannot hold) written ``_``. The loader checks each name where it is written (file,
line, column); the code that reads a variable checks again (defence in depth).

Pure functions of strings: no environment is read here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

PG_DSN = "HONUA_PG_DSN"
PG_PLAN_DSN = "HONUA_PG_PLAN_DSN"
SERVER_KEY = "HONUA_SERVER_KEY_"
SERVER_PORT = "HONUA_SERVER_PORT_"
LEGACY_SERVER_KEY = "HONUA_API_KEY"
NOTIFY = "HONUA_NOTIFY_"
STATE_DSN = "HONUA_STATE_DSN"

_VAR = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_SUFFIX = re.compile(r"^[A-Z0-9_]+$")


def token(name: str) -> str:
    """``name`` as the part of a variable name: ``my-env`` → ``MY_ENV``."""
    return "".join(c if c.isalnum() and c.isascii() else "_" for c in name.upper())


def variable(rendered: str) -> str:
    """A templated ``connection.env`` entry as the variable it names: ``-`` → ``_``
    (``HONUA_PG_DSN_{{ env | upper }}`` of ``my-env`` is ``HONUA_PG_DSN_MY_ENV``)."""
    return rendered.strip().replace("-", "_")


# ------------------------------------------------------------------ datasources


def datasource_slot(environment: str) -> tuple[str, str, str]:
    """(the environment's own name, its namespace prefix, the generic name)."""
    own = f"{PG_DSN}_{token(environment)}"
    return own, own + "_", PG_DSN


def datasource_problem(name: str, environment: str, environments: Iterable[str] = ()) -> str | None:
    """Why datasource variable ``name`` may not be read for ``environment`` (None: it may).

    ``environments`` are the project's: a suffixed name that is also another environment's
    (``HONUA_PG_DSN_PROD_EU`` for ``prod`` when ``prod-eu`` exists) is that environment's.
    """
    own, prefix, generic = datasource_slot(environment)
    allowed = f"{own}, {generic} or {prefix}<SUFFIX>"
    if name in (own, generic):
        return None
    if name.startswith(prefix) and _SUFFIX.match(name[len(prefix):]):
        for other in environments:
            if other == environment:
                continue
            o_own, o_prefix, _ = datasource_slot(other)
            if name == o_own or name.startswith(o_prefix):
                return (f"{name} is the connection variable of environment '{other}'; "
                        f"environment '{environment}' may read only {allowed}")
        return None
    whose = ""
    for other in environments:
        o_own, o_prefix, _ = datasource_slot(other)
        if other != environment and (name == o_own or name.startswith(o_prefix)):
            whose = f" (it belongs to environment '{other}')"
            break
    return (f"{name} is outside the connection slot of environment '{environment}'{whose}: a datasource "
            f"may read only {allowed}")


def plan_twin(name: str) -> str:
    """The read-only twin of datasource variable ``name``: ``HONUA_PG_DSN_DEV`` → ``HONUA_PG_PLAN_DSN_DEV``."""
    if name == PG_DSN or name.startswith(PG_DSN + "_"):
        return PG_PLAN_DSN + name[len(PG_DSN):]
    raise ValueError(f"{name} is not a datasource variable")


# ------------------------------------------------------------------ servers


def server_key(server: str) -> str:
    """The key variable of server ``server`` (metadata.name): ``HONUA_SERVER_KEY_GIS_SERVER``."""
    return SERVER_KEY + token(server)


def server_key_problem(name: str, server: str) -> str | None:
    if name in (server_key(server), LEGACY_SERVER_KEY):
        return None
    return (f"{name} is outside the key slot of server '{server}': its API key is read only from "
            f"{server_key(server)} (or the name before slots, {LEGACY_SERVER_KEY})")


def server_port_problem(name: str) -> str | None:
    """Why ``portEnv`` may not name ``name`` (None: it may)."""
    if name.startswith(SERVER_PORT) and len(name) > len(SERVER_PORT) and _VAR.match(name):
        return None
    return (f"{name} is outside the server port slot: portEnv may name only {SERVER_PORT}<NAME> "
            f"(e.g. {SERVER_PORT}GIS_SERVER)")


# ------------------------------------------------------------------ notifications and state

_REFERENCE = re.compile(r"\$\{([^}]*)\}")


def notify_problems(url: str) -> list[str]:
    """Why the ``${VAR}`` references of an Apprise URL may not be read (empty: they may)."""
    out: list[str] = []
    for var in _REFERENCE.findall(url):
        if not _VAR.match(var):
            out.append(f"${{{var}}} is not an environment variable name")
        elif not var.startswith(NOTIFY) or var == NOTIFY:
            out.append(f"${{{var}}} is outside the notification slot: a notification URL may read only "
                       f"{NOTIFY}<NAME> variables (e.g. ${{{NOTIFY}SLACK_TOKEN}})")
    return out


def state_dsn_problem(name: str) -> str | None:
    if name == STATE_DSN or (name.startswith(STATE_DSN + "_") and len(name) > len(STATE_DSN) + 1):
        return None
    return (f"{name} is outside the state database slot: dsnEnv may name only {STATE_DSN} or "
            f"{STATE_DSN}_<SUFFIX>")
