"""Pure analysis of PostgreSQL statements: what each one does and which lock it takes.

Planning needs to know, per statement, the kind of change, the table it touches, the
lock mode it holds, whether it rewrites the table, whether it may run in a transaction
and whether it destroys data. This module answers that from the text alone (no
database, no I/O) so that risk rules and the executor agree on one reading of the SQL.

How a statement is read:

1. The text is split into statements with sqlglot's tokenizer (so ``;`` inside
   strings, comments and ``$$`` bodies does not split).
2. Each statement is parsed with sqlglot's ``postgres`` dialect and classified from
   the syntax tree.
3. sqlglot 30 does not understand every PostgreSQL statement: some come back as an
   opaque ``exp.Command`` (VACUUM, EXPLAIN, REINDEX, REFRESH, ``ALTER TABLE …
   VALIDATE CONSTRAINT``, ``CREATE EXTENSION``…), some as a bare expression
   (``CLUSTER t`` reads as a column alias) and some raise (``CLUSTER t USING i``,
   ``DROP INDEX a, b``). Those are classified from the token sequence by a small
   strict grammar per statement kind, never by a regex over the text.
4. Anything still unknown becomes ``Op.other`` with a warning; :func:`analyze` never
   raises.

Lock modes follow ``reference/postgres-locks.md`` (measured on PostgreSQL 15).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import lru_cache
from typing import ClassVar

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError
from sqlglot.tokens import Token, TokenType

__all__ = [
    "ACCESS_EXCLUSIVE",
    "ACCESS_SHARE",
    "EXCLUSIVE",
    "LOCK_RANK",
    "NO_LOCK",
    "ROW_EXCLUSIVE",
    "ROW_SHARE",
    "SHARE",
    "SHARE_ROW_EXCLUSIVE",
    "SHARE_UPDATE_EXCLUSIVE",
    "UNKNOWN_LOCK",
    "VOLATILE_FUNCTIONS",
    "Op",
    "Statement",
    "analyze",
    "blocks_reads",
    "blocks_writes",
    "diagnose",
    "geometry_typmod",
    "parse_errors",
    "parse_warnings",
]


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


# Table-level lock modes, weakest first (PostgreSQL "Explicit Locking").
NO_LOCK = "NONE"
ACCESS_SHARE = "ACCESS SHARE"
ROW_SHARE = "ROW SHARE"
ROW_EXCLUSIVE = "ROW EXCLUSIVE"
SHARE_UPDATE_EXCLUSIVE = "SHARE UPDATE EXCLUSIVE"
SHARE = "SHARE"
SHARE_ROW_EXCLUSIVE = "SHARE ROW EXCLUSIVE"
EXCLUSIVE = "EXCLUSIVE"
ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"
UNKNOWN_LOCK = "UNKNOWN"  # opaque code (DO blocks…): assume the worst

LOCK_RANK: dict[str, int] = {
    NO_LOCK: 0,
    ACCESS_SHARE: 1,
    ROW_SHARE: 2,
    ROW_EXCLUSIVE: 3,
    SHARE_UPDATE_EXCLUSIVE: 4,
    SHARE: 5,
    SHARE_ROW_EXCLUSIVE: 6,
    EXCLUSIVE: 7,
    ACCESS_EXCLUSIVE: 8,
    UNKNOWN_LOCK: 8,
}


def blocks_writes(lock: str) -> bool:
    """True when the mode conflicts with ROW EXCLUSIVE (INSERT/UPDATE/DELETE wait)."""
    return LOCK_RANK.get(lock, 8) >= LOCK_RANK[SHARE]


def blocks_reads(lock: str) -> bool:
    """True when the mode conflicts with ACCESS SHARE (plain SELECTs wait)."""
    return lock in (ACCESS_EXCLUSIVE, UNKNOWN_LOCK)


# Volatile functions: as a column DEFAULT they force a table rewrite (PG >= 11 keeps
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
    line: int = 1  # where the statement starts in the analysed text (1-based)
    col: int = 1

    @property
    def blocks_writes(self) -> bool:
        return blocks_writes(self.lock)

    @property
    def blocks_reads(self) -> bool:
        return blocks_reads(self.lock)


# --------------------------------------------------------------------------- tokens

_DIALECT = Dialect.get_or_raise("postgres")
_BaseTokenizer = _DIALECT.tokenizer_class


class _PlainTokenizer(_BaseTokenizer):  # type: ignore[misc,valid-type]
    """The postgres tokenizer without "command" mode, so VACUUM/EXPLAIN/REINDEX/DO
    bodies come out as tokens instead of one opaque string."""

    COMMANDS: ClassVar[set[TokenType]] = set()
    KEYWORDS: ClassVar[dict[str, TokenType]] = {k: v for k, v in _BaseTokenizer.KEYWORDS.items() if v != TokenType.COMMAND}


_PUNCT = frozenset({
    TokenType.L_PAREN, TokenType.R_PAREN, TokenType.COMMA, TokenType.DOT,
    TokenType.SEMICOLON, TokenType.STRING, TokenType.NUMBER, TokenType.HEREDOC_STRING,
    TokenType.IDENTIFIER, TokenType.PARAMETER, TokenType.STAR, TokenType.EQ,
})

_SQLGLOT_LOGGER = logging.getLogger("sqlglot")


class _DropFallbackNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Falling back to parsing as a 'Command'" not in record.getMessage()


_FILTER = _DropFallbackNotice()


@contextmanager
def _quiet() -> Iterator[None]:
    """sqlglot logs a warning for every Command fallback; we report those ourselves."""
    _SQLGLOT_LOGGER.addFilter(_FILTER)
    try:
        yield
    finally:
        _SQLGLOT_LOGGER.removeFilter(_FILTER)


def _tokenize(text: str, plain: bool = False) -> tuple[list[Token], int | None]:
    """Tokens of ``text`` and the offset where tokenizing failed (None when it did not)."""
    tokenizer = _PlainTokenizer(dialect=_DIALECT) if plain else _BaseTokenizer(dialect=_DIALECT)
    try:
        return list(tokenizer.tokenize(text)), None
    except Exception:  # sqlglot raises TokenError (and, on odd input, others)
        try:
            done = list(tokenizer.tokens)
        except Exception:
            done = []
        pos = done[-1].end + 1 if done else 0
        while pos < len(text) and text[pos].isspace():
            pos += 1
        return done, min(pos, len(text))


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _is_word(tok: Token) -> bool:
    return tok.token_type not in _PUNCT and tok.text.replace("_", "").replace("$", "").isalnum()


def _norm(tok: Token) -> str:
    """Catalog name of an identifier token: quoted as written, unquoted folded."""
    return tok.text if tok.token_type == TokenType.IDENTIFIER else tok.text.lower()


# --------------------------------------------------------------------- AST helpers


def _ident(node: exp.Expr | None) -> str | None:
    if isinstance(node, exp.Identifier):
        return str(node.this) if node.quoted else str(node.this).lower()
    if isinstance(node, exp.Column):
        return _ident(node.this) if isinstance(node.this, exp.Identifier) else None
    if isinstance(node, exp.Table):
        return _table_name(node)
    return None


def _table_name(node: exp.Expr | None) -> str | None:
    if isinstance(node, exp.Schema):
        node = node.this
    if not isinstance(node, exp.Table):
        return None
    if isinstance(node.this, exp.Identifier):
        name = _ident(node.this)
    elif isinstance(node.this, exp.Anonymous):  # ``ANALYZE t (a, b)`` reads as a call t(a, b)
        name = str(node.this.this).lower()
    else:
        return None
    parts = [_ident(node.args.get(k)) for k in ("catalog", "db")] + [name]
    return ".".join(p for p in parts if p)


def _func_name(node: exp.Expr) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.this).lower()
    if isinstance(node, exp.Rand):
        return "random"
    if isinstance(node, exp.Uuid):
        return "gen_random_uuid"
    if isinstance(node, exp.Func):
        return node.sql_name().lower()
    return ""


def _node(value: object) -> exp.Expr | None:
    """sqlglot stores absent args as None or False; only real nodes count."""
    return value if isinstance(value, exp.Expr) else None


def _has_volatile(node: object) -> bool:
    if not isinstance(node, exp.Expr):
        return False
    return any(_func_name(n) in VOLATILE_FUNCTIONS for n in node.walk() if isinstance(n, exp.Func))


def _calls(node: object, names: frozenset[str]) -> bool:
    if not isinstance(node, exp.Expr):
        return False
    return any(_func_name(n) in names for n in node.walk() if isinstance(n, exp.Func))


def _is_spatial_type(dtype: exp.Expression | None) -> bool:
    return isinstance(dtype, exp.DataType) and dtype.this in (
        exp.DataType.Type.GEOMETRY, exp.DataType.Type.GEOGRAPHY)


def geometry_typmod(type_sql: str) -> tuple[str, int | None] | None:
    """``geometry(Polygon,3857)`` -> ``("POLYGON", 3857)``; bare ``geometry`` ->
    ``("GEOMETRY", None)``; not a geometry/geography type -> None."""
    try:
        with _quiet():
            dtype = exp.DataType.build(type_sql, dialect="postgres")
    except Exception:
        return None
    if not _is_spatial_type(dtype):
        return None
    params = [p.this for p in dtype.expressions if isinstance(p, exp.DataTypeParam)]
    gtype = str(params[0].this).upper() if params and isinstance(params[0], exp.Var) else "GEOMETRY"
    srid: int | None = None
    if len(params) > 1 and isinstance(params[1], exp.Literal) and not params[1].is_string:
        try:
            srid = int(params[1].this)
        except ValueError:
            srid = None
    return gtype, srid


# ------------------------------------------------------------------------ drafting


@dataclass
class _Draft:
    """Mutable builder for one statement (or one ALTER TABLE action)."""

    op: Op
    table: str | None = None
    index: str | None = None
    column: str | None = None
    concurrently: bool = False
    if_exists: bool = False
    if_not_exists: bool = False
    not_valid: bool = False
    method: str | None = None
    volatile_default: bool = False
    geometry_change: bool = False
    lock: str = NO_LOCK
    rewrites: bool = False
    transactional: bool = True
    destructive: bool = False
    warning: str | None = None
    scans: bool = False
    using: bool = False
    or_replace: bool = False
    new_type: str | None = None
    object_name: str | None = None
    actions: tuple[Op, ...] = ()
    tables: list[str] = field(default_factory=list)


_ACTION_PRIORITY = [
    Op.drop_column, Op.alter_column_type, Op.add_column, Op.set_not_null,
    Op.add_constraint, Op.drop_constraint, Op.rename, Op.set_default, Op.drop_not_null,
    Op.validate_constraint, Op.other,
]


def _combine(table: str | None, parts: Sequence[_Draft]) -> _Draft:
    """Fold the actions of one ALTER TABLE into one draft: the most severe action gives
    op/column; locks take the strongest; flags are OR-ed."""
    if not parts:
        return _Draft(Op.other, table=table, lock=ACCESS_EXCLUSIVE, tables=[table] if table else [])

    def severity(d: _Draft) -> tuple[bool, bool, bool, int]:
        rank = _ACTION_PRIORITY.index(d.op) if d.op in _ACTION_PRIORITY else len(_ACTION_PRIORITY)
        return (d.destructive, d.rewrites, d.scans, -rank)

    main = max(parts, key=severity)
    out = replace(main, table=table, tables=[table] if table else [])
    out.actions = tuple(p.op for p in parts)
    out.lock = max((p.lock for p in parts), key=lambda m: LOCK_RANK.get(m, 8))
    for flag in ("volatile_default", "geometry_change", "rewrites", "destructive", "scans", "not_valid"):
        setattr(out, flag, any(getattr(p, flag) for p in parts))
    out.transactional = all(p.transactional for p in parts)
    out.new_type = main.new_type or next((p.new_type for p in parts if p.new_type), None)
    out.warning = next((p.warning for p in parts if p.warning), None)
    for p in parts:
        out.tables.extend(t for t in p.tables if t not in out.tables)
    return out


def _alter_action(action: exp.Expression, alter: exp.Alter, tokens: Sequence[Token]) -> _Draft:
    """One action of a parsed ALTER TABLE."""
    if isinstance(action, exp.ColumnDef):
        d = _Draft(Op.add_column, column=_ident(action.this), lock=ACCESS_EXCLUSIVE,
                   if_not_exists=bool(action.args.get("exists")))
        kind = action.args.get("kind")
        if isinstance(kind, exp.DataType):
            d.new_type = kind.sql(dialect="postgres")
            if kind.this in (exp.DataType.Type.SERIAL, exp.DataType.Type.BIGSERIAL,
                             exp.DataType.Type.SMALLSERIAL):
                d.volatile_default = d.rewrites = True
        for cons in action.args.get("constraints") or []:
            kindc = cons.args.get("kind") if isinstance(cons, exp.ColumnConstraint) else cons
            if isinstance(kindc, exp.GeneratedAsIdentityColumnConstraint) or (
                    isinstance(kindc, exp.DefaultColumnConstraint) and _has_volatile(kindc.this)):
                d.volatile_default = d.rewrites = True
            elif isinstance(kindc, exp.ComputedColumnConstraint) and any(
                    t.text.upper() == "STORED" for t in tokens):
                d.rewrites = True  # GENERATED … STORED computes every row now
        return d
    if isinstance(action, exp.AlterColumn):
        col = _ident(action.this)
        dtype = action.args.get("dtype")
        if dtype is not None:
            using = _node(action.args.get("using"))
            spatial = _is_spatial_type(dtype)
            typed = spatial and bool(dtype.expressions)
            geography = isinstance(dtype, exp.DataType) and dtype.this == exp.DataType.Type.GEOGRAPHY
            geo = typed or geography or _calls(using, _GEOM_USING_FUNCS)
            catalog_only = spatial and not typed and not geography and using is None
            return _Draft(Op.alter_column_type, column=col, lock=ACCESS_EXCLUSIVE,
                          new_type=dtype.sql(dialect="postgres"), using=using is not None,
                          geometry_change=geo, rewrites=not catalog_only, scans=not catalog_only)
        if action.args.get("allow_null") is False:
            return _Draft(Op.set_not_null, column=col, lock=ACCESS_EXCLUSIVE, scans=True)
        if action.args.get("allow_null") is True:
            return _Draft(Op.drop_not_null, column=col, lock=ACCESS_EXCLUSIVE)
        if _node(action.args.get("default")) is not None or action.args.get("drop"):
            return _Draft(Op.set_default, column=col, lock=ACCESS_EXCLUSIVE)
        return _Draft(Op.other, column=col, lock=ACCESS_EXCLUSIVE)
    if isinstance(action, exp.Drop):
        kind = str(action.args.get("kind") or "").upper()
        target = (action.args.get("tables") or [None])[0]
        if kind == "COLUMN" or isinstance(target, exp.Column):
            return _Draft(Op.drop_column, column=_ident(target), lock=ACCESS_EXCLUSIVE,
                          if_exists=bool(action.args.get("exists")), destructive=True)
        return _Draft(Op.drop_constraint, object_name=_ident(target), lock=ACCESS_EXCLUSIVE,
                      if_exists=bool(action.args.get("exists")))
    if isinstance(action, exp.AddConstraint):
        not_valid = bool(alter.args.get("not_valid"))
        d = _Draft(Op.add_constraint, lock=ACCESS_EXCLUSIVE, not_valid=not_valid)
        for c in action.expressions:
            if isinstance(c, exp.Constraint):
                d.object_name = _ident(c.this)
            fk = c if isinstance(c, exp.ForeignKey) else c.find(exp.ForeignKey)
            if fk is not None:
                d.lock = SHARE_ROW_EXCLUSIVE
                ref = fk.args.get("reference")
                target = _table_name(ref.this) if isinstance(ref, exp.Reference) else None
                if target:
                    d.tables.append(target)
            index_backed = c.find(exp.PrimaryKey, exp.UniqueColumnConstraint) is not None or (
                isinstance(c, exp.PrimaryKey | exp.UniqueColumnConstraint))
            # UNIQUE/PK build an index (always a scan); CHECK/FK scan unless NOT VALID
            d.scans = d.scans or index_backed or not not_valid
        return d
    if isinstance(action, exp.RenameColumn):
        return _Draft(Op.rename, column=_ident(action.this), lock=ACCESS_EXCLUSIVE)
    if isinstance(action, exp.AlterRename):
        if any(isinstance(o, exp.ToTableProperty) for o in alter.args.get("options") or []):
            # ``ALTER TABLE t RENAME a TO b`` renames a column
            return _Draft(Op.rename, lock=ACCESS_EXCLUSIVE, column=_ident(action.this))
        return _Draft(Op.rename, lock=ACCESS_EXCLUSIVE, object_name=_ident(action.this))
    if isinstance(action, exp.AlterSet):
        option = str(action.args.get("option") or "").upper()
        if _node(action.args.get("tablespace")) is not None or option in ("LOGGED", "UNLOGGED"):
            return _Draft(Op.other, lock=ACCESS_EXCLUSIVE, rewrites=True)
        if action.expressions:  # SET (storage_parameter = …)
            return _Draft(Op.other, lock=SHARE_UPDATE_EXCLUSIVE)
        return _Draft(Op.other, lock=ACCESS_EXCLUSIVE)
    return _Draft(Op.other, lock=ACCESS_EXCLUSIVE,
                  warning=f"ALTER TABLE action not analyzed: {type(action).__name__}")


def _from_alter(tree: exp.Alter, tokens: Sequence[Token]) -> _Draft:
    kind = str(tree.args.get("kind") or "").upper()
    name = _table_name(tree.this)
    if kind == "INDEX":
        d = _Draft(Op.rename if any(isinstance(a, exp.AlterRename) for a in tree.args.get("actions") or [])
                   else Op.other, index=name, lock=SHARE_UPDATE_EXCLUSIVE)
        d.if_exists = bool(tree.args.get("exists"))
        return d
    if kind != "TABLE":
        return _Draft(Op.rename if any(isinstance(a, exp.AlterRename)
                                       for a in tree.args.get("actions") or []) else Op.other,
                      table=name, lock=ACCESS_EXCLUSIVE, tables=[name] if name else [])
    parts = [_alter_action(a, tree, tokens) for a in tree.args.get("actions") or []]
    d = _combine(name, parts)
    d.if_exists = d.if_exists or bool(tree.args.get("exists"))
    return d


def _str_args(func: exp.Anonymous) -> list[str]:
    """Leading string-literal arguments of a PostGIS management call (names)."""
    out: list[str] = []
    for a in func.expressions:
        node = a.this if isinstance(a, exp.Cast) else a
        if isinstance(node, exp.Literal) and node.is_string:
            out.append(str(node.this))
        else:
            break
    return out


def _geo_table(names: Sequence[str], tail: int) -> str | None:
    """Table from the name arguments (schema.table when a schema is given). PostGIS
    compares these strings with catalog names as they are: no case folding."""
    if len(names) <= tail:
        return None
    parts = names[: len(names) - tail]
    return ".".join(parts[-2:]) or None


def _regclass_name(text: str) -> str:
    """``'raw_geom'::regclass`` follows identifier rules: fold unless quoted."""
    parts = [p[1:-1] if p.startswith('"') and p.endswith('"') else p.lower() for p in text.split(".")]
    return ".".join(parts)


def _from_query(tree: exp.Expr) -> _Draft:
    for dml, op in ((exp.Delete, Op.delete), (exp.Update, Op.update), (exp.Insert, Op.insert)):
        inner = tree.find(dml)
        if inner is not None:  # data-modifying CTE
            d = _from_dml(inner, op)
            return d
    for func in tree.find_all(exp.Anonymous):
        name = str(func.this).lower()
        names = _str_args(func)
        if name == "updategeometrysrid":
            table = _geo_table(names, 1)
            return _Draft(Op.alter_column_type, table=table, column=names[-1] if names else None,
                          lock=ACCESS_EXCLUSIVE, rewrites=True, scans=True, geometry_change=True,
                          object_name=func.this, tables=[table] if table else [])
        if name == "populate_geometry_columns":
            table = _regclass_name(names[0]) if names else None
            return _Draft(Op.alter_column_type, table=table, lock=ACCESS_EXCLUSIVE, rewrites=True,
                          scans=True, geometry_change=True, object_name=func.this,
                          tables=[table] if table else [])
        if name == "addgeometrycolumn":
            table = _geo_table(names, 1)
            return _Draft(Op.add_column, table=table, column=names[-1] if names else None,
                          lock=ACCESS_EXCLUSIVE, object_name=func.this, tables=[table] if table else [])
        if name == "dropgeometrycolumn":
            table = _geo_table(names, 1)
            return _Draft(Op.drop_column, table=table, column=names[-1] if len(names) > 1 else None,
                          lock=ACCESS_EXCLUSIVE, destructive=True, object_name=func.this,
                          tables=[table] if table else [])
        if name == "dropgeometrytable":
            table = _geo_table(names, 0)
            return _Draft(Op.drop_table, table=table, lock=ACCESS_EXCLUSIVE, destructive=True,
                          object_name=func.this, tables=[table] if table else [])
        if name == "set_config" and names:
            return _Draft(Op.set_config, object_name=names[0].lower())
    tables = [t for t in (_table_name(x) for x in tree.find_all(exp.Table)) if t]
    locks = tree.args.get("locks") if isinstance(tree, exp.Select) else None
    return _Draft(Op.select, table=tables[0] if tables else None,
                  lock=ROW_SHARE if locks else (ACCESS_SHARE if tables else NO_LOCK), tables=tables)


def _from_dml(tree: exp.Expr, op: Op) -> _Draft:
    table = _table_name(tree.this) if isinstance(tree.this, exp.Table | exp.Schema) else None
    d = _Draft(op, table=table, lock=ROW_EXCLUSIVE, tables=[table] if table else [])
    if op == Op.delete and not _node(tree.args.get("where")) and not _node(tree.args.get("using")):
        d.destructive = True
    return d


def _from_create(tree: exp.Create, tokens: Sequence[Token]) -> _Draft:
    kind = str(tree.args.get("kind") or "").upper()
    replace_ = bool(tree.args.get("replace"))
    exists = bool(tree.args.get("exists"))
    if kind == "INDEX" and isinstance(tree.this, exp.Index):
        idx = tree.this
        table = _table_name(idx.args.get("table"))
        params = idx.args.get("params")
        using = params.args.get("using") if isinstance(params, exp.IndexParameters) else None
        conc = bool(tree.args.get("concurrently"))
        method = "btree"
        if isinstance(using, exp.Expression):
            method = (str(using.this) if isinstance(using, exp.Var) else using.sql()).lower()
        return _Draft(Op.create_index, table=table, index=_ident(idx.this), method=method,
                      concurrently=conc, if_not_exists=exists,
                      lock=SHARE_UPDATE_EXCLUSIVE if conc else SHARE, transactional=not conc,
                      scans=True, tables=[table] if table else [])
    if kind == "TABLE":
        table = _table_name(tree.this)
        return _Draft(Op.create_table, table=table, if_not_exists=exists, lock=ACCESS_EXCLUSIVE,
                      tables=[table] if table else [])
    if kind == "VIEW":
        view = _table_name(tree.this)
        return _Draft(Op.create_view, table=view, if_not_exists=exists, or_replace=replace_,
                      lock=ACCESS_EXCLUSIVE, tables=[view] if view else [])
    if kind == "TRIGGER":
        props = tree.find(exp.TriggerProperties)
        table = _table_name(props.args.get("table")) if props is not None else None
        return _Draft(Op.create_trigger, table=table, object_name=_ident(tree.this),
                      or_replace=replace_, lock=SHARE_ROW_EXCLUSIVE, tables=[table] if table else [])
    if kind == "DATABASE":
        return _Draft(Op.other, object_name=_table_name(tree.this), transactional=False)
    return _Draft(Op.other, or_replace=replace_, if_not_exists=exists,
                  object_name=_ident(tree.this) if isinstance(tree.this, exp.Identifier) else None)


def _from_drop(tree: exp.Drop) -> _Draft:
    kind = str(tree.args.get("kind") or "").upper()
    names = [n for n in (_table_name(t) for t in tree.args.get("tables") or []) if n]
    first = names[0] if names else None
    exists = bool(tree.args.get("exists"))
    cascade = bool(tree.args.get("cascade"))
    if kind == "TABLE":
        return _Draft(Op.drop_table, table=first, if_exists=exists, lock=ACCESS_EXCLUSIVE,
                      destructive=True, tables=names)
    if kind == "INDEX":
        conc = bool(tree.args.get("concurrently"))
        return _Draft(Op.drop_index, index=first, if_exists=exists, concurrently=conc,
                      lock=SHARE_UPDATE_EXCLUSIVE if conc else ACCESS_EXCLUSIVE, transactional=not conc)
    if kind == "VIEW":
        return _Draft(Op.drop_view, table=first, if_exists=exists, lock=ACCESS_EXCLUSIVE, tables=names)
    if kind == "DATABASE":
        db = names[0] if names else None
        return _Draft(Op.other, object_name=db, if_exists=exists, destructive=True, transactional=False)
    if kind == "TRIGGER":
        on = _node(tree.args.get("cluster"))
        table = _table_name(_node(on.this)) if isinstance(on, exp.OnProperty) else None
        return _Draft(Op.other, object_name=first, table=table, if_exists=exists,
                      lock=ACCESS_EXCLUSIVE, tables=[table] if table else [])
    if kind == "SCHEMA":
        tables = tree.args.get("tables") or []
        schema = _ident(tables[0].args.get("db")) if tables and isinstance(tables[0], exp.Table) else None
        return _Draft(Op.other, object_name=schema, if_exists=exists, destructive=cascade,
                      lock=ACCESS_EXCLUSIVE)
    return _Draft(Op.other, object_name=first, if_exists=exists, destructive=False)


def _set_name(tree: exp.Set) -> str | None:
    for item in tree.expressions:
        eq = item.this if isinstance(item, exp.SetItem) else None
        if isinstance(eq, exp.EQ):
            return _ident(eq.this)
    return None


_STATEMENT_NODES = (
    exp.Query, exp.DDL, exp.DML, exp.Drop, exp.Alter, exp.Analyze, exp.Command, exp.Comment,
    exp.Grant, exp.Revoke, exp.Set, exp.Transaction, exp.Commit, exp.Rollback,
    exp.TruncateTable, exp.Values,
)


def _from_tree(tree: exp.Expr, tokens: Sequence[Token]) -> _Draft | None:
    """Classify a real sqlglot syntax tree; None for Commands and bare expressions."""
    if isinstance(tree, exp.Command) or not isinstance(tree, _STATEMENT_NODES):
        return None
    if isinstance(tree, exp.Create):
        return _from_create(tree, tokens)
    if isinstance(tree, exp.Drop):
        return _from_drop(tree)
    if isinstance(tree, exp.Alter):
        return _from_alter(tree, tokens)
    if isinstance(tree, exp.TruncateTable):
        names = [n for n in (_table_name(t) for t in tree.expressions) if n]
        return _Draft(Op.truncate, table=names[0] if names else None, lock=ACCESS_EXCLUSIVE,
                      destructive=True, tables=names)
    if isinstance(tree, exp.Analyze):
        names = [n for n in (_table_name(t) for t in tree.args.get("tables") or []) if n]
        if not names:
            names = [n for n in [_table_name(_node(tree.this))] if n]
        return _Draft(Op.analyze, table=names[0] if names else None, lock=SHARE_UPDATE_EXCLUSIVE,
                      tables=names)
    if isinstance(tree, exp.Delete):
        return _from_dml(tree, Op.delete)
    if isinstance(tree, exp.Update | exp.Merge):
        return _from_dml(tree, Op.update)
    if isinstance(tree, exp.Insert):
        return _from_dml(tree, Op.insert)
    if isinstance(tree, exp.Copy):
        table = _table_name(tree.this)
        if tree.args.get("kind"):  # COPY … FROM
            return _Draft(Op.insert, table=table, lock=ROW_EXCLUSIVE, tables=[table] if table else [])
        return _Draft(Op.select, table=table, lock=ACCESS_SHARE, tables=[table] if table else [])
    if isinstance(tree, exp.Comment):
        target = tree.this
        kind = str(tree.args.get("kind") or "").upper()
        if kind == "INDEX":
            return _Draft(Op.comment, index=_table_name(target), lock=SHARE_UPDATE_EXCLUSIVE)
        if kind == "COLUMN" and isinstance(target, exp.Column):
            parts = [_ident(target.args.get(k)) for k in ("catalog", "db", "table")]
            table = ".".join(p for p in parts if p) or None
            return _Draft(Op.comment, table=table, column=_ident(target.this),
                          lock=SHARE_UPDATE_EXCLUSIVE, tables=[table] if table else [])
        if kind in ("TABLE", "VIEW", "MATERIALIZED VIEW"):
            table = _table_name(target)
            return _Draft(Op.comment, table=table, lock=SHARE_UPDATE_EXCLUSIVE,
                          tables=[table] if table else [])
        return _Draft(Op.comment, object_name=_ident(target))
    if isinstance(tree, exp.Grant | exp.Revoke):
        return _Draft(Op.grant)
    if isinstance(tree, exp.Set):
        return _Draft(Op.set_config, object_name=_set_name(tree))
    if isinstance(tree, exp.Transaction | exp.Commit | exp.Rollback):
        return _Draft(Op.transaction)
    if isinstance(tree, exp.Query | exp.Values):
        return _from_query(tree)
    if isinstance(tree, exp.DDL | exp.DML):
        return _Draft(Op.other, warning=f"{type(tree).__name__} statement not analyzed",
                      lock=UNKNOWN_LOCK)
    return _Draft(Op.other)


# ---------------------------------------------------------------- token grammar


class _Cursor:
    """Reads a statement's token list; every ``accept`` consumes only on a full match."""

    def __init__(self, tokens: Sequence[Token]) -> None:
        self.toks = list(tokens)
        self.i = 0

    def peek(self, k: int = 0) -> Token | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def word(self, k: int = 0) -> str:
        tok = self.peek(k)
        return tok.text.upper() if tok is not None and _is_word(tok) else ""

    def accept(self, *words: str) -> bool:
        if all(self.word(k) == w for k, w in enumerate(words)):
            self.i += len(words)
            return True
        return False

    def accept_any(self, *words: str) -> str:
        w = self.word()
        if w and w in words:
            self.i += 1
            return w
        return ""

    def punct(self, kind: TokenType) -> bool:
        tok = self.peek()
        if tok is not None and tok.token_type == kind:
            self.i += 1
            return True
        return False

    def done(self) -> bool:
        return self.i >= len(self.toks)

    def name(self) -> str | None:
        """A possibly qualified identifier: ``a``, ``s.a``, ``"Q".a``."""
        parts: list[str] = []
        while True:
            tok = self.peek()
            if tok is None or not (_is_word(tok) or tok.token_type == TokenType.IDENTIFIER):
                return ".".join(parts) if parts else None
            parts.append(_norm(tok))
            self.i += 1
            if not (self.peek() is not None and self.peek().token_type == TokenType.DOT  # type: ignore[union-attr]
                    and self.peek(1) is not None):
                return ".".join(parts)
            self.i += 1

    def parens(self) -> list[Token] | None:
        """Consume a balanced ``( … )`` and return what is inside; None if absent/unbalanced."""
        if self.peek() is None or self.peek().token_type != TokenType.L_PAREN:  # type: ignore[union-attr]
            return None
        depth, start = 0, self.i
        for j in range(self.i, len(self.toks)):
            kind = self.toks[j].token_type
            depth += kind == TokenType.L_PAREN
            depth -= kind == TokenType.R_PAREN
            if depth == 0:
                self.i = j + 1
                return self.toks[start + 1 : j]
        return None

    def split_top(self) -> list[list[Token]]:
        """The remaining tokens split on top-level commas."""
        out: list[list[Token]] = [[]]
        depth = 0
        for tok in self.toks[self.i :]:
            if tok.token_type == TokenType.L_PAREN:
                depth += 1
            elif tok.token_type == TokenType.R_PAREN:
                depth -= 1
            if tok.token_type == TokenType.COMMA and depth == 0:
                out.append([])
            else:
                out[-1].append(tok)
        self.i = len(self.toks)
        return out


