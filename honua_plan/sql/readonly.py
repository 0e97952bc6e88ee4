"""Is a user-written query read-only? Decided from PostgreSQL's own parse tree (pglast).

Why: a configuration is untrusted until it is approved, yet ``honua plan`` runs its
preconditions, and apply its validations and health checks. A read-only transaction
alone does not make that safe: a second statement can end it (``…; COMMIT; DROP …``),
and some functions act outside it (``pg_terminate_backend``, ``lo_export``, ``dblink``,
``set_config``). So a query must be exactly one ``SELECT`` (``WITH`` and ``EXPLAIN`` of a
``SELECT`` included) without a data-modifying ``WITH``, a locking clause or ``INTO``, and
every function it calls must be on a vetted list of functions known to only compute or
read. The list is kept here, not read from the database, so ``honua validate`` can judge
a query offline. Anything unknown is refused, with what was found and why.

:func:`check_read_only` is the check; :func:`hidden_effects` serves the risk rules: in a
migration, a call of a function whose effects the planner cannot know (a user-defined one,
say), or a ``CREATE FUNCTION`` whose body writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any, NamedTuple

import pglast
from pglast import ast
from pglast.enums import A_Expr_Kind
from pglast.parser import ParseError

__all__ = [
    "MIGRATION_HELPERS",
    "READ_ONLY_FUNCTIONS",
    "REFUSED_FUNCTIONS",
    "ReadOnlyProblem",
    "check_read_only",
    "function_verdict",
    "hidden_effects",
]


class ReadOnlyProblem(NamedTuple):
    """Why a query is not accepted; ``line``/``col`` are 1-based within the query text."""

    line: int
    col: int
    message: str


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# PostGIS 3.3's st_* functions: each computes from its arguments (or reads statistics);
# none writes. ST_FromFlatGeobufToTable creates a table and is refused below.
_POSTGIS = _words("""
st_3dclosestpoint st_3ddfullywithin st_3ddistance st_3ddwithin st_3dextent st_3dintersects
st_3dlength st_3dlineinterpolatepoint st_3dlongestline st_3dmakebox st_3dmaxdistance
st_3dperimeter st_3dshortestline st_addmeasure st_addpoint st_affine st_angle st_area st_area2d
st_asbinary st_asencodedpolyline st_asewkb st_asewkt st_asflatgeobuf st_asgeobuf st_asgeojson
st_asgml st_ashexewkb st_askml st_aslatlontext st_asmarc21 st_asmvt st_asmvtgeom st_assvg
st_astext st_astwkb st_asx3d st_azimuth st_bdmpolyfromtext st_bdpolyfromtext st_boundary
st_boundingdiagonal st_box2dfromgeohash st_buffer st_buildarea st_centroid st_chaikinsmoothing
st_cleangeometry st_clipbybox2d st_closestpoint st_closestpointofapproach st_clusterdbscan
st_clusterintersecting st_clusterkmeans st_clusterwithin st_collect st_collectionextract
st_collectionhomogenize st_combinebbox st_concavehull st_contains st_containsproperly
st_convexhull st_coorddim st_coveredby st_covers st_cpawithin st_crosses st_curvetoline
st_delaunaytriangles st_dfullywithin st_difference st_dimension st_disjoint st_distance
st_distancecpa st_distancesphere st_distancespheroid st_dump st_dumppoints st_dumprings
st_dumpsegments st_dwithin st_endpoint st_envelope st_equals st_estimatedextent st_expand
st_extent st_exteriorring st_filterbym st_findextent st_flipcoordinates st_force2d st_force3d
st_force3dm st_force3dz st_force4d st_forcecollection st_forcecurve st_forcepolygonccw
st_forcepolygoncw st_forcerhr st_forcesfs st_frechetdistance st_fromflatgeobuf
st_generatepoints st_geogfromtext st_geogfromwkb st_geographyfromtext st_geohash
st_geomcollfromtext st_geomcollfromwkb st_geometricmedian st_geometryfromtext st_geometryn
st_geometrytype st_geomfromewkb st_geomfromewkt st_geomfromgeohash st_geomfromgeojson
st_geomfromgml st_geomfromkml st_geomfrommarc21 st_geomfromtext st_geomfromtwkb st_geomfromwkb
st_gmltosql st_hasarc st_hausdorffdistance st_hexagon st_hexagongrid st_interiorringn
st_interpolatepoint st_intersection st_intersects st_isclosed st_iscollection st_isempty
st_ispolygonccw st_ispolygoncw st_isring st_issimple st_isvalid st_isvaliddetail
st_isvalidreason st_isvalidtrajectory st_length st_length2d st_length2dspheroid
st_lengthspheroid st_letters st_linecrossingdirection st_linefromencodedpolyline
st_linefrommultipoint st_linefromtext st_linefromwkb st_lineinterpolatepoint
st_lineinterpolatepoints st_linelocatepoint st_linemerge st_linestringfromwkb st_linesubstring
st_linetocurve st_locatealong st_locatebetween st_locatebetweenelevations st_longestline st_m
st_makebox2d st_makeenvelope st_makeline st_makepoint st_makepointm st_makepolygon st_makevalid
st_maxdistance st_maximuminscribedcircle st_memcollect st_memsize st_memunion
st_minimumboundingcircle st_minimumboundingradius st_minimumclearance st_minimumclearanceline
st_mlinefromtext st_mlinefromwkb st_mpointfromtext st_mpointfromwkb st_mpolyfromtext
st_mpolyfromwkb st_multi st_multilinefromwkb st_multilinestringfromtext st_multipointfromtext
st_multipointfromwkb st_multipolyfromwkb st_multipolygonfromtext st_ndims st_node st_normalize
st_npoints st_nrings st_numgeometries st_numinteriorring st_numinteriorrings st_numpatches
st_numpoints st_offsetcurve st_orderingequals st_orientedenvelope st_overlaps st_patchn
st_perimeter st_perimeter2d st_point st_pointfromgeohash st_pointfromtext st_pointfromwkb
st_pointinsidecircle st_pointm st_pointn st_pointonsurface st_points st_pointz st_pointzm
st_polyfromtext st_polyfromwkb st_polygon st_polygonfromtext st_polygonfromwkb st_polygonize
st_project st_quantizecoordinates st_reduceprecision st_relate st_relatematch st_removepoint
st_removerepeatedpoints st_reverse st_rotate st_rotatex st_rotatey st_rotatez st_scale
st_scroll st_segmentize st_seteffectivearea st_setpoint st_setsrid st_sharedpaths
st_shiftlongitude st_shortestline st_simplify st_simplifypolygonhull
st_simplifypreservetopology st_simplifyvw st_snap st_snaptogrid st_split st_square
st_squaregrid st_srid st_startpoint st_subdivide st_summary st_swapordinates st_symdifference
st_symmetricdifference st_tileenvelope st_touches st_transform st_translate st_transscale
st_triangulatepolygon st_unaryunion st_union st_voronoilines st_voronoipolygons st_within
st_wkbtosql st_wkttosql st_wrapx st_x st_xmax st_xmin st_y st_ymax st_ymin st_z st_zmax
st_zmflag st_zmin
geometrytype find_srid box2d box3d geometry geography postgis_full_version postgis_version
postgis_lib_version postgis_geos_version postgis_proj_version postgis_scripts_installed
postgis_scripts_released postgis_libxml_version postgis_typmod_srid postgis_typmod_type
postgis_typmod_dims postgis_constraint_srid postgis_constraint_type postgis_constraint_dims
""")

# PostgreSQL built-ins that compute or read (aggregates, window functions, math, text,
# date/time, JSON, arrays, catalog information); the SQL-standard spellings the parser turns
# into pg_catalog calls (EXTRACT, AT TIME ZONE, SUBSTRING … FROM, POSITION, TRIM …) too.
# pg_sleep only waits, and every read runs under a statement timeout.
_BUILTIN = _words("""
count sum min max avg bool_and bool_or every array_agg string_agg json_agg jsonb_agg
json_object_agg jsonb_object_agg stddev stddev_pop stddev_samp variance var_pop var_samp corr
covar_pop covar_samp regr_count regr_slope regr_intercept regr_r2 percentile_cont
percentile_disc mode bit_and bit_or bit_xor xmlagg any_value range_agg
row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value
abs ceil ceiling floor round trunc sign sqrt cbrt power pow exp ln log log10 mod div pi degrees
radians sin cos tan cot asin acos atan atan2 sind cosd tand asind acosd atand atan2d sinh cosh
tanh width_bucket gcd lcm factorial scale min_scale trim_scale random
length char_length character_length octet_length bit_length lower upper initcap btrim ltrim
rtrim lpad rpad substr substring position strpos replace translate concat concat_ws format left
right repeat reverse split_part string_to_array string_to_table array_to_string
regexp_replace regexp_match regexp_matches regexp_split_to_array regexp_split_to_table
regexp_count regexp_instr regexp_like regexp_substr starts_with md5 sha224 sha256 sha384 sha512
encode decode to_hex ascii chr quote_ident quote_literal quote_nullable to_char to_number
to_date to_timestamp overlay convert_from convert_to normalize is_normalized unistr
similar_to_escape similar_escape pg_collation_for textlen text varchar bpchar
now statement_timestamp transaction_timestamp clock_timestamp timeofday date_trunc date_part
extract age make_date make_time make_timestamp make_timestamptz make_interval justify_days
justify_hours justify_interval isfinite date_bin timezone overlaps generate_series
generate_subscripts
json_build_object jsonb_build_object json_build_array jsonb_build_array to_json to_jsonb
row_to_json array_to_json json_array_length jsonb_array_length json_extract_path
jsonb_extract_path json_extract_path_text jsonb_extract_path_text json_typeof jsonb_typeof
jsonb_pretty json_each jsonb_each json_each_text jsonb_each_text json_array_elements
jsonb_array_elements json_array_elements_text jsonb_array_elements_text json_object_keys
jsonb_object_keys jsonb_set jsonb_insert jsonb_strip_nulls json_strip_nulls jsonb_path_query
jsonb_path_exists jsonb_path_match jsonb_path_query_array jsonb_path_query_first json_object
jsonb_object json_populate_record jsonb_populate_record json_to_record jsonb_to_record
array_length array_lower array_upper array_dims array_ndims cardinality unnest array_position
array_positions array_remove array_replace array_append array_prepend array_cat array_fill
num_nulls num_nonnulls gen_random_uuid
to_tsvector to_tsquery plainto_tsquery phraseto_tsquery websearch_to_tsquery ts_rank
ts_rank_cd ts_headline setweight strip numnode querytree
to_regclass to_regtype to_regproc to_regprocedure to_regnamespace to_regrole format_type
pg_typeof pg_relation_size pg_total_relation_size pg_table_size pg_indexes_size
pg_size_pretty pg_size_bytes pg_column_size pg_database_size pg_relation_filenode
obj_description col_description shobj_description pg_get_indexdef pg_get_constraintdef
pg_get_viewdef pg_get_expr pg_get_triggerdef pg_get_functiondef pg_get_function_arguments
pg_get_function_result pg_get_serial_sequence pg_get_userbyid pg_table_is_visible
pg_type_is_visible pg_function_is_visible pg_index_column_has_property pg_indexam_has_property
pg_index_has_property has_table_privilege has_column_privilege has_schema_privilege
has_database_privilege has_any_column_privilege has_function_privilege has_sequence_privilege
pg_has_role current_schema current_schemas current_database current_setting version
pg_postmaster_start_time pg_conf_load_time pg_backend_pid pg_is_in_recovery
pg_last_xact_replay_timestamp pg_encoding_to_char pg_char_to_encoding
xpath xpath_exists xml_is_well_formed xmlcomment xmltext
inet_client_addr host masklen network broadcast
pg_sleep pg_sleep_for pg_sleep_until
""")

READ_ONLY_FUNCTIONS: frozenset[str] = _POSTGIS | _BUILTIN
"""Functions (lower-case, unqualified or in pg_catalog/public) a read-only query may call."""

_SERVER = "acts on the server, outside the query's read-only transaction"
_FILES = "reads or writes the server's files"
_HIDDEN_SQL = "runs SQL text that this check cannot see"
_LOCK = "takes an advisory lock that other sessions wait on"
_POSTGIS_DDL = "changes tables (a PostGIS management function)"

REFUSED_FUNCTIONS: dict[str, str] = {
    "pg_terminate_backend": "stops another session",
    "pg_cancel_backend": "cancels another session's query",
    "set_config": "changes a setting (it can end the read-only mode)",
    "pg_reload_conf": _SERVER, "pg_rotate_logfile": _SERVER, "pg_promote": _SERVER,
    "pg_switch_wal": _SERVER, "pg_create_restore_point": _SERVER, "pg_notify": _SERVER,
    "pg_log_backend_memory_contexts": _SERVER, "pg_logical_emit_message": _SERVER,
    "lo_import": _FILES, "lo_export": _FILES, "pg_read_file": _FILES,
    "pg_read_binary_file": _FILES, "pg_ls_dir": _FILES, "pg_stat_file": _FILES,
    "pg_ls_logdir": _FILES, "pg_ls_waldir": _FILES, "pg_ls_tmpdir": _FILES,
    "pg_ls_archive_statusdir": _FILES, "pg_current_logfile": _FILES,
    "lo_unlink": "deletes a large object", "lo_create": "creates a large object",
    "lo_creat": "creates a large object", "lo_from_bytea": "creates a large object",
    "lo_put": "writes a large object", "lowrite": "writes a large object",
    "nextval": "advances a sequence (a rollback does not undo it)",
    "setval": "sets a sequence (a rollback does not undo it)",
    "txid_current": "assigns a transaction id", "pg_current_xact_id": "assigns a transaction id",
    "query_to_xml": _HIDDEN_SQL, "query_to_xml_and_xmlschema": _HIDDEN_SQL,
    "query_to_xmlschema": _HIDDEN_SQL, "cursor_to_xml": _HIDDEN_SQL, "table_to_xml": _HIDDEN_SQL,
    "schema_to_xml": _HIDDEN_SQL, "database_to_xml": _HIDDEN_SQL, "ts_stat": _HIDDEN_SQL,
    "addgeometrycolumn": _POSTGIS_DDL, "dropgeometrycolumn": _POSTGIS_DDL,
    "dropgeometrytable": _POSTGIS_DDL, "updategeometrysrid": _POSTGIS_DDL,
    "populate_geometry_columns": _POSTGIS_DDL, "postgis_extensions_upgrade": _POSTGIS_DDL,
    "st_fromflatgeobuftotable": "creates a table",
}
"""Functions refused by name, with the reason the message gives."""

_REFUSED_PREFIXES: tuple[tuple[str, str], ...] = (
    ("dblink", "runs SQL on another connection, outside the read-only transaction"),
    ("pg_advisory", _LOCK), ("pg_try_advisory", _LOCK),
    ("lo_", "works on large objects (server files and stored objects)"),
    ("pg_stat_reset", "resets the server's statistics"),
    ("pg_file_", _FILES), ("pg_ls_", _FILES), ("pg_read_", _FILES),
    ("pg_create_", "creates a replication slot or restore point"),
    ("pg_drop_replication", "drops a replication slot"),
    ("pg_replication_origin", "changes replication state"),
)

MIGRATION_HELPERS: frozenset[str] = frozenset({
    "addgeometrycolumn", "dropgeometrycolumn", "dropgeometrytable", "updategeometrysrid",
    "populate_geometry_columns", "postgis_extensions_upgrade", "set_config", "nextval", "setval",
    "pg_advisory_xact_lock", "pg_advisory_lock", "pg_advisory_unlock", "pg_try_advisory_lock",
    "pg_try_advisory_xact_lock", "currval", "lastval",
})
"""Functions a migration may call whose effects other rules already rate (geometry columns,
settings, sequences, locks): not "effects unknown"."""

_SAFE_SCHEMAS = frozenset({"pg_catalog", "public"})

_OPERATORS = _words("""
= <> != < > <= >= + - * / % ^ || ~~ !~~ ~~* !~~* ~ ~* !~ !~* && @> <@ &< &> << >> ~= <-> <#>
<<->> |>> <<| &<| |&> -> ->> #> #>> ? ?| ?& @@ @@@ # @ |/ ||/ <<= >>= -|- & | @? #- !! <^ >^
?# ?- ?| ?-| ?||
""")

_TABLESAMPLE = frozenset({"system", "bernoulli", "system_rows", "system_time"})

_REFUSED_RELATIONS: dict[str, str] = {
    name: "holds credentials or server configuration"
    for name in ("pg_authid", "pg_shadow", "pg_user_mapping", "pg_user_mappings",
                 "pg_hba_file_rules", "pg_ident_file_mappings", "pg_file_settings")
}

_DATA_MODIFYING = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)


def function_verdict(parts: tuple[str, ...]) -> str | None:
    """None when the function named by ``parts`` (schema, name) is known to be read-only,
    else the reason it is refused."""
    name = parts[-1]
    schema = parts[-2] if len(parts) > 1 else None
    qualified = ".".join(parts)
    if name in REFUSED_FUNCTIONS:
        return f"function {qualified} {REFUSED_FUNCTIONS[name]}"
    for prefix, reason in _REFUSED_PREFIXES:
        if name.startswith(prefix):
            return f"function {qualified} {reason}"
    if schema is not None and schema not in _SAFE_SCHEMAS:
        return (f"function {qualified} is in schema {schema}: only pg_catalog and public "
                "functions are known to be read-only")
    if name not in READ_ONLY_FUNCTIONS:
        return f"function {qualified} is not known to be read-only"
    return None


def _line_col(text: str, location: int | None) -> tuple[int, int]:
    """1-based line and column of a parser location (a byte offset into the UTF-8 text)."""
    if location is None or location < 0:
        return 1, 1
    before = text.encode("utf-8")[:location].decode("utf-8", errors="ignore")
    line = before.count("\n") + 1
    return line, len(before) - (before.rfind("\n") + 1) + 1


def _names(items: Any) -> tuple[str, ...]:
    return tuple(getattr(i, "sval", "") or "" for i in items or ())


def _walk(node: Any) -> Iterator[Any]:
    """Every node below ``node`` (itself included), depth first."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, tuple | list):
            stack.extend(reversed(current))
            continue
        if not isinstance(current, ast.Node):
            continue
        yield current
        for slot in reversed(tuple(getattr(type(current), "__slots__", ()))):
            value = getattr(current, slot, None)
            if isinstance(value, ast.Node | tuple | list):
                stack.append(value)


