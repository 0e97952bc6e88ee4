"""Where each value of a YAML document came from: its file, line and column.

Separate from the parser (:mod:`~honua_plan.config.yamlparse`) and the cache
(:mod:`~honua_plan.config.yamlload`) so that both can use it without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from honua_plan.errors import Location

PathKey = tuple[str | int, ...]


@dataclass
class SourceMap:
    """Line/column of every key path in one YAML document.

    ``positions`` may be filled lazily: a document read from the :class:`ParseCache`
    keeps its text and computes them on the first :meth:`locate` that needs them.
    """

    path: str
    positions: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    start: tuple[int, int] = (1, 1)
    #: computes ``positions`` on first need (the parser re-reading the document's text)
    _lazy: Callable[[], dict[PathKey, tuple[int, int]]] | None = field(default=None, repr=False, compare=False)

    def _fill(self) -> None:
        if self._lazy is None:
            return
        compute, self._lazy = self._lazy, None
        self.positions = compute()

    def locate(self, key: PathKey) -> Location:
        """The closest known position for ``key`` (walking up to its parents)."""
        k = tuple(key)
        if k and self._lazy is not None:
            self._fill()
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


