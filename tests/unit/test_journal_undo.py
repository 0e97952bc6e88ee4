"""Which down steps a rollback runs, given what the apply's up steps changed (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from honua_plan.plan.model import Operation
from honua_plan.providers.postgis.effects import effects, undo_needed

NOTHING: dict[str, Any] = {"created": [], "dropped": [], "altered": [], "rows": {}}
MADE_PARCELS = {**NOTHING, "created": ["table:public.parcels", "index:public.parcels_pkey"]}
ADDED_SURFACE = {**NOTHING, "created": ["column:public.bike_lanes.surface"], "altered": ["table:public.bike_lanes"]}
MADE_INDEX = {**NOTHING, "created": ["index:public.idx_bike_lanes_geom"], "altered": ["table:public.bike_lanes"]}
COUNTED = {**NOTHING, "rows": {"public.ctr": 1}}
DROPPED_T = {**NOTHING, "dropped": ["table:public.t"]}


def op(text: str) -> Operation:
    return Operation(name="down", kind="sql", sql=text)


@pytest.mark.parametrize(("sql", "applied", "runs"), [
    ("DROP TABLE IF EXISTS bike_lanes", [NOTHING], False),  # CREATE TABLE IF NOT EXISTS made nothing
    ("DROP TABLE IF EXISTS bike_lanes", [], False),  # no up step ran
    ("DROP TABLE IF EXISTS bike_lanes", [MADE_PARCELS], False),  # another table was made
    ("DROP TABLE IF EXISTS parcels", [MADE_PARCELS], True),
    ("DROP TABLE IF EXISTS public.parcels", [NOTHING, MADE_PARCELS], True),
    ("ALTER TABLE bike_lanes DROP COLUMN IF EXISTS surface", [ADDED_SURFACE], True),
    ("ALTER TABLE bike_lanes DROP COLUMN IF EXISTS width_m", [ADDED_SURFACE], False),
    ("DROP INDEX IF EXISTS idx_bike_lanes_geom", [MADE_INDEX], True),
    ("DROP INDEX IF EXISTS idx_bike_lanes_geom", [NOTHING], False),
    ("UPDATE ctr SET n = n - 1", [COUNTED], True),
    ("UPDATE ctr SET n = n - 1", [MADE_PARCELS], False),  # the counting step did not run
    ("CREATE TABLE IF NOT EXISTS t (id int)", [DROPPED_T], True),  # undoing a down migration
])
def test_a_down_step_runs_only_for_what_the_apply_changed(sql: str, applied: list[dict[str, Any]],
                                                          runs: bool) -> None:
    assert undo_needed(op(sql), applied) is runs


def test_effects_name_what_changed_between_two_snapshots() -> None:
    before = {"public.bike_lanes": {"kind": "r", "columns": ["id", "geom"], "indexes": {"public.bike_lanes_pkey": True},
                                    "constraints": ["bike_lanes_pkey"]}}
    after = {"public.bike_lanes": {"kind": "r", "columns": ["id", "geom", "surface"],
                                   "indexes": {"public.bike_lanes_pkey": True, "public.idx": True},
                                   "constraints": ["bike_lanes_pkey"]},
             "public.parcels": {"kind": "r", "columns": ["id"], "indexes": {}, "constraints": []}}
    eff = effects(before, after, {"public.bike_lanes": 3})
    assert eff == {"created": ["column:public.bike_lanes.surface", "index:public.idx", "table:public.parcels"],
                   "dropped": [], "altered": ["table:public.bike_lanes"], "rows": {"public.bike_lanes": 3}}
    assert effects(before, before) == NOTHING
