"""PostGIS provider, read side: turn the live catalog into frozen :mod:`honua_plan.providers.postgis.facts`.

Why it looks like this: a plan against a database with 10,000 tables must not send
10,000 queries. :func:`refresh` sends a constant number of statements whatever the
number of tables, in one read-only REPEATABLE READ transaction (one snapshot, so a table
created or dropped meanwhile never shows up half):

1. ``BEGIN``; 2. server version, ``current_schemas(false)``, extensions, where PostGIS
   lives (and JIT off for the transaction);
3. relations, 4. columns (with the geometry type, SRID and dimensions read from the
   typmod), 5. indexes, 6. constraints: flat rows from ``pg_catalog`` joined in Python
   by relation oid (``information_schema`` is avoided: its views are slow on large
   catalogs);
7. ``geometry_columns`` / ``geography_columns``, only for the tables with a column whose
   typmod leaves its type or SRID open (so usually not sent at all); 8. ``COMMIT``.

Excluded: system schemas, ``topology``/``tiger``/``tiger_data``, every relation
owned by an extension (``pg_depend.deptype = 'e'``) and ``spatial_ref_sys``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from psycopg import sql
from psycopg.pq import TransactionStatus

from honua_plan.providers.postgis.facts import (
    CatalogRows,
    DatabaseFacts,
    TableFacts,
    facts_from_rows,
)
from honua_plan.providers.postgis.sqlexec import Connection, Session, qualified, split_name

__all__ = [
    "EXCLUDED_SCHEMAS",
    "count_invalid_geometries",
    "fingerprint_table",
    "fingerprints",
    "live_extents",
    "refresh",
    "table_extent",
    "table_extents_many",
]

EXCLUDED_SCHEMAS: tuple[str, ...] = (
    "pg_catalog",
    "information_schema",
    "pg_toast",
    "topology",
    "honua_plan",  # the postgres state backend's own tables are not GIS data
    "tiger",
    "tiger_data",
)
EXCLUDED_TABLES: tuple[str, ...] = ("spatial_ref_sys",)

# Statement 2 also turns JIT off for the rest of the snapshot's transaction: compiling
# the catalog queries costs more than it could ever save.
_SERVER_SQL = sql.SQL(
    """
SELECT current_setting('server_version_num')::int,
       current_schemas(false)::text[],
       COALESCE((SELECT json_agg(json_build_array(e.extname, e.extversion) ORDER BY e.extname)
                 FROM pg_catalog.pg_extension e), '[]'::json),
       (SELECT json_build_array(
                   n.nspname,
                   to_regclass(format('%I.geometry_columns', n.nspname)) IS NOT NULL,
                   to_regclass(format('%I.geography_columns', n.nspname)) IS NOT NULL)
          FROM pg_catalog.pg_extension e
          JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
         WHERE e.extname = 'postgis'),
       CASE WHEN current_setting('jit', true) IS NOT NULL THEN set_config('jit', 'off', true) END
"""
)

# The catalog statements return flat rows, one per relation, column, index or constraint,
# joined in Python by relation oid. Aggregating them per relation in SQL (LATERAL
# subqueries building JSON) cost ~300 us per table: json_build_array looks up the output
# function of every argument on every call. Flat rows cost ~3 us each to send and load.
#
# Which relations: the same predicate in every statement of the snapshot (rows of
# relations statement 3 left out, e.g. those owned by an extension, are dropped in Python).
_USER_RELATION = """
       c.relkind IN ('r', 'v', 'm', 'p')
   AND n.nspname <> ALL(%(excluded_schemas)s::text[])
   AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
   AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%%'
   {schema_filter}"""

_RELATIONS_SQL = """
SELECT c.oid, n.nspname, c.relname, c.relkind, c.reltuples, {size_expr}
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_class tc ON tc.oid = c.reltoastrelid
  LEFT JOIN (SELECT xi.indrelid, sum(xc.relpages) AS pages
               FROM pg_catalog.pg_index xi
               JOIN pg_catalog.pg_class xc ON xc.oid = xi.indexrelid
              GROUP BY xi.indrelid) ip ON ip.indrelid = c.oid
 WHERE {user_relation}
   AND c.relname <> ALL(%(excluded_tables)s::text[])
   AND c.oid NOT IN (SELECT d.objid FROM pg_catalog.pg_depend d
                      WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.deptype = 'e')
 ORDER BY n.nspname, c.relname
