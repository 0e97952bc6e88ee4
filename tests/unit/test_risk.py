"""Risk rules: every rule fires on a positive case and stays silent on a negative one."""

from __future__ import annotations

from typing import Any

import pytest

from honua_plan.plan.risk import (
    MIN_SECONDS,
    RULES,
    Finding,
    Level,
    assess_context,
    assess_invalid_geometries,
    assess_performance_validation,
    assess_service_change,
    assess_spatial_index,
    assess_statements,
    describe,
    estimate_seconds,
    finding,
    overall,
    raise_for_environment,
    table_state,
)
from honua_plan.providers.postgis.facts import (
    ColumnFacts,
    DatabaseFacts,
    GeometryColumnFacts,
    IndexFacts,
    TableFacts,
)
from honua_plan.sql.analysis import analyze


def _gix(name: str, column: str = "geom", *, valid: bool = True) -> IndexFacts:
    return IndexFacts(name=name, method="gist", columns=(column,), is_valid=valid, is_ready=True,
                      is_unique=False, is_primary=False,
                      definition=f"CREATE INDEX {name} ON t USING gist ({column})")


def _table(name: str, rows: int, *, total_bytes: int = 0, indexes: tuple[IndexFacts, ...] = (),
           kind: str = "r") -> TableFacts:
    return TableFacts(
        schema="public", name=name, kind=kind, row_estimate=rows, total_bytes=total_bytes,
        columns=(ColumnFacts("id", "integer", "int4", False),
                 ColumnFacts("name", "character varying(50)", "varchar", True, max_length=50),
                 ColumnFacts("geom", "geometry(LineString,4326)", "geometry", True)),
        geometry_columns=(GeometryColumnFacts("geom", "LINESTRING", 4326, 2),),
        indexes=indexes,
    )


POPULATED = DatabaseFacts(tables=(
    _table("bike_lanes", 250_000, indexes=(_gix("old_idx"),)),
    _table("mv", 5_000, kind="m"),
    _table("v", 0, kind="v"),
))
EMPTY = DatabaseFacts(tables=(_table("bike_lanes", 0), _table("mv", 0, kind="m")))
SEED_INDEX = "CREATE INDEX idx_bike_lanes_geom\nON bike_lanes\nUSING GIST (geom);"


def codes(sql: str, facts: DatabaseFacts | None = POPULATED, **kw: Any) -> list[str]:
    return [f.code for f in assess_statements(analyze(sql), facts, **kw)]


