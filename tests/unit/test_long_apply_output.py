"""A long apply's output fits on a screen: a few ✓ per phase, every ✗, one summary per phase."""

from __future__ import annotations

import io

import pytest

from honua_plan.console import SHOW_FIRST, Console
from honua_plan.providers.server.http import (
    HEALTH_SAMPLE_CHANGED,
    HEALTH_SAMPLE_UNCHANGED,
    health_sample,
)


def _run(verbose: bool) -> tuple[str, Console]:
    out = io.StringIO()
    con = Console(out=out, verbose=verbose)
    con.compact({"resources": ("resources recorded", 1000), "checks": ("health checks", 1000)})
    for i in range(1000):
        con.ok(f"Created layer: layer-{i:05d}", phase="resources")
        if i == 500:
            con.fail("Query check failed (layer-00500)", phase="checks")
        else:
            con.ok(f"Query check passed ({i})", phase="checks")
    con.ok("Services reloaded", 1.5)
    con.end_compact()
    return out.getvalue(), con


def test_compact_output_shows_the_first_lines_every_failure_and_a_summary() -> None:
    text, con = _run(verbose=False)
    lines = text.splitlines()
    assert len(lines) < 15  # fits on a screen
    assert sum("Created layer" in line for line in lines) == SHOW_FIRST
    assert "✗ Query check failed (layer-00500)" in text
    assert "✓ Services reloaded (1.5s)" in text
    assert "resources recorded: 1,000 ✓, 0 ✗ (997 ✓ not listed" in text
    assert "health checks: 999 ✓, 1 ✗ (996 ✓ not listed" in text
    assert len(con.held) == 997 + 996  # the full list is kept


def test_verbose_lists_every_line() -> None:
    text, _ = _run(verbose=True)
    assert sum("Created layer" in line for line in text.splitlines()) == 1000
    assert "not listed" not in text


@pytest.mark.parametrize(("n", "changed", "asked_changed"), [
    (20, 1, 1), (200, 1, 1), (1000, 1000, HEALTH_SAMPLE_CHANGED), (10, 0, 0), (5, 5, 5)])
def test_health_asks_a_bounded_sample(n: int, changed: int, asked_changed: int) -> None:
    ids = [f"s::l{i:05d}" for i in range(n)]
    sample = health_sample(ids, ids[:changed])
    assert len(sample) == len(set(sample)) == asked_changed + min(HEALTH_SAMPLE_UNCHANGED, n - changed)
    assert set(sample) <= set(ids)
    if changed and changed <= HEALTH_SAMPLE_CHANGED:
        assert set(ids[:changed]) <= set(sample)  # every changed collection is asked
