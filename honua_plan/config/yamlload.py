"""Fast YAML reading that keeps every value's line and column.

libyaml (PyYAML's ``CSafeLoader``) composes the node tree in C; we walk the nodes once
to record where each key and value sits, so that a pydantic error on
``spec.storage.srid`` can be reported as ``path:line:column``. ruamel.yaml is kept
for round-trip edits only (``metadata`` steps): it measured ~15x slower here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from honua_plan.errors import Diagnostic, Location

try:
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader

PathKey = tuple[str | int, ...]


@dataclass
class SourceMap:
    """Line/column of every key path in one YAML document."""

    path: str
    positions: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    start: tuple[int, int] = (1, 1)

    def locate(self, key: PathKey) -> Location:
        """The closest known position for ``key`` (walking up to its parents)."""
        k = tuple(key)
        while k:
            pos = self.positions.get(k)
            if pos is not None:
                return Location(self.path, pos[0], pos[1])
            k = k[:-1]
        return Location(self.path, *self.start)


@dataclass
class Document:
    """One YAML document: its plain data and where each part came from."""

    data: Any
    source: SourceMap
    index: int = 0  # position in a multi-document file


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


def load_documents(text: str, path: str, problems: list[Diagnostic]) -> list[Document]:
    """Parse every document of ``text``; syntax errors become diagnostics, not exceptions."""
    loader = _Loader(text)
    docs: list[Document] = []
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # pragma: no cover - defensive
                break
            src = SourceMap(path, start=_mark(node))
            _walk(node, (), src, problems)
            data = loader.construct_document(node)
            docs.append(Document(data, src, index))
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


def iter_documents(paths: Iterator[str], read: Any, problems: list[Diagnostic]) -> Iterator[Document]:
    for p in paths:
        yield from load_documents(read(p), p, problems)