"""

_COLUMNS_SQL = """
SELECT a.attrelid, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), t.typname, NOT a.attnotnull,
       pg_catalog.pg_get_expr(ad.adbin, ad.adrelid),
       CASE WHEN a.atttypid IN (1042, 1043) AND a.atttypmod > 4 THEN a.atttypmod - 4 END,
       {geometry}
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
 WHERE {user_relation} AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attrelid, a.attnum
"""

# A geometry column whose typmod names a type and an SRID is described by the typmod
# alone, exactly as geometry_columns computes it; reading the view for every table costs
# three pg_get_constraintdef scans per table (~40 us), so the views are only read for the
# columns the typmod leaves open (no typmod, GEOMETRY or SRID 0: the view then looks at
# CHECK constraints) and for geography columns. Columns: kind (NULL = not PostGIS,
# 'view' = ask the views), type, srid, dims.
_GEOMETRY_TYPMOD = """
       CASE WHEN t.typnamespace <> (SELECT ns.oid FROM pg_catalog.pg_namespace ns WHERE ns.nspname = %(postgis_schema)s)
                 OR t.typname NOT IN ('geometry', 'geography') THEN NULL
            WHEN t.typname = 'geometry' AND a.atttypmod <> -1
                 AND {ps}.postgis_typmod_srid(a.atttypmod) <> 0
                 AND upper({ps}.postgis_typmod_type(a.atttypmod)) <> 'GEOMETRY' THEN 'typmod'
            ELSE 'view' END AS gkind,
       CASE WHEN t.typname = 'geometry' AND a.atttypmod <> -1
                 AND t.typnamespace = (SELECT ns.oid FROM pg_catalog.pg_namespace ns WHERE ns.nspname = %(postgis_schema)s) THEN
            replace(replace(upper({ps}.postgis_typmod_type(a.atttypmod)), 'ZM', ''), 'Z', '') END,
       CASE WHEN t.typname = 'geometry' AND a.atttypmod <> -1
                 AND t.typnamespace = (SELECT ns.oid FROM pg_catalog.pg_namespace ns WHERE ns.nspname = %(postgis_schema)s) THEN
            {ps}.postgis_typmod_srid(a.atttypmod) END,
       CASE WHEN t.typname = 'geometry' AND a.atttypmod <> -1
                 AND t.typnamespace = (SELECT ns.oid FROM pg_catalog.pg_namespace ns WHERE ns.nspname = %(postgis_schema)s) THEN
            {ps}.postgis_typmod_dims(a.atttypmod) END"""
_NO_GEOMETRY = "NULL::text, NULL::text, NULL::int, NULL::int"

_INDEXES_SQL = """
WITH ix AS (
    SELECT i.*, ic.relname AS iname, ic.relam, n.nspname, c.relname AS tname,
           ic.relkind = 'i' AND ic.reloptions IS NULL AS plain_rel
      FROM pg_catalog.pg_index i
      JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
     WHERE {user_relation}
), keys AS (
    SELECT ix.indexrelid,
           array_agg(CASE WHEN k.attnum <> 0 THEN ka.attname::text
                          ELSE pg_catalog.pg_get_indexdef(ix.indexrelid, k.ord::int, true) END
                     ORDER BY k.ord) FILTER (WHERE k.ord <= ix.indnkeyatts) AS cols,
           COALESCE(bool_and(
               k.attnum > 0
               AND ix.indoption[k.ord::int - 1] = 0
               AND (ix.indcollation[k.ord::int - 1] = 0 OR ix.indcollation[k.ord::int - 1] = ka.attcollation)
               AND (ix.indclass[k.ord::int - 1], ka.atttypid, ix.relam) IN (
                     SELECT oc.oid, oc.opcintype, oc.opcmethod FROM pg_catalog.pg_opclass oc WHERE oc.opcdefault)
               AND ia.attoptions IS NULL
           ), false) AS ok,
           string_agg(pg_catalog.quote_ident(ka.attname), ', ' ORDER BY k.ord) AS plain
      FROM ix
      CROSS JOIN LATERAL unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
      -- LATERAL + OFFSET 0: one index probe per key, not a hash of all of pg_attribute
      LEFT JOIN LATERAL (SELECT a.attname, a.attcollation, a.atttypid FROM pg_catalog.pg_attribute a
                          WHERE a.attrelid = ix.indrelid AND a.attnum = k.attnum OFFSET 0) ka ON true
      LEFT JOIN LATERAL (SELECT a.attoptions FROM pg_catalog.pg_attribute a
                          WHERE a.attrelid = ix.indexrelid AND a.attnum = k.ord OFFSET 0) ia ON true
     GROUP BY ix.indexrelid
)
SELECT ix.indrelid, ix.iname, am.amname, COALESCE(keys.cols, '{{}}'),
       ix.indisvalid, ix.indisready, ix.indisunique, ix.indisprimary,
       CASE WHEN keys.ok AND ix.plain_rel AND ix.indexprs IS NULL AND ix.indpred IS NULL
                 AND ix.indnkeyatts = ix.indnatts {nulls_distinct}
            THEN 'CREATE ' || CASE WHEN ix.indisunique THEN 'UNIQUE ' ELSE '' END || 'INDEX '
                 || pg_catalog.quote_ident(ix.iname) || ' ON '
                 || pg_catalog.quote_ident(ix.nspname) || '.' || pg_catalog.quote_ident(ix.tname)
                 || ' USING ' || pg_catalog.quote_ident(am.amname) || ' (' || keys.plain || ')'
            ELSE pg_catalog.pg_get_indexdef(ix.indexrelid) END
  FROM ix
  JOIN pg_catalog.pg_am am ON am.oid = ix.relam
  LEFT JOIN keys ON keys.indexrelid = ix.indexrelid
 ORDER BY ix.indrelid, ix.iname
