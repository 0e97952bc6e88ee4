"""Statements sqlglot cannot parse (VACUUM, CLUSTER, REINDEX, ``ALTER TABLE … VALIDATE``,
CONCURRENTLY forms…), classified from the token sequence by a small strict grammar per
statement kind, never by a regex over the text."""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp
from sqlglot.errors import ParseError
from sqlglot.tokens import Token, TokenType

from honua_plan.sql.classify import _combine, _Draft
from honua_plan.sql.locks import (
    ACCESS_EXCLUSIVE,
    EXCLUSIVE,
    LOCK_RANK,
    NO_LOCK,
    SHARE,
    SHARE_ROW_EXCLUSIVE,
    SHARE_UPDATE_EXCLUSIVE,
    UNKNOWN_LOCK,
)
from honua_plan.sql.statement import VOLATILE_FUNCTIONS, Op
from honua_plan.sql.syntax import (
    _Cursor,
    _error_message,
    _is_word,
    _names_list,
    _option_on,
    _parse_tokens,
)

# ---------------------------------------------------------------- token grammar


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


