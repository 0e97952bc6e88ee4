"""The questions a plan asks the live database about its pending migrations' statements.

The catalog answers most risk questions (row estimates, columns, indexes). A few need
the data: how many rows a geometry CHECK would reject, how complex the geometries an
index is built on are, how many rows an UPDATE or DELETE reaches. Which questions a
statement raises is decided here, purely; the refresh asks them (read-only, rolled back,
under a statement timeout) and the risk rules read the answers from
:class:`~honua_plan.plan.migrations.LiveState`. A question that could not be answered
has no answer: the rule then falls back to the catalog's estimate.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from honua_plan.providers.postgis.facts import DatabaseFacts
from honua_plan.sql.statement import Op, Statement

__all__ = ["Probe", "extension_updated", "index_columns", "is_spatial_index", "isvalid_column", "npoints_key",
           "probes_for", "rows_key"]

_ISVALID_CHECK = re.compile(r"\bCHECK\s*\(\s*(?:\w+\.)?ST_IsValid\s*\(\s*(\"[^\"]+\"|\w+)\s*\)", re.IGNORECASE)
SAMPLE_ROWS = 2_000  # geometries read for the avg(ST_NPoints) of an index build


@dataclass(frozen=True)
class Probe:
    """One question: ``kind`` is ``invalid`` (rows a ST_IsValid CHECK rejects, with a
    sample reason), ``npoints`` (average vertices per geometry, from a sample) or
    ``rows`` (EXPLAIN's estimate of the rows an UPDATE/DELETE reaches) or ``extension``
    (installed and default version of the extension ``column`` names)."""

    key: str
    kind: str
    table: str
    column: str = ""
    statement: str = ""
    sample_percent: float = 100.0


def isvalid_column(s: Statement) -> str | None:
    """The column of ``ADD CONSTRAINT … CHECK (ST_IsValid(col))``, else None."""
    if s.op != Op.add_constraint and Op.add_constraint not in s.actions:
        return None
    m = _ISVALID_CHECK.search(s.sql)
    return m.group(1).strip('"') if m else None


_EXTENSION_UPDATE = re.compile(r"\bALTER\s+EXTENSION\s+\"?(postgis\w*)\"?\s+UPDATE\b|\b(postgis)_extensions_upgrade\s*\(",
                               re.IGNORECASE)


def extension_updated(s: Statement) -> str | None:
    """The PostGIS extension an ``ALTER EXTENSION … UPDATE`` or
    ``postgis_extensions_upgrade()`` updates, else None."""
    m = _EXTENSION_UPDATE.search(s.sql)
    return (m.group(1) or m.group(2)).lower() if m else None


def rows_key(s: Statement) -> str:
    return "rows:" + " ".join(s.sql.split())


def _qualified(name: str, facts: DatabaseFacts) -> str | None:
    t = facts.table(name)
    return t.qualified_name if t is not None else None


def probes_for(stmts: Iterable[Statement], facts: DatabaseFacts | None,
               created: Iterable[str] = ()) -> list[Probe]:
    """The probes of ``stmts``: only on tables that exist now and that no earlier
    statement of the plan creates (their data is the live data)."""
    if facts is None:
        return []
    fresh = set(created)
    out: dict[str, Probe] = {}
    for s in stmts:
        if s.op == Op.create_table and s.table:
            fresh.add(s.table)
        ext = extension_updated(s)
        if ext is not None:
            out[f"extension:{ext}"] = Probe(f"extension:{ext}", "extension", "", ext)
        if not s.table or s.table in fresh or (s.explain and not s.executes):
            continue
        table = _qualified(s.table, facts)
        if table is None or table in fresh:
            continue
        t = facts.table(table)
        rows = t.row_estimate if t is not None else 0
        col = isvalid_column(s)
        if col is not None:
            key = f"invalid:{table}.{col}"
            out[key] = Probe(key, "invalid", table, col)
        if is_spatial_index(s) and t is not None:
            for g in t.geometry_columns:
                if g.column in index_columns(s):
                    key = npoints_key(table, g.column)
                    pct = 100.0 if rows <= SAMPLE_ROWS else max(0.01, round(100.0 * SAMPLE_ROWS / rows, 4))
                    out[key] = Probe(key, "npoints", table, g.column, sample_percent=pct)
        if s.op in (Op.update, Op.delete) and not s.destructive:
            key = rows_key(s)
            out[key] = Probe(key, "rows", table, statement=s.sql)
    return list(out.values())


_PARENS = re.compile(r"\(([^()]*)\)\s*(?:INCLUDE|WITH|WHERE|TABLESPACE|;|$)", re.IGNORECASE)


def is_spatial_index(s: Statement) -> bool:
    return s.op == Op.create_index and s.method in ("gist", "spgist", "brin")


def npoints_key(table: str, column: str) -> str:
    return f"npoints:{table}.{column}"


def index_columns(s: Statement) -> set[str]:
    """Plain column names in a CREATE INDEX's column list (expressions are left out)."""
    m = _PARENS.search(s.sql)
    if not m:
        return set()
    names = set()
    for part in m.group(1).split(","):
        word = part.strip().split()[0] if part.strip() else ""
        names.add(word.strip('"'))
    return names
