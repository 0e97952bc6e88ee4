"""Validation and health checks at apply time: run the query, compare with ``expected``.

Why each choice:

* A check is read-only: its query must be one SELECT calling only functions known to be
  read-only (:mod:`honua_plan.sql.readonly`; a query that is not is refused unsent and
  the check fails), and it runs in its own ``READ ONLY`` transaction, always rolled
  back, sent by the extended protocol (one statement at most): a validation must not
  change what it validates, and ``EXPLAIN ANALYZE`` executes the query it explains.
* It has a ``statement_timeout`` (the check's ``timeout`` or 30 s), and a timeout is
  a *failed check* ("Query timeout after 30s", as in the seed), not a crash, so it
  can trigger the automatic rollback.
* A query that errors is a failed check too: the executor decides what a failure
  means; this module only reports it, with the plan text or rows in ``detail``.
* ``performance`` checks run ``EXPLAIN (ANALYZE, FORMAT TEXT)`` unless the query
  already starts with ``EXPLAIN``; "Index Scan using X" accepts Index Scan, Index Only
  Scan and Bitmap Index Scan on X (:func:`honua_plan.checks.compare.evaluate_plan`), because
  which one the planner picks depends on selectivity (reference 5.2).

The comparison itself is :mod:`honua_plan.checks.compare` (pure).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from honua_plan.checks.compare import evaluate, execution_ms
from honua_plan.config.expected import ExpectationSyntaxError, parse
from honua_plan.console import format_duration
from honua_plan.errors import NotReadOnlyError
from honua_plan.plan.model import CheckRecord
from honua_plan.providers.postgis.sqlexec import Session, StatementError, read_rolled_back
from honua_plan.secrets import redact

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "CheckResult",
    "measure_query_ms",
    "run_check",
    "run_checks",
    "strip_explain",
]

DEFAULT_TIMEOUT_S = 30.0
_QUERY_CANCELED = "57014"  # statement_timeout expired (or the query was cancelled)
_PREVIEW_ROWS = 10

_LEADING_COMMENTS = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.DOTALL)
_EXPLAIN = re.compile(
    r"EXPLAIN\b(?:\s*\((?:[^()]|\([^()]*\))*\)|\s+(?:ANALYZE|ANALYSE|VERBOSE)\b)*\s*",
    re.IGNORECASE,
)
_EXPLAIN_PREFIX = "EXPLAIN (ANALYZE, FORMAT TEXT) "


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check; ``detail`` holds what a failure report needs (plan, rows)."""

    name: str
    ok: bool
    message: str
    observed: str = ""
    seconds: float = 0.0
    detail: str = ""
    observed_ms: float | None = None
    """Execution time from the plan of a performance check run with ANALYZE."""


def _body(query: str) -> str:
    """The query without leading comments and trailing ``;``."""
    text = query.strip()
    m = _LEADING_COMMENTS.match(text)
    if m:
        text = text[m.end():]
    return text.rstrip().rstrip(";").rstrip()


def strip_explain(query: str) -> str:
    """The explained statement of ``EXPLAIN [ANALYZE] [(options)] <statement>`` (else the query)."""
    body = _body(query)
    m = _EXPLAIN.match(body)
    return body[m.end():] if m else body


def _starts_with_explain(query: str) -> bool:
    return _EXPLAIN.match(_body(query)) is not None


def _read(session: Session, query: str, timeout_s: float) -> list[tuple[Any, ...]]:
    return read_rolled_back(session, query, timeout_s)


def _preview(rows: Sequence[Sequence[Any]]) -> str:
    lines = [" | ".join(str(v) for v in r) for r in rows[:_PREVIEW_ROWS]]
    if len(rows) > _PREVIEW_ROWS:
        lines.append(f"… ({len(rows)} rows)")
    return redact("\n".join(lines))


def run_check(
    session: Session, check: CheckRecord, *, default_timeout_s: float = DEFAULT_TIMEOUT_S
) -> CheckResult:
    """Run ``check`` and compare its result with its ``expected``; never raises for SQL errors."""
    started = time.perf_counter()

    def result(ok: bool, message: str, **kw: Any) -> CheckResult:
        return CheckResult(check.name, ok, redact(message),
                           seconds=time.perf_counter() - started, **kw)

    try:
        expectation = parse(check.expected, check.type)
    except ExpectationSyntaxError as exc:
        return result(False, str(exc))
    if not check.query or not check.query.strip():
        return result(False, "the check has no query")
    timeout_s = check.timeout_s if check.timeout_s is not None else default_timeout_s
    performance = check.type == "performance"
    query = _body(check.query)
    if performance and not _starts_with_explain(query):
        query = _EXPLAIN_PREFIX + query
    try:
        rows = _read(session, query, timeout_s)
    except NotReadOnlyError as exc:
        return result(False, exc.message, observed="refused")
    except StatementError as exc:
        if exc.sqlstate == _QUERY_CANCELED:
            return result(False, f"Query timeout after {format_duration(timeout_s)}",
                          observed="timeout", detail=exc.message)
        first = exc.message.splitlines()[0] if exc.message else "query failed"
        return result(False, f"query failed: {first}", observed="error", detail=exc.message)
    verdict = evaluate(expectation, rows)
    if performance:
        plan_text = "\n".join(str(r[0]) for r in rows if r)
        return result(verdict.ok, verdict.message, observed=verdict.observed,
                      detail="" if verdict.ok else redact(plan_text),
                      observed_ms=execution_ms(plan_text))
    return result(verdict.ok, verdict.message, observed=verdict.observed,
                  detail="" if verdict.ok else _preview(rows))


def run_checks(
    session: Session,
    checks: Sequence[CheckRecord],
    *,
    default_timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[CheckResult]:
    """Every check, in order (a failure does not stop the others: the report wants them all)."""
    return [run_check(session, c, default_timeout_s=default_timeout_s) for c in checks]


def measure_query_ms(
    session: Session, query: str, *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> float | None:
    """Execution time (ms) of ``query`` by ``EXPLAIN ANALYZE``; None when it cannot run.

    An ``EXPLAIN …`` prefix on ``query`` is replaced, so a performance check's own
    query can be timed before and after a migration ("250ms → 12ms").
    """
    statement = strip_explain(query)
    if not statement:
        return None
    try:
        rows = _read(session, _EXPLAIN_PREFIX + statement, timeout_s)
    except (StatementError, NotReadOnlyError):
        return None
    return execution_ms("\n".join(str(r[0]) for r in rows if r))