# (rule, sql, keyword arguments, fires?)
STATEMENT_CASES: list[tuple[str, str, dict[str, Any], bool]] = [
    ("PG101", SEED_INDEX, {}, True),
    ("PG101", "CREATE INDEX i ON bike_lanes USING brin (geom)", {}, True),
    ("PG101", SEED_INDEX, {"facts": None}, True),  # unknown size: assume populated
    ("PG101", "CREATE INDEX CONCURRENTLY i ON bike_lanes USING gist (geom)", {}, False),
    ("PG101", SEED_INDEX, {"facts": EMPTY}, False),
    ("PG101", SEED_INDEX, {"created_tables": frozenset({"bike_lanes"})}, False),
    ("PG101", "CREATE TABLE bike_lanes (geom geometry); " + SEED_INDEX, {}, False),
    ("PG102", "SET lock_timeout = '1s'; CREATE INDEX CONCURRENTLY i ON bike_lanes (geom)", {}, True),
    ("PG102", "BEGIN; CREATE INDEX CONCURRENTLY i ON bike_lanes (geom); COMMIT", {}, True),
    ("PG102", "CREATE INDEX CONCURRENTLY i ON bike_lanes (geom)", {"in_transaction": True}, True),
    ("PG102", "VACUUM bike_lanes", {"step_statement_count": 2}, True),
    ("PG102", "CREATE INDEX CONCURRENTLY i ON bike_lanes (geom)", {}, False),
    ("PG102", "DROP INDEX CONCURRENTLY IF EXISTS old_idx", {"in_transaction": False}, False),
    ("PG103", "DROP INDEX IF EXISTS idx_bike_lanes_geom", {}, True),
    ("PG103", "DROP INDEX CONCURRENTLY IF EXISTS idx_bike_lanes_geom", {}, False),
    ("PG104", "ANALYZE bike_lanes", {}, True),
    ("PG104", "ALTER TABLE bike_lanes VALIDATE CONSTRAINT c", {}, True),
    ("PG104", "SELECT * FROM bike_lanes", {}, False),
    ("PG105", "REINDEX INDEX old_idx", {}, True),
    ("PG105", "REINDEX INDEX CONCURRENTLY old_idx", {}, False),
    ("PG200", "ALTER TABLE bike_lanes ADD COLUMN note text", {}, True),
    ("PG200", "ALTER TABLE bike_lanes ALTER COLUMN name TYPE varchar(100)", {}, True),
    ("PG200", "CREATE OR REPLACE VIEW v AS SELECT 1", {}, True),
    ("PG200", "CREATE VIEW v2 AS SELECT 1", {}, False),
    ("PG200", "ALTER TABLE bike_lanes ADD COLUMN note text", {"created_tables": frozenset({"bike_lanes"})}, False),
    ("PG200", "INSERT INTO bike_lanes (id) VALUES (1)", {}, False),
    ("PG201", "ALTER TABLE bike_lanes ALTER COLUMN name SET NOT NULL", {}, True),
    ("PG201", "ALTER TABLE bike_lanes ADD CONSTRAINT c CHECK (ST_IsValid(geom))", {}, True),
    ("PG201", "ALTER TABLE bike_lanes ADD CONSTRAINT c CHECK (ST_IsValid(geom)) NOT VALID", {}, False),
    ("PG201", "ALTER TABLE bike_lanes ALTER COLUMN name SET NOT NULL", {"facts": EMPTY}, False),
    ("PG202", "ALTER TABLE bike_lanes ADD COLUMN u uuid DEFAULT gen_random_uuid()", {}, True),
    ("PG202", "ALTER TABLE bike_lanes ADD COLUMN t timestamptz DEFAULT now()", {}, False),
    ("PG202", "ALTER TABLE bike_lanes ADD COLUMN u uuid DEFAULT gen_random_uuid()", {"facts": EMPTY}, False),
    ("PG204", "ALTER TABLE bike_lanes ADD COLUMN owner int NOT NULL", {}, True),
    ("PG204", "ALTER TABLE bike_lanes ADD COLUMN owner int NOT NULL DEFAULT 0", {}, False),
    ("PG204", "ALTER TABLE bike_lanes ADD COLUMN owner int NOT NULL", {"facts": EMPTY}, False),
    ("PG401", "ALTER EXTENSION postgis UPDATE", {}, True),
    ("PG401", "SELECT postgis_extensions_upgrade()", {}, True),
    ("PG401", "CREATE EXTENSION IF NOT EXISTS postgis", {}, False),
    ("DS104", "UPDATE bike_lanes SET name = upper(name)", {}, True),
    ("DS104", "UPDATE bike_lanes SET name = upper(name) WHERE id = 7", {}, False),
    ("DS104", "UPDATE bike_lanes SET name = upper(name)", {"facts": EMPTY}, False),
    ("DS105", "UPDATE bike_lanes SET geom = ST_SnapToGrid(geom, 0.001)", {}, True),
    ("DS105", "UPDATE bike_lanes SET geom = ST_Force2D(geom) WHERE id = 1", {"facts": None}, True),
    ("DS105", "UPDATE bike_lanes SET geom = ST_ReducePrecision(geom, 0.01) WHERE id = 1", {}, True),
    ("DS105", "ALTER TABLE bike_lanes ALTER COLUMN geom TYPE geometry(LineString, 4326) "
              "USING ST_SnapToGrid(geom, 0.1)", {}, True),
    ("DS105", "UPDATE bike_lanes SET geom = ST_Force2D(geom)", {}, False),  # 2-D already: nothing lost
    ("DS104", "UPDATE bike_lanes SET name = upper(name) WHERE name IS NOT NULL",
     {"probes": {"rows:UPDATE bike_lanes SET name = upper(name) WHERE name IS NOT NULL": (240_000,)}}, True),
    ("DS104", "UPDATE bike_lanes SET name = upper(name) WHERE name = 'x'",
     {"probes": {"rows:UPDATE bike_lanes SET name = upper(name) WHERE name = 'x'": (12,)}}, False),
    ("GEO102", "ALTER TABLE bike_lanes ADD CONSTRAINT c CHECK (ST_IsValid(geom))",
     {"probes": {"invalid:public.bike_lanes.geom": (3, "Self-intersection[1 1]")}}, True),
    ("GEO102", "ALTER TABLE bike_lanes ADD CONSTRAINT c CHECK (ST_IsValid(geom))",
     {"probes": {"invalid:public.bike_lanes.geom": (0, "")}}, False),
    ("GEO103", "ALTER TABLE bike_lanes ADD CONSTRAINT c CHECK (ST_IsValid(geom)) NOT VALID",
     {"probes": {"invalid:public.bike_lanes.geom": (3, "Self-intersection[1 1]")}}, True),
    ("GEO103", "ALTER TABLE bike_lanes ADD CONSTRAINT c CHECK (ST_IsValid(geom))",
     {"probes": {"invalid:public.bike_lanes.geom": (3, "Self-intersection[1 1]")}}, False),
    ("DS105", "UPDATE bike_lanes SET geom = ST_MakeValid(geom) WHERE NOT ST_IsValid(geom)", {}, False),
    ("PG203", "ALTER TABLE bike_lanes ALTER COLUMN id TYPE bigint", {}, True),
    ("PG203", "ALTER TABLE bike_lanes ALTER COLUMN name TYPE varchar(20)", {}, True),
    ("PG203", "ALTER TABLE bike_lanes ALTER COLUMN name TYPE text", {}, False),
    ("PG301", "VACUUM FULL bike_lanes", {"in_transaction": False}, True),
    ("PG301", "CLUSTER bike_lanes USING old_idx", {}, True),
    ("PG301", "ALTER TABLE bike_lanes SET TABLESPACE fast", {}, True),
    ("PG301", "VACUUM bike_lanes", {}, False),
    ("PG302", "REFRESH MATERIALIZED VIEW mv", {}, True),
    ("PG302", "REFRESH MATERIALIZED VIEW CONCURRENTLY mv", {}, False),
    ("DS101", "DROP TABLE bike_lanes", {}, True),
    ("DS101", "SELECT DropGeometryTable('bike_lanes')", {}, True),
    ("DS101", "DROP VIEW v", {}, False),
    ("DS102", "ALTER TABLE bike_lanes DROP COLUMN name", {}, True),
    ("DS102", "TRUNCATE bike_lanes", {}, True),
    ("DS102", "ALTER TABLE bike_lanes RENAME COLUMN name TO title", {}, False),
    ("DS103", "DELETE FROM bike_lanes", {}, True),
    ("DS103", "DROP SCHEMA s CASCADE", {}, True),
    ("DS103", "DELETE FROM bike_lanes WHERE id = 1", {}, False),
    ("DS103", "EXPLAIN DELETE FROM bike_lanes", {}, False),
    ("SQL001", "DO $$ BEGIN PERFORM 1; END $$", {}, True),
    ("SQL001", "ALTER TABLE bike_lanes FROBNICATE", {}, True),
    ("SQL001", "CREATE EXTENSION IF NOT EXISTS postgis", {}, False),
    ("SQL002", "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'DELETE FROM bike_lanes'; SELECT f();",
     {}, True),
    ("SQL002", "SELECT purge_lanes()", {}, True),
    ("SQL002", "DO $$ BEGIN DELETE FROM bike_lanes; END $$", {}, True),  # as unknown as a function's body
    ("SQL002", "UPDATE bike_lanes SET geom = ST_MakeValid(geom) WHERE NOT ST_IsValid(geom)", {}, False),
    ("SQL002", "SELECT AddGeometryColumn('bike_lanes', 'g2', 4326, 'POINT', 2)", {}, False),
    ("GEO201", "ALTER TABLE bike_lanes ALTER COLUMN geom TYPE geometry(LineString,3857) "
               "USING ST_Transform(geom,3857)", {}, True),
    ("GEO201", "SELECT UpdateGeometrySRID('bike_lanes','geom',3857)", {}, True),
    ("GEO201", "ALTER TABLE bike_lanes ALTER COLUMN geom TYPE geometry(MultiLineString,4326) "
               "USING ST_Multi(geom)", {}, True),
    ("GEO201", "ALTER TABLE bike_lanes ALTER COLUMN geom TYPE geometry(LineString,4326)", {}, False),
    ("GEO201", "ALTER TABLE bike_lanes ALTER COLUMN geom TYPE geometry(LineString,3857) "
               "USING ST_Transform(geom,3857)", {"created_tables": frozenset({"bike_lanes"})}, False),
    ("LOCK001", SEED_INDEX, {"lock_timeout_set": False}, True),
    ("LOCK001", "ALTER TABLE bike_lanes ADD COLUMN note text", {"lock_timeout_set": False}, True),
    ("LOCK001", "SET LOCAL lock_timeout = '1s'; ALTER TABLE bike_lanes ADD COLUMN note text",
     {"lock_timeout_set": False}, False),
    ("LOCK001", "CREATE INDEX CONCURRENTLY i ON bike_lanes (geom)", {"lock_timeout_set": False}, False),
    ("LOCK001", SEED_INDEX, {"lock_timeout_set": True}, False),
    ("LOCK001", SEED_INDEX, {"lock_timeout_set": False, "created_tables": frozenset({"bike_lanes"})}, False),
]