"""

_CONSTRAINTS_SQL = """
WITH co AS (
    SELECT co.*
      FROM pg_catalog.pg_constraint co
      JOIN pg_catalog.pg_class c ON c.oid = co.conrelid
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE {user_relation} AND co.contype <> 'n'
), keys AS (
    SELECT co.oid, array_agg(ca.attname::text ORDER BY k.ord) AS cols
      FROM co
      CROSS JOIN LATERAL unnest(co.conkey) WITH ORDINALITY AS k(attnum, ord)
      JOIN LATERAL (SELECT a.attname FROM pg_catalog.pg_attribute a
                     WHERE a.attrelid = co.conrelid AND a.attnum = k.attnum OFFSET 0) ca ON true
     GROUP BY co.oid
)
SELECT co.conrelid, co.conname, co.contype, COALESCE(keys.cols, '{{}}'), co.convalidated,
       pg_catalog.pg_get_constraintdef(co.oid)
  FROM co
  LEFT JOIN keys ON keys.oid = co.oid
 ORDER BY co.conrelid, co.conname
"""
# pg_total_relation_size opens the table, its TOAST and every index and stats each fork
# (~0.2 ms per table in a fresh session); the estimate reads relpages only (as fresh as
# reltuples: VACUUM/ANALYZE).
_ESTIMATED_SIZE = ("((c.relpages::bigint + COALESCE(tc.relpages, 0) + COALESCE(ip.pages, 0))"
                   " * current_setting('block_size')::bigint)")
# "exact" where it matters: a table without statistics (reltuples <= 0, relpages = 0) may
# hold rows nobody counted yet, and the risk rules then judge it by its size on disk; a
# table with statistics is judged by reltuples, its size being informational, so the
# relpages estimate is used for it.
_EXACT_SIZE = (
    "CASE WHEN c.relkind NOT IN ('r', 'm') THEN 0"
    " WHEN c.reltuples > 0 AND c.relpages > 0 THEN " + _ESTIMATED_SIZE +
    " ELSE pg_catalog.pg_total_relation_size(c.oid) END"
)

_GEOMETRY_SQL = "SELECT f_table_schema::text, f_table_name::text, f_geometry_column::text, type, srid, coord_dimension FROM {}"
_GEOGRAPHY_SQL = "SELECT f_table_schema::text, f_table_name::text, f_geography_column::text, type, srid, coord_dimension FROM {}"
# only the tables whose geometry the typmod did not settle (the view's filter on schema
# and table name is pushed down into its joins)
_VIEW_FILTER = " WHERE (f_table_schema::text, f_table_name::text) IN (SELECT * FROM unnest({}::text[], {}::text[]))"


def _session(session_or_conn: Session | Connection) -> Session:
    if isinstance(session_or_conn, Session):
        return session_or_conn
    return Session(session_or_conn)


def refresh(
    session_or_conn: Session | Connection,
    *,
    schemas: Sequence[str] | None = None,
    exact_sizes: bool = True,
) -> DatabaseFacts:
    """Read every user table, view and materialized view in a constant number of statements.

    ``schemas`` limits the read to those schemas. ``total_bytes`` is
    ``pg_total_relation_size`` for a table without statistics and the ``relpages``
    estimate for one with (see ``_EXACT_SIZE``); ``exact_sizes=False`` estimates it for
    every table.
    """
    return facts_from_rows(catalog_rows(session_or_conn, schemas=schemas, exact_sizes=exact_sizes))


def catalog_rows(
    session_or_conn: Session | Connection,
    *,
    schemas: Sequence[str] | None = None,
    exact_sizes: bool = True,
) -> CatalogRows:
    """The catalog statements' rows as plain values (see :func:`refresh`).

    Plain lists, tuples, strings and numbers, so that another process can read them and
    hand them over with :mod:`marshal` (see :mod:`honua_plan.providers.postgis.prefetch`).
    """
    session = _session(session_or_conn)
    before = session.log.count
    conn = session.conn
    # one snapshot for all statements: a table created or dropped between two of them
    # must not appear without its columns
    owned = conn is not None and conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE
    if owned:
        session.execute(_BEGIN, read=True)
    try:
        rows = _catalog_rows(session, schemas, exact_sizes)
    except BaseException:
        if owned and conn is not None and not conn.closed:
            with contextlib.suppress(Exception):
                conn.rollback()
        raise
    if owned:
        session.execute("COMMIT", read=True)
    rows["statements"] = session.log.count - before
    return rows


_BEGIN = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"


def _catalog_rows(session: Session, schemas: Sequence[str] | None, exact_sizes: bool) -> CatalogRows:
    version, search_path, extensions, postgis, _ = session.execute(_SERVER_SQL, read=True)[0]
    schema_filter = "AND n.nspname = ANY(%(schemas)s::text[])" if schemas is not None else ""
    user_relation = _USER_RELATION.format(schema_filter=schema_filter)
    params: dict[str, Any] = {"excluded_schemas": list(EXCLUDED_SCHEMAS)}
    if schemas is not None:
        params["schemas"] = list(schemas)

    def rows(text: str, extra: dict[str, Any] | None = None, **fmt: str) -> list[tuple[Any, ...]]:
        query = sql.SQL(text.format(user_relation=user_relation, **fmt))
        return session.execute(query, {**params, **(extra or {})}, read=True)

    relations = rows(_RELATIONS_SQL, {"excluded_tables": list(EXCLUDED_TABLES)},
                     size_expr=_EXACT_SIZE if exact_sizes else _ESTIMATED_SIZE)
    if postgis is not None:
        postgis_schema, has_geometry, has_geography = postgis
        columns = rows(_COLUMNS_SQL, {"postgis_schema": postgis_schema},
                       geometry=_GEOMETRY_TYPMOD.format(ps=sql.Identifier(postgis_schema).as_string(None)))
    else:
        has_geometry = has_geography = False
        columns = rows(_COLUMNS_SQL, geometry=_NO_GEOMETRY)
    indexes = rows(_INDEXES_SQL, nulls_distinct="AND NOT ix.indnullsnotdistinct" if int(version) >= 150000 else "")
    constraints = rows(_CONSTRAINTS_SQL)

    # the geometry views, only for the relations with a column its typmod leaves open
    views: list[tuple[Any, ...]] = []
    open_relations = {c[0] for c in columns if c[7] == "view"}
    if open_relations and (has_geometry or has_geography):
        asked = [(r[1], r[2]) for r in relations if r[0] in open_relations]
        view_filter = sql.SQL(_VIEW_FILTER).format(sql.Literal([a for a, _ in asked]),
                                                   sql.Literal([b for _, b in asked]))
        parts = []
        if has_geometry:
            parts.append(sql.SQL(_GEOMETRY_SQL).format(
                sql.Identifier(postgis_schema, "geometry_columns")) + view_filter)
        if has_geography:
            parts.append(sql.SQL(_GEOGRAPHY_SQL).format(
                sql.Identifier(postgis_schema, "geography_columns")) + view_filter)
        views = session.execute(sql.SQL(" UNION ALL ").join(parts), read=True)
    return {
        "server_version": int(version), "search_path": list(search_path),
        "extensions": [list(e) for e in extensions], "relations": relations, "columns": columns,
        "indexes": indexes, "constraints": constraints, "geometry_views": views, "statements": 0,
    }


def count_invalid_geometries(
    session_or_conn: Session | Connection, table: str, column: str
) -> tuple[int, int, int]:
    """``(invalid, empty, null)`` counts in one scan; ``ST_IsValid(g, 0)`` avoids a NOTICE per bad row."""
    session = _session(session_or_conn)
    g = sql.SQL("{}::geometry").format(sql.Identifier(*split_name(column)))
    query = sql.SQL(
        "SELECT count(*) FILTER (WHERE {g} IS NOT NULL AND NOT ST_IsEmpty({g}) AND NOT ST_IsValid({g}, 0)),"
        " count(*) FILTER (WHERE ST_IsEmpty({g})),"
        " count(*) FILTER (WHERE {g} IS NULL)"
        " FROM {t}"
    ).format(g=g, t=qualified(table))
    invalid, empty, null = session.execute(query, read=True)[0]
    return int(invalid), int(empty), int(null)


def table_extent(
    session_or_conn: Session | Connection, table: str, column: str
) -> tuple[float, float, float, float] | None:
    """``(xmin, ymin, xmax, ymax)`` in EPSG:4326 (or native when SRID is 0); None when empty.

    The extent is computed per SRID in native coordinates and only the (densified)
    box is transformed, instead of transforming every row.
    """
    session = _session(session_or_conn)
    query = sql.SQL(
        """