def _node_problem(node: Any, explain_only: bool) -> tuple[int | None, str] | None:
    """(location, message) when ``node`` makes the query not read-only."""
    location = getattr(node, "location", None)
    if isinstance(node, ast.FuncCall):
        verdict = function_verdict(_names(node.funcname))
        return (location, verdict) if verdict else None
    if isinstance(node, ast.A_Expr) and node.kind in (
            A_Expr_Kind.AEXPR_OP, A_Expr_Kind.AEXPR_OP_ANY, A_Expr_Kind.AEXPR_OP_ALL):
        parts = _names(node.name)
        if (len(parts) > 1 and parts[0] != "pg_catalog") or parts[-1] not in _OPERATORS:
            return location, (f"operator {'.'.join(parts)} is not a built-in operator: "
                              "it may call any function")
        return None
    if isinstance(node, ast.CommonTableExpr) and isinstance(node.ctequery, _DATA_MODIFYING):
        kind = type(node.ctequery).__name__.removesuffix("Stmt").upper()
        return location, f"WITH {node.ctename} AS ({kind} …) modifies data"
    if explain_only:
        return None
    if isinstance(node, ast.SelectStmt):
        if node.intoClause is not None:
            return getattr(node.intoClause.rel, "location", None), "SELECT INTO creates a table"
        if node.lockingClause:
            return None, "FOR UPDATE/SHARE locks the rows it reads: a check only reads"
    if isinstance(node, ast.RangeTableSample):
        method = _names(node.method)
        if method[-1:] and method[-1] not in _TABLESAMPLE:
            return location, f"TABLESAMPLE method {'.'.join(method)} is not a built-in one"
    if isinstance(node, ast.RangeVar) and node.relname in _REFUSED_RELATIONS \
            and node.schemaname in (None, "pg_catalog"):
        return location, f"reading {node.relname} is refused: it {_REFUSED_RELATIONS[node.relname]}"
    return None