def _option_on(inner: Sequence[Token], option: str) -> bool:
    """``(FULL, ANALYZE false)`` style option lists: is ``option`` switched on?"""
    for j, tok in enumerate(inner):
        if _is_word(tok) and tok.text.upper() == option:
            nxt = inner[j + 1].text.upper() if j + 1 < len(inner) else ""
            return nxt not in ("FALSE", "OFF", "0")
    return False


def _names_list(c: _Cursor, allow_cols: bool = False) -> list[str] | None:
    """``name [, name…]`` up to the end; None when something else follows."""
    names: list[str] = []
    while not c.done():
        n = c.name()
        if n is None:
            return None
        names.append(n)
        if allow_cols and c.parens() is not None:
            pass
        if not c.punct(TokenType.COMMA):
            break
    return names


def _g_vacuum(c: _Cursor) -> _Draft | None:
    full = False
    while True:
        inner = c.parens()
        if inner is not None:
            full = full or _option_on(inner, "FULL")
            continue
        w = c.accept_any("FULL", "FREEZE", "VERBOSE", "ANALYZE", "ANALYSE")
        if not w:
            break
        full = full or w == "FULL"
    names = _names_list(c, allow_cols=True)
    if names is None or not c.done():
        return None
    return _Draft(Op.vacuum_full if full else Op.vacuum, table=names[0] if names else None,
                  lock=ACCESS_EXCLUSIVE if full else SHARE_UPDATE_EXCLUSIVE,
                  rewrites=full, transactional=False, tables=names)