@pytest.mark.parametrize(("code", "sql", "kw", "fires"), STATEMENT_CASES,
                         ids=[f"{c[0]}-{'pos' if c[3] else 'neg'}-{c[1][:40]}" for c in STATEMENT_CASES])
def test_statement_rule(code: str, sql: str, kw: dict[str, Any], fires: bool) -> None:
    kw = dict(kw)
    facts = kw.pop("facts", POPULATED)
    assert (code in codes(sql, facts, **kw)) is fires


def test_every_rule_has_a_positive_and_a_negative_case() -> None:
    pos = {c[0] for c in STATEMENT_CASES if c[3]} | NON_SQL_RULES
    neg = {c[0] for c in STATEMENT_CASES if not c[3]} | NON_SQL_RULES
    assert pos == set(RULES) and neg == set(RULES)


NON_SQL_RULES = {"GEO101", "GEO301", "SVC101", "ENV001", "AI001", "VAL001", "POL101"}


# --- the seed's migration 003 in context


def test_seed_index_on_table_created_in_same_plan_is_low() -> None:
    found = assess_statements(analyze(SEED_INDEX + "\nANALYZE bike_lanes;"), None,
                              created_tables=frozenset({"bike_lanes"}))
    assert overall(found) == Level.LOW
    assert {f.code for f in found} <= {"PG104"}