WITH e AS (
    SELECT ST_SRID({g}::geometry) AS srid, ST_Extent({g}::geometry)::geometry AS box
      FROM {t} WHERE {g} IS NOT NULL AND NOT ST_IsEmpty({g}::geometry)
     GROUP BY 1)
SELECT ST_XMin(x), ST_YMin(x), ST_XMax(x), ST_YMax(x)
  FROM (SELECT ST_Extent(CASE WHEN srid IN (0, 4326) THEN box
                              ELSE ST_Transform(ST_Segmentize(ST_SetSRID(box, srid),
                                       greatest(ST_XMax(box) - ST_XMin(box),
                                                ST_YMax(box) - ST_YMin(box), 1e-9) / 32), 4326)
                         END) AS x
          FROM e) s
"""
    ).format(g=sql.Identifier(*split_name(column)), t=qualified(table))
    rows = session.execute(query, read=True)
    if not rows or rows[0][0] is None:
        return None
    xmin, ymin, xmax, ymax = rows[0]
    return float(xmin), float(ymin), float(xmax), float(ymax)


def fingerprint_table(t: TableFacts) -> str:
    """Stable sha256 of a table's shape; row counts and sizes are left out (they move without drift)."""
    payload = {
        "schema": t.schema,
        "name": t.name,
        "kind": t.kind,
        "columns": [c._asdict() for c in t.columns],
        "geometry": sorted((g._asdict() for g in t.geometry_columns), key=lambda g: g["column"]),
        "indexes": sorted((i._asdict() for i in t.indexes), key=lambda i: i["name"]),
        "constraints": sorted((c._asdict() for c in t.constraints), key=lambda c: c["name"]),
        "primary_key": list(t.primary_key),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fingerprints(facts: DatabaseFacts) -> dict[str, str]:
    """``{"schema.table": fingerprint}`` for every relation, e.g. to store in a plan."""
    return {t.qualified_name: fingerprint_table(t) for t in facts.tables}


Extent = tuple[float, float, float, float] | None


def count_invalid_geometries_many(
    session_or_conn: Session | Connection, columns: Sequence[tuple[str, str]], *, chunk: int = 250,
    extents: dict[tuple[str, str], Extent] | None = None,
) -> dict[tuple[str, str], tuple[int, int, int]]:
    """``(invalid, empty, null)`` for many ``(table, column)`` pairs in few statements.

    Counting has to scan each table, but one ``UNION ALL`` per ``chunk`` pairs saves a
    round trip per table (a plan creating 1,000 layers sends 4 statements, not 1,000).
    With ``extents``, the same scan also gives each column's extent in CRS84, as
    :func:`table_extents_many` computes it, for columns of one SRID (a column mixing SRIDs
    is left out: ask :func:`table_extents_many`); the publish that follows an apply's
    re-derivation then scans the tables once, not twice.
    """
    session = _session(session_or_conn)
    out: dict[tuple[str, str], tuple[int, int, int]] = {}
    pairs = list(dict.fromkeys(columns))
    if not pairs:
        return out
    # JIT compiles each of the 250 aggregates with inlining and optimization: 20 s per
    # chunk instead of 0.3 s. One statement turns it off for the session; the last chunk
    # puts the previous value back (set_config runs after that statement was planned).
    [(jit, _)] = session.execute(
        "SELECT current_setting('jit', true),"
        " CASE WHEN current_setting('jit', true) IS NOT NULL THEN set_config('jit', 'off', false) END",
        read=True,
    )
    for start in range(0, len(pairs), chunk):
        parts = []
        for i, (table, column) in enumerate(pairs[start:start + chunk]):
            g = sql.SQL("{}::geometry").format(sql.Identifier(*split_name(column)))
            counts = sql.SQL(
                "count(*) FILTER (WHERE {g} IS NOT NULL AND NOT ST_IsEmpty({g}) AND NOT ST_IsValid({g}, 0)),"
                " count(*) FILTER (WHERE ST_IsEmpty({g})), count(*) FILTER (WHERE {g} IS NULL)").format(g=g)
            if extents is None:
                parts.append(sql.SQL("SELECT {i}, {counts} FROM {t}").format(
                    i=sql.Literal(start + i), counts=counts, t=qualified(table)))
                continue
            some = sql.SQL("{g} IS NOT NULL AND NOT ST_IsEmpty({g})").format(g=g)
            parts.append(sql.SQL(
                "SELECT i, inv, emp, nul, mixed, ST_XMin(x), ST_YMin(x), ST_XMax(x), ST_YMax(x) FROM ("
                "SELECT i, inv, emp, nul, s1 IS DISTINCT FROM s2 AS mixed, CASE WHEN s1 = s2 THEN"
                " CASE WHEN s1 IN (0, 4326) THEN box ELSE ST_Transform(ST_Segmentize(ST_SetSRID(box, s1),"
                " greatest(ST_XMax(box) - ST_XMin(box), ST_YMax(box) - ST_YMin(box), 1e-9) / 32), 4326) END END AS x"
                " FROM (SELECT {i} AS i, {counts},"
                " min(ST_SRID({g})) FILTER (WHERE {some}) AS s1, max(ST_SRID({g})) FILTER (WHERE {some}) AS s2,"
                " ST_Extent({g}) FILTER (WHERE {some})::geometry AS box FROM {t}) c(i, inv, emp, nul, s1, s2, box)"
                ") e"
            ).format(i=sql.Literal(start + i), counts=counts, g=g, some=some, t=qualified(table)))
        if start + chunk >= len(pairs) and jit is not None:
            tail = ", false, NULL::float8, NULL::float8, NULL::float8, NULL::float8" if extents is not None else ""
            parts.append(sql.SQL(
                "SELECT -1::bigint, 0::bigint, 0::bigint, 0::bigint" + tail
                + " FROM (SELECT set_config('jit', {}, false)) restore"
            ).format(sql.Literal(jit)))
        for row in session.execute(sql.SQL(" UNION ALL ").join(parts), read=True):
            i, invalid, empty, null = row[:4]
            if int(i) < 0:
                continue
            out[pairs[int(i)]] = (int(invalid), int(empty), int(null))
            if extents is not None and not row[4]:  # one SRID (or no geometry): the extent is exact
                xmin, ymin, xmax, ymax = row[5:9]
                extents[pairs[int(i)]] = None if xmin is None else (float(xmin), float(ymin), float(xmax), float(ymax))
    return out


def table_extents_many(
    session_or_conn: Session | Connection, columns: Sequence[tuple[str, str]], *, chunk: int = 250
) -> dict[tuple[str, str], tuple[float, float, float, float] | None]:
    """:func:`table_extent` of many ``(table, column)`` pairs, one ``UNION ALL`` per ``chunk``
    pairs (publishing 1,000 layers sends 4 statements, not 1,000)."""
    session = _session(session_or_conn)
    out: dict[tuple[str, str], tuple[float, float, float, float] | None] = {}
    pairs = list(dict.fromkeys(columns))
    if not pairs:
        return out
    # as count_invalid_geometries_many: JIT compiling hundreds of aggregates costs seconds
    [(jit, _)] = session.execute(
        "SELECT current_setting('jit', true),"
        " CASE WHEN current_setting('jit', true) IS NOT NULL THEN set_config('jit', 'off', false) END",
        read=True,
    )
    for start in range(0, len(pairs), chunk):
        parts = []
        for i, (table, column) in enumerate(pairs[start:start + chunk]):
            g = sql.SQL("{}::geometry").format(sql.Identifier(*split_name(column)))
            parts.append(sql.SQL(
                "SELECT {i}, ST_XMin(x), ST_YMin(x), ST_XMax(x), ST_YMax(x) FROM ("
                "SELECT ST_Extent(CASE WHEN srid IN (0, 4326) THEN box"
                " ELSE ST_Transform(ST_Segmentize(ST_SetSRID(box, srid), greatest(ST_XMax(box) - ST_XMin(box),"
                " ST_YMax(box) - ST_YMin(box), 1e-9) / 32), 4326) END) AS x"
                " FROM (SELECT ST_SRID({g}) AS srid, ST_Extent({g})::geometry AS box FROM {t}"
                " WHERE {g} IS NOT NULL AND NOT ST_IsEmpty({g}) GROUP BY 1) e) s"
            ).format(i=sql.Literal(start + i), g=g, t=qualified(table)))
        if start + chunk >= len(pairs) and jit is not None:
            parts.append(sql.SQL(
                "SELECT -1, NULL::float8, NULL::float8, NULL::float8, NULL::float8"
                " FROM (SELECT set_config('jit', {}, false)) restore"
            ).format(sql.Literal(jit)))
        for i, xmin, ymin, xmax, ymax in session.execute(sql.SQL(" UNION ALL ").join(parts), read=True):
            if int(i) >= 0:
                out[pairs[int(i)]] = (None if xmin is None else
                                      (float(xmin), float(ymin), float(xmax), float(ymax)))
    return out


def live_extents(
    session_or_conn: Session | Connection, columns: Sequence[tuple[str, str, str, int, bool]], *, chunk: int = 250
) -> dict[tuple[str, str], Extent]:
    """The CRS84 extent of each ``(schema, table, column, srid, indexed)`` now, cheaply:
    what drift compares with the served extent, at every plan. Keys are
    ``("schema.table", column)``.

    One statement asks ``ST_EstimatedExtent`` of every column with a GiST index, the names
    as arrays of text (it takes them as text): it reads the root page of the index,
    which every insert widens, so the box is current without ``ANALYZE``. A column
    without one would be answered from the planner statistics, which ``ANALYZE`` builds
    from a sample trimmed of outliers (a row far from the others, the very drift this
    looks for, is left out of the box): those columns, the ones the index holds nothing
    of (empty) and the ones of an SRID the catalog leaves open (0) get an exact extent,
    in one ``UNION ALL`` as :func:`table_extents_many`. The box is transformed to CRS84
    as the publish does.
    """
    session = _session(session_or_conn)
    out: dict[tuple[str, str], Extent] = {}
    wanted = list(dict.fromkeys(columns))
    known = [(s, t, c, srid) for s, t, c, srid, indexed in wanted if indexed and srid > 0]
    exact = [(f"{s}.{t}", c) for s, t, c, srid, indexed in wanted if not (indexed and srid > 0)]
    if known:
        # the names go as five array parameters (one row each by unnest): composing
        # thousands of literals would cost more than the statement
        query = sql.SQL(
            "SELECT i, ST_XMin(x), ST_YMin(x), ST_XMax(x), ST_YMax(x) FROM ("
            "SELECT i, CASE WHEN box IS NULL OR srid = 4326 THEN box"
            " ELSE ST_Transform(ST_Segmentize(ST_SetSRID(box, srid), greatest(ST_XMax(box) - ST_XMin(box),"
            " ST_YMax(box) - ST_YMin(box), 1e-9) / 32), 4326) END AS x"
            " FROM (SELECT i, srid, ST_EstimatedExtent(s, t, c)::geometry AS box"
            " FROM unnest(%s::int[], %s::text[], %s::text[], %s::text[], %s::int[]) v(i, s, t, c, srid)) b) e"
        )
        params = (list(range(len(known))), [k[0] for k in known], [k[1] for k in known], [k[2] for k in known],
                  [k[3] for k in known])
        for i, xmin, ymin, xmax, ymax in session.execute(query, params, read=True):
            s, t, c, _ = known[int(i)]
            if xmin is None:
                exact.append((f"{s}.{t}", c))
            else:
                out[(f"{s}.{t}", c)] = (float(xmin), float(ymin), float(xmax), float(ymax))
    if exact:
        out.update(table_extents_many(session, exact, chunk=chunk))
    return out