def _g_analyze(c: _Cursor) -> _Draft | None:
    c.parens()
    c.accept("VERBOSE")
    names = _names_list(c, allow_cols=True)
    if names is None or not c.done():
        return None
    return _Draft(Op.analyze, table=names[0] if names else None, lock=SHARE_UPDATE_EXCLUSIVE,
                  tables=names)


def _g_reindex(c: _Cursor) -> _Draft | None:
    opts = c.parens() or []
    kind = c.accept_any("INDEX", "TABLE", "SCHEMA", "DATABASE", "SYSTEM")
    if not kind:
        return None
    conc = bool(c.accept("CONCURRENTLY")) or _option_on(opts, "CONCURRENTLY")
    name = c.name()
    if not c.done() or (name is None and kind in ("INDEX", "TABLE", "SCHEMA")):
        return None
    d = _Draft(Op.reindex, concurrently=conc,
               lock=SHARE_UPDATE_EXCLUSIVE if conc else SHARE,
               transactional=not conc and kind in ("INDEX", "TABLE"))
    if kind == "INDEX":
        d.index = name
    elif kind == "TABLE":
        d.table = name
        d.tables = [name] if name else []
    else:
        d.object_name = name
    return d


def _g_cluster(c: _Cursor) -> _Draft | None:
    c.parens()
    c.accept("VERBOSE")
    table = index = None
    if not c.done():
        first = c.name()
        if first is None:
            return None
        if c.accept("USING"):
            table, index = first, c.name()
            if index is None:
                return None
        elif c.accept("ON"):  # pre-8.3 form: CLUSTER index ON table
            index, table = first, c.name()
            if table is None:
                return None
        else:
            table = first
    if not c.done():
        return None
    return _Draft(Op.cluster, table=table, index=index, lock=ACCESS_EXCLUSIVE, rewrites=True,
                  transactional=table is not None, tables=[table] if table else [])


