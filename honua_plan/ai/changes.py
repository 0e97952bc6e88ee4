"""What a model's file tools would change, worked out before anything is written.

:func:`prepare` turns validated tool arguments (``propose_migration``, ``remove_resource``,
``edit_resource``) into a :class:`Change`: the files' new text (or their deletion), the plan
addresses it touches and a branch name. The repository *with* the change is then checked by
the same loader as every file (``config.loader.load``, new and edited files read through its
overlay, deletions in a scratch copy), so the problems a model is told about are the
``file:line:col`` lines ``honua validate`` would print, and it can repair them. Nothing here
writes to the repository; :mod:`honua_plan.ai.gate` does, after this.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from honua_plan.ai import AI_ACTOR
from honua_plan.ai.tools import (
    EDITABLE,
    EditResource,
    ProposeMigration,
    RemoveResource,
    path_problem,
)
from honua_plan.config.yamledit import round_trip_yaml, to_round_trip
from honua_plan.errors import ConfigError

#: what a scratch copy needs to load the repository (the loader reads nothing else)
CONFIG_PARTS = ("honua.yaml", "providers", "environments", "migrations", "policies")


@dataclass(frozen=True)
class Change:
    """Files to write (text) or delete (None), the plan addresses they touch ((): the whole
    environment is planned), and what to call the change."""

    tool: str
    title: str
    files: dict[str, str | None]
    targets: tuple[str, ...]
    branch: str
    status: dict[str, str] = field(default_factory=dict)  # path -> "new" | "changed" | "deleted"


# --------------------------------------------------------------------------- YAML text


def dump_yaml(data: Any, header: tuple[str, ...] = ()) -> str:
    out = io.StringIO()
    round_trip_yaml().dump(to_round_trip(data, literal_blocks=True), out)
    return "".join(f"{line}\n" for line in header) + out.getvalue()


def merge_patch(target: MutableMapping[str, Any], patch: Mapping[str, Any]) -> None:
    """RFC 7386 on a (round-trip) mapping, in place: null deletes, objects merge, anything
    else (lists included) replaces; comments and order of untouched keys stay."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping):
            current = target.get(key)
            if not isinstance(current, MutableMapping):
                current = to_round_trip({})
                target[key] = current
            merge_patch(current, value)
        else:
            target[key] = to_round_trip(value, literal_blocks=True)


# --------------------------------------------------------------------------- checks


def loader_problems(root: Path, overlay: Mapping[str, str] | None = None,
                    deleted: tuple[str, ...] = ()) -> list[str]:
    """The ``file:line:col`` errors of the repository with the change, as ``honua validate``
    reports them ([] when it loads)."""
    from honua_plan.config.loader import load

    data = {rel: text.encode("utf-8") for rel, text in (overlay or {}).items()}
    try:
        if deleted:
            with tempfile.TemporaryDirectory(prefix="honua-ai-check-") as tmp:
                for part in CONFIG_PARTS:
                    src = root / part
                    if src.is_dir():
                        shutil.copytree(src, Path(tmp) / part, symlinks=True)
                    elif src.is_file():
                        shutil.copy2(src, Path(tmp) / part)
                for rel in deleted:
                    (Path(tmp) / rel).unlink(missing_ok=True)
                load(tmp, overlay=data)
        else:
            load(root, overlay=data)
    except ConfigError as exc:
        return [str(d) for d in exc.diagnostics if d.severity == "error"] or [exc.message]
    return []


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:50] or "change"


# --------------------------------------------------------------------------- the tools


def prepare(root: Path, tool: str, args: Any, raw: Mapping[str, Any], *,
            now: datetime | None = None) -> tuple[Change | None, list[str]]:
    """The change a validated tool call asks for, or the problems to send back to the model."""
    if isinstance(args, ProposeMigration):
        return _migration(root, args, raw, now or datetime.now(UTC))
    if isinstance(args, RemoveResource):
        return _remove(root, args)
    if isinstance(args, EditResource):
        return _edit(root, args)
    raise TypeError(f"{tool} changes no files")


