"""A policy's notification URLs are checked like the rest of the config (issue 20)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from honua_plan.apply.notify import Delivery
from honua_plan.config.models import Notification


def test_a_notification_names_events_and_apprise_urls() -> None:
    n = Notification(events=["drift", "rolled-back"], urls=["slack://${HONUA_NOTIFY_SLACK_TOKEN}/#gis", "json://hooks.local/x"])
    assert n.events == ["drift", "rolled-back"]
    for bad in ({"events": ["drifted"], "urls": ["json://x/y"]},  # not an event
                {"events": ["drift"], "urls": ["hooks.local/x"]},  # not a URL
                {"events": ["drift"], "urls": ["json://x/${not-a-var}"]},
                {"events": [], "urls": ["json://x/y"]}):
        with pytest.raises(ValidationError):
            Notification.model_validate(bad)


def test_what_is_printed_says_what_happened() -> None:
    assert Delivery("drift").line is None
    assert Delivery("drift", 2, 2).line == "Stakeholders notified"
    assert Delivery("drift", 2, 1, ["slack"]).line == (
        "Stakeholders not notified: 1 of 2 notification(s) failed (slack); the deployment goes on")
