"""What the model is told about the project for one request, within a character budget.

The project summary (environments in promotion order, services, layers, migrations), each
environment's policy in one line, the live columns of the tables the request names (read
from the first environment's database) and the current YAML of the resources and files it
names. All of it goes inside the delimited data block (facts, never instructions), and all
of it passes :func:`honua_plan.ai.llm.outgoing` with the rest of the request.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from honua_plan.config.desired import DesiredState
    from honua_plan.context import Context
    from honua_plan.providers.postgis.facts import DatabaseFacts, TableFacts

DATA_CHARS = 16_000
MAX_TABLES = 5
_FILE_RE = re.compile(r"\b(?:environments|migrations|policies)/[\w./-]+\.ya?ml\b")
_SKIP_SCHEMAS = frozenset({"honua_plan", "information_schema", "pg_catalog", "topology", "tiger"})


def words(request: str) -> set[str]:
    """The names a request may mean: words, ``schema.table``, and runs of two or three words
    joined by ``_`` ("bike lanes" is ``bike_lanes``); ``-`` counts as ``_``."""
    tokens = re.findall(r"[a-z0-9_]+(?:\.[a-z0-9_]+)?", request.lower().replace("-", "_"))
    out = set(tokens)
    for n in (2, 3):
        out |= {"_".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}
    return out


def named_tables(request: str, facts: DatabaseFacts) -> list[TableFacts]:
    wanted = words(request)
    return [t for t in facts.tables if t.schema not in _SKIP_SCHEMAS
            and (t.name.lower() in wanted or t.qualified_name.lower() in wanted)][:MAX_TABLES]


def table_text(t: TableFacts) -> str:
    cols = ", ".join(f"{c.name} {c.data_type}{'' if c.nullable else ' NOT NULL'}" for c in t.columns)
    pk = f"; primary key {', '.join(t.primary_key)}" if t.primary_key else ""
    return f"Live table {t.qualified_name} (about {t.row_estimate} rows{pk}): {cols}"


def named_files(request: str, states: list[DesiredState]) -> list[str]:
    """Files of the layers, services and migrations the request names (every environment's),
    and the repository paths it spells out."""
    wanted = words(request)
    files = [m.group(0) for m in _FILE_RE.finditer(request)]
    for d in states:
        for address, src in d.sources.items():
            kind, _, name = address.partition(".")
            names = {name.lower().replace("-", "_")}
            if kind == "layer":
                names.add(name.split("::", 1)[-1].lower().replace("-", "_"))
            elif kind == "migration":
                names.add(src.path.rsplit("/", 1)[-1].rsplit(".", 1)[0].lower())
            elif kind not in ("service",):
                continue
            if names & wanted and src.path not in files:
                files.append(src.path)
    return files


def policy_lines(states: list[DesiredState]) -> list[str]:
    """Each environment's policy, field by field (what it says, not what it implies)."""
    out = []
    for d in states:
        pol = d.policy
        if pol is None:
            out.append(f"Policy of {d.environment}: none")
            continue
        spec, rule = pol.spec, pol.spec.approval
        facts = [f"production: {str(spec.production).lower()}", f"autoApprove: {str(spec.autoApprove).lower()}"]
        if rule is not None:
            facts += [f"approval.requiredAt: {rule.requiredAt}", f"approval.aiProposals: {rule.aiProposals}",
                      f"approval.minApprovals: {rule.minApprovals}"]
        facts += [f"deploymentWindows: {len(spec.deploymentWindows)}", f"requireBackup: {str(spec.requireBackup).lower()}"]
        if spec.cooldown is not None:
            facts.append(f"cooldown.sourceEnvironment: {spec.cooldown.sourceEnvironment}")
        out.append(f"Policy of {d.environment}: {', '.join(facts)}")
    return out


def briefing(context: Context, request: str, *, facts: DatabaseFacts | None = None,
             summary: str = "", budget: int = DATA_CHARS) -> str:
    """The data block's text for ``request`` (see the module doc); parts past ``budget`` are cut."""
    states = context.load()
    head, _, rest = summary.partition("\n")
    parts: list[str] = [head] if head else []  # the environments in promotion order
    parts += policy_lines(states)
    if facts is not None:
        parts += [table_text(t) for t in named_tables(request, facts)]
    for rel in named_files(request, states):
        path = context.root / rel
        try:
            text = path.read_text(encoding="utf-8") if path.is_file() and path.resolve().is_relative_to(
                context.root) else None
        except (OSError, UnicodeDecodeError):
            text = None
        if text is not None:
            parts.append(f"Current file {rel}:\n{text.rstrip()}")
    if rest:
        parts.append(rest)  # every environment's services and layers, and the migrations
    out: list[str] = []
    used = 0
    for part in parts:
        room = budget - used
        if room <= 0:
            out.append("[more project data left out: over the budget]")
            break
        if len(part) > room:
            part = part[:room] + "\n[cut: over the budget]"
        out.append(part)
        used += len(part) + 1
    return "\n".join(out)