def test_seed_index_on_populated_table_is_pg101_high() -> None:
    found = assess_statements(analyze(SEED_INDEX), POPULATED)
    assert [(f.code, f.level) for f in found] == [("PG101", Level.HIGH)]
    f = found[0]
    assert f.subject == "bike_lanes" and "~250,000 rows" in f.message
    assert f.suggestion.startswith("Consider creating index with CONCURRENTLY option")
    assert "blocks writes" in f.message


def test_unknown_size_is_said_not_guessed() -> None:
    (f,) = assess_statements(analyze(SEED_INDEX), None)
    assert "table size unknown" in f.message


def test_never_analyzed_table_with_pages_is_not_empty() -> None:
    # reltuples -1 is clamped to 0, but the heap has pages: not empty
    facts = DatabaseFacts(tables=(_table("bike_lanes", 0, total_bytes=50 * 8192),))
    assert table_state("bike_lanes", facts) == ("populated", 0)
    assert "PG101" in codes(SEED_INDEX, facts)
    empty = DatabaseFacts(tables=(_table("bike_lanes", 0, total_bytes=2 * 8192),))
    assert table_state("bike_lanes", empty) == ("empty", 0)


def test_table_state_matches_schema_qualified_names() -> None:
    assert table_state("public.bike_lanes", POPULATED) == ("populated", 250_000)
    assert table_state("bike_lanes", None, {"public.bike_lanes"})[0] == "created"
    assert table_state("other.bike_lanes", None, {"public.bike_lanes"})[0] == "unknown"
    assert table_state(None, POPULATED) == ("unknown", None)