def _statement_kind(stmt: Any) -> str:
    name = type(stmt).__name__.removesuffix("Stmt")
    return {"Insert": "INSERT", "Update": "UPDATE", "Delete": "DELETE", "Merge": "MERGE",
            "Copy": "COPY", "Do": "DO", "Call": "CALL", "VariableSet": "SET",
            "Transaction": "a transaction command", "Select": "SELECT"}.get(name, name)


@lru_cache(maxsize=1024)
def check_read_only(text: str, *, explain_only: bool = False) -> tuple[ReadOnlyProblem, ...]:
    """Why ``text`` is not a single read-only query (empty when it is).

    ``explain_only``: the engine's own plan probe, ``EXPLAIN`` without ``ANALYZE`` of one
    statement (which plans and executes nothing); functions are still checked, because the
    planner evaluates immutable and stable calls on constants while it plans."""
    try:
        stmts = pglast.parse_sql(text)
    except ParseError as exc:
        cursor = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else 0
        line, col = _line_col(text, cursor - 1 if cursor > 0 else None)  # cursor is 1-based
        return (ReadOnlyProblem(line, col, f"not valid PostgreSQL: {exc.args[0]}"),)
    except RecursionError:
        return (ReadOnlyProblem(1, 1, "the query is too deeply nested to check"),)
    if not stmts:
        return (ReadOnlyProblem(1, 1, "the query is empty"),)
    if len(stmts) > 1:
        line, col = _line_col(text, stmts[1].stmt_location)
        return (ReadOnlyProblem(line, col, (
            f"the query holds {len(stmts)} statements: a check or precondition is one SELECT "
            "(a second statement could end the read-only transaction)")),)
    stmt = stmts[0].stmt
    where = _line_col(text, stmts[0].stmt_location)
    body = stmt
    if isinstance(stmt, ast.ExplainStmt):
        body = stmt.query
        analyze = any(o.defname in ("analyze", "analyse") and _on(o.arg) for o in stmt.options or ())
        if explain_only and analyze:
            return (ReadOnlyProblem(*where, "EXPLAIN ANALYZE executes the statement"),)
    elif explain_only:
        return (ReadOnlyProblem(*where, f"{_statement_kind(stmt)} is not an EXPLAIN"),)
    allowed: tuple[type, ...] = (ast.SelectStmt, *_DATA_MODIFYING) if explain_only else (ast.SelectStmt,)
    if not isinstance(body, allowed):
        return (ReadOnlyProblem(*where, (
            f"{_statement_kind(body)} is not a read-only query: a check or precondition is "
            "one SELECT")),)
    problems: list[ReadOnlyProblem] = []
    for node in _walk(body):
        found = _node_problem(node, explain_only)
        if found is not None:
            location, message = found
            line, col = _line_col(text, location) if location is not None else where
            problems.append(ReadOnlyProblem(line, col, message))
    return tuple(sorted(set(problems)))