def _g_refresh(c: _Cursor) -> _Draft | None:
    if not c.accept("MATERIALIZED", "VIEW"):
        return None
    conc = c.accept("CONCURRENTLY")
    name = c.name()
    if name is None:
        return None
    if c.accept("WITH"):
        c.accept("NO")
        if not c.accept("DATA"):
            return None
    if not c.done():
        return None
    return _Draft(Op.refresh_matview, table=name, concurrently=conc,
                  lock=EXCLUSIVE if conc else ACCESS_EXCLUSIVE, rewrites=not conc,
                  tables=[name])


def _g_drop_index(c: _Cursor) -> _Draft | None:
    conc = c.accept("CONCURRENTLY")
    exists = c.accept("IF", "EXISTS")
    names = []
    while True:
        n = c.name()
        if n is None:
            return None
        names.append(n)
        if not c.punct(TokenType.COMMA):
            break
    c.accept_any("CASCADE", "RESTRICT")
    if not c.done():
        return None
    return _Draft(Op.drop_index, index=names[0], if_exists=exists, concurrently=conc,
                  lock=SHARE_UPDATE_EXCLUSIVE if conc else ACCESS_EXCLUSIVE, transactional=not conc,
                  object_name=", ".join(names) if len(names) > 1 else None)


def _g_create_index(c: _Cursor) -> _Draft | None:
    conc = c.accept("CONCURRENTLY")
    exists = c.accept("IF", "NOT", "EXISTS")
    index = None
    if c.word() != "ON":
        index = c.name()
        if index is None:
            return None
    if not c.accept("ON"):
        return None
    c.accept("ONLY")
    table = c.name()
    if table is None:
        return None
    method = "btree"
    if c.accept("USING"):
        m = c.name()
        if m is None:
            return None
        method = m.lower()
    if c.parens() is None:
        return None
    return _Draft(Op.create_index, table=table, index=index, method=method, concurrently=conc,
                  if_not_exists=exists, lock=SHARE_UPDATE_EXCLUSIVE if conc else SHARE,
                  transactional=not conc, scans=True, tables=[table])


