"""A saved plan applies as reviewed, with or without the simulation (issue 26).

For generated repositories (a new migration creating a table, a new layer declaring a
subset of its columns, edits of the existing layer), ``plan --out`` (the simulation on:
a scratch database) → ``approve`` → ``apply PLAN`` succeeds, and the next plan is empty.
One database and one repository per test function; each example starts from the
environment the previous one left (tables and layers accumulate).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import copy_example, run
from tests.property.test_apply_laws import SERVER, apply_edits, edits

COLUMNS = {"name": ("varchar(80)", "string"), "kind": ("text", "string"), "width": ("double precision", "double"),
           "lanes": ("integer", "integer"), "opened": ("date", "date"), "updated": ("timestamptz", "datetime")}
GEOMETRIES = {"Point": "POINT", "LineString": "LINESTRING", "Polygon": "POLYGON"}

_ids = itertools.count(10)

new_tables = st.tuples(
    st.lists(st.sampled_from(sorted(COLUMNS)), min_size=1, max_size=len(COLUMNS), unique=True),
    st.sampled_from(sorted(GEOMETRIES)),
    st.booleans(),  # declare every column, or only the first
)


def _write_table_and_layer(repo: Path, columns: list[str], geometry: str, all_fields: bool) -> None:
    n = next(_ids)
    table = f"gen_{n}"
    cols = ",\n".join(f"          {c} {COLUMNS[c][0]}" for c in columns)
    (repo / f"migrations/{n:03d}_gen.yaml").write_text(
        f'apiVersion: honua.io/v1\nkind: Migration\nmetadata:\n  id: "{n:03d}"\n  description: "Create {table}"\n'
        f"  environments: [dev]\nspec:\n  up:\n    - name: Create {table}\n      type: sql\n      content: |\n"
        f"        CREATE TABLE {table} (\n          id serial PRIMARY KEY,\n{cols},\n"
        f"          geom geometry({geometry}, 4326)\n        );\n"
        f"  down:\n    - name: Drop {table}\n      type: sql\n      content: |\n        DROP TABLE {table};\n")
    declared = columns if all_fields else columns[:1]
    fields = "".join(f"    - name: {c}\n      type: {COLUMNS[c][1]}\n" for c in declared)
    (repo / f"environments/dev/layers/{table}.yaml").write_text(
        f"apiVersion: honua.io/v1\nkind: Layer\nmetadata:\n  name: {table.replace('_', '-')}\n"
        f"  service: transportation\n  environment: dev\nspec:\n  title: \"{table}\"\n"
        f"  geometryType: {geometry}\n  storage:\n    table: {table}\n    geometryColumn: geom\n"
        f"    primaryKey: id\n    srid: 4326\n  fields:\n    - name: id\n      type: integer\n{fields}")


@pytest.mark.parametrize("simulate", [True, False], ids=["simulated", "not-simulated"])
def test_a_saved_plan_applies_and_the_next_plan_is_empty(tmp_path: Path, pg_dsn: str, pg_cluster: object,
                                                         simulate: bool) -> None:
    repo = copy_example(tmp_path / "repo")
    (repo / "providers/gis-server.yaml").write_text(SERVER)
    (repo / "migrations/003_optimize_bike_lanes.yaml").unlink()
    from honua_plan.workflows.sample import seed_bike_lanes

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        seed_bike_lanes(conn, 42)
    env = {"HONUA_PG_DSN": pg_dsn, "CI": "", "HONUA_ALLOWED_RELOAD_COMMANDS": "true",
           "HONUA_SCRATCH_DSN": pg_cluster.dsn_for("postgres") if simulate else ""}  # type: ignore[attr-defined]
    flag = "--simulate" if simulate else "--no-simulate"
    assert run(repo, "apply", "--env", "dev", "--yes", env=env).exit_code == 0
    saved = tmp_path / "p.json"

    @settings(max_examples=6, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(st.lists(new_tables, max_size=2), st.lists(edits.filter(lambda e: e[0] != "copy"), max_size=2))
    def law(tables: list[tuple[list[str], str, bool]], layer_edits: list[tuple[str, object]]) -> None:
        for columns, geometry, all_fields in tables:
            _write_table_and_layer(repo, columns, geometry, all_fields)
        apply_edits(repo, layer_edits)
        planned = run(repo, "plan", "--env", "dev", flag, "--out", str(saved), env=env)
        assert planned.exit_code == 0, planned.output
        if tables and simulate:
            assert json.loads(saved.read_text()).get("simulated"), planned.output
        assert run(repo, "approve", str(saved), "--by", "alice@city.gov", env=env).exit_code == 0
        applied = run(repo, "apply", "--env", "dev", str(saved), "--auto-approve", env=env)
        assert applied.exit_code == 0, applied.output
        again = run(repo, "plan", "--env", "dev", "--no-simulate", "--detailed-exitcode", env=env)
        assert again.exit_code == 0, again.output

    law()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # the law was not vacuous: tables were made and served
        made = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'gen\\_%'").fetchone()
    published = json.loads((repo / "state/dev/published.json").read_text())["collections"]
    assert made is not None and made[0] >= 1
    assert sum(1 for cid in published if cid.startswith("transportation::gen-")) == made[0]