def _on(arg: Any) -> bool:
    """An EXPLAIN option's value: absent means on."""
    if arg is None:
        return True
    value = getattr(arg, "sval", None) or getattr(arg, "boolval", None)
    if isinstance(value, str):
        return value.lower() in ("true", "on", "1", "yes")
    if value is not None:
        return bool(getattr(value, "boolval", value))
    return bool(getattr(arg, "ival", 1))


# ----------------------------------------------------------- migrations' hidden effects

_WRITE_KEYWORDS = frozenset({
    "INSERT", "UPDATE", "DELETE_P", "MERGE", "TRUNCATE", "DROP", "ALTER", "CREATE", "EXECUTE",
    "COPY", "GRANT", "REVOKE", "PERFORM",
})


def _body_writes(stmt: ast.CreateFunctionStmt) -> str | None:
    """What a function's body does that changes data (a phrase: "whose body runs DELETE"), or
    None when it only reads or computes."""
    options = {o.defname: o.arg for o in stmt.options or ()}
    language = getattr(options.get("language"), "sval", "sql")
    source = options.get("as")
    body = _names(source)[0] if isinstance(source, tuple | list) and source else None
    if stmt.sql_body is not None:
        inner = [s for group in stmt.sql_body for s in (group if isinstance(group, tuple | list) else (group,))]
    elif language == "sql" and body is not None:
        try:
            inner = [raw.stmt for raw in pglast.parse_sql(body)]
        except ParseError:
            return "whose body cannot be parsed"
    elif language == "plpgsql" and body is not None:
        try:
            tokens = pglast.parser.scan(body)
        except ParseError:
            return "whose body cannot be read"
        found = sorted({t.name.removesuffix("_P") for t in tokens if t.name in _WRITE_KEYWORDS})
        return f"whose body has {', '.join(found)}" if found else None
    else:
        return f"written in {language}"
    for s in inner:
        if not isinstance(s, ast.SelectStmt):
            return f"whose body runs {_statement_kind(s)}"
        for node in _walk(s):
            if isinstance(node, ast.CommonTableExpr) and isinstance(node.ctequery, _DATA_MODIFYING):
                return f"whose body modifies data in WITH {node.ctename}"
            if isinstance(node, ast.FuncCall):
                parts = _names(node.funcname)
                if function_verdict(parts) is not None:
                    return f"whose body calls {'.'.join(parts)}()"
    return None


