"""JSON Schemas generated from the pydantic models, so editors validate the YAML.

``honua schema export`` writes ``schemas/<kind>.schema.json``; a test regenerates them
and fails when the committed files are stale.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from honua_plan.config.models import KINDS
from honua_plan.files import check_target, write_text_atomic

SCHEMA_BASE = "https://honua.io/schemas/v1/"


def kind_schemas() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for kind, model in KINDS.items():
        schema = model.model_json_schema(by_alias=True, mode="validation")
        name = f"{kind.lower()}.schema.json"
        out[name] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": SCHEMA_BASE + name,
            **schema,
        }
    return out


def extra_schemas() -> dict[str, dict[str, Any]]:
    """Schemas of engine outputs (plan files) when their module is present."""
    try:
        from honua_plan.plan.model import plan_json_schema
    except ImportError:
        return {}
    return {"plan.schema.json": plan_json_schema()}


def render_all() -> dict[str, str]:
    schemas = {**kind_schemas(), **extra_schemas()}
    return {name: json.dumps(s, indent=2, sort_keys=True) + "\n" for name, s in sorted(schemas.items())}


def export(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_all().items():
        path = folder / name
        check_target(path, "schema file")  # a device, FIFO or link is refused (before reading it)
        if not path.exists() or path.read_text() != text:
            write_text_atomic(path, text, what="schema file")
        written.append(path)
    return written


def stale(folder: Path) -> list[str]:
    """Names of schema files that are missing or differ from the models."""
    return [
        name for name, text in render_all().items()
        if not (folder / name).exists() or (folder / name).read_text() != text
    ]
