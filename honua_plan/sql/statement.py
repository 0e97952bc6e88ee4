"""One SQL statement as planning reads it: what it does (:class:`Op`), to what, under which lock."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from honua_plan.sql.locks import NO_LOCK, blocks_reads, blocks_writes


class Op(StrEnum):
    """What a statement does. Multi-action ``ALTER TABLE`` lists all in ``actions``."""

    create_table = "create_table"
    drop_table = "drop_table"
    truncate = "truncate"
    create_index = "create_index"
    drop_index = "drop_index"
    reindex = "reindex"
    add_column = "add_column"
    drop_column = "drop_column"
    alter_column_type = "alter_column_type"
    set_not_null = "set_not_null"
    drop_not_null = "drop_not_null"
    set_default = "set_default"  # SET DEFAULT and DROP DEFAULT
    add_constraint = "add_constraint"
    validate_constraint = "validate_constraint"
    drop_constraint = "drop_constraint"
    rename = "rename"  # table, column, constraint, index, view; SET SCHEMA
    analyze = "analyze"
    vacuum = "vacuum"
    vacuum_full = "vacuum_full"
    cluster = "cluster"
    refresh_matview = "refresh_matview"
    create_view = "create_view"  # views and materialized views
    drop_view = "drop_view"
    create_trigger = "create_trigger"
    select = "select"
    insert = "insert"  # INSERT, COPY … FROM
    update = "update"  # UPDATE, MERGE
    delete = "delete"
    create_extension = "create_extension"
    comment = "comment"
    grant = "grant"  # GRANT and REVOKE
    lock_table = "lock_table"
    set_config = "set_config"  # SET, RESET, SHOW, set_config()
    transaction = "transaction"  # BEGIN, COMMIT, ROLLBACK, SAVEPOINT…
    other = "other"




# only non-volatile defaults in the catalog). now()/current_timestamp are STABLE.
VOLATILE_FUNCTIONS = frozenset({
    "random", "random_normal", "setseed", "gen_random_uuid", "uuid_generate_v1",
    "uuid_generate_v1mc", "uuid_generate_v4", "uuidv4", "uuidv7", "clock_timestamp",
    "timeofday", "nextval", "txid_current",
})

# PostGIS management functions called through SELECT that change tables.
_GEOM_REWRITE_FUNCS = frozenset({"updategeometrysrid", "populate_geometry_columns"})
_GEOM_USING_FUNCS = frozenset({"st_transform", "st_setsrid"})


@dataclass(frozen=True)
class Statement:
    """One SQL statement as planning sees it. Names are catalog names (see module doc)."""

    sql: str
    op: Op
    table: str | None = None  # schema-qualified if written so; unquoted -> lower-case
    index: str | None = None
    column: str | None = None
    concurrently: bool = False
    if_exists: bool = False
    if_not_exists: bool = False
    not_valid: bool = False
    method: str | None = None  # index access method: gist, spgist, brin, btree…
    volatile_default: bool = False  # ADD COLUMN with a volatile default / serial / identity
    geometry_change: bool = False  # SRID or geometry type of a column changes
    lock: str = NO_LOCK  # strongest table-level lock the statement takes
    rewrites: bool = False  # the table (or matview) is rewritten (new filenode)
    transactional: bool = True  # False: cannot run inside a transaction block
    destructive: bool = False  # irreversible loss of data
    parsed: bool = True  # False: sqlglot gave no syntax tree; classified from tokens
    warning: str | None = None  # set when the statement is not (fully) understood
    explain: bool = False  # EXPLAIN …; op/table describe the explained statement
    executes: bool = True  # False only for EXPLAIN without ANALYZE
    scans: bool = False  # reads every row while holding ``lock`` (validation scan)
    using: bool = False  # ALTER COLUMN TYPE … USING expr
    or_replace: bool = False  # CREATE OR REPLACE
    new_type: str | None = None  # target type of ALTER COLUMN TYPE / ADD COLUMN
    object_name: str | None = None  # constraint, extension, setting or function name
    keyword: str = ""  # first keyword, upper-case (BEGIN, VACUUM, SELECT…)
    actions: tuple[Op, ...] = ()  # every action of a multi-action ALTER TABLE
    tables: tuple[str, ...] = ()  # every table touched (DROP TABLE a, b; FK target)
    effects: str | None = None  # calls whose effects planning cannot know (sql.readonly.hidden_effects)
    line: int = 1  # where the statement starts in the analysed text (1-based)
    col: int = 1

    @property
    def blocks_writes(self) -> bool:
        return blocks_writes(self.lock)

    @property
    def blocks_reads(self) -> bool:
        return blocks_reads(self.lock)


