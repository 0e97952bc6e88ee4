"""PostGIS refresh against a real database: facts, exclusions, constant statement count."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from honua_plan.providers.postgis import catalog as postgis
from honua_plan.providers.postgis.facts import DatabaseFacts
from honua_plan.providers.postgis.sqlexec import (
    Session,
    StatementError,
    StatementLog,
    connect,
    execute,
)

BIKE_LANES = """
CREATE TABLE bike_lanes (
    id serial PRIMARY KEY,
    name varchar(200),
    lane_type varchar(50),
    width_ft double precision,
    last_updated timestamptz,
    geom geometry(LineString, 4326)
);
CREATE INDEX bike_lanes_geom_idx ON bike_lanes USING gist (geom);
"""

INSERT_42 = """
INSERT INTO bike_lanes (name, lane_type, width_ft, last_updated, geom)
SELECT 'lane ' || i, 'protected', 6.5, now(),
       ST_SetSRID(ST_MakeLine(ST_MakePoint(-122.3 + i * 0.001, 47.6), ST_MakePoint(-122.3 + i * 0.001, 47.61)), 4326)
  FROM generate_series(1, 42) AS i
"""


@pytest.fixture
def conn(pg_dsn: str) -> Iterator[psycopg.Connection]:
    c = connect(pg_dsn)
    try:
        yield c
    finally:
        c.close()


def _create_tables(conn: psycopg.Connection, schema: str, n: int) -> None:
    """n bike_lanes-shaped tables with a pk, a gist index and a check, in one round trip."""
    execute(
        conn, sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)), fetch=False
    )
    execute(
        conn,
        sql.SQL(
            """DO $$ BEGIN FOR i IN 1..{n} LOOP EXECUTE format(
                 'CREATE TABLE %I.%I (id serial PRIMARY KEY, name varchar(200) NOT NULL,'
                 ' width_ft float8 CHECK (width_ft > 0), geom geometry(Point, 3857));'
                 ' CREATE INDEX ON %I.%I USING gist (geom)', {s}, 't' || i, {s}, 't' || i);
               END LOOP; END $$"""
        ).format(n=sql.Literal(n), s=sql.Literal(schema)),
        fetch=False,
    )


def test_refresh_reads_bike_lanes(conn: psycopg.Connection) -> None:
    execute(conn, BIKE_LANES, fetch=False)
    execute(conn, INSERT_42, fetch=False)
    execute(conn, "ANALYZE bike_lanes", fetch=False)

    facts = postgis.refresh(conn)

    assert isinstance(facts, DatabaseFacts)
    assert facts.server_version >= 120000
    assert facts.extension_version("postgis")
    assert "public" in facts.search_path
    t = facts.table("bike_lanes")
    assert t is not None and t.kind == "r" and t.schema == "public"
    assert [c.name for c in t.columns] == [
        "id",
        "name",
        "lane_type",
        "width_ft",
        "last_updated",
        "geom",
    ]
    id_col, name_col = t.column("id"), t.column("name")
    assert id_col is not None and not id_col.nullable and id_col.udt == "int4"
    assert id_col.default is not None and "nextval" in id_col.default
    assert name_col is not None and name_col.max_length == 200 and name_col.udt == "varchar"
    assert name_col.data_type == "character varying(200)" and name_col.nullable
    geom = t.geometry("geom")
    assert geom is not None
    assert (geom.geometry_type, geom.srid, geom.dims) == ("LINESTRING", 4326, 2)
    gist = t.index("bike_lanes_geom_idx")
    assert gist is not None
    assert gist.method == "gist" and gist.is_valid and gist.is_ready and gist.columns == ("geom",)
    assert "USING gist (geom)" in gist.definition
    pkey = t.index("bike_lanes_pkey")
    assert pkey is not None and pkey.is_primary and pkey.is_unique and pkey.method == "btree"
    assert t.primary_key == ("id",)
    assert [(c.type, c.columns, c.validated) for c in t.constraints] == [("p", ("id",), True)]
    assert t.row_estimate == 42
    assert t.total_bytes > 0


def test_never_analyzed_table_estimates_zero_rows(conn: psycopg.Connection) -> None:
    execute(conn, BIKE_LANES, fetch=False)
    t = postgis.refresh(conn).table("public.bike_lanes")
    assert t is not None and t.row_estimate == 0


def test_extension_objects_and_system_schemas_are_excluded(conn: psycopg.Connection) -> None:
    execute(conn, BIKE_LANES, fetch=False)
    facts = postgis.refresh(conn)
    names = {t.qualified_name for t in facts.tables}
    assert names == {"public.bike_lanes"}
    assert facts.table("spatial_ref_sys") is None
    assert facts.table("geometry_columns") is None  # extension-owned view
    assert not any(t.schema in postgis.EXCLUDED_SCHEMAS for t in facts.tables)


def test_views_matviews_and_weird_names(conn: psycopg.Connection) -> None:
    execute(conn, BIKE_LANES, fetch=False)
    execute(conn, 'CREATE SCHEMA "Odd.Schema"', fetch=False)
    execute(
        conn,
        'CREATE TABLE "Odd.Schema"."bike ""lanes""" ("Lane Id" int CHECK ("Lane Id" > 0), '
        "g geography(Point, 4326), code char(3) DEFAULT 'abc')",
        fetch=False,
    )
    execute(conn, "CREATE VIEW lanes_v AS SELECT id, geom FROM bike_lanes", fetch=False)
    execute(
        conn, "CREATE MATERIALIZED VIEW lanes_m AS SELECT id, geom FROM bike_lanes", fetch=False
    )
    execute(conn, "CREATE INDEX lanes_m_lower ON lanes_m ((id + 1))", fetch=False)

    facts = postgis.refresh(conn)

    view = facts.table("public.lanes_v")
    assert view is not None and view.kind == "v" and view.indexes == ()
    view_geom = view.geometry("geom")
    assert view_geom is not None and view_geom.srid == 4326
    mat = facts.table("public.lanes_m")
    assert mat is not None and mat.kind == "m"
    expr = mat.index("lanes_m_lower")
    assert expr is not None and expr.columns == ("(id + 1)",)
    odd = facts.table('Odd.Schema.bike "lanes"')
    assert odd is not None and [c.name for c in odd.columns] == ["Lane Id", "g", "code"]
    assert odd.constraints[0].columns == ("Lane Id",)
    code = odd.column("code")
    assert code is not None and code.max_length == 3 and code.default == "'abc'::bpchar"
    g = odd.geometry("g")
    assert g is not None and (g.geometry_type, g.srid) == ("POINT", 4326)