def _g_create_view(c: _Cursor, sql: str, replace_: bool) -> _Draft | None:
    c.accept_any("TEMP", "TEMPORARY")
    c.accept("RECURSIVE")
    mat = c.accept("MATERIALIZED")
    if not c.accept("VIEW"):
        return None
    exists = c.accept("IF", "NOT", "EXISTS")
    name = c.name()
    if name is None:
        return None
    c.parens()
    if c.accept("USING"):
        c.name()
    if c.accept("WITH"):
        c.parens()
    if c.accept("TABLESPACE"):
        c.name()
    tok = c.peek()
    if not c.accept("AS") or tok is None:
        return None
    rest = c.toks[c.i :]
    if mat and len(rest) >= 2 and [t.text.upper() for t in rest[-2:]] == ["WITH", "DATA"]:
        rest = rest[:-2]
    elif mat and len(rest) >= 3 and [t.text.upper() for t in rest[-3:]] == ["WITH", "NO", "DATA"]:
        rest = rest[:-3]
    if not rest:
        return None
    try:
        query = _parse_tokens(rest, sql)
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        raise _InnerSyntaxError(int(first.get("line") or 1), int(first.get("col") or 1),
                                _error_message(first, str(exc))) from exc
    except Exception:
        return None
    if not isinstance(query, exp.Query | exp.Values):
        return None
    return _Draft(Op.create_view, table=name, if_not_exists=exists, or_replace=replace_,
                  lock=ACCESS_EXCLUSIVE, tables=[name])


class _InnerSyntaxError(Exception):
    """A recognized statement whose embedded query is a definite syntax error."""

    def __init__(self, line: int, col: int, message: str) -> None:
        super().__init__(message)
        self.issue = (line, col, message)


