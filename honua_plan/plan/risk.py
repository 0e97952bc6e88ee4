"""Risk rules as data, and pure evaluators that turn statements and facts into findings.

Levels follow the scale in ``docs/reference/postgres-locks.md`` §10: LOW (nothing blocked,
or new/empty objects), MEDIUM (brief ACCESS EXCLUSIVE: safe only with lock_timeout +
retry), HIGH (writes or reads blocked for a scan or an index build, O(rows)),
CRITICAL (ACCESS EXCLUSIVE + table rewrite, or irreversible data loss).

Table size decides most levels, so every evaluator classifies the target table as
``created`` (created earlier in the same plan: nobody else can see it), ``empty``
(reltuples 0 and no heap pages), ``populated`` or ``unknown``. Unknown (no facts, or
a table the facts do not list) is treated like populated: the plan says "size
unknown" instead of guessing small, because a missed write outage costs more than an
extra approval. Nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from honua_plan.plan.probes import (
    extension_updated,
    index_columns,
    is_spatial_index,
    isvalid_column,
    npoints_key,
    rows_key,
)
from honua_plan.plan.rules import RULES, Finding, Level, Rule, finding
from honua_plan.providers.postgis.facts import ColumnFacts, DatabaseFacts, TableFacts
from honua_plan.sql.locks import LOCK_RANK, SHARE, SHARE_ROW_EXCLUSIVE, UNKNOWN_LOCK
from honua_plan.sql.statement import Op, Statement
from honua_plan.sql.syntax import geometry_typmod

__all__ = [
    "COST_US_PER_ROW",
    "MIN_SECONDS",
    "PERF_MIN_ROWS",
    "RULES",
    "Finding",
    "Level",
    "Rule",
    "assess_context",
    "assess_invalid_geometries",
    "assess_performance_validation",
    "assess_service_change",
    "assess_spatial_index",
    "assess_statements",
    "describe",
    "estimate_seconds",
    "finding",
    "overall",
    "raise_for_environment",
    "table_state",
]


def overall(findings: Iterable[Finding], base: Level = Level.LOW) -> Level:
    """The plan's (or action's) level: the highest finding, at least ``base``."""
    return max([base, *(f.level for f in findings)])


def raise_for_environment(level: Level, production: bool) -> Level:
    return level.raised() if production else level


# ------------------------------------------------------------------------- tables

_PAGE = 8192


def _is_empty(t: TableFacts) -> bool:
    """reltuples is 0 both for empty and for never-analyzed tables (-1 is clamped to 0),
    so also require no heap pages: an empty table is one page per index (+ TOAST index)."""
    if t.row_estimate > 0:
        return False
    return t.total_bytes == 0 or t.total_bytes <= _PAGE * (len(t.indexes) + 2)


def _same_table(a: str, b: str) -> bool:
    if a == b:
        return True
    if "." in a and "." in b:
        return False
    return a.rsplit(".", 1)[-1] == b.rsplit(".", 1)[-1]


def table_state(name: str | None, facts: DatabaseFacts | None,
                created: Iterable[str] = ()) -> tuple[str, int | None]:
    """(``created`` | ``empty`` | ``populated`` | ``unknown``, row estimate or None)."""
    if name is None:
        return "unknown", None
    if any(_same_table(name, c) for c in created):
        return "created", 0
    t = facts.table(name) if facts is not None else None
    if t is None:
        return "unknown", None
    return ("empty" if _is_empty(t) else "populated"), t.row_estimate


def _rows_text(state: str, rows: int | None) -> str:
    if state == "created":
        return "new table"
    if state == "empty":
        return "empty table"
    if rows is None:
        return "table size unknown"
    return f"~{rows:,} rows"


def _index_table(stmt: Statement, facts: DatabaseFacts | None) -> str | None:
    """The table an index statement works on: written, or looked up in the facts."""
    if stmt.table:
        return stmt.table
    if stmt.index and facts is not None:
        found = facts.find_index(stmt.index.rsplit(".", 1)[-1])
        if found is not None:
            return found[0].qualified_name
    return None


def _catalog_only_type_change(col: ColumnFacts | None, new_type: str | None, using: bool) -> bool:
    """Binary-coercible changes that skip the rewrite (measured: varchar widen, varchar →
    text, same type). Anything we cannot prove stays a rewrite."""
    if col is None or not new_type or using:
        return False
    new = new_type.replace(" ", "").lower()
    old = col.data_type.replace(" ", "").lower()
    if new == old:
        return True
    old_var = col.udt in ("varchar", "text")
    if new in ("text", "varchar", "charactervarying") and old_var:
        return True
    for prefix in ("varchar(", "charactervarying("):
        if new.startswith(prefix) and col.udt == "varchar" and new.endswith(")"):
            try:
                size = int(new[len(prefix):-1])
            except ValueError:
                return False
            return col.max_length is not None and size >= col.max_length
    return False


# --------------------------------------------------------------------- statements

_STRONG = LOCK_RANK[SHARE]
_BRIEF = LOCK_RANK[SHARE_ROW_EXCLUSIVE]
_NO_CONTENTION = frozenset({Op.create_table, Op.create_extension, Op.transaction,
                            Op.set_config, Op.grant, Op.select, Op.insert, Op.update})
_BEGIN = frozenset({"BEGIN", "START"})
_END = frozenset({"COMMIT", "END", "ROLLBACK", "ABORT"})
_ACTION_TEXT = {
    Op.set_not_null: "SET NOT NULL", Op.add_constraint: "ADD CONSTRAINT",
    Op.alter_column_type: "ALTER COLUMN TYPE", Op.drop_column: "DROP COLUMN",
    Op.truncate: "TRUNCATE",
}


_LABELS = {
    Op.create_index: "CREATE INDEX", Op.drop_index: "DROP INDEX", Op.reindex: "REINDEX",
    Op.add_column: "ADD COLUMN", Op.drop_column: "DROP COLUMN",
    Op.alter_column_type: "ALTER COLUMN TYPE", Op.set_not_null: "SET NOT NULL",
    Op.drop_not_null: "DROP NOT NULL", Op.set_default: "SET/DROP DEFAULT",
    Op.add_constraint: "ADD CONSTRAINT", Op.validate_constraint: "VALIDATE CONSTRAINT",
    Op.drop_constraint: "DROP CONSTRAINT", Op.rename: "RENAME", Op.vacuum_full: "VACUUM FULL",
    Op.refresh_matview: "REFRESH MATERIALIZED VIEW", Op.create_trigger: "CREATE TRIGGER",
    Op.create_view: "CREATE VIEW", Op.drop_view: "DROP VIEW", Op.lock_table: "LOCK TABLE",
    Op.create_table: "CREATE TABLE", Op.drop_table: "DROP TABLE",
}


def describe(s: Statement) -> str:
    """A short human name for what the statement does (``CREATE INDEX CONCURRENTLY``)."""
    label = _LABELS.get(s.op) or s.keyword or s.op.value.upper()
    if s.op == Op.create_view and s.or_replace:
        label = "CREATE OR REPLACE VIEW"
    if s.concurrently:
        label += " CONCURRENTLY"
    return ("EXPLAIN ANALYZE " if s.explain else "") + label


_NOT_NULL = re.compile(r"\bNOT\s+NULL\b")
_WHERE = re.compile(r"\bWHERE\b")
_POSTGIS_UPGRADE = re.compile(r"\bALTER\s+EXTENSION\s+\"?POSTGIS\w*\"?\s+UPDATE\b|\bPOSTGIS_EXTENSIONS_UPGRADE\s*\(")
_LOSSY_GEOMETRY = re.compile(r"\b(ST_SNAPTOGRID|ST_REDUCEPRECISION|ST_FORCE2D|ST_FORCE_2D|ST_FORCE3D|ST_FORCE_3D)\s*\(")


def _statement_findings(s: Statement, facts: DatabaseFacts | None, created: set[str],
                        probes: Mapping[str, tuple[Any, ...]]) -> list[Finding]:
    """The per-statement rules (everything but PG102 and LOCK001)."""
    out: list[Finding] = []
    target = _index_table(s, facts) if s.op in (Op.drop_index, Op.reindex, Op.cluster) else s.table
    state, rows = table_state(target, facts, created)
    fresh = state in ("created", "empty")
    subject = target or s.index or s.object_name or ""
    p: dict[str, Any] = {"table": target or "?", "index": s.index or "(unnamed)",
                         "column": s.column or "?", "rows": _rows_text(state, rows),
                         "keyword": describe(s), "lock": s.lock,
                         "new_type": s.new_type or "?"}
    op = s.op

    if op == Op.create_index and not fresh:
        p["rows"] += _complexity_text(s, target, facts, probes)
    if op == Op.create_index and not s.concurrently and not fresh:
        out.append(finding("PG101", subject, **p))
    elif op == Op.drop_index and not s.concurrently and state != "created":
        out.append(finding("PG103", s.index or subject, **p))
    elif op == Op.reindex and not s.concurrently and not fresh:
        out.append(finding("PG105", subject, target=s.index or target or s.object_name or "?", **p))
    elif op in (Op.analyze, Op.vacuum, Op.validate_constraint):
        out.append(finding("PG104", subject, **{**p, "table": target or "all tables"}))
    elif op in (Op.vacuum_full, Op.cluster) and not fresh:
        out.append(finding("PG301", subject, **p))
    elif op == Op.refresh_matview and not s.concurrently and not fresh:
        out.append(finding("PG302", subject, **p))
    elif op == Op.drop_table:
        out.append(finding("DS101", subject, **p))
    elif op in (Op.drop_column, Op.truncate):
        out.append(finding("DS102", subject, action=_ACTION_TEXT[op] + (
            f" {s.column}" if op == Op.drop_column and s.column else ""), **p))
    elif s.destructive:
        what = "every row of " + (target or "the table") if op == Op.delete else (
            s.object_name or target or "objects")
        out.append(finding("DS103", subject, what=what, **p))

    if op == Op.add_column and s.rewrites and not fresh:
        out.append(finding("PG202", subject, **p))
    text = " ".join(s.sql.split()).upper()
    if op == Op.add_column and state in ("populated", "unknown") and _NOT_NULL.search(text) \
            and "DEFAULT" not in text and not s.volatile_default:
        out.append(finding("PG204", subject, **p))
    if _POSTGIS_UPGRADE.search(text):
        out.append(_extension_finding(s, subject, facts, probes, p))
    if op in (Op.update, Op.delete) and not fresh and not s.destructive:
        bulk = _bulk_finding(s, subject, text, rows, probes, p)
        if bulk is not None:
            out.append(bulk)
    lossy = _LOSSY_GEOMETRY.search(text) if op in (Op.update, Op.alter_column_type) else None
    if lossy is not None and not fresh and not _drops_nothing(lossy.group(1), target, facts):
        out.append(finding("DS105", subject, function=lossy.group(1), **p))
    checked = isvalid_column(s)
    if checked is not None and not fresh:
        answer = probes.get(f"invalid:{_qualified(target, facts)}.{checked}")
        if answer is not None and answer[0] > 0:
            out.append(finding("GEO103" if s.not_valid else "GEO102", subject, **{
                **p, "column": checked, "count": answer[0], "reason": answer[1] or "no reason given"}))
    if s.geometry_change and state != "created":
        geo = _geometry_change_finding(s, facts, target, subject, p)
        if geo is not None:
            out.append(geo)
    elif op == Op.alter_column_type and s.rewrites and not fresh:
        tfacts = facts.table(target) if facts is not None and target else None
        col = tfacts.column(s.column) if tfacts is not None and s.column else None
        if not _catalog_only_type_change(col, s.new_type, s.using):
            out.append(finding("PG203", subject, **p))
    if op in (Op.set_not_null, Op.add_constraint) and s.scans and not fresh:
        out.append(finding("PG201", subject, action=_ACTION_TEXT[op], **p))
    if op == Op.other and s.rewrites and not fresh:
        out.append(finding("PG301", subject, **p))
    if s.warning and (op == Op.other or s.lock == UNKNOWN_LOCK):
        out.append(finding("SQL001", subject, warning=s.warning))
    if s.effects:
        out.append(finding("SQL002", subject, effects=s.effects))

    if not out and state != "created" and LOCK_RANK.get(s.lock, 0) >= _BRIEF \
            and s.lock != UNKNOWN_LOCK and op not in _NO_CONTENTION \
            and not (op == Op.create_view and not _view_exists(s, facts)):
        out.append(finding("PG200", subject, **p))
    return out


def _qualified(table: str | None, facts: DatabaseFacts | None) -> str:
    t = facts.table(table) if facts is not None and table else None
    return t.qualified_name if t is not None else (table or "?")


BULK_SHARE = 0.5  # an UPDATE/DELETE reaching at least this share of the table is a bulk change
BULK_LEVELS = ((1_000_000, Level.CRITICAL), (1_000, Level.HIGH), (0, Level.MEDIUM))


def _bulk_finding(s: Statement, subject: str, text: str, rows: int | None,
                  probes: Mapping[str, tuple[Any, ...]], p: Mapping[str, Any]) -> Finding | None:
    """DS104: an UPDATE/DELETE that reaches most of a populated table, rated by the rows it
    reaches (EXPLAIN's estimate when the plan could ask, else the table's row estimate for
    a statement without a WHERE)."""
    where = _WHERE.search(text) is not None
    answer = probes.get(rows_key(s))
    if answer is None:
        if where:
            return None  # a WHERE we could not estimate: no claim
        reached = rows
        scope = "without a WHERE changes every one"
    else:
        reached = answer[0]
        if where and reached < BULK_SHARE * max(rows or 0, 1):
            return None  # selective
        scope = ("with a WHERE that is not selective changes ~" if where else "without a WHERE changes ~") \
            + f"{reached:,} (EXPLAIN estimate)"
    level = next(lv for bound, lv in BULK_LEVELS if (reached or 0) >= bound) if reached is not None else Level.HIGH
    return finding("DS104", subject, scope=scope, level=level, **p)


_TO_VERSION = re.compile(r"\bUPDATE\s+TO\s+'([^']+)'", re.IGNORECASE)


def _extension_finding(s: Statement, subject: str, facts: DatabaseFacts | None,
                       probes: Mapping[str, tuple[Any, ...]], p: Mapping[str, Any]) -> Finding:
    """PG401 with its pre-checks: the version from and to (the live database's installed
    and default versions, or UPDATE TO's), and what depends on the extension."""
    ext = extension_updated(s) or "postgis"
    installed, default = probes.get(f"extension:{ext}", ("", ""))
    to = _TO_VERSION.search(s.sql)
    target = to.group(1) if to else default
    what = " ".join(s.sql.split())[:80]
    if installed and target:
        what += f" ({ext} {installed} → {target}" + (": already installed, nothing to update)" if installed == target else ")")
    elif installed:
        what += f" ({ext} {installed} installed)"
    if facts is not None:
        columns = sum(len(t.geometry_columns) for t in facts.tables)
        tables = sum(1 for t in facts.tables if t.geometry_columns)
        what += f"; {columns} geometry column{'s' if columns != 1 else ''} in {tables} table{'s' if tables != 1 else ''}/views depend on it"
    level = Level.LOW if installed and installed == target else RULES["PG401"].level
    return finding("PG401", subject or ext, **{**p, "what": what, "level": level})


def _drops_nothing(function: str, table: str | None, facts: DatabaseFacts | None) -> bool:
    """ST_Force2D on a table whose geometry columns all have two dimensions loses nothing."""
    if function not in ("ST_FORCE2D", "ST_FORCE_2D"):
        return False
    t = facts.table(table) if facts is not None and table else None
    return t is not None and bool(t.geometry_columns) and all(g.dims == 2 for g in t.geometry_columns)


def _complexity_text(s: Statement, table: str | None, facts: DatabaseFacts | None,
                     probes: Mapping[str, tuple[Any, ...]]) -> str:
    points = index_points(s, table, facts, probes)
    return f", ~{points:,.0f} vertices per geometry" if points is not None else ""


def index_points(s: Statement, table: str | None, facts: DatabaseFacts | None,
                 probes: Mapping[str, tuple[Any, ...]]) -> float | None:
    """Average vertices per geometry of the column a spatial index is built on (sampled)."""
    if not table or not is_spatial_index(s):
        return None
    qualified = _qualified(table, facts)
    answers = [probes[k] for c in sorted(index_columns(s)) if (k := npoints_key(qualified, c)) in probes]
    return float(answers[0][0]) if answers else None


def _view_exists(s: Statement, facts: DatabaseFacts | None) -> bool:
    """CREATE VIEW locks an existing view only when it replaces one."""
    if not s.or_replace:
        return False
    return facts is None or (s.table is not None and facts.table(s.table) is not None)


def _geometry_change_finding(s: Statement, facts: DatabaseFacts | None, target: str | None,
                             subject: str, p: Mapping[str, Any]) -> Finding | None:
    current = None
    if facts is not None and target and s.column:
        t = facts.table(target)
        current = t.geometry(s.column) if t is not None else None
    wanted = geometry_typmod(s.new_type) if s.new_type else None
    change = ""
    if current is not None and wanted is not None:
        if not s.using and wanted[0] == current.geometry_type.upper() and wanted[1] == current.srid:
            return None  # same typmod, no USING: catalog-only (measured i07)
        srid = "" if wanted[1] is None else f",{wanted[1]}"
        change = f" ({current.geometry_type},{current.srid} → {wanted[0]}{srid})"
    what = s.object_name if s.keyword == "SELECT" and s.object_name else "ALTER COLUMN TYPE"
    return finding("GEO201", subject, what=what, change=change, **p)


def assess_statements(
    stmts: Sequence[Statement],
    facts: DatabaseFacts | None,
    *,
    created_tables: frozenset[str] = frozenset(),
    lock_timeout_set: bool = True,
    step_statement_count: int | None = None,
    in_transaction: bool | None = None,
    probes: Mapping[str, tuple[Any, ...]] | None = None,
) -> tuple[Finding, ...]:
    """Findings for the statements of one step, in statement order.

    ``created_tables``: tables an earlier step of the same plan creates (they count as
    new and empty); tables created by earlier statements here are added as we go.
    ``lock_timeout_set``: whether the executor sets lock_timeout for the step; a ``SET
    lock_timeout`` among the statements counts too. ``step_statement_count``: statements
    the step sends in one call (default ``len(stmts)``). ``in_transaction``: True/False
    when the caller decides; None means the executor rule of the design (a step with a
    non-transactional statement runs outside a transaction), so only explicit BEGIN
    blocks and multi-statement steps trigger PG102. ``probes``: the refresh's answers
    (:mod:`honua_plan.plan.probes`) about the data the statements reach.
    """
    created = set(created_tables)
    timeout = lock_timeout_set
    count = len(stmts) if step_statement_count is None else step_statement_count
    in_block = False
    out: list[Finding] = []
    for s in stmts:
        if s.op == Op.transaction:
            in_block = (in_block or s.keyword in _BEGIN) and s.keyword not in _END
            continue
        if s.op == Op.set_config and s.object_name == "lock_timeout" and s.keyword != "RESET":
            timeout = True
        if s.explain and not s.executes:
            continue
        found = _statement_findings(s, facts, created, probes or {})
        if not s.transactional:
            reason = ""
            if in_block:
                reason = "it follows BEGIN in the same step"
            elif in_transaction:
                reason = "the step runs inside a transaction"
            elif count > 1:
                reason = (f"the step sends {count} statements, which PostgreSQL runs as one "
                          "implicit transaction")
            if reason:
                found.append(finding("PG102", s.table or s.index or "", keyword=describe(s),
                                     reason=reason))
        target = _index_table(s, facts) if s.op in (Op.drop_index, Op.reindex) else s.table
        state, _ = table_state(target, facts, created)
        if (not timeout and LOCK_RANK.get(s.lock, 0) >= _STRONG and s.lock != UNKNOWN_LOCK
                and state != "created" and s.op not in _NO_CONTENTION):
            base = overall([f for f in found if not f.error], base=Level.LOW)
            found.append(finding("LOCK001", target or s.index or "", lock=s.lock,
                                 table=target or s.index or "?", level=base.raised()))
        if s.op == Op.create_table and s.table:
            created.add(s.table)
        out.extend(found)
    return tuple(out)


# ------------------------------------------------------------ non-SQL evaluators


def assess_context(findings: Sequence[Finding], *, production: bool, provenance: str = "human",
                   environment: str = "", detail: str = "") -> tuple[Finding, ...]:
    """ENV001 (production raises the overall level one step) and AI001 (AI provenance)."""
    out: list[Finding] = []
    if provenance == "ai":
        out.append(finding("AI001", environment, detail=f" ({detail})" if detail else ""))
    if production:
        level = overall([*findings, *out]).raised()
        out.append(finding("ENV001", environment, level=level))
    return tuple(out)


def assess_invalid_geometries(table: str, column: str, count: int) -> Finding | None:
    return finding("GEO101", f"{table}.{column}", table=f"{table}.{column}",
                   count=count) if count > 0 else None


_SPATIAL_METHODS = frozenset({"gist", "spgist", "brin"})


def assess_spatial_index(layer: str, table: TableFacts | None, table_name: str, column: str,
                         *, index_planned: bool = False) -> Finding | None:
    """GEO301 unless a valid, ready GiST/SP-GiST/BRIN index covers the column (or the
    plan creates one). ``table`` None: the table does not exist yet."""
    if index_planned:
        return None
    if table is not None:
        for idx in table.indexes:
            if idx.method.lower() in _SPATIAL_METHODS and idx.is_valid and idx.is_ready and (
                    column in idx.columns or (not idx.columns and column in idx.definition)):
                return None
    return finding("GEO301", layer, table=table_name, column=column)


def assess_service_change(collection: str, *, removed: bool = False,
                          geometry_type: tuple[str, str] | None = None,
                          crs: tuple[str, str] | None = None,
                          removed_fields: Sequence[str] = ()) -> tuple[Finding, ...]:
    """SVC101 for each published-contract change clients can notice."""
    changes: list[str] = []
    if removed:
        changes.append("collection removed")
    if geometry_type is not None:
        changes.append(f"geometry type {geometry_type[0]} → {geometry_type[1]}")
    if crs is not None:
        changes.append(f"CRS {crs[0]} → {crs[1]}")
    if removed_fields:
        changes.append("field" + ("s" if len(removed_fields) > 1 else "") + " removed: "
                       + ", ".join(removed_fields))
    return tuple(finding("SVC101", collection, detail=c, collection=collection) for c in changes)


PERF_MIN_ROWS = 10_000
"""Below this many rows the planner usually prefers a sequential scan (measured: 300
rows → Seq Scan even with a fresh GiST index and ANALYZE; 20,000 rows → Index Scan)."""


def assess_performance_validation(table: str, facts: DatabaseFacts | None, *,
                                  created_tables: frozenset[str] = frozenset(),
                                  min_rows: int = PERF_MIN_ROWS) -> Finding | None:
    """VAL001 when an index-scan expectation is predicted to fail on a small table.
    Unknown size: no prediction."""
    state, rows = table_state(table, facts, created_tables)
    if state == "unknown" or (rows is not None and rows >= min_rows):
        return None
    return finding("VAL001", table, table=table, rows=_rows_text(state, rows))


# ---------------------------------------------------------------------- estimates

MIN_SECONDS = 0.1
COST_US_PER_ROW: dict[str, float] = {
    # index builds per access method (CONCURRENTLY scans twice: x2)
    "index:gist": 20.0, "index:spgist": 15.0, "index:brin": 0.5, "index:btree": 4.0,
    "index:hash": 4.0, "index:gin": 30.0, "index:other": 10.0,
    "analyze": 2.0,  # rows capped at ANALYZE_ROW_CAP (ANALYZE samples), + 0.2 s
    "vacuum": 3.0, "rewrite": 15.0, "geometry_rewrite": 25.0, "scan": 1.0,
    "update": 10.0, "delete": 5.0, "refresh": 10.0, "select": 0.5,
}
ANALYZE_ROW_CAP = 1_000_000


POINTS_PER_STEP = 400.0
"""A spatial index build costs ``1 + avg vertices / POINTS_PER_STEP`` times its per-row
cost. Measured (PostgreSQL 15, PostGIS 3.3, 100,000 lines, GiST): 2 vertices 1.5 µs/row,
100 vertices 1.7 µs/row, 1,000 vertices (TOASTed, 16 kB) 5.3 µs/row: reading the
geometries, not the tree, grows with their size."""


def estimate_seconds(stmt: Statement, facts: DatabaseFacts | None,
                     probes: Mapping[str, tuple[Any, ...]] | None = None) -> float:
    """Rough duration from the table's row estimate × a per-row cost (µs) of the
    operation; at least MIN_SECONDS. Unknown size counts as 0 rows: only the floor. A
    spatial index build also scales with the sampled vertices per geometry (``probes``)."""
    target = _index_table(stmt, facts) if stmt.op in (Op.drop_index, Op.reindex, Op.cluster) else stmt.table
    _state, rows = table_state(target, facts)
    n = float(rows or 0)
    if stmt.explain and not stmt.executes:
        return MIN_SECONDS
    us = 0.0
    extra = 0.0
    op = stmt.op
    if op in (Op.create_index, Op.reindex):
        us = COST_US_PER_ROW.get(f"index:{stmt.method or 'btree'}", COST_US_PER_ROW["index:other"])
        us *= 2 if stmt.concurrently else 1
        points = index_points(stmt, target, facts, probes or {})
        if points is not None:
            us *= 1.0 + points / POINTS_PER_STEP
    elif op == Op.analyze:
        n = min(n, ANALYZE_ROW_CAP)
        us, extra = COST_US_PER_ROW["analyze"], 0.2
    elif op == Op.vacuum:
        us = COST_US_PER_ROW["vacuum"]
    elif op == Op.refresh_matview:
        us = COST_US_PER_ROW["refresh"]
    elif stmt.rewrites:
        us = COST_US_PER_ROW["geometry_rewrite" if stmt.geometry_change else "rewrite"]
    elif stmt.scans:
        us = COST_US_PER_ROW["scan"]
    elif op == Op.update:
        us = COST_US_PER_ROW["update"]
    elif op == Op.delete:
        us = COST_US_PER_ROW["delete"]
    elif op == Op.select:
        us = COST_US_PER_ROW["select"]
    return max(MIN_SECONDS, n * us / 1e6 + extra)
