"""sqlglot, quietly: the PostgreSQL tokenizer and syntax-tree helpers the classifiers share."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import ClassVar

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.tokens import Token, TokenType

from honua_plan.sql.statement import VOLATILE_FUNCTIONS

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


_Issue = tuple[int, int, str]


def _parse_tokens(tokens: Sequence[Token], sql: str) -> exp.Expr | None:
    """Parse one statement's tokens; raises ParseError on a syntax error."""
    with _quiet():
        trees = _DIALECT.parser().parse(list(tokens), sql)
    return trees[0] if trees else None


def _error_message(err: dict[str, object], fallback: str) -> str:
    """sqlglot's description without its internal token dump."""
    desc = str(err.get("description") or fallback).splitlines()[0]
    near = str(err.get("highlight") or "").strip()
    if " but got <Token" in desc:
        head = desc.split(" but got <Token")[0]
        return f"{head} but reached the end of the statement" if "SENTINEL" in desc else (
            f"{head} near '{near}'")
    return f"{desc} near '{near}'" if near else desc


# ------------------------------------------------------------- token cursor

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


def view_columns(view_sql: str) -> tuple[str, ...] | None:
    """The output column names of ``CREATE [OR REPLACE] VIEW … AS SELECT …`` (an explicit
    column list wins), or None when they cannot be told without the database (``*``, a
    set operation, an unnamed expression, a statement sqlglot cannot parse)."""
    import sqlglot

    try:
        with _quiet():
            tree = sqlglot.parse_one(view_sql, read="postgres")
    except sqlglot.errors.SqlglotError:
        return None
    if not isinstance(tree, exp.Create):
        return None
    target = tree.this
    if isinstance(target, exp.Schema) and target.expressions:
        return tuple(_ident(e) or "" for e in target.expressions)
    query = tree.expression
    if not isinstance(query, exp.Select) or any(isinstance(e, exp.Star) or e.is_star for e in query.expressions):
        return None
    names = tuple(query.named_selects)
    return names if len(names) == len(query.expressions) and all(names) else None
