"""``honua-ai chat``: the seed's conversation, offline first.

:func:`parse_intent` is pure. A request that names a table (``public.bike_lanes``, or
"table bike_lanes", "the parks table") and asks to add or publish it runs the
``propose layer`` flow, and only when nothing in it could mean otherwise: a negation, a
removal, a question, an index or schema change, or another command is never guessed at
(:data:`_REFUSE`). Such a request goes to the model when ``litellm`` and ``HONUA_AI_MODEL``
are there; without a model the assistant says why it did nothing and what works offline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from honua_plan.ai.router import STOP_WORDS

if TYPE_CHECKING:
    from honua_plan.context import Context

QUALIFIED_TABLE_RE = re.compile(r"\b(?:table\s+)?([a-z_][\w]*\.[a-z_][\w]*)\b", re.IGNORECASE)
TABLE_WORD_RE = re.compile(r"\btable\s+(?:is\s+|named\s+|called\s+)?[\"'`]?([a-z_]\w*)\b", re.IGNORECASE)
WORD_TABLE_RE = re.compile(r"\b([a-z_]\w*)\s+table\b", re.IGNORECASE)  # "the parks table"
SERVICE_RE = re.compile(r"\b(?:to|in|into|under)\s+(?:the\s+)?[\"'`]?([a-z0-9][a-z0-9_-]*)[\"'`]?\s+service\b"
                        r"|\bservice\s+[\"'`]?([a-z0-9][a-z0-9_-]*)", re.IGNORECASE)
QUOTED_TABLE_RE = re.compile(r"\btables?\s+(?:is\s+|named\s+|called\s+)?[\"'`]([A-Za-z_][\w$]*)[\"'`]", re.IGNORECASE)
LAYER_NAME_RE = re.compile(r"\blayer\s+(?:named|called)\s+[\"'`]?([a-z0-9][a-z0-9_-]*)", re.IGNORECASE)
#: what a request to add or publish a table says (one of these, and a table named)
ADD_WORDS = re.compile(r"\b(layers?|add|adding|publish(?:ed|ing)?|serve|expose|new|create)\b", re.IGNORECASE)
# The offline path acts only on a request it cannot misread. Anything that could mean the
# opposite of adding a layer, or something else, is refused with the reason (never guessed).
_REFUSE: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("it is negated", re.compile(
        r"\b(?:not|never|don'?t|doesn'?t|dont|no\s+longer|stop|avoid|hold\s+off|without|instead\s+of|"
        r"except|rather\s+than|wait)\b", re.IGNORECASE)),
    ("it asks to remove something", re.compile(
        r"\b(?:remove|removing|delete|deleting|drop|dropping|unpublish\w*|retire|take\s+(?:down|off)|disable|"
        r"hide|withdraw|deprecate|revoke|undo|rollback|roll\s+back)\b", re.IGNORECASE)),
    ("it is a question", re.compile(
        r"\?\s*$|^\s*(?:what|which|why|how|where|when|who|whose|is|are|does|do|did|can|could|should|would|"
        r"will|has|have)\b", re.IGNORECASE)),
    ("it asks for an index, a migration or a schema change (a Migration file, reviewed like any other)",
     re.compile(r"\b(?:index(?:es)?|migrat\w*|alter|rename|renaming|change|changing|modify|retype|reproject|"
                r"transform|vacuum|cluster|constraint|truncate|update|insert)\b", re.IGNORECASE)),
    ("it asks for another command (promote, deploy, recover, schedule, explain)", re.compile(
        r"\b(?:promot\w*|deploy\w*|recover\w*|restore|backup|schedul\w*|explain)\b", re.IGNORECASE)),
)
_NOT_TABLES = frozenset({"yaml", "yml", "json", "md", "sql", "py", "txt", "com", "org", "gov", "io", "net", "html"})
_STOP = frozenset({"has", "have", "with", "and", "the", "a", "an", "of", "in", "is", "that", "which", "from", "to",
                   "for", "it", "this", "contains", "holds", "exists", "as", "on", "into", "layer", "layers",
                   "please", "data", "or", "but", "so", "then", "yet", "new", "same", "postgis", "database",
                   "its", "our", "my", "your", "their", "whole", "entire", "source", "spatial", "one"})
EXIT_WORDS = frozenset({"exit", "quit", "bye", ":q"})


@dataclass(frozen=True)
class Intent:
    kind: str  # "propose-layer", "help", "exit", "unsupported" (offline: nothing is done)
    table: str | None = None
    service: str | None = None
    name: str | None = None
    reason: str | None = None  # why an "unsupported" request was not acted on
    environments: tuple[str, ...] = ()  # the environments the request is limited to (() = all)


def find_table(text: str) -> str | None:
    for m in QUALIFIED_TABLE_RE.finditer(text):
        candidate = m.group(1)
        if candidate.rsplit(".", 1)[1].lower() in _NOT_TABLES or re.match(r"^(e\.g|i\.e)$", candidate, re.I):
            continue
        return candidate
    for rx in (TABLE_WORD_RE, WORD_TABLE_RE):
        for m in rx.finditer(text):
            if m.group(1).lower() not in _STOP and m.group(1).lower() not in STOP_WORDS:
                return m.group(1)
    quoted = QUOTED_TABLE_RE.search(text)  # table "as": a name that is also a word
    return quoted.group(1) if quoted else None


def parse_intent(text: str) -> Intent:
    """Route one request offline: a proposal only for an unambiguous "add/publish table X"."""
    stripped = text.strip()
    if len(stripped) > 1 and stripped[0] == stripped[-1] and stripped[0] in "\"'":  # the seed's quoted request
        stripped = stripped[1:-1].strip()
    low = stripped.lower()
    if not stripped or low in EXIT_WORDS:
        return Intent("exit")
    if low in ("help", "?", "what can you do", "what can you do?"):
        return Intent("help")
    for reason, rx in _REFUSE:
        if rx.search(stripped):
            return Intent("unsupported", reason=reason)
    table = find_table(stripped)
    if table is None:
        return Intent("unsupported", reason="it names no table (write schema.table, e.g. public.parks)")
    if not ADD_WORDS.search(stripped):
        return Intent("unsupported", reason="it does not ask to add or publish the table")
    svc = next((g for m in SERVICE_RE.finditer(stripped) for g in m.groups() if g), None)
    name = LAYER_NAME_RE.search(stripped)
    return Intent("propose-layer", table=table, service=svc, name=name.group(1).lower() if name else None)


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
        layers = ", ".join(f"{lyr.collection_id} ({lyr.spec.storage.qualified_table}, {lyr.spec.geometryType}; "
                           f"description: {(lyr.spec.description or '')[:200]!r})"
                           for lyr in d.layers.values()) or "none"
        lines.append(f"{d.environment}: services {', '.join(d.services) or 'none'}; layers {layers}.")
    lines.append("Migrations: " + (", ".join(f"{m.stem} ({m.metadata.description or ''})" for m in first.migrations)
                                   or "none") + ".")
    return "\n".join(lines)
