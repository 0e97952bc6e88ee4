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

Lock modes follow ``docs/reference/postgres-locks.md`` (measured on PostgreSQL 15).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from functools import lru_cache

from sqlglot import exp
from sqlglot.errors import ParseError
from sqlglot.tokens import Token, TokenType

from honua_plan.sql.classify import _Draft, _from_tree
from honua_plan.sql.grammar import _classify_tokens, _InnerSyntaxError
from honua_plan.sql.locks import UNKNOWN_LOCK
from honua_plan.sql.readonly import hidden_effects
from honua_plan.sql.statement import Op, Statement
from honua_plan.sql.syntax import (
    _Cursor,
    _error_message,
    _is_word,
    _Issue,
    _line_col,
    _option_on,
    _parse_tokens,
    _tokenize,
)

# ------------------------------------------------------------------------ driver


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
        st, issue = _analyze_one(piece, start, sql_text)
        if issue is None and _may_call(st):
            effects = hidden_effects(piece)
            if effects is not None:
                st = replace(st, effects=effects)
        out.append((st, issue))
    return tuple(out)


_CALLING = frozenset({"SELECT", "WITH", "INSERT", "UPDATE", "DELETE", "MERGE", "CALL", "DO", "EXPLAIN", "VALUES"})


def _may_call(st: Statement) -> bool:
    """Whether a statement can call a function now, or create one (read by pglast only then)."""
    if st.keyword in _CALLING:
        return True
    return st.keyword == "CREATE" and any(w in st.sql.upper() for w in ("FUNCTION", "PROCEDURE"))


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
