"""Round-trip edits of the YAML files the engine changes (``type: metadata`` steps).

Pure (text in, text out) so that the planner shows the exact diff it will write;
ruamel.yaml's round-trip mode keeps comments, key order and the formatting of the lines it
does not touch. Writing the result is the metadata provider's
(:mod:`honua_plan.providers.metadata`).
"""

from __future__ import annotations

import difflib
import io
from collections.abc import Mapping, MutableMapping
from typing import Any

from honua_plan.errors import ApplyError


def round_trip_yaml() -> Any:
    """ruamel's round-trip YAML, set up as the repository's files are written (also by the
    assistant, :mod:`honua_plan.ai.changes`)."""
    from ruamel.yaml import YAML

    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def to_round_trip(value: Any, *, literal_blocks: bool = False) -> Any:
    """Plain values to ruamel's round-trip types, block style (as people write YAML);
    ``literal_blocks``: multi-line strings as ``|`` blocks (SQL in a new file)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.scalarstring import LiteralScalarString

    if isinstance(value, Mapping):
        m = CommentedMap()
        for k, v in value.items():
            m[k] = to_round_trip(v, literal_blocks=literal_blocks)
        return m
    if isinstance(value, list | tuple):
        s = CommentedSeq([to_round_trip(v, literal_blocks=literal_blocks) for v in value])
        if not value:
            s.fa.set_flow_style()
        return s
    if literal_blocks and isinstance(value, str) and "\n" in value:
        return LiteralScalarString(value)
    return value


def edit_text(text: str, changes: Mapping[str, Any], *, where: str = "") -> str:
    """Apply ``{"spec.storage.indexes": [...]}``-style changes to YAML ``text``.

    Aliases are refused before ruamel reads the text, as the loader refuses them."""
    from honua_plan.config.yamlparse import alias_problem
    from honua_plan.errors import ConfigError

    refused = alias_problem(text, where or "metadata file")
    if refused is not None:
        raise ConfigError([refused])
    y = round_trip_yaml()
    doc = y.load(text)
    if doc is None:
        raise ApplyError(f"{where or 'metadata file'} is empty")
    for dotted, value in changes.items():
        parts = dotted.split(".")
        node: Any = doc
        for p in parts[:-1]:
            if not isinstance(node, MutableMapping):
                raise ApplyError(f"{where}: cannot set {dotted}: {p} is not a mapping")
            if p not in node:
                from ruamel.yaml.comments import CommentedMap

                node[p] = CommentedMap()
            node = node[p]
        if not isinstance(node, MutableMapping):
            raise ApplyError(f"{where}: cannot set {dotted}: parent is not a mapping")
        if value is None and parts[-1] in node:
            del node[parts[-1]]
        else:
            node[parts[-1]] = to_round_trip(value)
    out = io.StringIO()
    y.dump(doc, out)
    return out.getvalue()


def missing_changes(text: str, changes: Mapping[str, Any]) -> list[str]:
    """The dotted keys of ``changes`` that ``text`` does not hold yet (a value ``None``: the
    key must be absent). Compared as data, so a file that holds an edit in its own
    formatting (flow style, other quoting, comments) holds it.

    A file a metadata step has rendered holds every key: deployment then verifies it
    instead of editing it (:mod:`honua_plan.providers.metadata`)."""
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return list(changes)
    out: list[str] = []
    for dotted, value in changes.items():
        node: Any = doc
        found = True
        for p in dotted.split("."):
            if not isinstance(node, Mapping) or p not in node:
                found = False
                break
            node = node[p]
        held = not found if value is None else found and _plain(node) == _plain(value)
        if not held:
            out.append(dotted)
    return out


def _plain(value: Any) -> Any:
    """Values as JSON would compare them: mappings and sequences of any kind as dict and list."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def unified_diff(before: str, after: str, path: str) -> str:
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True), after.splitlines(keepends=True),
            fromfile=f"a/{path}", tofile=f"b/{path}",
        )
    )
