"""Compare query results with a parsed ``expected``. Pure: rows in, verdict out.

Used for preconditions at plan time, validations and health checks at apply time,
and ``honua test``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from honua_plan.config.expected import Expectation

_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne}
_SCAN = re.compile(r"(Index Only Scan|Bitmap Index Scan|Index Scan)\s+(?:using|on)\s+\"?([\w$]+)\"?")
_EXEC_TIME = re.compile(r"Execution Time:\s*([\d.]+)\s*ms")


@dataclass(frozen=True)
class Verdict:
    ok: bool
    message: str
    observed: str = ""


def _truthy(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("t", "true", "f", "false"):
        return v.lower() in ("t", "true")
    return None


def evaluate(exp: Expectation, rows: Sequence[Sequence[Any]]) -> Verdict:
    """Verdict of ``rows`` (a query's result) against ``exp``."""
    if exp.kind == "rows":
        n = len(rows)
        ok = n == int(exp.number)
        return Verdict(ok, f"{n} row{'s' if n != 1 else ''} (expected {exp.text})", str(n))
    if exp.kind == "compare":
        if not rows or not rows[0]:
            return Verdict(False, f"no rows returned (expected {exp.text})", "no rows")
        value = rows[0][0]
        try:
            number = float(value)
        except (TypeError, ValueError):
            return Verdict(False, f"first value {value!r} is not a number (expected {exp.text})", repr(value))
        ok = _OPS[exp.op](number, exp.number)
        shown = int(number) if number.is_integer() else number
        return Verdict(ok, f"{shown} (expected {exp.text})", str(shown))
    if exp.kind == "all":
        want = exp.target == "true"
        values = [_truthy(r[0]) if r else None for r in rows]
        bad = [v for v in values if v is not want]
        if not rows:
            return Verdict(False, f"no rows returned (expected {exp.text})", "no rows")
        ok = not bad
        return Verdict(ok, f"{len(values) - len(bad)} of {len(values)} {exp.target} (expected {exp.text})",
                       f"{len(bad)} not {exp.target}")
    plan_text = "\n".join(str(r[0]) for r in rows if r)
    return evaluate_plan(exp, plan_text)


def evaluate_plan(exp: Expectation, plan_text: str) -> Verdict:
    """EXPLAIN (ANALYZE) output against an index, time or substring expectation."""
    if exp.kind == "index":
        for kind, name in _SCAN.findall(plan_text):
            if name == exp.target:
                return Verdict(True, f"{kind} on {name}", kind)
        first = plan_text.strip().splitlines()[0].strip() if plan_text.strip() else "empty plan"
        node = first.split("  (")[0].lstrip("-> ")
        return Verdict(False, f"plan does not use {exp.target} ({node})", node)
    if exp.kind == "time":
        m = _EXEC_TIME.search(plan_text)
        if not m:
            return Verdict(False, "no Execution Time in the plan (use EXPLAIN ANALYZE)")
        ms = float(m.group(1))
        ok = _OPS[exp.op](ms, exp.number)
        return Verdict(ok, f"{ms:.1f}ms (expected {exp.text})", f"{ms:.1f}ms")
    if exp.kind == "contains":
        ok = exp.target in plan_text
        return Verdict(ok, f"{'found' if ok else 'not found'}: {exp.target!r}")
    return Verdict(False, f"cannot evaluate {exp.text!r} against a plan")


def execution_ms(plan_text: str) -> float | None:
    m = _EXEC_TIME.search(plan_text)
    return float(m.group(1)) if m else None