def test_lock001_raises_the_statement_level() -> None:
    found = assess_statements(analyze(SEED_INDEX), POPULATED, lock_timeout_set=False)
    by = {f.code: f.level for f in found}
    assert by == {"PG101": Level.HIGH, "LOCK001": Level.CRITICAL}
    found = assess_statements(analyze("ALTER TABLE bike_lanes ADD COLUMN c int"), POPULATED,
                              lock_timeout_set=False)
    assert {f.code: f.level for f in found} == {"PG200": Level.MEDIUM, "LOCK001": Level.HIGH}


def test_pg102_is_an_error() -> None:
    found = assess_statements(analyze("CREATE INDEX CONCURRENTLY i ON bike_lanes (geom)"), POPULATED,
                              in_transaction=True)
    (f,) = [f for f in found if f.code == "PG102"]
    assert f.error and "CREATE INDEX CONCURRENTLY cannot run inside a transaction block" in f.message


def test_drop_table_is_irreversible_critical() -> None:
    (f,) = assess_statements(analyze("DROP TABLE bike_lanes"), POPULATED)
    assert f.level == Level.CRITICAL and f.irreversible


def test_geo201_names_the_change() -> None:
    sql = ("ALTER TABLE bike_lanes ALTER COLUMN geom TYPE geometry(LineString,3857) "
           "USING ST_Transform(geom,3857)")
    (f,) = assess_statements(analyze(sql), POPULATED)
    assert "(LINESTRING,4326 → LINESTRING,3857)" in f.message


def test_plain_explain_is_not_assessed_but_explain_analyze_is() -> None:
    assert codes("EXPLAIN DELETE FROM bike_lanes") == []
    assert codes("EXPLAIN ANALYZE DELETE FROM bike_lanes") == ["DS103"]


# --- non-SQL evaluators: positive and negative each


def test_geo101() -> None:
    f = assess_invalid_geometries("bike_lanes", "geom", 1234)
    assert f is not None and f.code == "GEO101" and f.level == Level.MEDIUM
    assert f.message == "1,234 invalid geometries in bike_lanes.geom"
    assert assess_invalid_geometries("bike_lanes", "geom", 0) is None


def test_geo301() -> None:
    with_index = _table("bike_lanes", 10, indexes=(_gix("g"),))
    invalid = _table("bike_lanes", 10, indexes=(_gix("g", valid=False),))
    no_index = _table("bike_lanes", 10)
    assert assess_spatial_index("bikes::lanes", with_index, "bike_lanes", "geom") is None
    assert assess_spatial_index("bikes::lanes", no_index, "bike_lanes", "geom", index_planned=True) is None
    for t in (invalid, no_index, None):
        f = assess_spatial_index("bikes::lanes", t, "bike_lanes", "geom")
        assert f is not None and f.code == "GEO301" and f.level == Level.MEDIUM


def test_svc101() -> None:
    found = assess_service_change("bikes::lanes", removed=True, geometry_type=("LineString", "Point"),
                                  crs=("EPSG:4326", "EPSG:3857"), removed_fields=("name",))
    assert [f.code for f in found] == ["SVC101"] * 4
    assert all(f.level == Level.HIGH for f in found)
    assert found[0].message == "collection removed: breaks clients of collection bikes::lanes"
    assert assess_service_change("bikes::lanes") == ()


def test_env001_raises_overall_one_level() -> None:
    base = [finding("PG101", "t", table="t", index="i", rows="~1 rows")]
    (env,) = assess_context(base, production=True, environment="production")
    assert env.code == "ENV001" and env.message == "production environment"
    assert env.level == Level.CRITICAL
    assert overall([*base, env]) == Level.CRITICAL
    assert assess_context(base, production=False) == ()


def test_ai001() -> None:
    (ai,) = assess_context([], production=False, provenance="ai", detail="model gpt")
    assert ai.code == "AI001" and ai.level == Level.LOW and "(model gpt)" in ai.message
    assert assess_context([], production=False, provenance="human") == ()


def test_val001() -> None:
    small = DatabaseFacts(tables=(_table("bike_lanes", 300),))
    f = assess_performance_validation("bike_lanes", small)
    assert f is not None and f.code == "VAL001" and "~300 rows" in f.message
    assert assess_performance_validation("bike_lanes", POPULATED) is None
    assert assess_performance_validation("bike_lanes", None) is None  # unknown: no prediction
    created = assess_performance_validation("bike_lanes", None, created_tables=frozenset({"bike_lanes"}))
    assert created is not None and "new table" in created.message


