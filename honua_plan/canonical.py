"""The one definition of "same value": canonical JSON text and its sha256 fingerprint.

Used for resource fingerprints, migration checksums and the shape of live tables. Kept
apart from the pydantic models so that a process that only hashes plain values (the
plan's forked catalog reader) does not import pydantic.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import sys
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from pathlib import PurePath
from typing import Any

__all__ = ["canonical_json", "fingerprint"]


def _is_model(obj: Any) -> bool:
    """A pydantic model? (Without importing pydantic: if nobody has, nothing is one.)"""
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(obj, pydantic.BaseModel)


def _jsonable(obj: Any) -> Any:
    """Turn ``obj`` into plain JSON values (dict/list/str/int/float/bool/None)."""
    if _is_model(obj):
        return _jsonable(obj.model_dump(mode="python"))
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"{obj!r} cannot be represented in JSON")
        return obj
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, date):
        return obj.isoformat()
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return _jsonable(obj.value)
    if isinstance(obj, PurePath):
        return obj.as_posix()
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise ValueError(f"mapping key {key!r} is not a JSON object key")
            out[key if isinstance(key, str) else json.dumps(key)] = _jsonable(value)
        return out
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, set | frozenset):
        items = [_jsonable(v) for v in obj]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True, separators=(",", ":")))
    raise ValueError(f"value of type {type(obj).__name__} cannot be represented in JSON")


def canonical_json(obj: Any) -> str:
    """Canonical JSON text of ``obj``: sorted keys, no spaces, datetimes in ISO 8601.

    Pydantic models are dumped first; tuples become lists; sets become sorted lists;
    ``Path`` becomes a POSIX string. Raises ``ValueError`` for anything else that JSON
    cannot represent (including NaN and infinity), so that a fingerprint never silently
    depends on ``repr``.
    """
    try:  # fast path: plain JSON values (what model_dump(mode="json") gives) go straight to C
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                          default=_json_default)
    except (TypeError, ValueError):
        pass  # odd keys, NaN, ...: the slow path says precisely what is wrong
    return json.dumps(
        _jsonable(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _json_default(obj: Any) -> Any:
    """Values json cannot encode itself, as :func:`_jsonable` turns them (same canonical text)."""
    if _is_model(obj) or isinstance(obj, datetime | date | Decimal | enum.Enum | PurePath | set | frozenset):
        return _jsonable(obj)
    if isinstance(obj, Mapping):
        return _jsonable(obj)
    raise TypeError(f"value of type {type(obj).__name__} cannot be represented in JSON")


def fingerprint(obj: Any) -> str:
    """``"sha256:" + hex`` digest of :func:`canonical_json` of ``obj``."""
    return _digest(canonical_json(obj))


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
