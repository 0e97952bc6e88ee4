"""The risk rules as data: one table of (code, level, message, suggestion), and the
function that renders a rule into a finding. The evaluators are in :mod:`.risk`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

__all__ = ["RULES", "Finding", "Level", "Rule", "finding"]


class Level(IntEnum):
    """Risk level; ordered so ``max`` gives the overall level."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    def raised(self, by: int = 1) -> Level:
        return Level(max(Level.LOW, min(Level.CRITICAL, int(self) + by)))

    def __str__(self) -> str:
        return self.name

    @classmethod
    def parse(cls, name: str) -> Level:
        return cls[name.strip().upper()]


@dataclass(frozen=True)
class Rule:
    """One risk rule. ``raises`` > 0 marks a modifier: the finding's level is the level
    of what it applies to, raised by that many steps (``level`` is then the floor)."""

    code: str
    level: Level
    title: str
    message: str  # str.format template: {table} {index} {column} {rows} {count} …
    suggestion: str = ""
    irreversible: bool = False
    error: bool = False  # the plan cannot be applied as written
    raises: int = 0


@dataclass(frozen=True)
class Finding:
    """A rule that fired, rendered for people (same fields as the plan's FindingRecord)."""

    code: str
    level: Level
    message: str
    suggestion: str = ""
    irreversible: bool = False
    error: bool = False
    subject: str = ""


