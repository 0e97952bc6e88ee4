"""Issue 25, reproduction 15: the offline router proposes only what it understood.

Every name of a request is resolved against a real PostGIS catalog (tables ``bike_lanes``,
``parks_and_trails``, ``parks``, ``trails``, ``roads``, ``as`` and ``publish``) and the
example project (one service, ``transportation``; environments dev, staging, production).
A part it cannot resolve, or a second table, is a refusal that says what it understood and
what not; never a narrower proposal. Then end to end: ``Continue?`` offline, the table
``as`` published with quoted SQL, a scope honoured.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.helpers import copy_example, run

TABLES = ("bike_lanes", "parks_and_trails", "parks", "trails", "roads", "as", "publish")


def make_tables(dsn: str) -> None:
    from honua_plan.workflows.sample import seed_bike_lanes

    with psycopg.connect(dsn, autocommit=True) as conn:
        seed_bike_lanes(conn, 5)  # as the example's layer describes it
        for t in TABLES[1:]:
            ident = sql.Identifier(t)
            conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (id serial PRIMARY KEY, name text, "
                                 "geom geometry(Point, 4326))").format(ident))
            conn.execute(sql.SQL("INSERT INTO {} (name, geom) VALUES ('a', ST_SetSRID(ST_MakePoint(1, 2), 4326))")
                         .format(ident))


@pytest.fixture
def repo(tmp_path: Path, pg_dsn: str) -> Path:
    make_tables(pg_dsn)
    return copy_example(tmp_path / "repo", server=False)


@pytest.fixture
def env(pg_dsn: str) -> dict[str, str]:
    return {"HONUA_PG_DSN": pg_dsn, "HONUA_AI_MODEL": "", "CI": ""}


SEED = """We need to add bike lanes data from our PostGIS database.
       The table is public.bike_lanes and has a geometry column."""

# (request, table or None, service, layer name, environments, what a refusal says it did not understand)
CASES: list[tuple[str, str | None, str | None, str | None, tuple[str, ...], str]] = [
    # the phrasings
    ("publish table as", None, None, None, (), "which live table"),
    ("publish the bike lanes table", "public.bike_lanes", None, None, (), ""),
    ("add the bike lanes table in the service transportation", "public.bike_lanes", "transportation", None, (), ""),
    ("add the parks and trails table", "public.parks_and_trails", None, None, (), ""),
    ("publish public.parks and public.trails", None, None, None, (), "2 tables (public.parks, public.trails)"),
    ("add table roads as a layer named main-roads", "public.roads", None, "main-roads", (), ""),
    ("publish the roads table only in dev", "public.roads", None, None, ("dev",), ""),
    ("publish the roads table, production only", "public.roads", None, None, ("production",), ""),
    ('publish table "as"', "public.as", None, None, (), ""),
    # more
    ("add public.as as a layer", "public.as", None, None, (), ""),
    ("add the table publish", None, None, None, (), "which live table"),
    ('add the table "publish"', "public.publish", None, None, (), ""),
    ("add the bike lanes table to the recreation service", None, None, None, (), "the service 'recreation'"),
    ("add the parks table and the roads table", None, None, None, (), "2 tables"),
    ("add the parks table as well as the trails table", None, None, None, (), "2 tables"),
    ("add table roads as a layer called Main Roads", None, None, None, (), "the layer name 'Main'"),
    ("publish the roads table only in qa", None, None, None, (), "the environment 'qa'"),
    ("add the lanes table", None, None, None, (), "the table 'lanes'"),
    ("add the foo table", None, None, None, (), "the table 'foo'"),
    ("Publish table public.missing", None, None, None, (), "the table 'public.missing'"),
    (SEED, "public.bike_lanes", None, None, (), ""),
    ("Please publish the parks table as a layer", "public.parks", None, None, (), ""),
    ("Expose the table roads as a layer in staging and production", "public.roads", None, None,
     ("staging", "production"), ""),
    ("add table roads in the service transportation, dev only", "public.roads", "transportation", None, ("dev",), ""),
    ("publish table trails as trails-east", "public.trails", None, "trails-east", (), ""),
    ("add table Roads", "public.roads", None, None, (), ""),
    ("add the table roads to prod only", "public.roads", None, None, ("production",), ""),
]


@pytest.fixture
def understand(repo: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from honua_plan.ai.session import understand_request
    from honua_plan.context import Context

    monkeypatch.setenv("HONUA_PG_DSN", pg_dsn)
    context = Context(repo)
    facts = context.read_facts("dev")
    return lambda text: understand_request(context, facts, text)[0]


def test_at_least_20_cases() -> None:
    assert len(CASES) >= 20 and sum(1 for c in CASES if c[1] is None) >= 10


@pytest.mark.parametrize(("text", "table", "service", "name", "envs", "refusal"), CASES,
                         ids=[c[0][:45] for c in CASES])
def test_understanding(understand, text: str, table: str | None, service: str | None,  # type: ignore[no-untyped-def]
                       name: str | None, envs: tuple[str, ...], refusal: str) -> None:
    u = understand(text)
    if table is None:
        assert not u.ok, u
        assert refusal in u.summary(), u.summary()
        assert "I did not understand:" in u.summary()
    else:
        assert u.ok, u.summary()
        assert (u.table, u.service, u.name, u.environments) == (table, service, name, envs)


def _layer_files(repo: Path) -> list[str]:
    return sorted(p.relative_to(repo).as_posix() for p in repo.glob("environments/*/layers/*.yaml"))


def test_offline_chat_asks_continue_and_keeps_nothing_without_a_terminal(repo: Path, env: dict[str, str]) -> None:
    before = _layer_files(repo)
    result = run(repo, "ai", "chat", env=env, input='add table "as" as a layer\n')
    assert result.exit_code == 2, result.output
    assert "I understood: add table public.as as a layer." in result.output
    assert "Plan for dev:" in result.output
    assert "Continue? (yes/no): stdin is not a terminal" in result.output
    assert _layer_files(repo) == before


def test_the_table_as_is_proposed_with_quoted_sql(repo: Path, env: dict[str, str]) -> None:
    result = run(repo, "ai", "chat", "--yes", env=env, input='add table "as" as a layer\n')
    assert result.exit_code == 0, result.output
    text = (repo / "environments/dev/layers/as.yaml").read_text()
    assert 'storage:\n    table: as\n' in text
    checks = [c["query"] for c in __import__("yaml").safe_load(text)["spec"]["validation"]["healthChecks"]]
    assert checks == ['SELECT COUNT(*) FROM "as"', 'SELECT ST_IsValid(geom) FROM "as" LIMIT 10']


def test_parks_and_trails_is_one_table_never_trails(repo: Path, env: dict[str, str]) -> None:
    result = run(repo, "ai", "chat", "--yes", env=env, input="add the parks and trails table\n")
    assert result.exit_code == 0, result.output
    assert (repo / "environments/dev/layers/parks-and-trails.yaml").exists()
    assert not list(repo.glob("environments/*/layers/trails.yaml"))
    assert not list(repo.glob("environments/*/layers/parks.yaml"))


def test_a_scope_is_honoured(repo: Path, env: dict[str, str]) -> None:
    result = run(repo, "ai", "chat", "--yes", env=env, input="publish the roads table only in dev\n")
    assert result.exit_code == 0, result.output
    assert (repo / "environments/dev/layers/roads.yaml").exists()
    assert not (repo / "environments/staging/layers/roads.yaml").exists()
    assert not (repo / "environments/production/layers/roads.yaml").exists()


def test_a_refusal_says_what_was_understood(repo: Path, env: dict[str, str]) -> None:
    before = _layer_files(repo)
    result = run(repo, "ai", "chat", "--yes", env=env, input="add the roads table to the recreation service\n")
    assert result.exit_code == 2, result.output
    assert ("I understood: add table public.roads as a layer. I did not understand: the service 'recreation' "
            "(services: transportation).") in result.output
    assert "Nothing was done" in result.output and "Created proposal" not in result.output
    assert _layer_files(repo) == before
    assert not (repo / "state/plans").exists() or not any(
        json.loads(p.read_text()).get("environment") for p in (repo / "state/plans").glob("ai-*.json"))