def _alter_table_action(toks: Sequence[Token]) -> _Draft | None:
    c = _Cursor(toks)
    if c.accept("VALIDATE", "CONSTRAINT"):
        n = c.name()
        return _Draft(Op.validate_constraint, object_name=n, lock=SHARE_UPDATE_EXCLUSIVE, scans=True) \
            if n and c.done() else None
    if c.accept("ADD"):
        name = None
        if c.accept("CONSTRAINT"):
            name = c.name()
        words = [t.text.upper() for t in c.toks[c.i :] if _is_word(t)]
        first = c.word()
        if first in ("CHECK", "FOREIGN", "UNIQUE", "PRIMARY", "EXCLUDE"):
            not_valid = words[-2:] == ["NOT", "VALID"]
            using_index = "USING" in words and "INDEX" in words and first in ("UNIQUE", "PRIMARY")
            d = _Draft(Op.add_constraint, object_name=name, lock=ACCESS_EXCLUSIVE, not_valid=not_valid)
            if first == "FOREIGN":
                d.lock = SHARE_ROW_EXCLUSIVE
                toks_rest = c.toks[c.i :]
                for j, t in enumerate(toks_rest):
                    if t.text.upper() == "REFERENCES":
                        target = _Cursor(toks_rest[j + 1 :]).name()
                        if target:
                            d.tables.append(target)
                        break
            d.scans = not using_index and (first in ("UNIQUE", "PRIMARY", "EXCLUDE") or not not_valid)
            return d
        if name is None:
            c.accept("COLUMN")
            exists = c.accept("IF", "NOT", "EXISTS")
            col = c.name()
            if col is None:
                return None
            rest = [t.text.lower() for t in c.toks[c.i :]]
            volatile = any(w in VOLATILE_FUNCTIONS for w in rest) or any(
                w in ("serial", "bigserial", "smallserial", "identity") for w in rest)
            return _Draft(Op.add_column, column=col, if_not_exists=exists, lock=ACCESS_EXCLUSIVE,
                          volatile_default=volatile, rewrites=volatile or "stored" in rest)
        return None
    if c.accept("ALTER"):
        c.accept("COLUMN")
        col = c.name()
        if col is None:
            return None
        if c.accept("SET", "STATISTICS") or c.accept("SET", "ATTRIBUTE_OPTIONS"):
            return _Draft(Op.other, column=col, lock=SHARE_UPDATE_EXCLUSIVE)
        if c.word() == "SET" and c.peek(1) is not None and c.peek(1).token_type == TokenType.L_PAREN:  # type: ignore[union-attr]
            return _Draft(Op.other, column=col, lock=SHARE_UPDATE_EXCLUSIVE)
        if c.accept("RESET"):
            return _Draft(Op.other, column=col, lock=SHARE_UPDATE_EXCLUSIVE)
        if c.accept("SET", "NOT", "NULL"):
            return _Draft(Op.set_not_null, column=col, lock=ACCESS_EXCLUSIVE, scans=True)
        if c.accept("DROP", "NOT", "NULL"):
            return _Draft(Op.drop_not_null, column=col, lock=ACCESS_EXCLUSIVE)
        if c.accept("SET", "DEFAULT") or c.accept("DROP", "DEFAULT"):
            return _Draft(Op.set_default, column=col, lock=ACCESS_EXCLUSIVE)
        if c.accept("TYPE") or c.accept("SET", "DATA", "TYPE"):
            return _Draft(Op.alter_column_type, column=col, lock=ACCESS_EXCLUSIVE, rewrites=True,
                          scans=True, using="USING" in [t.text.upper() for t in c.toks[c.i :]])
        return _Draft(Op.other, column=col, lock=ACCESS_EXCLUSIVE)
    if c.accept("DROP"):
        if c.accept("CONSTRAINT"):
            exists = c.accept("IF", "EXISTS")
            return _Draft(Op.drop_constraint, object_name=c.name(), if_exists=exists, lock=ACCESS_EXCLUSIVE)
        c.accept("COLUMN")
        exists = c.accept("IF", "EXISTS")
        col = c.name()
        return _Draft(Op.drop_column, column=col, if_exists=exists, lock=ACCESS_EXCLUSIVE,
                      destructive=True) if col else None
    if c.accept("RENAME"):
        if c.accept("CONSTRAINT"):
            return _Draft(Op.rename, object_name=c.name(), lock=ACCESS_EXCLUSIVE)
        if c.accept("TO"):
            return _Draft(Op.rename, object_name=c.name(), lock=ACCESS_EXCLUSIVE)
        c.accept("COLUMN")
        return _Draft(Op.rename, column=c.name(), lock=ACCESS_EXCLUSIVE)
    if c.accept("SET", "SCHEMA"):
        return _Draft(Op.rename, object_name=c.name(), lock=ACCESS_EXCLUSIVE)
    if c.accept("SET", "TABLESPACE") or c.accept("SET", "LOGGED") or c.accept("SET", "UNLOGGED"):
        return _Draft(Op.other, lock=ACCESS_EXCLUSIVE, rewrites=True)
    if c.accept("SET", "ACCESS", "METHOD"):
        return _Draft(Op.other, lock=ACCESS_EXCLUSIVE, rewrites=True)
    if c.accept("SET", "WITHOUT", "CLUSTER") or c.accept("CLUSTER", "ON"):
        return _Draft(Op.other, lock=SHARE_UPDATE_EXCLUSIVE)
    if (c.word() in ("SET", "RESET") and c.peek(1) is not None
            and c.peek(1).token_type == TokenType.L_PAREN):  # type: ignore[union-attr]
        return _Draft(Op.other, lock=SHARE_UPDATE_EXCLUSIVE)
    if c.word() in ("ENABLE", "DISABLE") and "TRIGGER" in [t.text.upper() for t in toks]:
        return _Draft(Op.other, lock=SHARE_ROW_EXCLUSIVE)
    if c.accept("DETACH", "PARTITION"):
        part = c.name()
        conc = c.accept("CONCURRENTLY")
        return _Draft(Op.other, object_name=part, concurrently=conc, transactional=not conc,
                      lock=SHARE_UPDATE_EXCLUSIVE if conc else ACCESS_EXCLUSIVE)
    if c.accept("ATTACH", "PARTITION"):
        return _Draft(Op.other, object_name=c.name(), lock=SHARE_UPDATE_EXCLUSIVE)
    if c.word() in ("OWNER", "REPLICA", "ENABLE", "DISABLE", "FORCE", "NO", "INHERIT", "OF",
                    "NOT", "SET"):
        return _Draft(Op.other, lock=ACCESS_EXCLUSIVE)
    return None


def _g_alter(c: _Cursor) -> _Draft | None:
    if c.accept("TABLE"):
        exists = c.accept("IF", "EXISTS")
        c.accept("ONLY")
        table = c.name()
        if table is None:
            return None
        c.punct(TokenType.STAR)
        parts = []
        for chunk in c.split_top():
            part = _alter_table_action(chunk)
            if part is None:
                return None
            parts.append(part)
        d = _combine(table, parts)
        d.if_exists = d.if_exists or exists
        return d
    if c.accept("INDEX"):
        exists = c.accept("IF", "EXISTS")
        name = c.name()
        if name is None:
            return None
        if c.accept("RENAME"):
            return _Draft(Op.rename, index=name, if_exists=exists, lock=SHARE_UPDATE_EXCLUSIVE)
        if c.accept("SET", "TABLESPACE"):
            return _Draft(Op.other, index=name, if_exists=exists, lock=ACCESS_EXCLUSIVE)
        return _Draft(Op.other, index=name, if_exists=exists, lock=SHARE_UPDATE_EXCLUSIVE)
    if c.accept("MATERIALIZED", "VIEW") or c.accept("VIEW"):
        exists = c.accept("IF", "EXISTS")
        name = c.name()
        renaming = c.word() == "RENAME" or c.accept("SET", "SCHEMA")
        return _Draft(Op.rename if renaming else Op.other, table=name, if_exists=exists,
                      lock=ACCESS_EXCLUSIVE, tables=[name] if name else [])
    if c.accept("SYSTEM"):
        return _Draft(Op.other, transactional=False)
    if c.accept("EXTENSION"):
        return _Draft(Op.other, object_name=c.name())
    if c.word() in ("SEQUENCE", "TYPE", "DEFAULT", "ROLE", "USER", "DATABASE", "SCHEMA",
                    "FUNCTION", "PROCEDURE", "DOMAIN", "POLICY", "PUBLICATION", "GROUP",
                    "TRIGGER", "STATISTICS", "AGGREGATE", "OPERATOR", "TABLESPACE"):
        return _Draft(Op.other)
    return None