def test_invalid_index_is_reported(conn: psycopg.Connection) -> None:
    execute(conn, "CREATE TABLE dup (v int)", fetch=False)
    execute(conn, "INSERT INTO dup VALUES (1), (1), (2)", fetch=False)
    with pytest.raises(StatementError) as info:
        execute(conn, "CREATE UNIQUE INDEX CONCURRENTLY dup_v_key ON dup (v)", fetch=False)
    assert info.value.sqlstate == "23505"

    t = postgis.refresh(conn).table("dup")
    assert t is not None
    idx = t.index("dup_v_key")
    assert idx is not None and idx.is_unique and not idx.is_valid


def test_statement_count_is_independent_of_table_count(conn: psycopg.Connection) -> None:
    _create_tables(conn, "few", 10)
    log = StatementLog()
    small = postgis.refresh(Session(conn, log=log))
    small_count = log.count
    assert len(small.tables) == 10
    assert small.statements == small_count

    _create_tables(conn, "many", 200)
    log.clear()
    large = postgis.refresh(Session(conn, log=log))
    assert len(large.tables) == 210
    assert log.count == small_count == large.statements
    # BEGIN, server, relations, columns, indexes, constraints, COMMIT: every geometry column
    # here has a typmod naming its type and SRID, so the geometry views are not read
    assert small_count == 7
    assert [e.text.split()[0] for e in log][::len(log.entries) - 1] == ["BEGIN", "COMMIT"]
    t = large.table("many.t200")
    assert t is not None and t.geometry("geom") is not None and len(t.indexes) == 2


