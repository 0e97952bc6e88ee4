"""Classify a statement from sqlglot's syntax tree: the kind of change, its tables, its lock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from sqlglot import exp
from sqlglot.tokens import Token

from honua_plan.sql.locks import (
    ACCESS_EXCLUSIVE,
    ACCESS_SHARE,
    LOCK_RANK,
    NO_LOCK,
    ROW_EXCLUSIVE,
    ROW_SHARE,
    SHARE,
    SHARE_ROW_EXCLUSIVE,
    SHARE_UPDATE_EXCLUSIVE,
    UNKNOWN_LOCK,
)
from honua_plan.sql.statement import _GEOM_USING_FUNCS, Op
from honua_plan.sql.syntax import (
    _calls,
    _has_volatile,
    _ident,
    _is_spatial_type,
    _node,
    _table_name,
)

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


