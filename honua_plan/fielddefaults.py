"""Default factories for pydantic fields: plain functions instead of the builtins ``list``
and ``dict``.

pydantic inspects a ``default_factory``'s signature when it builds a model's schema. For a
builtin that means tokenizing and compiling its text signature (~0.4 ms a field on the
benchmark host, ~25 ms of every plan's start-up over the ~60 such fields of the models a
plan uses); for a Python function it costs next to nothing.
"""

from __future__ import annotations

from typing import Any


def empty_list() -> list[Any]:
    return []


def empty_dict() -> dict[Any, Any]:
    return {}