@lru_cache(maxsize=2048)
def hidden_effects(statement: str) -> str | None:
    """What a migration statement does that the planner cannot rate, or None.

    A call of a function that is neither known to be read-only nor a helper other rules rate
    (``SELECT f()``, ``UPDATE t SET a = f(a)``, ``CALL p()``), a ``DO`` block, and a
    ``CREATE FUNCTION`` whose body writes."""
    try:
        stmts = pglast.parse_sql(statement)
    except (ParseError, RecursionError):
        return None  # the syntax rules report it
    calls: list[str] = []
    for raw in stmts:
        stmt = raw.stmt
        if isinstance(stmt, ast.CreateFunctionStmt):
            writes = _body_writes(stmt)
            if writes is not None:
                kind = "procedure" if stmt.is_procedure else "function"
                return f"creates {kind} {'.'.join(_names(stmt.funcname))}, {writes}"
            continue
        if isinstance(stmt, ast.DoStmt):  # an anonymous block: code, like a function's body
            return "runs an anonymous code block (DO)"
        if isinstance(stmt, ast.CallStmt):
            if stmt.funccall is not None:
                calls.append(".".join(_names(stmt.funccall.funcname)))
            continue
        if isinstance(stmt, ast.ExplainStmt):
            if not any(o.defname in ("analyze", "analyse") and _on(o.arg) for o in stmt.options or ()):
                continue
            stmt = stmt.query
        if not isinstance(stmt, (ast.SelectStmt, *_DATA_MODIFYING)):
            continue
        for node in _walk(stmt):
            if isinstance(node, ast.FuncCall):
                parts = _names(node.funcname)
                if parts[-1] not in MIGRATION_HELPERS and function_verdict(parts) is not None:
                    calls.append(".".join(parts))
    if not calls:
        return None
    named = ", ".join(f"{c}()" for c in dict.fromkeys(calls))
    return f"calls {named}"