def _g_create(c: _Cursor, sql: str) -> _Draft | None:
    replace_ = c.accept("OR", "REPLACE")
    if c.accept("UNIQUE") or c.word() == "INDEX":
        if not c.accept("INDEX"):
            return None
        return _g_create_index(c)
    if c.word() in ("TEMP", "TEMPORARY", "RECURSIVE", "MATERIALIZED", "VIEW"):
        return _g_create_view(c, sql, replace_)
    if c.word() in ("TABLE", "UNLOGGED", "TEMP", "TEMPORARY", "GLOBAL", "LOCAL") and (
            "TABLE" in [c.word(k) for k in range(3)]):
        while not c.accept("TABLE"):
            c.i += 1
        exists = c.accept("IF", "NOT", "EXISTS")
        name = c.name()
        if name is None or c.done():
            return None
        return _Draft(Op.create_table, table=name, if_not_exists=exists, lock=ACCESS_EXCLUSIVE,
                      tables=[name])
    if c.accept("EXTENSION"):
        exists = c.accept("IF", "NOT", "EXISTS")
        name = c.name()
        if name is None:
            return None
        return _Draft(Op.create_extension, object_name=name, if_not_exists=exists)
    if c.word() in ("DATABASE", "TABLESPACE", "SUBSCRIPTION"):
        return _Draft(Op.other, transactional=False, object_name=_Cursor(c.toks[c.i + 1 :]).name())
    if c.accept("POLICY"):
        name = c.name()
        table = c.name() if c.accept("ON") else None
        return _Draft(Op.other, object_name=name, table=table, lock=ACCESS_EXCLUSIVE,
                      tables=[table] if table else [])
    if c.accept("EVENT", "TRIGGER"):
        return _Draft(Op.other, object_name=c.name())
    if c.accept("CONSTRAINT", "TRIGGER") or c.accept("TRIGGER"):
        name = c.name()
        words = [t.text.upper() for t in c.toks]
        table = None
        if "ON" in words:
            table = _Cursor(c.toks[words.index("ON") + 1 :]).name()
        return _Draft(Op.create_trigger, object_name=name, table=table, or_replace=replace_,
                      lock=SHARE_ROW_EXCLUSIVE, tables=[table] if table else [])
    if c.word() in ("FUNCTION", "PROCEDURE", "ROLE", "USER", "GROUP", "SCHEMA", "SEQUENCE",
                    "TYPE", "DOMAIN", "STATISTICS", "AGGREGATE", "CAST", "OPERATOR",
                    "PUBLICATION", "SERVER", "COLLATION", "CONVERSION", "LANGUAGE",
                    "EVENT", "FOREIGN", "TEXT", "TRANSFORM", "ACCESS", "RULE"):
        c.accept_any("FUNCTION", "PROCEDURE", "ROLE", "USER", "GROUP", "SCHEMA", "SEQUENCE",
                     "TYPE", "DOMAIN", "STATISTICS", "AGGREGATE", "CAST", "OPERATOR",
                     "PUBLICATION", "SERVER", "COLLATION", "CONVERSION", "LANGUAGE")
        return _Draft(Op.other, or_replace=replace_, object_name=c.name())
    return None


def _g_drop(c: _Cursor) -> _Draft | None:
    if c.accept("INDEX"):
        return _g_drop_index(c)
    if c.accept("EXTENSION"):
        exists = c.accept("IF", "EXISTS")
        names = _names_list(_Cursor(c.toks[c.i :]))
        cascade = any(t.text.upper() == "CASCADE" for t in c.toks)
        return _Draft(Op.other, object_name=names[0] if names else None, if_exists=exists,
                      destructive=cascade, lock=NO_LOCK)
    if c.word() in ("DATABASE", "TABLESPACE", "SUBSCRIPTION"):
        return _Draft(Op.other, destructive=c.word() == "DATABASE", transactional=False)
    if c.word() in ("ROLE", "USER", "GROUP", "OWNED", "POLICY", "RULE", "EVENT", "PUBLICATION",
                    "SERVER", "STATISTICS", "AGGREGATE", "CAST", "OPERATOR", "DOMAIN",
                    "COLLATION", "CONVERSION", "LANGUAGE", "FOREIGN", "TEXT", "TRANSFORM",
                    "ACCESS", "MATERIALIZED"):
        if c.accept("MATERIALIZED", "VIEW"):
            exists = c.accept("IF", "EXISTS")
            names = _names_list(c) or []
            return _Draft(Op.drop_view, table=names[0] if names else None, if_exists=exists,
                          lock=ACCESS_EXCLUSIVE, tables=names)
        return _Draft(Op.other)
    return None


def _g_lock(c: _Cursor) -> _Draft | None:
    c.accept("TABLE")
    c.accept("ONLY")
    names = []
    while True:
        n = c.name()
        if n is None:
            return None
        names.append(n)
        c.punct(TokenType.STAR)
        if not c.punct(TokenType.COMMA):
            break
    mode = ACCESS_EXCLUSIVE
    if c.accept("IN"):
        words = []
        while c.word() and c.word() != "MODE":
            words.append(c.word())
            c.i += 1
        if not c.accept("MODE"):
            return None
        mode = " ".join(words)
        if mode not in LOCK_RANK:
            return None
    c.accept("NOWAIT")
    if not c.done():
        return None
    return _Draft(Op.lock_table, table=names[0], lock=mode, tables=names)


def _explain(plain: Sequence[Token], sql: str) -> tuple[Statement, _Issue | None] | None:
    """EXPLAIN [ANALYZE] [VERBOSE] | EXPLAIN (options) <statement>: analyze the inner
    statement; only EXPLAIN ANALYZE executes it."""
    c = _Cursor(plain)
    if not c.accept("EXPLAIN"):
        return None
    executes = False
    inner = c.parens()
    if inner is not None:
        executes = _option_on(inner, "ANALYZE") or _option_on(inner, "ANALYSE")
    else:
        while True:
            w = c.accept_any("ANALYZE", "ANALYSE", "VERBOSE")
            if not w:
                break
            executes = executes or w != "VERBOSE"
    tok = c.peek()
    if tok is None:
        return None
    stmt, issue = _analyze_one(sql[tok.start :], 0)
    if issue is not None:  # shift the inner position back into the EXPLAIN text
        line, col = _line_col(sql, tok.start)
        issue = (line + issue[0] - 1, issue[1] + (col - 1 if issue[0] == 1 else 0), issue[2])
    if not executes:  # plain EXPLAIN only plans: nothing is written or destroyed
        stmt = replace(stmt, destructive=False, rewrites=False, scans=False)
    return replace(stmt, explain=True, executes=executes, sql=sql, keyword="EXPLAIN"), issue


_TXN_WORDS = ("BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE",
              "PREPARE")


def _classify_tokens(tokens: Sequence[Token], sql: str) -> _Draft | None:
    """Strict token grammars for the statements sqlglot treats as opaque or rejects;
    None when the statement is not recognized."""
    c = _Cursor(tokens)
    w = c.word()
    c.i += 1
    draft: _Draft | None = None
    if w == "VACUUM":
        draft = _g_vacuum(c)
    elif w in ("ANALYZE", "ANALYSE"):
        draft = _g_analyze(c)
    elif w == "REINDEX":
        draft = _g_reindex(c)
    elif w == "CLUSTER":
        draft = _g_cluster(c)
    elif w == "REFRESH":
        draft = _g_refresh(c)
    elif w == "ALTER":
        draft = _g_alter(c)
    elif w == "CREATE":
        draft = _g_create(c, sql)
    elif w == "DROP":
        draft = _g_drop(c)
    elif w == "LOCK":
        draft = _g_lock(c)
    elif w in ("GRANT", "REVOKE"):
        draft = _Draft(Op.grant)
    elif w in ("SET", "RESET", "SHOW"):
        c.accept_any("SESSION", "LOCAL")
        draft = _Draft(Op.set_config, object_name=c.name())
    elif w in _TXN_WORDS:
        if w == "PREPARE" and not c.accept("TRANSACTION"):
            draft = _Draft(Op.other)
        elif w == "START" and not c.accept("TRANSACTION"):
            draft = None
        else:
            draft = _Draft(Op.transaction)
    elif w in ("CHECKPOINT", "LISTEN", "UNLISTEN", "NOTIFY", "LOAD", "DEALLOCATE", "FETCH",
               "MOVE", "CLOSE", "DECLARE", "EXECUTE", "SECURITY", "IMPORT", "REASSIGN"):
        draft = _Draft(Op.other)
    elif w == "DISCARD":
        draft = _Draft(Op.other, transactional=c.word() != "ALL")
    elif w in ("DO", "CALL"):
        draft = _Draft(Op.other, lock=UNKNOWN_LOCK,
                       warning=f"{w}: procedural code is not analyzed; its locks and effects are unknown")
    return draft


