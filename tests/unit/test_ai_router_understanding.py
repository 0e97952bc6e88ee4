"""The router's reading of a request against a given catalog (pure; the live catalog is in
``tests/integration/test_ai_router_catalog.py``)."""

from __future__ import annotations

import pytest

from honua_plan.ai.chat import parse_intent
from honua_plan.ai.router import STOP_WORDS, Catalog, understand

CATALOG = Catalog(frozenset({"public.bike_lanes", "public.parks_and_trails", "public.as", "public.publish",
                             "public.the", "public.service", "gis.trails"}),
                  ("transportation",), ("dev", "staging", "production"), "the dev database")


@pytest.mark.parametrize("word", ["the", "as", "table", "publish", "service", "in", "and"])
def test_a_stop_word_is_never_a_name(word: str) -> None:
    assert word in STOP_WORDS
    u = understand(f"publish table {word}", CATALOG)
    assert u.table is None and u.service is None and u.name is None


def test_a_table_named_like_a_word_is_reached_qualified_or_quoted() -> None:
    assert understand("publish public.the", CATALOG).table == "public.the"
    assert understand('publish table "service"', CATALOG).table == "public.service"
    assert parse_intent('publish table "as"').table == "as"


def test_the_service_word_before_the_name() -> None:
    u = understand("add the bike lanes table in the service transportation", CATALOG)
    assert (u.table, u.service) == ("public.bike_lanes", "transportation")


def test_a_table_in_another_schema_resolves_by_its_bare_name() -> None:
    assert understand("add the trails table", CATALOG).table == "gis.trails"


def test_never_narrowed() -> None:
    u = understand("add the parks and roads table", CATALOG)
    assert not u.ok and "the table 'parks and roads'" in u.summary()
    assert u.table is None


def test_two_tables_are_refused_with_what_was_understood() -> None:
    u = understand("publish public.bike_lanes and gis.trails in the transportation service", CATALOG)
    assert not u.ok
    assert u.summary() == ("I understood: in the service transportation. I did not understand: 2 tables "
                           "(public.bike_lanes, gis.trails): one request proposes one layer, ask for each table "
                           "on its own.")


def test_parse_intent_no_longer_takes_publish_for_a_table() -> None:
    assert parse_intent("publish table as").kind == "unsupported"
