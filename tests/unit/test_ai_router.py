"""The offline router never does the opposite of a request (issue 18, item 3).

Offline, only a request to add or publish a named table runs (the ``propose layer``
flow); a negation, a removal, a question, an index or anything else is not guessed at:
the assistant says what works offline and does nothing (exit code 2).
"""

from __future__ import annotations

import pytest

from honua_plan.ai.chat import parse_intent

SEED = """We need to add bike lanes data from our PostGIS database.
       The table is public.bike_lanes and has a geometry column."""

# (request, expected kind, expected table for a proposal)
PHRASINGS: list[tuple[str, str, str | None]] = [
    # add / publish a named table: the one thing done offline
    (SEED, "propose-layer", "public.bike_lanes"),
    ("add a layer for the table public.parks", "propose-layer", "public.parks"),
    ("Publish table public.parks to the recreation service", "propose-layer", "public.parks"),
    ("Please publish the parks table as a layer", "propose-layer", "parks"),
    ("Publish the gis.trails table", "propose-layer", "gis.trails"),
    ("make a new layer from gis.fire_hydrants", "propose-layer", "gis.fire_hydrants"),
    ("Serve public.street_trees over OGC API", "propose-layer", "public.street_trees"),
    ("Expose the table roads as a layer", "propose-layer", "roads"),
    ("Create a layer for table named parcels", "propose-layer", "parcels"),
    ("I'd like public.bus_stops published as a layer", "propose-layer", "public.bus_stops"),
    ("add a layer named trails-2 for the table gis.trails in service parks", "propose-layer", "gis.trails"),
    # negations: never the opposite
    ("Do not publish public.street_trees yet, it has private data", "unsupported", None),
    ("don't add a layer for public.parcels", "unsupported", None),
    ("Never publish the table public.voters", "unsupported", None),
    ("Hold off on publishing public.parks until next week", "unsupported", None),
    ("Stop serving public.bike_lanes", "unsupported", None),
    # removals
    ("Remove the layer for table public.parcels", "unsupported", None),
    ("Delete the bike lanes layer", "unsupported", None),
    ("unpublish public.street_trees", "unsupported", None),
    ("Drop the table public.old_roads", "unsupported", None),
    ("Take down the parks layer from the recreation service", "unsupported", None),
    # questions
    ("What SRID is the geometry column of gis.fire_hydrants?", "unsupported", None),
    ("Is public.parks already published?", "unsupported", None),
    ("which layers use the table public.bike_lanes", "unsupported", None),
    ("How do I add a layer for public.parks?", "unsupported", None),
    ("why is production slow?", "unsupported", None),
    # other changes the offline path does not make
    ("Add a spatial index on public.parks", "unsupported", None),
    ("Rename the column name to title in public.parks", "unsupported", None),
    ("Make a layer from city parks", "unsupported", None),  # no table named
    ("Change the SRID of public.parks to 3857", "unsupported", None),
    ("Promote the parks layer to staging", "unsupported", None),
    # conversation control
    ("help", "help", None),
    ("exit", "exit", None),
]


@pytest.mark.parametrize(("text", "kind", "table"), PHRASINGS, ids=[p[0][:40] for p in PHRASINGS])
def test_offline_routing(text: str, kind: str, table: str | None) -> None:
    intent = parse_intent(text)
    assert intent.kind == kind, intent
    if kind == "propose-layer":
        assert intent.table == table


def test_the_table_has_at_least_30_phrasings() -> None:
    assert len(PHRASINGS) >= 30
    assert sum(1 for _, k, _ in PHRASINGS if k == "unsupported") >= 15


def test_an_unsupported_request_says_why() -> None:
    assert "negat" in (parse_intent("Do not publish public.street_trees").reason or "")
    assert "remov" in (parse_intent("Remove the layer for table public.parcels").reason or "")
    assert "question" in (parse_intent("Is public.parks published?").reason or "")
    assert "no table" in (parse_intent("Make a layer from city parks").reason or "")
