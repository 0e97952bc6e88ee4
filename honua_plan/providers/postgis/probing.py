"""Answer a plan's probes (:mod:`honua_plan.plan.probes`) against the live database.

Every probe reads in its own read-only transaction that is rolled back, under a short
statement timeout: an UPDATE is only EXPLAINed (PostgreSQL does not check the read-only
mode for EXPLAIN without ANALYZE, and executes nothing), and a probe that fails or takes
too long is left unanswered rather than failing the plan.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from psycopg import sql

from honua_plan.config import templating
from honua_plan.config.desired import DesiredState
from honua_plan.config.models import Migration
from honua_plan.errors import HonuaError
from honua_plan.plan.probes import Probe, probes_for
from honua_plan.providers.postgis.facts import DatabaseFacts
from honua_plan.providers.postgis.sqlexec import Session, ident, qualified, read_rolled_back

__all__ = ["PROBE_TIMEOUT_S", "answer_probes", "probe_pending"]

PROBE_TIMEOUT_S = 5.0


def _invalid(p: Probe) -> sql.Composable:
    g = ident(p.column)
    return sql.SQL(
        "SELECT count(*), min(ST_IsValidReason({g})) FROM {t} WHERE {g} IS NOT NULL AND NOT ST_IsValid({g})"
    ).format(g=g, t=qualified(p.table))


def _npoints(p: Probe) -> sql.Composable:
    g = ident(p.column)
    sample = sql.SQL("") if p.sample_percent >= 100 else sql.SQL(" TABLESAMPLE SYSTEM ({})").format(
        sql.Literal(p.sample_percent))
    return sql.SQL("SELECT avg(ST_NPoints({g}))::float8, count(*) FROM {t}{s} WHERE {g} IS NOT NULL").format(
        g=g, t=qualified(p.table), s=sample)


def _plan_rows(doc: Any) -> int | None:
    """EXPLAIN (FORMAT JSON) of an UPDATE/DELETE: the rows its scan feeds the ModifyTable."""
    if isinstance(doc, str):
        doc = json.loads(doc)
    try:
        node = doc[0]["Plan"]
        while node.get("Node Type") != "ModifyTable" and node.get("Plans"):
            node = node["Plans"][0]
        return int(node["Plans"][0]["Plan Rows"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def answer_probes(session: Session, probes: Iterable[Probe],
                  timeout_s: float = PROBE_TIMEOUT_S) -> dict[str, tuple[Any, ...]]:
    """``{probe key: answer}``: ``invalid`` → (count, a sample reason or ""), ``npoints``
    → (average vertices, geometries sampled), ``rows`` → (estimated rows,), ``extension`` →
    (installed version or "", default version)."""
    out: dict[str, tuple[Any, ...]] = {}
    for p in probes:
        try:
            if p.kind == "invalid":
                [(count, reason)] = read_rolled_back(session, _invalid(p), timeout_s)
                out[p.key] = (int(count), reason or "")
            elif p.kind == "npoints":
                [(avg, n)] = read_rolled_back(session, _npoints(p), timeout_s)
                if avg is not None:
                    out[p.key] = (float(avg), int(n))
            elif p.kind == "extension":
                found = read_rolled_back(session, sql.SQL(
                    "SELECT installed_version, default_version FROM pg_available_extensions WHERE name = {}"
                ).format(sql.Literal(p.column)), timeout_s)
                if found:
                    out[p.key] = (found[0][0] or "", found[0][1] or "")
            elif p.kind == "rows":
                explain = sql.SQL("EXPLAIN (FORMAT JSON) ") + sql.SQL(p.statement.strip().rstrip(";"))
                [(doc,)] = read_rolled_back(session, explain, timeout_s, explain_only=True)
                rows = _plan_rows(doc)
                if rows is not None:
                    out[p.key] = (rows,)
        except HonuaError:
            continue  # unanswered: the rule uses the catalog's estimate
    return out


def probe_pending(session: Session, desired: DesiredState, pending: Iterable[Migration],
                  facts: DatabaseFacts) -> dict[str, tuple[Any, ...]]:
    """Ask what the pending migrations' SQL steps need to know about the live data."""
    from honua_plan.sql.analysis import analyze
    from honua_plan.sql.statement import Op

    variables = desired.template_vars()
    created: set[str] = set()
    asked: list[Probe] = []
    for m in pending:
        for step in m.spec.up:
            if step.type != "sql" or not step.content:
                continue
            stmts = analyze(templating.render_template(step.content, variables))
            asked += probes_for(stmts, facts, created)
            created |= {st.table for st in stmts if st.op == Op.create_table and st.table}
    return answer_probes(session, asked) if asked else {}