_RULE_LIST = (
    Rule("PG101", Level.HIGH, "CREATE INDEX without CONCURRENTLY on a populated table",
         "CREATE INDEX {index} on {table} without CONCURRENTLY takes a SHARE lock that "
         "blocks writes for the whole build ({rows})",
         "Consider creating index with CONCURRENTLY option (in its own step, outside a "
         "transaction), then check pg_index.indisvalid and ANALYZE"),
    Rule("PG102", Level.HIGH, "statement cannot run inside a transaction block",
         "{keyword} cannot run inside a transaction block, but {reason}",
         "Put the statement alone in its own step; such steps run outside a transaction",
         error=True),
    Rule("PG103", Level.MEDIUM, "DROP INDEX without CONCURRENTLY",
         "DROP INDEX {index} without CONCURRENTLY takes ACCESS EXCLUSIVE on its table and "
         "blocks reads and writes until it finishes",
         "Use DROP INDEX CONCURRENTLY IF EXISTS in its own step"),
    Rule("PG104", Level.LOW, "non-blocking maintenance",
         "{keyword} on {table} takes SHARE UPDATE EXCLUSIVE: reads and writes continue ({rows})"),
    Rule("PG105", Level.HIGH, "REINDEX without CONCURRENTLY",
         "REINDEX of {target} without CONCURRENTLY blocks writes, and reads that plan on the "
         "index, for the rebuild ({rows})",
         "Use REINDEX … CONCURRENTLY in its own step"),
    Rule("PG200", Level.MEDIUM, "brief exclusive lock",
         "{keyword} on {table} takes {lock} briefly; queued behind a long query it makes "
         "every later query on the table wait",
         "Keep lock_timeout short (1–2 s) and retry with backoff"),
    Rule("PG201", Level.HIGH, "validation scan under an exclusive lock",
         "{action} on {table} holds {lock} while it scans every row ({rows})",
         "Add the constraint NOT VALID, then VALIDATE CONSTRAINT in a later step; for SET "
         "NOT NULL first add and validate CHECK (col IS NOT NULL) NOT VALID"),
    Rule("PG202", Level.CRITICAL, "ADD COLUMN rewrites the table",
         "ADD COLUMN {column} on {table} with a volatile default, serial/identity or stored "
         "generated value rewrites the table under ACCESS EXCLUSIVE ({rows})",
         "Add the column nullable without the default, SET DEFAULT, then backfill in batches"),
    Rule("PG203", Level.CRITICAL, "ALTER COLUMN TYPE rewrites the table",
         "ALTER COLUMN {column} TYPE {new_type} on {table} rewrites the table under ACCESS "
         "EXCLUSIVE ({rows})",
         "Add a new column, sync it with a trigger, backfill in batches and swap by rename"),
    Rule("PG301", Level.CRITICAL, "table rewrite",
         "{keyword} rewrites {table} under ACCESS EXCLUSIVE: reads and writes are blocked "
         "for the whole rewrite ({rows})",
         "Use pg_repack (or REPACK CONCURRENTLY on PostgreSQL ≥ 19) instead"),
    Rule("PG302", Level.HIGH, "REFRESH MATERIALIZED VIEW without CONCURRENTLY",
         "REFRESH MATERIALIZED VIEW {table} without CONCURRENTLY blocks its readers for "
         "the whole refresh ({rows})",
         "Use REFRESH MATERIALIZED VIEW CONCURRENTLY (needs a unique index on the view)"),
    Rule("DS101", Level.CRITICAL, "DROP TABLE",
         "DROP TABLE {table} destroys the table and its data ({rows})",
         "Rename it to <name>_deprecated first and drop it in a later release; keep a backup",
         irreversible=True),
    Rule("DS102", Level.CRITICAL, "DROP COLUMN or TRUNCATE",
         "{action} on {table} destroys data ({rows})",
         "Stop reads and writes of the data first and keep a backup; deprecate in two phases",
         irreversible=True),
    Rule("DS103", Level.CRITICAL, "other data-destroying statement",
         "{keyword} destroys data: {what}",
         "Name the objects explicitly instead of CASCADE, add a WHERE clause, keep a backup",
         irreversible=True),
    Rule("PG204", Level.CRITICAL, "ADD COLUMN NOT NULL without a default on a populated table",
         "ALTER TABLE {table} ADD COLUMN {column} NOT NULL has no default: it fails on the {rows} "
         "already in the table",
         "Add the column nullable, backfill it, then SET NOT NULL (or give it a DEFAULT)",
         error=True),
    Rule("PG401", Level.HIGH, "PostGIS extension upgrade",
         "{what} replaces the PostGIS functions every layer and query uses",
         "Check the version from and to (SELECT postgis_full_version()) and the objects that "
         "depend on the extension; run it on a copy of the database first"),
    Rule("DS104", Level.HIGH, "bulk UPDATE or DELETE without a selective WHERE",
         "{keyword} {table} {scope} of its {rows}",
         "Restrict it with a WHERE, or run it in batches; a backup is taken before migrations"),
    Rule("DS105", Level.CRITICAL, "geometry precision or dimensions reduced",
         "{function} rewrites the geometries of {table} ({rows}): the lost precision or Z/M "
         "values cannot be brought back",
         "Keep the original geometries (a copy column or table) until the result is verified",
         irreversible=True),
    Rule("SQL001", Level.MEDIUM, "statement not analyzed",
         "statement not analyzed, its locks and effects are unknown: {warning}",
         "Prefer plain SQL statements that the planner can assess"),
    Rule("SQL002", Level.HIGH, "effects unknown",
         "effects unknown: read the function: the statement {effects}; the planner cannot "
         "see what it changes",
         "Read the function's body (and what it calls) before approving; prefer plain SQL "
         "statements the planner can assess"),
    Rule("GEO101", Level.MEDIUM, "invalid geometries present",
         "{count} invalid geometries in {table}",
         "Fix them with ST_MakeValid (keep the type with ST_CollectionExtract/ST_Multi) "
         "before relying on spatial predicates"),
    Rule("GEO102", Level.CRITICAL, "ST_IsValid check constraint on invalid geometries",
         "ADD CONSTRAINT … CHECK (ST_IsValid({column})) on {table} fails: {count} rows are "
         "invalid now (e.g. {reason})",
         "Fix them first (UPDATE … SET {column} = ST_MakeValid({column}) WHERE NOT "
         "ST_IsValid({column})), or add the constraint NOT VALID and validate it later",
         error=True),
    Rule("GEO103", Level.HIGH, "NOT VALID ST_IsValid check on invalid geometries",
         "CHECK (ST_IsValid({column})) NOT VALID on {table} guards new rows only: {count} rows "
         "are invalid now (e.g. {reason}) and VALIDATE CONSTRAINT fails until they are fixed",
         "Fix them (ST_MakeValid) before the step that validates the constraint"),
    Rule("GEO201", Level.CRITICAL, "SRID or geometry type change",
         "{what} changes the SRID or geometry type of {table}.{column}{change}: ACCESS "
         "EXCLUSIVE + full table rewrite ({rows}), and clients see new coordinates/types",
         "Use an expression index on ST_Transform(geom, srid), or add a new column, backfill "
         "in batches and swap"),
    Rule("GEO301", Level.MEDIUM, "published geometry column without spatial index",
         "geometry column {table}.{column} of a published layer has no valid spatial index",
         "Create a GIST index CONCURRENTLY on the geometry column"),
    Rule("SVC101", Level.HIGH, "published collection breaks clients",
         "{detail}: breaks clients of collection {collection}",
         "Publish the new shape as a new collection and retire the old one after notice"),
    Rule("LOCK001", Level.MEDIUM, "strong lock without lock_timeout",
         "{lock} on {table} without lock_timeout: queued behind a long query it blocks every "
         "later query on the table",
         "SET lock_timeout = '1s'–'2s' for the step and retry on lock timeout",
         raises=1),
    Rule("ENV001", Level.MEDIUM, "production environment", "production environment",
         "Apply in a maintenance window with an approval", raises=1),
    Rule("AI001", Level.LOW, "change proposed by AI",
         "change proposed by an AI assistant{detail}",
         "Review the SQL and the plan; policy may require a human approval"),
    Rule("VAL001", Level.LOW, "performance validation predicted to fail",
         "performance validation on {table} expects an index scan, but with {rows} the "
         "planner will prefer a sequential scan",
         "Make the check structural (index exists, indisvalid, access method) or advisory; "
         "or use EXPLAIN (FORMAT JSON) with enable_seqscan = off"),
    Rule("POL101", Level.CRITICAL, "policy changed",
         "{files} changed: judged by the base policy ({base}); approvers of the base policy must approve",
         "Review the policy change on its own; once applied, its commit judges the next plans"),
)

RULES: dict[str, Rule] = {r.code: r for r in _RULE_LIST}


class _Params(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


def finding(code: str, subject: str = "", **params: Any) -> Finding:
    """Render rule ``code`` with ``params``; ``level`` overrides the rule's level.

    Conveniences so callers can pass raw values: ``table`` defaults to ``subject``, an
    int ``rows`` renders as "~N rows", an int ``count`` gets thousands separators."""
    rule = RULES[code]
    level = params.pop("level", rule.level)
    if subject:
        params.setdefault("table", subject)
    if isinstance(params.get("rows"), int):
        params["rows"] = f"~{params['rows']:,} rows"
    if isinstance(params.get("count"), int):
        params["count"] = f"{params['count']:,}"
    return Finding(code=rule.code, level=Level(level), message=rule.message.format_map(_Params(params)),
                   suggestion=rule.suggestion, irreversible=rule.irreversible, error=rule.error,
                   subject=subject)