# ------------------------------------------------------------------------ driver


def _parse_tokens(tokens: Sequence[Token], sql: str) -> exp.Expr | None:
    """Parse one statement's tokens; raises ParseError on a syntax error."""
    with _quiet():
        trees = _DIALECT.parser().parse(list(tokens), sql)
    return trees[0] if trees else None


def _finish(draft: _Draft, sql: str, keyword: str, parsed: bool, line: int, col: int) -> Statement:
    tables = tuple(dict.fromkeys(t for t in [draft.table, *draft.tables] if t))
    return Statement(
        sql=sql, op=draft.op, table=draft.table, index=draft.index, column=draft.column,
        concurrently=draft.concurrently, if_exists=draft.if_exists,
        if_not_exists=draft.if_not_exists, not_valid=draft.not_valid, method=draft.method,
        volatile_default=draft.volatile_default, geometry_change=draft.geometry_change,
        lock=draft.lock, rewrites=draft.rewrites, transactional=draft.transactional,
        destructive=draft.destructive, parsed=parsed, warning=draft.warning,
        scans=draft.scans, using=draft.using, or_replace=draft.or_replace,
        new_type=draft.new_type, object_name=draft.object_name, keyword=keyword,
        actions=draft.actions or (draft.op,), tables=tables, line=line, col=col,
    )


_Issue = tuple[int, int, str]


def _error_message(err: dict[str, object], fallback: str) -> str:
    """sqlglot's description without its internal token dump."""
    desc = str(err.get("description") or fallback).splitlines()[0]
    near = str(err.get("highlight") or "").strip()
    if " but got <Token" in desc:
        head = desc.split(" but got <Token")[0]
        return f"{head} but reached the end of the statement" if "SENTINEL" in desc else (
            f"{head} near '{near}'")
    return f"{desc} near '{near}'" if near else desc


def _analyze_one(sql: str, base: int, full: str | None = None) -> tuple[Statement, _Issue | None]:
    """Analyze one statement's text. ``base``/``full`` place it in the whole text."""
    full = sql if full is None else full
    line, col = _line_col(full, base)
    tokens, failed_at = _tokenize(sql)
    keyword = tokens[0].text.upper() if tokens and _is_word(tokens[0]) else ""
    if failed_at is not None:
        eline, ecol = _line_col(full, base + failed_at)
        msg = "unterminated quoted string, identifier or comment"
        st = Statement(sql=sql, op=Op.other, lock=UNKNOWN_LOCK, parsed=False, warning=msg,
                       keyword=keyword, actions=(Op.other,), line=line, col=col)
        return st, (eline, ecol, msg)
    plain, _ = _tokenize(sql, plain=True)
    explained = _explain(plain, sql)
    if explained is not None:
        st, issue = explained
        return replace(st, line=line, col=col), (
            None if issue is None else
            (line + issue[0] - 1, issue[1] + (col - 1 if issue[0] == 1 else 0), issue[2]))
    try:
        tree = _parse_tokens(tokens, sql)
        error: str | None = None
        err_pos = (line, col)
    except ParseError as exc:
        tree = None
        first = exc.errors[0] if exc.errors else {}
        error = _error_message(first, str(exc))
        eline = int(first.get("line") or 1)
        ecol = int(first.get("col") or 1)
        # positions are relative to ``sql``; shift them into the whole text
        err_pos = (line + eline - 1, ecol + (col - 1 if eline == 1 else 0))
    except Exception as exc:  # a sqlglot bug on odd input: not a definite syntax error
        tree = None
        error = None
        err_pos = (line, col)
        fallback = f"sqlglot failed on this statement ({type(exc).__name__}); not analyzed"
        try:
            draft = _classify_tokens(plain, sql)
        except _InnerSyntaxError:
            draft = None
        if draft is None:
            draft = _Draft(Op.other, lock=UNKNOWN_LOCK, warning=fallback)
        return _finish(draft, sql, keyword, False, line, col), None

    if tree is not None:
        draft = _from_tree(tree, plain)
        if draft is not None:
            return _finish(draft, sql, keyword, True, line, col), None
    # Command, bare expression or syntax error: read the tokens.
    try:
        draft = _classify_tokens(plain, sql)
    except _InnerSyntaxError as inner:
        eline, ecol, error = inner.issue
        err_pos = (line + eline - 1, ecol + (col - 1 if eline == 1 else 0))
        draft = None
        tree = None
    if draft is not None:
        if error is not None or not isinstance(tree, exp.Command):
            draft.warning = draft.warning or (
                "sqlglot cannot parse this PostgreSQL statement; classified from its tokens, "
                "syntax not checked")
        return _finish(draft, sql, keyword, False, line, col), None
    if isinstance(tree, exp.Command):
        msg = f"{keyword or 'statement'} is not analyzed (sqlglot treats it as an opaque command)"
        st = _finish(_Draft(Op.other, lock=UNKNOWN_LOCK, warning=msg), sql, keyword, False, line, col)
        return st, None
    if error is None:
        error = f"not a SQL statement: {sql.split()[0] if sql.split() else sql!r}"
    st = _finish(_Draft(Op.other, lock=UNKNOWN_LOCK, warning=f"syntax error: {error}"),
                 sql, keyword, False, line, col)
    return st, (err_pos[0], err_pos[1], error)


def _chunks(text: str) -> Iterator[tuple[int, int, bool]]:
    """(start, end, complete) spans of the statements in ``text``; ``complete`` is False
    for the tail that could not be tokenized."""
    tokens, failed_at = _tokenize(text)
    start: int | None = None
    for tok in tokens:
        if tok.token_type == TokenType.SEMICOLON:
            if start is not None:
                yield start, tok.start, True
            start = None
        elif start is None:
            start = tok.start
    if failed_at is not None:
        begin = start if start is not None else failed_at
        if text[begin:].strip():
            yield begin, len(text), False
    elif start is not None:
        yield start, len(text), True


@lru_cache(maxsize=2048)
def _analyze_all(sql_text: str) -> tuple[tuple[Statement, _Issue | None], ...]:
    out: list[tuple[Statement, _Issue | None]] = []
    for start, end, _complete in _chunks(sql_text):
        piece = sql_text[start:end].rstrip()
        if not piece:
            continue
        out.append(_analyze_one(piece, start, sql_text))
    return tuple(out)


def analyze(sql_text: str) -> tuple[Statement, ...]:
    """Split ``sql_text`` into statements and classify each one. Never raises."""
    try:
        return tuple(st for st, _ in _analyze_all(sql_text))
    except RecursionError:
        return (Statement(sql=sql_text, op=Op.other, lock=UNKNOWN_LOCK, parsed=False,
                          warning="statement too deeply nested to analyze", actions=(Op.other,)),)


def parse_errors(sql_text: str) -> list[tuple[int, int, str]]:
    """Definite syntax errors as (line, col, message), 1-based within ``sql_text``.

    Statements sqlglot is known to be incomplete on, but that our token grammar
    recognizes, are not errors (see :func:`parse_warnings`)."""
    try:
        return [issue for _, issue in _analyze_all(sql_text) if issue is not None]
    except RecursionError:
        return [(1, 1, "statement too deeply nested to analyze")]


def parse_warnings(sql_text: str) -> list[tuple[int, int, str]]:
    """Statements that are valid as far as we know but not fully understood."""
    try:
        return [(st.line, st.col, st.warning) for st, issue in _analyze_all(sql_text)
                if issue is None and st.warning]
    except RecursionError:
        return []


def diagnose(sql_text: str) -> list[tuple[int, int, str, str]]:
    """Errors and warnings together as (line, col, message, "error" | "warning")."""
    out = [(ln, c, m, "error") for ln, c, m in parse_errors(sql_text)]
    out += [(ln, c, m, "warning") for ln, c, m in parse_warnings(sql_text)]
    return sorted(out)
