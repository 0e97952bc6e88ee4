"""What a model may ask for: tools whose parameters are JSON Schemas generated from strict
pydantic models, and whose arguments are validated by the same models before anything runs.

A model never writes files or runs SQL; its tool call is a request that goes through the
same path a person's does (``propose_layer`` runs the ``propose layer`` flow: the live
table read, the Layer files written, validated and planned, a branch committed; the other
file changes go through :mod:`honua_plan.ai.gate`). ``propose_migration`` carries the very
:class:`~honua_plan.config.models.Migration` model the loader validates files with.
"""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from honua_plan.config.models import NAME_PATTERN, QUALIFIED_PATTERN, Migration

#: the folders ``edit_resource`` may change (configuration people review, nothing else; never
#: a policy or honua.yaml: :func:`path_problem`)
EDITABLE = ("environments", "migrations")


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


class ProposeMigration(_Args):
    """Add a new migration file under migrations/ (SQL steps up and down); the engine validates
    it, plans it in every environment and shows its risk before anything is committed."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_]{0,60}$",
                               description="the file name after the id, e.g. drop_old_parcels")]
    migration: Annotated[Migration, Field(description="the Migration document, as in migrations/*.yaml")]


class RemoveResource(_Args):
    """Remove a layer or a service: its file is deleted in every environment folder where it exists."""

    kind: Literal["Layer", "Service"]
    name: Annotated[str, Field(pattern=NAME_PATTERN, description="metadata.name of the layer or service")]


class EditResource(_Args):
    """Change one existing YAML file with a JSON merge patch (RFC 7386: a key set to a value
    replaces it, null deletes it, objects merge, lists are replaced whole)."""

    path: Annotated[str, Field(min_length=1, max_length=300, description=(
        "the file, relative to the repository, under environments/ or migrations/ (never a policy), "
        "e.g. environments/dev/layers/bike-lanes.yaml"))]
    patch: Annotated[dict[str, Any], Field(description="the JSON merge patch applied to the file's document")]

    @field_validator("path")
    @classmethod
    def _inside(cls, v: str) -> str:
        problem = path_problem(v)
        if problem:
            raise ValueError(problem)
        return v


def path_problem(path: str) -> str | None:
    """Why ``path`` may not be edited (outside the reviewed folders, absolute, ``..``), or None."""
    if "\\" in path or "\x00" in path:
        return f"{path!r} is not a repository path (use / and no control characters)"
    p = PurePosixPath(path)
    if p.is_absolute() or re.match(r"^[A-Za-z]:", path):
        return f"{path!r} is absolute: give a path relative to the repository"
    if ".." in p.parts:
        return f"{path!r} leaves the repository ('..' is refused)"
    if path == "honua.yaml" or p.parts[:1] == ("policies",) or (
            len(p.parts) == 3 and p.parts[0] == "environments" and p.parts[2] in ("policy.yaml", "policy.yml")):
        return (f"{path!r} is a policy or honua.yaml: the assistant cannot change the policy that judges its own "
                "changes; a person edits it in a reviewed pull request")
    if not p.parts or p.parts[0] not in EDITABLE or len(p.parts) < 2:
        return f"{path!r} is outside {', '.join(f'{d}/' for d in EDITABLE)}: only those files can be edited"
    if p.suffix not in (".yaml", ".yml"):
        return f"{path!r} is not a YAML file"
    return None


TOOLS: dict[str, type[_Args]] = {
    "propose_layer": ProposeLayer, "propose_migration": ProposeMigration, "remove_resource": RemoveResource,
    "edit_resource": EditResource, "answer": Answer, "ask_user": AskUser,
}


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
        return None, [f"{'.'.join(str(p) for p in e['loc']) or name}: {e['msg'].removeprefix('Value error, ')}"
                      for e in exc.errors(include_url=False)]
