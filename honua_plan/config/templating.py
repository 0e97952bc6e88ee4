"""``{{ env }}`` templating for paths, SQL and env var names: data, never code.

Config files are untrusted input (anyone with commit rights, or an AI, writes them), so a
template may only print the documented variables (:data:`VARIABLES`), pass them through a
few harmless filters and choose with ``{% if %}``. Everything else (other names, attribute
or item access, calls, loops, ``set``, ``include``, arithmetic) is refused before
rendering by walking the parsed template against an allow-list of node types, and the
template renders in jinja2's immutable sandbox with no globals, as a second wall.

A ``{{`` or ``{%`` opens a template expression only when a name follows it (``{{ env }}``,
``{%- if``); other braces are text, so SQL such as ``'{{1,2},{3,4}}'::int[]`` or ``'{#}'``
is left exactly as written, also next to a real template expression. Text without any
template expression is returned unchanged, so the common case costs nothing; compiled
templates are cached.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2
    from jinja2 import nodes

VARIABLES = ("env", "environment", "project")
"""The only names a template may use (see :func:`variables_for`)."""

FILTERS = ("default", "lower", "trim", "upper")
"""Filters that cannot reach objects or grow text (``replace``, chained, grows it exponentially)."""

TESTS = ("defined", "undefined", "none", "string", "eq", "ne", "in")

_OPENER = re.compile(r"\{(?=[{%#])")
_OPENER_OR_END = re.compile(r"\{(?=[{%#]|$)")
_TAG_START = re.compile(r"\{([{%])[-+]?\s*[A-Za-z_]")
_CLOSER = {"{": "}}", "%": "%}"}


class TemplateProblem(ValueError):
    """A template that does not parse, or uses something a config template may not use.

    ``line`` is 1-based within the text (0: unknown), ``column`` 0-based within that line.
    """

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


def _tag_end(text: str, start: int, closer: str) -> int:
    """Index just after the tag opened at ``start`` (quoted strings skipped), or len(text)."""
    i = start + 2
    n = len(text)
    while i < n:
        c = text[i]
        if c in "'\"":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            i = j + 1
        elif text.startswith(closer, i):
            return i + len(closer)
        else:
            i += 1
    return n


def _split(text: str) -> list[tuple[bool, str]]:
    """``text`` as (is_tag, piece) pieces: template tags, and the text between them."""
    pieces: list[tuple[bool, str]] = []
    pos = 0
    for m in _TAG_START.finditer(text):
        if m.start() < pos:
            continue  # inside the previous tag
        pieces.append((False, text[pos:m.start()]))
        end = _tag_end(text, m.start(), _CLOSER[m.group(1)])
        pieces.append((True, text[m.start():end]))
        pos = end
    pieces.append((False, text[pos:]))
    return [p for p in pieces if p[1]]


def is_template(text: str) -> bool:
    """Whether ``text`` holds a template expression (a ``{{``/``{%`` followed by a name)."""
    return ("{{" in text or "{%" in text) and _TAG_START.search(text) is not None


def _jinja_source(text: str) -> str:
    """``text`` with every brace that is not a tag's made literal for jinja2 (no new lines)."""
    out: list[str] = []
    pieces = _split(text)
    for index, (is_tag, piece) in enumerate(pieces):
        if is_tag:
            if re.match(r"\{%[-+]?\s*raw\b", piece):
                raise TemplateProblem("template error: 'raw' is not allowed (braces that do not open a "
                                      "template expression are kept as they are)",
                                      text.count("\n", 0, text.find(piece)) + 1)
            out.append(piece)
        else:
            # a brace that would start a jinja2 delimiter, also with the next tag's first brace
            opener = _OPENER_OR_END if index + 1 < len(pieces) else _OPENER
            out.append(opener.sub("{{ '{' }}", piece))
    return "".join(out)


def _sandbox() -> jinja2.Environment:
    import jinja2
    from jinja2.exceptions import SecurityError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Sandbox(ImmutableSandboxedEnvironment):
        """No attribute or item access at all: the variables are plain strings."""

        def getattr(self, obj: Any, attribute: str) -> Any:
            raise SecurityError(f"attribute access (.{attribute}) is not allowed")

        def getitem(self, obj: Any, argument: Any) -> Any:
            raise SecurityError("item access ([...]) is not allowed")

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
            raise SecurityError("calls are not allowed")

    env = Sandbox(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.globals.clear()  # no range, dict, lipsum, cycler, joiner, namespace
    env.filters = {name: env.filters[name] for name in FILTERS}
    env.tests = {name: env.tests[name] for name in TESTS}
    return env


_env = lru_cache(maxsize=1)(_sandbox)


def _allowed_nodes() -> tuple[type[nodes.Node], ...]:
    from jinja2 import nodes

    return (nodes.Template, nodes.Output, nodes.TemplateData, nodes.Name, nodes.Const, nodes.List,
            nodes.Tuple, nodes.Keyword, nodes.Filter, nodes.Test, nodes.If, nodes.CondExpr, nodes.Compare,
            nodes.Operand, nodes.And, nodes.Or, nodes.Not, nodes.Concat)


def _describe(node: nodes.Node) -> tuple[str, str]:
    """(what is refused, text to look for on the node's line to place the column)."""
    from jinja2 import nodes

    if isinstance(node, nodes.Getattr):
        return f"attribute access (.{node.attr})", f".{node.attr}"
    if isinstance(node, nodes.Getitem):
        return "item access ([...])", "["
    if isinstance(node, nodes.Call):
        return "a call", "("
    if isinstance(node, nodes.BinExpr | nodes.UnaryExpr):
        return f"operator '{node.operator}'", node.operator
    keyword = {"Assign": "set", "AssignBlock": "set", "FromImport": "import", "CallBlock": "call",
               "FilterBlock": "filter", "ScopedEvalContextModifier": "autoescape",
               "EvalContextModifier": "autoescape", "ExprStmt": "do"}
    name = keyword.get(type(node).__name__, type(node).__name__.lower())
    return f"'{name}'", name


def _check(tree: nodes.Template, text: str) -> None:
    """Raise for the first thing outside the allow-list: statements, then names, then expressions."""
    from jinja2 import nodes

    lines = text.split("\n")

    def problem(message: str, lineno: int, needle: str) -> TemplateProblem:
        line = lines[lineno - 1] if 0 < lineno <= len(lines) else ""
        col = line.find(needle) if needle else -1
        if col < 0:
            found = _TAG_START.search(line)
            col = found.start() if found else 0
        return TemplateProblem(f"template error: {message}", lineno, col)

    allowed = _allowed_nodes()

    def refused(node: nodes.Node) -> TemplateProblem:
        what, needle = _describe(node)
        return problem(f"{what} is not allowed in config templates", node.lineno, needle)

    for stmt in tree.find_all(nodes.Stmt):  # for, set, macro, include...: before the names they bind
        if not isinstance(stmt, allowed):
            raise refused(stmt)
    for name in tree.find_all(nodes.Name):
        if name.name not in VARIABLES:
            raise problem(f"'{name.name}' is not a template variable (allowed: {', '.join(VARIABLES)}); "
                          "a SQL array literal can quote its elements: '{{\"a\",\"b\"}}'",
                          name.lineno, name.name)

    def walk(node: nodes.Node) -> None:
        if not isinstance(node, allowed):
            raise refused(node)
        if isinstance(node, nodes.Filter) and node.name not in FILTERS:
            raise problem(f"filter '{node.name}' is not allowed (allowed: {', '.join(FILTERS)})",
                          node.lineno, node.name)
        if isinstance(node, nodes.Test) and node.name not in TESTS:
            raise problem(f"test '{node.name}' is not allowed (allowed: {', '.join(TESTS)})",
                          node.lineno, node.name)
        for child in node.iter_child_nodes():
            walk(child)

    walk(tree)


@lru_cache(maxsize=4096)
def _compile(text: str) -> jinja2.Template:
    import jinja2

    env = _env()
    try:
        tree = env.parse(_jinja_source(text))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateProblem(f"template error: {exc.message}", exc.lineno) from None
    _check(tree, text)
    try:
        return env.from_string(tree)
    except jinja2.TemplateSyntaxError as exc:  # pragma: no cover - _check refuses what would fail
        raise TemplateProblem(f"template error: {exc.message}", exc.lineno) from None


def render_template(text: str, variables: dict[str, Any]) -> str:
    """Render ``text`` with ``variables``; text without a template expression is returned unchanged."""
    if not is_template(text):
        return text
    import jinja2
    from jinja2.exceptions import SecurityError

    template = _compile(text)
    try:
        return template.render(**{k: v for k, v in variables.items() if k in VARIABLES})
    except (jinja2.UndefinedError, SecurityError) as exc:
        raise TemplateProblem(f"template error: {exc.message or exc}") from None


def variables_for(environment: str, project: str = "") -> dict[str, Any]:
    return {"env": environment, "environment": environment, "project": project}
