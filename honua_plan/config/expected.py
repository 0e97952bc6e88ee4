"""The ``expected`` mini-language of validations and health checks, parsed at load time.

A typo (``"> zero"``, ``"1 rowz"``) is a validation error when the config is loaded,
not a surprise in the middle of a production apply.

Forms:
    ``> 0``, ``>= 10``, ``< 5``, ``<= 5``, ``= 3``, ``== 3``, ``!= 0``  compare the first value
    ``1 row``, ``0 rows``, ``N rows``                                    count the rows returned
    ``all true`` / ``all false``                                         every first value is true/false
    ``Index Scan using X`` (performance checks)                          the plan uses index X
    ``< 100ms`` / ``<= 2s`` (performance checks)                         execution time bound
    any other text (performance checks)                                  a substring of the EXPLAIN output
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

_CMP = re.compile(r"^\s*(>=|<=|==|!=|=|>|<)\s*(-?\d+(?:\.\d+)?)\s*$")
_ROWS = re.compile(r"^\s*(\d+)\s+rows?\s*$", re.IGNORECASE)
_ALL = re.compile(r"^\s*all\s+(true|false)\s*$", re.IGNORECASE)
_TIME = re.compile(r"^\s*(<=|<)\s*(\d+(?:\.\d+)?)\s*(ms|s)\s*$", re.IGNORECASE)
_INDEX = re.compile(
    r"^\s*(?:Index Scan|Index Only Scan|Bitmap Index Scan)\s+(?:using|on)\s+(\"?[A-Za-z_][\w$]*\"?)\s*$",
    re.IGNORECASE,
)
_LOOKS_LIKE_CMP = re.compile(r"^\s*(>=|<=|==|!=|=|>|<)")
_LOOKS_LIKE_ROWS = re.compile(r"^\s*\d+\s+\w+\s*$")

Kind = Literal["compare", "rows", "all", "index", "time", "contains"]


@dataclass(frozen=True)
class Expectation:
    """A parsed ``expected`` value; ``text`` is what the user wrote."""

    kind: Kind
    text: str
    op: str = ""
    number: float = 0.0
    target: str = ""  # index name, or the substring for "contains"

    def __str__(self) -> str:
        return self.text


class ExpectationSyntaxError(ValueError):
    pass


def parse(text: str, check_type: str = "query") -> Expectation:
    """Parse ``text`` for a check of ``check_type`` or raise ExpectationSyntaxError."""
    raw = str(text)
    s = raw.strip()
    if not s:
        raise ExpectationSyntaxError("expected is empty")
    if m := _CMP.match(s):
        return Expectation("compare", raw, op="==" if m.group(1) == "=" else m.group(1), number=float(m.group(2)))
    if m := _ROWS.match(s):
        return Expectation("rows", raw, op="==", number=float(m.group(1)))
    if m := _ALL.match(s):
        return Expectation("all", raw, target=m.group(1).lower())
    if check_type == "performance":
        if m := _TIME.match(s):
            ms = float(m.group(2)) * (1000.0 if m.group(3).lower() == "s" else 1.0)
            return Expectation("time", raw, op=m.group(1), number=ms)
        if m := _INDEX.match(s):
            return Expectation("index", raw, target=m.group(1).strip('"'))
        if _LOOKS_LIKE_CMP.match(s):
            raise ExpectationSyntaxError(
                f"cannot parse expected {raw!r}: a comparison needs a number (e.g. '> 0') "
                "or a time bound (e.g. '< 100ms')"
            )
        return Expectation("contains", raw, target=s)
    if _LOOKS_LIKE_CMP.match(s):
        raise ExpectationSyntaxError(
            f"cannot parse expected {raw!r}: a comparison needs a number, e.g. '> 0' or '>= 10'"
        )
    if _LOOKS_LIKE_ROWS.match(s):
        raise ExpectationSyntaxError(
            f"cannot parse expected {raw!r}: a row count is written '1 row' or 'N rows'"
        )
    raise ExpectationSyntaxError(
        f"cannot parse expected {raw!r}: use a comparison ('> 0', '>= N'), "
        "a row count ('1 row', 'N rows') or 'all true'"
    )


@lru_cache(maxsize=4096)
def parse_cached(text: str, check_type: str) -> Expectation:
    """:func:`parse`, memoised: the same few texts repeat across thousands of checks, and an
    Expectation is a frozen dataclass of str/float, safe to share. Typos are not cached."""
    return parse(text, check_type)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", re.IGNORECASE)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


DURATION_HELP = "use e.g. '30s', '5m', '2h', '1h30m', '7d' or '250ms'"


def parse_duration(value: object, *, allow_zero: bool = False) -> float:
    """``"5m"`` → 300.0 seconds; also ``"1h30m"``, ``"250ms"``, ``"48h"``, ``"30d"``.

    Only a positive, finite amount with a unit is a duration: ``-1`` silently became 0 (to
    PostgreSQL, no timeout at all), ``nan``/``inf`` passed validation and crashed the plan, and
    a bare ``30`` leaves the reader guessing seconds or minutes. Zero only where the caller
    says it means something (``allow_zero``: e.g. "do not wait for the state lock").
    """
    if not isinstance(value, str):
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError(f"a duration needs a unit: {DURATION_HELP} (got {value!r})")
        raise ValueError(f"a duration is a text like '5m': {DURATION_HELP}")
    s = value.strip().replace(" ", "")
    if not s:
        raise ValueError(f"empty duration: {DURATION_HELP}")
    pos, total = 0, 0.0
    for m in _DURATION.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2).lower()]
        pos = m.end()
    if pos != len(s) or pos == 0:
        raise ValueError(f"cannot parse duration {value!r}: {DURATION_HELP}")
    if not math.isfinite(total):
        raise ValueError(f"duration {value!r} is too long")
    if total <= 0 and not allow_zero:
        raise ValueError(f"a duration must be more than zero (got {value!r}): {DURATION_HELP}")
    return total
