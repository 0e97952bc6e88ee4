"""``schedule migration``: window parsing and the policy fit (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from honua_plan.ai.schedule import format_date, format_span, format_time
from honua_plan.config.models import Policy
from honua_plan.errors import UsageError
from honua_plan.plan.windows import Window, approval_line, parse_window, policy_fit, policy_timezone

REPO = Path(__file__).resolve().parents[2]
# Saturday 2025-10-04 14:00 UTC, the seed's day
NOW = datetime(2025, 10, 4, 14, 0, tzinfo=UTC)


def production_policy() -> Policy:
    return Policy.model_validate(yaml.safe_load((REPO / "policies/production-policy.yaml").read_text()))


def test_next_tuesday_in_the_policy_time_zone() -> None:
    tz = policy_timezone(production_policy())
    assert tz == "America/Los_Angeles"
    w = parse_window("next-tuesday 10:00-12:00", tz=tz, now=NOW)
    assert (w.start.year, w.start.month, w.start.day, w.start.hour) == (2025, 10, 7, 10)
    assert w.seconds == 7200
    assert format_date(w.start) == "Tuesday, Oct 7, 2025"
    assert format_time(w.start) == "10:00 AM PDT"
    assert format_span(w.seconds) == "Up to 2 hours"
    assert policy_fit(production_policy(), w)[0] is True


def test_other_forms() -> None:
    w = parse_window("next tue 9:30-10:15", tz="UTC", now=NOW)
    assert (w.start.day, w.start.hour, w.start.minute) == (7, 9, 30)
    assert format_span(w.seconds) == "Up to 45 minutes"
    assert parse_window("2025-10-08 10:00-11:30", tz="UTC", now=NOW).start.day == 8
    assert parse_window("tomorrow 10:00-12:00", tz="UTC", now=NOW).start.day == 5
    # on a Saturday "next-saturday" is a week later
    assert parse_window("next-saturday 10:00-12:00", tz="UTC", now=NOW).start.day == 11
    assert format_span(5400) == "Up to 1 hour 30 minutes"


@pytest.mark.parametrize(("text", "message"), [
    ("whenever", "cannot read the window"),
    ("next-funday 10:00-12:00", "not a day of the week"),
    ("2025-10-08 12:00-10:00", "ends before it starts"),
    ("2025-10-01 10:00-12:00", "in the past"),
    ("2025-10-08 25:00-26:00", "not a time of day"),
])
def test_bad_windows(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_window(text, tz="UTC", now=NOW)


def test_outside_the_policy_windows() -> None:
    pol = production_policy()
    monday = parse_window("next-monday 10:00-12:00", tz="America/Los_Angeles", now=NOW)
    fits, why = policy_fit(pol, monday)
    assert not fits and "outside the deployment windows (Tue, Wed, Thu 10:00-12:00 America/Los_Angeles)" in why
    too_long = parse_window("next-tuesday 10:00-13:00", tz="America/Los_Angeles", now=NOW)
    assert policy_fit(pol, too_long)[0] is False
    assert policy_fit(None, monday) == (True, "no deployment windows in the policy")


def test_approval_line() -> None:
    assert approval_line(production_policy(), False)[:2] == (True, "Required from gis-ops team")
    assert approval_line(None, False)[:2] == (False, "Not required")
    assert approval_line(None, True)[0] is True


def test_window_is_frozen() -> None:
    w = parse_window("next-tuesday 10:00-12:00", tz="UTC", now=NOW)
    assert isinstance(w, Window) and w.end > w.start
