"""The served extent against the live one: containment with a tolerance, and the dry run's entries."""

from __future__ import annotations

from honua_plan.providers.server.base import (
    PlanEntry,
    extent_contains,
    stale_extents,
    with_stale_extents,
)

SERVED = [-122.5, 45.5, -122.4, 45.6]


def test_contained_within_the_tolerance_and_not_beyond() -> None:
    assert extent_contains(SERVED, SERVED)
    assert extent_contains(SERVED, [-122.45, 45.55, -122.44, 45.56])
    # float4 index keys round outwards by ~1e-5 degrees: not drift
    assert extent_contains(SERVED, [-122.50002, 45.49998, -122.39998, 45.60002])
    assert not extent_contains(SERVED, [-122.5, 10.0, 10.0, 45.6])
    assert not extent_contains(SERVED, [-122.5, 45.5, -122.39, 45.6])  # 10% of the side beyond


def test_stale_extents_name_both_boxes_and_skip_what_cannot_be_compared() -> None:
    current = {"collections": {"a": {"bbox": SERVED}, "b": {"bbox": SERVED}, "c": {"bbox": None}}}
    live = {"a": (-122.5, 10.0, 10.0, 45.6), "b": (-122.45, 45.55, -122.44, 45.56), "c": (0.0, 0.0, 1.0, 1.0),
            "d": (0.0, 0.0, 1.0, 1.0), "e": None}
    [entry] = stale_extents(current, live)
    assert entry.action == "update" and entry.collection == "a"
    assert entry.message == ("served extent [-122.5, 45.5, -122.4, 45.6] does not contain the live extent "
                             "[-122.5, 10, 10, 45.6]")


def test_a_stale_extent_replaces_its_skip_but_not_another_change() -> None:
    entries = [PlanEntry("skip", "s", "no changes", "service"), PlanEntry("skip", "a", "no changes"),
               PlanEntry("update", "b", "title changed")]
    stale = [PlanEntry("update", "a", "served extent …"), PlanEntry("update", "b", "served extent …")]
    merged = with_stale_extents(entries, stale)
    assert [(e.collection, e.message) for e in merged] == [
        ("s", "no changes"), ("a", "served extent …"), ("b", "title changed")]