def _migration(root: Path, args: ProposeMigration, raw: Mapping[str, Any],
               now: datetime) -> tuple[Change | None, list[str]]:
    mid = args.migration.metadata.id
    rel = f"migrations/{mid}_{args.name}.yaml"
    if os.path.lexists(root / rel):
        return None, [f"{rel} exists already: choose another id or name"]
    doc = dict(raw.get("migration") or {})
    meta = dict(doc.get("metadata") or {})
    # who wrote it is a fact, not the model's to choose
    meta["author"] = AI_ACTOR
    meta.setdefault("created", now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    ordered = {"apiVersion": doc.get("apiVersion"), "kind": doc.get("kind"), "metadata": meta,
               **{k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}}
    text = dump_yaml(ordered, ("# yaml-language-server: $schema=../schemas/migration.schema.json", f"# {rel}"))
    text = text.replace("\nspec:\n", "\n\nspec:\n", 1)  # laid out as the repository's migrations are
    problems = loader_problems(root, {rel: text})
    if problems:
        return None, problems
    desc = args.migration.metadata.description
    return Change("propose_migration", f"Add migration {mid}_{args.name}" + (f": {desc}" if desc else ""),
                  {rel: text}, (f"migration.{mid}",), f"feature/migration-{_slug(mid + '-' + args.name)}",
                  {rel: "new"}), []


def _remove(root: Path, args: RemoveResource) -> tuple[Change | None, list[str]]:
    from honua_plan.config.loader import load
    from honua_plan.config.yamlparse import plain_documents

    try:
        states = load(root)
    except ConfigError as exc:
        return None, ["the repository does not validate as it is, so nothing can be removed:",
                      *(str(d) for d in exc.diagnostics if d.severity == "error")]
    found: dict[str, str] = {}  # address -> path, per environment file
    files: list[str] = []
    known: set[str] = set()
    for d in states:
        if args.kind == "Layer":
            pairs = [(a, lyr.metadata.name) for a, lyr in d.layers.items()]
        else:
            pairs = [(f"service.{n}", n) for n in d.services]
        for address, name in pairs:
            known.add(name)
            src = d.source(address)
            if name == args.name and src is not None:
                found.setdefault(address, src.path)
                if src.path not in files:
                    files.append(src.path)
    if not files:
        return None, [f"there is no {args.kind} named {args.name!r} in environments/ "
                      f"({args.kind.lower()}s: {', '.join(sorted(known)) or 'none'})"]
    if len(found) > 1:
        return None, [f"{args.name!r} names {len(found)} resources ({', '.join(sorted(found))}): "
                      "remove_resource needs a name that is unique; edit the files instead"]
    shared = [rel for rel in files if len([x for x in plain_documents(root / rel, root) if x is not None]) > 1]
    if shared:
        return None, [f"{rel} declares more than one resource: use edit_resource, not remove_resource"
                      for rel in shared]
    problems = loader_problems(root, deleted=tuple(files))
    if problems:
        return None, [f"removing {', '.join(files)} leaves the repository invalid:", *problems]
    address = next(iter(found))
    return Change("remove_resource", f"Remove {args.kind.lower()} {address.split('.', 1)[1]}",
                  dict.fromkeys(sorted(files)), (address,), f"feature/remove-{args.name}-{args.kind.lower()}",
                  dict.fromkeys(sorted(files), "deleted")), []


def editable_file(root: Path, path: str) -> tuple[str, Path | None, str | None]:
    """(normalised relative path, the file, or None and why it may not be edited). A path that
    resolves (through symbolic links) outside the repository's editable folders is refused."""
    problem = path_problem(path)
    rel = PurePosixPath(path).as_posix()
    if problem:
        return rel, None, problem
    base = os.path.realpath(root)
    file = root / rel
    if not os.path.lexists(file):
        return rel, None, f"{rel} does not exist (edit_resource changes existing files only)"
    real = os.path.realpath(file)
    inside = os.path.relpath(real, base).split(os.sep)
    if real == base or inside[0] == ".." or inside[0] not in EDITABLE:
        return rel, None, f"{rel} is a symbolic link to a file outside {', '.join(f'{d}/' for d in EDITABLE)}; refused"
    if (through := path_problem("/".join(inside))) is not None:  # a linked folder to a policy, say
        return rel, None, f"{rel} leads to {'/'.join(inside)}: {through}"
    if os.path.islink(file):  # a write would go through it: edit what it points to, by its own path
        return rel, None, f"{rel} is a symbolic link: edit {os.path.relpath(real, base)} instead"
    if not os.path.isfile(real):
        return rel, None, f"{rel} is not a file"
    return rel, file, None


def _edit(root: Path, args: EditResource) -> tuple[Change | None, list[str]]:
    from honua_plan.config.yamlparse import alias_problem

    rel, file, problem = editable_file(root, args.path)
    if file is None:
        return None, [f"path: {problem}"]
    try:
        before = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [f"{rel}: cannot be read ({type(exc).__name__})"]
    refused = alias_problem(before, rel)
    if refused is not None:
        return None, [str(refused)]
    try:
        docs = [d for d in round_trip_yaml().load_all(before) if d is not None]
    except Exception as exc:  # ruamel's errors share no base worth naming here
        return None, [f"{rel}: not readable YAML ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"]
    if len(docs) != 1 or not isinstance(docs[0], MutableMapping):
        return None, [f"{rel} does not hold exactly one YAML mapping: edit_resource changes one document"]
    doc = docs[0]
    merge_patch(doc, args.patch)
    out = io.StringIO()
    round_trip_yaml().dump(doc, out)
    after = out.getvalue()
    if after == before:
        return None, [f"the patch changes nothing in {rel}"]
    problems = loader_problems(root, {rel: after})
    if problems:
        return None, problems
    return Change("edit_resource", f"Edit {rel}", {rel: after}, _addresses(root, rel, after),
                  f"feature/edit-{_slug(PurePosixPath(rel).stem)}", {rel: "changed"}), []


def _addresses(root: Path, rel: str, text: str) -> tuple[str, ...]:
    """The plan addresses declared in ``rel`` (a policy declares none: then all is planned)."""
    from honua_plan.config.loader import load

    states = load(root, overlay={rel: text.encode("utf-8")})
    found = {a for d in states for a, src in d.sources.items()
             if src.path == rel and a.startswith(("layer.", "service.", "migration."))}
    return tuple(sorted(found))