def test_schemas_filter(conn: psycopg.Connection) -> None:
    _create_tables(conn, "a", 2)
    _create_tables(conn, "b", 3)
    facts = postgis.refresh(conn, schemas=["b"])
    assert {t.schema for t in facts.tables} == {"b"} and len(facts.tables) == 3


def test_estimated_sizes(conn: psycopg.Connection) -> None:
    execute(conn, BIKE_LANES, fetch=False)
    execute(conn, INSERT_42, fetch=False)
    execute(conn, "VACUUM ANALYZE bike_lanes", fetch=False)
    exact = postgis.refresh(conn).table("bike_lanes")
    estimated = postgis.refresh(conn, exact_sizes=False).table("bike_lanes")
    assert exact is not None and estimated is not None
    assert 0 < estimated.total_bytes <= exact.total_bytes
    assert postgis.fingerprint_table(exact) == postgis.fingerprint_table(estimated)


def test_without_postgis_there_are_no_geometry_facts(conn: psycopg.Connection) -> None:
    execute(conn, "DROP EXTENSION IF EXISTS postgis CASCADE", fetch=False)
    execute(conn, "CREATE TABLE plain (id int PRIMARY KEY, name text)", fetch=False)
    log = StatementLog()
    facts = postgis.refresh(Session(conn, log=log))
    t = facts.table("plain")
    assert t is not None and t.geometry_columns == () and t.primary_key == ("id",)
    assert facts.extension_version("postgis") is None
    assert facts.statements == log.count == 7


def test_fingerprint_tracks_shape_not_data(conn: psycopg.Connection) -> None:
    execute(conn, BIKE_LANES, fetch=False)

    def fp() -> str:
        t = postgis.refresh(conn).table("bike_lanes")
        assert t is not None
        return postgis.fingerprint_table(t)

    first = fp()
    assert first == fp()
    execute(conn, INSERT_42, fetch=False)
    execute(conn, "ANALYZE bike_lanes", fetch=False)
    assert fp() == first

    execute(conn, "ALTER TABLE bike_lanes ADD COLUMN surface text", fetch=False)
    added = fp()
    assert added != first

    execute(conn, "DROP INDEX bike_lanes_geom_idx", fetch=False)
    assert fp() != added
    facts = postgis.refresh(conn)
    assert set(postgis.fingerprints(facts)) == {"public.bike_lanes"}


def test_count_invalid_geometries_and_extent(conn: psycopg.Connection) -> None:
    execute(
        conn,
        "CREATE TABLE shapes (id serial PRIMARY KEY, geom geometry(Polygon, 3857))",
        fetch=False,
    )
    execute(
        conn,
        """INSERT INTO shapes (geom) VALUES
             (ST_MakeEnvelope(0, 0, 100000, 100000, 3857)),
             (ST_GeomFromText('POLYGON((0 0, 10 10, 10 0, 0 10, 0 0))', 3857)),
             (ST_GeomFromText('POLYGON EMPTY', 3857)),
             (NULL)""",
        fetch=False,
    )
    log = StatementLog()
    session = Session(conn, log=log)
    assert postgis.count_invalid_geometries(session, "shapes", "geom") == (1, 1, 1)
    assert log.count == 1

    extent = postgis.table_extent(session, "public.shapes", "geom")
    assert extent is not None
    xmin, ymin, xmax, ymax = extent
    assert xmin == pytest.approx(0, abs=1e-6) and ymin == pytest.approx(0, abs=1e-6)
    assert xmax == pytest.approx(0.8983, abs=1e-3) and ymax == pytest.approx(0.8983, abs=1e-3)

    execute(conn, "CREATE TABLE nothing (geom geometry(Point, 4326))", fetch=False)
    assert postgis.table_extent(session, "nothing", "geom") is None
    assert postgis.count_invalid_geometries(session, "nothing", "geom") == (0, 0, 0)


