"""A saved plan made with the simulation applies (issue 26 item 1).

A first deployment: migration 001 creates the layer's table. `plan --out` with the
simulation checks the layer against the table the migrations leave on a schema-only copy;
apply re-derives the plan without simulating (it runs the migrations for real), so the
saved plan carries what the simulation established, and apply re-derives with it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import copy_example, drop_performance_check, run

pytestmark = pytest.mark.integration


def test_a_plan_saved_with_the_simulation_applies(tmp_path: Path, pg_dsn: str, pg_cluster: object) -> None:
    repo = copy_example(tmp_path / "repo", server=False)
    drop_performance_check(repo)
    env = {"HONUA_PG_DSN": pg_dsn, "CI": "", "HONUA_SCRATCH_DSN": pg_cluster.dsn_for("postgres")}  # type: ignore[attr-defined]
    saved = tmp_path / "p.json"
    planned = run(repo, "plan", "--env", "dev", "--out", str(saved), env=env)
    assert planned.exit_code == 0, planned.output
    assert "ran on a schema-only copy" in planned.output, planned.output
    layer = next(a for a in json.loads(saved.read_text())["actions"] if a["address"].startswith("layer."))
    assert layer["deferred"] == []  # the simulation checked the layer against the table 001 creates

    assert run(repo, "approve", str(saved), "--by", "alice@city.gov", env=env).exit_code == 0
    applied = run(repo, "apply", "--env", "dev", str(saved), "--auto-approve", env=env)
    assert applied.exit_code == 0, applied.output
    again = run(repo, "plan", "--env", "dev", "--detailed-exitcode", "--no-simulate", env=env)
    assert again.exit_code == 0, again.output
    assert run(repo, "drift", "--env", "dev", env=env).exit_code == 0


def test_a_saved_simulated_plan_is_checked_against_the_live_table(tmp_path: Path, pg_dsn: str,
                                                                  pg_cluster: object) -> None:
    """What the simulation established is part of the reviewed plan (its digest) and is
    checked again on the live table once the migrations ran: 001 is idempotent (CREATE
    TABLE IF NOT EXISTS), so a table someone made meanwhile stays, and it is not the one
    the plan was reviewed against."""
    import psycopg

    repo = copy_example(tmp_path / "repo", server=False)
    drop_performance_check(repo)
    env = {"HONUA_PG_DSN": pg_dsn, "CI": "", "HONUA_SCRATCH_DSN": pg_cluster.dsn_for("postgres")}  # type: ignore[attr-defined]
    saved = tmp_path / "p.json"
    assert run(repo, "plan", "--env", "dev", "--out", str(saved), env=env).exit_code == 0
    doc = json.loads(saved.read_text())
    columns = {c[0]: c[1] for c in doc["simulated"]["tables"]["public.bike_lanes"]["columns"]}
    assert columns["name"] == "character varying(200)" and columns["geom"] == "geometry(LineString,4326)"

    tampered = tmp_path / "tampered.json"
    doc["simulated"]["tables"]["public.bike_lanes"]["columns"][1][1] = "text"
    tampered.write_text(json.dumps(doc))
    refused = run(repo, "apply", "--env", "dev", str(tampered), "--auto-approve", env=env)
    assert refused.exit_code == 1 and "digest" in refused.output.lower(), refused.output

    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # made between review and apply
        conn.execute("CREATE TABLE bike_lanes (id serial PRIMARY KEY, name varchar(300), lane_type varchar(50), "
                     "width_ft double precision, last_updated timestamptz, geom geometry(LineString, 4326))")
    applied = run(repo, "apply", "--env", "dev", str(saved), "--auto-approve", env=env)
    assert applied.exit_code == 1, applied.output  # the live fingerprints say so before anything runs
    assert "the saved plan is stale: table.public.bike_lanes changed in the database" in applied.output


def test_the_live_table_is_compared_with_the_simulated_one() -> None:
    """The check the executor runs on each layer once its migrations ran (the freshness
    check above stops the common case earlier)."""
    from types import SimpleNamespace

    from honua_plan.apply.executor import _differs_from_simulation
    from honua_plan.plan.model import SimulatedFacts
    from honua_plan.providers.postgis.facts import ColumnFacts, TableFacts, table_facts_json

    def table(name_type: str) -> TableFacts:
        return TableFacts("public", "bike_lanes", "r", 0, columns=(
            ColumnFacts("id", "integer", "int4", False), ColumnFacts("name", name_type, "varchar", True),
            ColumnFacts("geom", "geometry(LineString,4326)", "geometry", True)))

    simulated = SimulatedFacts(tables={"public.bike_lanes": table_facts_json(table("character varying(200)"))})
    plan = SimpleNamespace(simulated=simulated)
    layer = SimpleNamespace(spec=SimpleNamespace(
        storage=SimpleNamespace(qualified_table="public.bike_lanes", geometryColumn="geom"),
        fields=[SimpleNamespace(name="id"), SimpleNamespace(name="name")]))
    assert _differs_from_simulation(plan, layer, table("character varying(200)")) == ""  # type: ignore[arg-type]
    assert _differs_from_simulation(plan, layer, table("text")) == (  # type: ignore[arg-type]
        "name character varying(200), live: text")
    assert _differs_from_simulation(SimpleNamespace(simulated=None), layer, table("text")) == ""  # type: ignore[arg-type]
