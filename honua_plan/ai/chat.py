"""``honua-ai chat``: the seed's conversation, offline first.

:func:`parse_intent` is pure. A request that names a table (``public.bike_lanes``, or
"table bike_lanes") and asks to add it (layer, add, publish, serve, geometry…) runs
the ``propose layer`` flow. Anything else goes to the model when ``litellm`` and
``HONUA_AI_MODEL`` are there (system prompt: the project summary and the rule that
the assistant only proposes files that are then validated and planned); without a
model the assistant says what it can do offline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from honua_plan.context import Context

QUALIFIED_TABLE_RE = re.compile(r"\b(?:table\s+)?([a-z_][\w]*\.[a-z_][\w]*)\b", re.IGNORECASE)
TABLE_WORD_RE = re.compile(r"\btable\s+(?:is\s+|named\s+|called\s+)?[\"'`]?([a-z_]\w*)\b", re.IGNORECASE)
SERVICE_RE = re.compile(r"\b(?:to|in|into|under)\s+(?:the\s+)?[\"'`]?([a-z0-9][a-z0-9_-]*)[\"'`]?\s+service\b"
                        r"|\bservice\s+[\"'`]?([a-z0-9][a-z0-9_-]*)", re.IGNORECASE)
LAYER_NAME_RE = re.compile(r"\blayer\s+(?:named|called)\s+[\"'`]?([a-z0-9][a-z0-9_-]*)", re.IGNORECASE)
ADD_WORDS = re.compile(r"\b(layers?|add|adding|publish|serve|expose|geometry|new)\b", re.IGNORECASE)
_NOT_TABLES = frozenset({"yaml", "yml", "json", "md", "sql", "py", "txt", "com", "org", "gov", "io", "net", "html"})
_STOP = frozenset({"has", "have", "with", "and", "the", "a", "an", "of", "in", "is", "that", "which", "from", "to",
                   "for", "it", "this", "contains", "holds", "exists"})
EXIT_WORDS = frozenset({"exit", "quit", "bye", ":q"})


@dataclass(frozen=True)
class Intent:
    kind: str  # "propose-layer", "help", "exit", "free"
    table: str | None = None
    service: str | None = None
    name: str | None = None


def find_table(text: str) -> str | None:
    for m in QUALIFIED_TABLE_RE.finditer(text):
        candidate = m.group(1)
        if candidate.rsplit(".", 1)[1].lower() in _NOT_TABLES or re.match(r"^(e\.g|i\.e)$", candidate, re.I):
            continue
        return candidate
    for m in TABLE_WORD_RE.finditer(text):
        if m.group(1).lower() not in _STOP:
            return m.group(1)
    return None


def parse_intent(text: str) -> Intent:
    stripped = text.strip().strip("\"'").strip()
    low = stripped.lower()
    if not stripped or low in EXIT_WORDS:
        return Intent("exit")
    if low in ("help", "?", "what can you do", "what can you do?"):
        return Intent("help")
    table = find_table(stripped)
    if table and ADD_WORDS.search(stripped):
        svc = next((g for m in SERVICE_RE.finditer(stripped) for g in m.groups() if g), None)
        name = LAYER_NAME_RE.search(stripped)
        return Intent("propose-layer", table=table, service=svc, name=name.group(1).lower() if name else None)
    return Intent("free")


HELP = """\
I'm working offline ({why}). I can:
  - propose a layer from a table: "add a layer for the table public.parks"
      (= honua-ai propose layer --table public.parks --service NAME)
  - plan pending migrations in every environment: honua-ai migrate plan
  - explain a saved plan: honua-ai explain plan.json
  - schedule a migration: honua-ai schedule migration 003 --environment production --window "next-tuesday 10:00-12:00"
  - promote: honua-ai promote dev staging [--migration 003]
  - recover an environment: honua-ai disaster-recovery"""


def project_summary(context: Context) -> str:
    """What the model is told about the project (names only: no connection, no secret)."""
    states = context.load()
    first = states[0]
    lines = [f"Project {first.project.metadata.name}; environments in promotion order: "
             f"{', '.join(first.project.spec.environments)}."]
    for d in states:
        layers = ", ".join(f"{lyr.collection_id} ({lyr.spec.storage.qualified_table}, {lyr.spec.geometryType})"
                           for lyr in d.layers.values()) or "none"
        lines.append(f"{d.environment}: services {', '.join(d.services) or 'none'}; layers {layers}.")
    lines.append("Migrations: " + (", ".join(f"{m.stem} ({m.metadata.description or ''})" for m in first.migrations)
                                   or "none") + ".")
    return "\n".join(lines)


def system_prompt(context: Context) -> str:
    return (
        "You are the AI consultant of honua-plan, a plan/apply engine for a city's GIS server "
        "configuration (YAML layers, services, migrations in git) and its PostGIS database.\n"
        "Rule: you never change anything yourself. You can only propose files (Layer, Service or "
        "Migration YAML); every proposal is then validated and planned like any other change "
        "(provenance ai) and applied only after review and the approvals the policies require.\n"
        "For a new layer, tell the user to write: add a layer for the table <schema.table>.\n\n"
        + project_summary(context)
    )
