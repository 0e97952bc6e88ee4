"""The YAML parser behind :mod:`honua_plan.config.yamlload`: libyaml plus one Python pass.

A module of its own so that a run whose files all come from the parse cache never
imports PyYAML (see :class:`~honua_plan.config.yamlload.ParseCache`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from honua_plan.config.source import Document, PathKey, SourceMap
from honua_plan.errors import Diagnostic, Location

try:
    _Base: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - libyaml missing
    _Base = yaml.SafeLoader

_TAG = "tag:yaml.org,2002:"
_STR, _NULL, _BOOL, _INT, _FLOAT, _TIMESTAMP, _MAP, _SEQ = (
    _TAG + t for t in ("str", "null", "bool", "int", "float", "timestamp", "map", "seq")
)
_RESOLVED: dict[tuple[str, bool], str] = {}  # (plain scalar, implicit) -> tag
_RESOLVED_MAX = 200_000


class _Loader(_Base):  # type: ignore[valid-type,misc]
    """``CSafeLoader`` with implicit scalar resolution memoized (no path resolvers are used)."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode and not self.yaml_path_resolvers:
            key = (value, bool(implicit[0]))
            tag = _RESOLVED.get(key)
            if tag is None:
                tag = super().resolve(kind, value, implicit)
                if len(_RESOLVED) >= _RESOLVED_MAX:
                    _RESOLVED.clear()
                _RESOLVED[key] = tag
            return tag
        return super().resolve(kind, value, implicit)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _walk(
    node: yaml.Node, key: PathKey, src: SourceMap, problems: list[Diagnostic]
) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, tuple[int, int]] = {}
        for k_node, v_node in node.value:
            k = k_node.value if isinstance(k_node, yaml.ScalarNode) else str(k_node.value)
            pos = _mark(k_node)
            if k in seen and k != "<<":
                problems.append(
                    Diagnostic(
                        Location(src.path, *pos),
                        f"duplicate key '{k}' (first defined on line {seen[k][0]})",
                    )
                )
            seen[k] = pos
            child = (*key, k)
            src.positions[child] = pos
            _walk(v_node, child, src, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = (*key, i)
            src.positions[child] = _mark(item)
            _walk(item, child, src, problems)


class _Fallback(Exception):
    """A node the single pass does not handle: use PyYAML's constructor for the document."""


class _Builder:
    """Data, positions and duplicate keys in one pass over a composed document."""

    __slots__ = ("loader", "path", "positions", "problems", "seen")

    def __init__(self, loader: Any, path: str) -> None:
        self.loader = loader
        self.path = path
        self.positions: dict[PathKey, tuple[int, int]] = {}
        self.problems: list[Diagnostic] = []
        self.seen: set[int] = set()

    def scalar(self, node: yaml.ScalarNode) -> Any:
        tag = node.tag
        if tag == _STR:
            return node.value
        if tag == _NULL:
            return None
        if tag == _BOOL:
            return self.loader.bool_values[node.value.lower()]
        if tag == _INT:
            return self.loader.construct_yaml_int(node)
        if tag == _FLOAT:
            return self.loader.construct_yaml_float(node)
        if tag == _TIMESTAMP:
            return self.loader.construct_yaml_timestamp(node)
        raise _Fallback

    def build(self, node: yaml.Node, key: PathKey) -> Any:
        cls = node.__class__
        if cls is yaml.ScalarNode:
            return self.scalar(node)  # type: ignore[arg-type]
        if id(node) in self.seen:  # an alias: keep PyYAML's shared/recursive objects
            raise _Fallback
        self.seen.add(id(node))
        positions = self.positions
        if cls is yaml.MappingNode:
            if node.tag != _MAP:
                raise _Fallback
            out: dict[Any, Any] = {}
            first: dict[str, tuple[int, int]] = {}
            for k_node, v_node in node.value:
                if k_node.__class__ is not yaml.ScalarNode:
                    raise _Fallback
                k = k_node.value
                m = k_node.start_mark
                pos = (m.line + 1, m.column + 1)
                if k in first and k != "<<":
                    self.problems.append(Diagnostic(
                        Location(self.path, *pos),
                        f"duplicate key '{k}' (first defined on line {first[k][0]})",
                    ))
                first[k] = pos
                child = (*key, k)
                positions[child] = pos
                out[self.scalar(k_node)] = self.build(v_node, child)
            return out
        if cls is yaml.SequenceNode:
            if node.tag != _SEQ:
                raise _Fallback
            items = []
            for i, item in enumerate(node.value):
                child = (*key, i)
                m = item.start_mark
                positions[child] = (m.line + 1, m.column + 1)
                items.append(self.build(item, child))
            return items
        raise _Fallback  # pragma: no cover - no other node kinds


def _document(loader: Any, node: yaml.Node, path: str, index: int,
              problems: list[Diagnostic]) -> Document:
    src = SourceMap(path, start=_mark(node))
    builder = _Builder(loader, path)
    try:
        data = builder.build(node, ())
    except _Fallback:
        _walk(node, (), src, problems)
        data = loader.construct_document(node)
    else:
        src.positions = builder.positions
        problems.extend(builder.problems)
    return Document(data, src, index)


# An anchor or alias is ``&name`` / ``*name``: one of them followed by an anchor character.
# Most files have none, so this one regular expression spares them the token scan.
_MAYBE_ANCHOR = re.compile(r"[&*][^\s,\[\]{}]")
ALIAS_MESSAGE = "YAML aliases are not allowed in config files"
ANCHOR_MESSAGE = "YAML anchors are not allowed in config files"


def alias_problem(text: str, path: str) -> Diagnostic | None:
    """The first alias in ``text`` (else the first anchor), found by libyaml's scanner alone.

    Config is untrusted input: aliases let a few hundred bytes expand to gigabytes (a
    "billion laughs") or refer to themselves. They are refused before anything is composed
    or constructed, so a refusal costs one linear scan of the text and no expansion.
    """
    if _MAYBE_ANCHOR.search(text) is None:
        return None
    scanner = _Base(text)
    anchor: Any = None
    try:
        while scanner.check_token():
            token = scanner.get_token()
            if isinstance(token, yaml.AliasToken):
                m = token.start_mark
                return Diagnostic(Location(path, m.line + 1, m.column + 1),
                                  f"{ALIAS_MESSAGE}: write the value out in full (*{token.value})")
            if anchor is None and isinstance(token, yaml.AnchorToken):
                anchor = token
    except yaml.YAMLError:
        pass  # a syntax error: the parser reports it, and nothing after it is composed
    finally:
        scanner.dispose()
    if anchor is not None:
        m = anchor.start_mark
        return Diagnostic(Location(path, m.line + 1, m.column + 1),
                          f"{ANCHOR_MESSAGE} (aliases are refused): remove &{anchor.value}")
    return None


def plain_documents(path: Path, root: Path | None = None) -> list[Any]:
    """The documents of a YAML file as plain data, without positions or checks; [] on any problem.

    Only for peeking at a file before it is loaded properly (see ``connections.early_dsn``).
    The peek refuses what the loader refuses: aliases, and a file (when ``root`` is given)
    that resolves outside ``root``.
    """
    try:
        if root is not None:
            real = os.path.realpath(path, strict=True)
            base = os.path.realpath(root)
            if not real.startswith(base.rstrip(os.sep) + os.sep):
                return []
        text = path.read_text(encoding="utf-8")
        if alias_problem(text, str(path)) is not None:
            return []
        return list(yaml.load_all(text, Loader=_Base))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []


def parse_documents(text: str, path: str, problems: list[Diagnostic]) -> list[Document]:
    """Parse every document of ``text``; syntax errors become diagnostics, not exceptions.

    A file with an alias or anchor yields no documents and one diagnostic (see
    :func:`alias_problem`)."""
    refused = alias_problem(text, path)
    if refused is not None:
        problems.append(refused)
        return []
    loader = _Loader(text)
    docs: list[Document] = []
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # pragma: no cover - defensive
                break
            docs.append(_document(loader, node, path, index, problems))
            index += 1
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reason = exc.problem or exc.context or "invalid YAML"
        problems.append(Diagnostic(Location(path, line, col), f"invalid YAML: {reason}"))
    except yaml.YAMLError as exc:  # pragma: no cover - non-marked errors are rare
        problems.append(Diagnostic(Location(path, 1, 1), f"invalid YAML: {exc}"))
    finally:
        loader.dispose()
    return docs
