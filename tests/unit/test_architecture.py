"""The package's shape is the pipeline's: no import cycles, no import from a lower layer
to a higher one, pure planning code, modules and classes small enough to read.

Every import counts, including function-local (lazy) imports and those under
``TYPE_CHECKING``: a lazy import is still a dependency, it only moves when it is paid.
The layers are the map in ``docs/architecture.md``; keep the two in step.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "honua_plan"

#: Lowest first. A module may import its own layer and the layers below it. The first
#: prefix that matches a module's dotted name (without ``honua_plan.``) places it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("errors", "secrets", "canonical", "console", "textsafe", "fielddefaults", "statefile", "lazy", "files",
              "__init__")),
    ("sql", ("sql",)),
    # the one SQL execution function and the frozen catalog facts: the vocabulary shared by
    # everything that reads the database (state's serial guard, the planner, the providers)
    ("db", ("providers.postgis.sqlexec", "providers.postgis.facts")),
    ("config", ("config",)),
    ("state", ("state",)),
    ("plan", ("plan",)),
    ("providers", ("providers",)),
    ("checks", ("checks",)),
    ("apply", ("apply",)),
    ("workspace", ("workspace",)),
    ("workflows", ("workflows",)),
    ("context", ("context",)),
    ("interfaces", ("cli", "ai", "__main__")),
]

#: The planning core: values in, values out (see docs/architecture.md).
PURE = ("plan.diff", "plan.graph", "plan.risk", "plan.builder", "plan.policy", "plan.model")
IMPURE_IMPORTS = ("psycopg", "httpx", "requests", "subprocess", "socket", "urllib.request", "http.client")
MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 300
WHY = "one unit"  # the sentence a larger module or class gives for staying whole


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)
        out[name] = path
    return out


@cache
def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(imports between package modules, external top-level imports) per module."""
    mods = _modules()
    internal: dict[str, set[str]] = defaultdict(set)
    external: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ["honua_plan", *package.split(".")][: len(package.split(".")) + 2 - node.level]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                targets = [module] + [f"{module}.{a.name}" for a in node.names]
            for t in targets:
                if t.startswith("honua_plan."):
                    rel = t.removeprefix("honua_plan.")
                    if rel in mods and rel != name:
                        internal[name].add(rel)
                elif t == "honua_plan":
                    continue
                else:
                    external[name].add(t)
    return internal, external


def _layer(module: str) -> int:
    for i, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"honua_plan.{module} is in no layer: add it to LAYERS (and docs/architecture.md)")


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(set(edges) | {t for ts in edges.values() for t in ts}):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_no_import_cycles() -> None:
    internal, _ = _graph()
    assert _cycles(internal) == []


def test_every_module_has_a_layer() -> None:
    for module in _modules():
        _layer(module)


def test_no_import_from_a_lower_layer_to_a_higher_one() -> None:
    internal, _ = _graph()
    wrong = sorted(
        f"{m} ({LAYERS[_layer(m)][0]}) imports {t} ({LAYERS[_layer(t)][0]})"
        for m, targets in internal.items() for t in targets if _layer(t) > _layer(m)
    )
    assert wrong == []


def test_planning_core_is_pure() -> None:
    internal, external = _graph()
    wrong = []
    for m in PURE:
        wrong += [f"{m} imports {x}" for x in sorted(external[m])
                  if any(x == i or x.startswith(i + ".") for i in IMPURE_IMPORTS)]
        wrong += [f"{m} imports honua_plan.{t}" for t in sorted(internal[m])
                  if t.startswith("providers.") and t != "providers.postgis.facts"]
    assert wrong == []


def _docstring_says_why(node: ast.AST) -> bool:
    doc = ast.get_docstring(node) if isinstance(node, ast.Module | ast.ClassDef) else None
    return bool(doc) and WHY in " ".join((doc or "").lower().split())


def test_modules_and_classes_are_small_or_say_why() -> None:
    large = []
    for name, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        if len(text.splitlines()) > MAX_MODULE_LINES and not _docstring_says_why(tree):
            large.append(f"honua_plan.{name}: {len(text.splitlines())} lines")
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                size = node.end_lineno - node.lineno + 1
                if size > MAX_CLASS_LINES and not _docstring_says_why(node):
                    large.append(f"honua_plan.{name}.{node.name}: {size} lines")
    assert large == []


@pytest.mark.parametrize("edges, expected", [
    ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
])
def test_the_cycle_finder_finds_cycles(edges: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert _cycles(edges) == expected