# --- levels, rules table, estimates


def test_level_arithmetic() -> None:
    assert Level.LOW.raised() == Level.MEDIUM
    assert Level.CRITICAL.raised() == Level.CRITICAL
    assert Level.HIGH.raised(5) == Level.CRITICAL
    assert Level.MEDIUM.raised(-3) == Level.LOW
    assert str(Level.HIGH) == "HIGH" and Level.parse("high") == Level.HIGH
    assert raise_for_environment(Level.MEDIUM, True) == Level.HIGH
    assert raise_for_environment(Level.MEDIUM, False) == Level.MEDIUM
    assert overall([]) == Level.LOW
    assert overall([], base=Level.MEDIUM) == Level.MEDIUM


def test_rules_are_data() -> None:
    for code, rule in RULES.items():
        assert rule.code == code and rule.message and isinstance(rule.level, Level)
    assert RULES["PG102"].error and RULES["DS101"].irreversible and RULES["DS102"].irreversible
    assert RULES["LOCK001"].raises == 1 and RULES["ENV001"].raises == 1
    assert RULES["PG101"].level == Level.HIGH and RULES["PG202"].level == Level.CRITICAL


def test_finding_renders_missing_params_safely() -> None:
    f = finding("PG101")
    assert isinstance(f, Finding) and "?" in f.message


def test_describe() -> None:
    assert describe(analyze("CREATE INDEX CONCURRENTLY i ON t (a)")[0]) == "CREATE INDEX CONCURRENTLY"
    assert describe(analyze("VACUUM FULL t")[0]) == "VACUUM FULL"


def test_estimates_scale_with_rows() -> None:
    small = DatabaseFacts(tables=(_table("bike_lanes", 100),))
    (idx,) = analyze(SEED_INDEX)
    assert estimate_seconds(idx, small) == MIN_SECONDS
    assert estimate_seconds(idx, POPULATED) == pytest.approx(250_000 * 20e-6)
    (cic,) = analyze("CREATE INDEX CONCURRENTLY i ON bike_lanes USING gist (geom)")
    assert estimate_seconds(cic, POPULATED) == pytest.approx(2 * estimate_seconds(idx, POPULATED))
    (an,) = analyze("ANALYZE bike_lanes")
    assert estimate_seconds(an, POPULATED) == pytest.approx(0.2 + 250_000 * 2e-6)
    assert estimate_seconds(idx, None) == MIN_SECONDS
    (drop,) = analyze("DROP INDEX old_idx")
    assert estimate_seconds(drop, POPULATED) == MIN_SECONDS


def test_finding_accepts_raw_values() -> None:
    f = finding("VAL001", subject="public.bike_lanes", rows=300)
    assert f.message.startswith("performance validation on public.bike_lanes") and "~300 rows" in f.message
    g = finding("GEO101", subject="public.bike_lanes", count=12000)
    assert g.message == "12,000 invalid geometries in public.bike_lanes"
    assert finding("SVC101", subject="c", collection="c", detail="collection removed").message == (
        "collection removed: breaks clients of collection c")


def test_spatial_index_estimate_scales_with_the_sampled_vertices() -> None:
    (stmt,) = analyze(SEED_INDEX)
    plain = estimate_seconds(stmt, POPULATED)
    simple = estimate_seconds(stmt, POPULATED, {"npoints:public.bike_lanes.geom": (2.0, 2000)})
    detailed = estimate_seconds(stmt, POPULATED, {"npoints:public.bike_lanes.geom": (1000.0, 2000)})
    assert plain == pytest.approx(simple, rel=0.01)  # two vertices: the per-row cost as measured
    assert detailed == pytest.approx(plain * 3.5, rel=0.01)  # 1,000 vertices: 1 + 1000/400
    # a btree index on another column of the table is not scaled by the geometries' vertices
    (btree,) = analyze("CREATE INDEX i ON bike_lanes (name)")
    assert estimate_seconds(btree, POPULATED, {"npoints:public.bike_lanes.geom": (1000.0, 2000)}) == \
        estimate_seconds(btree, POPULATED)