def test_the_health_scan_gives_the_extents_table_extents_many_gives(conn: psycopg.Connection) -> None:
    """One scan for the geometry health and the extents: the same boxes as the extent query,
    for one SRID (4326, 3857, 0), an empty table; a column mixing SRIDs is left out."""
    execute(conn, """
        CREATE TABLE e_4326 (g geometry(Point, 4326));
        INSERT INTO e_4326 VALUES (ST_Point(-122.5, 45.5, 4326)), (ST_Point(-122.4, 45.6, 4326)), (NULL);
        CREATE TABLE e_3857 (g geometry(Polygon, 3857));
        INSERT INTO e_3857 VALUES (ST_MakeEnvelope(0, 0, 100000, 100000, 3857)),
                                  (ST_GeomFromText('POLYGON EMPTY', 3857));
        CREATE TABLE e_0 (g geometry);
        INSERT INTO e_0 VALUES (ST_Point(1, 2)), (ST_Point(3, 4));
        CREATE TABLE e_empty (g geometry(Point, 4326));
        CREATE TABLE e_mixed (g geometry);
        INSERT INTO e_mixed VALUES (ST_Point(1, 2, 4326)), (ST_SetSRID(ST_Point(100000, 100000), 3857));
    """, fetch=False)
    pairs = [(f"public.{t}", "g") for t in ("e_4326", "e_3857", "e_0", "e_empty", "e_mixed")]
    session = Session(conn)
    extents: dict[tuple[str, str], tuple[float, float, float, float] | None] = {}
    counts = postgis.count_invalid_geometries_many(session, pairs, extents=extents)
    assert counts == postgis.count_invalid_geometries_many(session, pairs)
    exact = postgis.table_extents_many(session, pairs)
    assert set(extents) == set(pairs) - {("public.e_mixed", "g")}
    for pair, box in extents.items():
        assert box == (pytest.approx(exact[pair]) if exact[pair] is not None else None), pair
    assert extents[("public.e_empty", "g")] is None


GEOMETRY_DECLARATIONS = {
    "p_z": "geometry(PointZ, 4326)",
    "l_m": "geometry(LineStringM, 3857)",
    "mp_zm": "geometry(MultiPolygonZM, 2154)",
    "any_4326": "geometry(Geometry, 4326)",
    "point_0": "geometry(Point)",
    "bare": "geometry",
    "geog": "geography(Point, 4326)",
    "geog_bare": "geography",
}


def test_geometry_facts_match_the_postgis_views(conn: psycopg.Connection) -> None:
    """The typmod shortcut and the views agree, constraint-typed (old-style) columns included."""
    cols = ", ".join(f"{name} {decl}" for name, decl in GEOMETRY_DECLARATIONS.items())
    execute(conn, f"CREATE TABLE shapes (id int PRIMARY KEY, {cols})", fetch=False)
    execute(conn, "CREATE TABLE old_style (id int PRIMARY KEY, g geometry,"
                  " CONSTRAINT enforce_geotype_g CHECK (geometrytype(g) = 'POLYGON'::text OR g IS NULL),"
                  " CONSTRAINT enforce_srid_g CHECK (st_srid(g) = 2056),"
                  " CONSTRAINT enforce_dims_g CHECK (st_ndims(g) = 2))", fetch=False)
    log = StatementLog()
    facts = postgis.refresh(Session(conn, log=log))
    expected = {
        (t, c): (str(gtype or "GEOMETRY").upper(), int(srid or 0), int(dims or 2))
        for t, c, gtype, srid, dims in execute(
            conn,
            "SELECT f_table_name::text, f_geometry_column::text, type, srid, coord_dimension FROM geometry_columns"
            " UNION ALL SELECT f_table_name::text, f_geography_column::text, type, srid, coord_dimension"
            " FROM geography_columns")
    }
    got = {(t.name, g.column): (g.geometry_type, g.srid, g.dims)
           for t in facts.tables for g in t.geometry_columns}
    assert got == expected
    assert got[("old_style", "g")] == ("POLYGON", 2056, 2)
    assert got[("shapes", "p_z")] == ("POINT", 4326, 3)
    shapes = facts.table("shapes")
    assert shapes is not None and [g.column for g in shapes.geometry_columns] == list(GEOMETRY_DECLARATIONS)
    # the views were read once, for the columns the typmod leaves open
    assert log.count == 8
