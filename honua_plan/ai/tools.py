"""What a model may ask for: tools whose parameters are JSON Schemas generated from strict
pydantic models, and whose arguments are validated by the same models before anything runs.

A model never writes files or runs SQL; its tool call is a request that goes through the
same path a person's does (``propose_layer`` runs the ``propose layer`` flow: the live
table read, the Layer files written, validated and planned, a branch committed).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from honua_plan.config.models import NAME_PATTERN, QUALIFIED_PATTERN


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProposeLayer(_Args):
    """Publish an existing PostGIS table as a new layer (the engine reads the table itself)."""

    table: Annotated[str, Field(pattern=QUALIFIED_PATTERN, description="schema.table, e.g. public.parks")]
    service: Annotated[str | None, Field(pattern=NAME_PATTERN, description="the service it belongs to")] = None
    name: Annotated[str | None, Field(pattern=NAME_PATTERN, description="the layer's name")] = None


class Answer(_Args):
    """Answer in words only (a question, or a request the tools cannot do); nothing changes."""

    text: Annotated[str, Field(min_length=1, max_length=4000)]


class AskUser(_Args):
    """Ask the user one question before proposing anything."""

    question: Annotated[str, Field(min_length=1, max_length=500)]


TOOLS: dict[str, type[_Args]] = {"propose_layer": ProposeLayer, "answer": Answer, "ask_user": AskUser}


def tool_specs() -> list[dict[str, Any]]:
    """The tools in the OpenAI function-calling shape litellm passes on."""
    out = []
    for name, model in TOOLS.items():
        schema = model.model_json_schema()
        schema.pop("title", None)
        out.append({"type": "function", "function": {
            "name": name, "description": (model.__doc__ or "").strip(), "parameters": schema}})
    return out


def parse_call(name: str, arguments: str) -> tuple[_Args | None, list[str]]:
    """The validated arguments of a tool call, or the problems to send back to the model."""
    model = TOOLS.get(name)
    if model is None:
        return None, [f"there is no tool '{name}' (tools: {', '.join(TOOLS)})"]
    try:
        data = json.loads(arguments or "{}")
    except json.JSONDecodeError as exc:
        return None, [f"the arguments are not JSON: {exc.msg} at column {exc.colno}"]
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return None, [f"{'.'.join(str(p) for p in e['loc']) or name}: {e['msg']}" for e in exc.errors()]
