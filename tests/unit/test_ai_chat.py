"""``chat`` intents (pure)."""

from __future__ import annotations

import pytest

from honua_plan.ai.chat import find_table, parse_intent

SEED = """We need to add bike lanes data from our PostGIS database.
       The table is public.bike_lanes and has a geometry column."""


def test_the_seeds_request_proposes_a_layer() -> None:
    intent = parse_intent(f'"{SEED}"')
    assert intent.kind == "propose-layer" and intent.table == "public.bike_lanes"
    assert intent.service is None and intent.name is None


@pytest.mark.parametrize(("text", "table", "service", "name"), [
    ("add a layer for the table parks", "parks", None, None),
    ("Publish table public.parks to the recreation service", "public.parks", "recreation", None),
    ("add a layer named trails-2 for the table gis.trails in service parks", "gis.trails", "parks", "trails-2"),
    ("the table has a geometry column, it is table roads; add a layer", "roads", None, None),
])
def test_variants(text: str, table: str, service: str | None, name: str | None) -> None:
    intent = parse_intent(text)
    assert (intent.kind, intent.table, intent.service, intent.name) == ("propose-layer", table, service, name)


def test_other_requests() -> None:
    assert parse_intent("exit").kind == "exit"
    assert parse_intent("  ").kind == "exit"
    assert parse_intent("help").kind == "help"
    # a question is never taken for a request to change something (issue 18): offline it
    # is answered with what works offline, with a model it goes to the model
    assert parse_intent("why is production slow?").kind == "unsupported"
    # a file name is not a table
    assert find_table("look at environments/dev/layers/bike-lanes.yaml") is None
    assert parse_intent("what does public.bike_lanes hold?").kind == "unsupported"
