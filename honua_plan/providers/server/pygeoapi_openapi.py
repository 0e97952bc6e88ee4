"""pygeoapi's OpenAPI document, built from the catalog facts the engine already read.

``pygeoapi openapi generate`` loads every collection's provider to list its fields: a
database connection and a SQLAlchemy table reflection per collection, in a new Python
process (38 s for 1,000 collections on the benchmark host). The document depends on the
provider only through ``fields`` and ``properties`` (and ``editable``/``time_field``, which
honua's config never sets), so :func:`openapi_dict` runs pygeoapi's own generator
(:func:`pygeoapi.openapi.get_oas`) on the config in this process, with a stand-in
provider answering ``fields`` from one catalog read (:class:`~honua_plan.providers.postgis.facts.TableFacts`):
the same document, no connection per collection.

The field types follow ``PostgreSQLProvider.get_fields``: the JSON type of SQLAlchemy's
``python_type`` for the column (``string`` when it has none) and a format for date,
time, timestamp and interval columns; the geometry column is left out.

pygeoapi is imported here only (lazily), as in :mod:`.pygeoapi`.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from honua_plan.canonical import fingerprint
from honua_plan.providers.postgis.facts import ColumnFacts

__all__ = ["OpenAPIIndex", "Reuse", "collection_of", "field_schema", "fingerprints", "openapi_dict",
           "provider_fields", "serialize", "splice", "start_generator", "stop_generator", "table_key",
           "write_document"]

# udt name (pg_type.typname) -> JSON type, as SQLAlchemy's python_type maps it in get_fields
_INTEGER = {"int2", "int4", "int8", "oid", "xid", "cid", "regclass"}
_NUMBER = {"float4", "float8", "numeric"}
# str(SQLAlchemy type).lower() -> format (get_fields' column_format_map)
_FORMATS = {"date": "date", "interval": "duration", "time": "time", "timetz": "time",
            "timestamp": "date-time", "timestamptz": "date-time"}
_LOCK = threading.Lock()  # the generator's provider loader is swapped while it runs


def field_schema(column: ColumnFacts) -> dict[str, Any]:
    """``{"type": ..., "format": ...}`` of one column, as pygeoapi's PostgreSQL provider says it."""
    udt = column.udt.lstrip("_") if column.udt.startswith("_") else column.udt
    if column.udt.startswith("_") or column.data_type.endswith("[]"):
        json_type = "string"  # an array: python_type list, not in pygeoapi's map
    elif udt in _INTEGER:
        json_type = "integer"
    elif udt in _NUMBER:
        json_type = "number"
    elif udt == "bool":
        json_type = "boolean"
    else:  # text types, and those SQLAlchemy gives no python_type in the map (json, uuid, …)
        json_type = "string"
    fmt = None if column.udt.startswith("_") else _FORMATS.get(udt)
    return {"type": json_type, "format": fmt}


def provider_fields(columns: Sequence[ColumnFacts], geom_field: str) -> dict[str, dict[str, Any]]:
    """The provider's ``fields``: every column but the geometry, in table order."""
    return {c.name: field_schema(c) for c in columns if c.name != geom_field}


def table_key(provider: Mapping[str, Any]) -> str:
    """``schema.table`` of a PostgreSQL provider entry of the config."""
    search_path = (provider.get("data") or {}).get("search_path") or ["public"]
    return f"{search_path[0]}.{provider.get('table')}"


class _CatalogProvider:
    """What pygeoapi's OpenAPI generator asks a feature provider, answered from the catalog."""

    editable = False
    time_field = None

    def __init__(self, fields: dict[str, dict[str, Any]], properties: Sequence[str] = ()) -> None:
        self.fields = fields
        self.properties = list(properties)  # the config's served subset, as pygeoapi's provider

    def get_schema(self, *_args: Any) -> Any:
        raise NotImplementedError  # as BaseProvider: the generator skips the schema


def openapi_dict(config: Mapping[str, Any], fields: Callable[[str, str], dict[str, dict[str, Any]] | None]
                 ) -> dict[str, Any]:
    """The OpenAPI document pygeoapi would generate for ``config``, as a dict, generated in
    this process (the engine asks :func:`write_document`, which uses the generator process).

    ``fields(table_key, geom_field)`` gives a table's fields, or None when the table does
    not exist: pygeoapi's provider then fails to connect, and the generator (run with
    ``fail_on_invalid_collection=False``, as honua runs it) leaves the feature paths out.
    """
    import importlib

    from pygeoapi.api import itemtypes
    from pygeoapi.provider.base import ProviderConnectionError

    oas = importlib.import_module("pygeoapi.openapi")  # the module (``pygeoapi.openapi`` is also a click group)
    original = itemtypes.load_plugin

    def load_plugin(plugin_type: str, plugin_def: dict[str, Any]) -> Any:
        if plugin_type != "provider" or plugin_def.get("name") != "PostgreSQL":
            return original(plugin_type, plugin_def)
        found = fields(table_key(plugin_def), str(plugin_def.get("geom_field") or "geom"))
        if found is None:
            raise ProviderConnectionError(f"table {table_key(plugin_def)} does not exist")
        return _CatalogProvider(found, plugin_def.get("properties") or ())

    with _LOCK:
        itemtypes.load_plugin = load_plugin
        try:
            document: dict[str, Any] = oas.get_oas(dict(config), fail_on_invalid_collection=False)
        finally:
            itemtypes.load_plugin = original
    return document


# --------------------------------------------------------------------------- generator process

_GENERATOR: subprocess.Popen[bytes] | None = None
_GENERATOR_TIMEOUT_S = 120.0

# the generator process: pygeoapi imported while the engine works, then one request. It
# writes the document's text to a file and answers with its sha256 (exit status 3 when the
# document on disk cannot be spliced): the engine never holds the document
_GENERATOR_CODE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from honua_plan.providers.server import pygeoapi_openapi as oas
from pygeoapi.api import itemtypes  # noqa: F401 - the imports are the point
import pygeoapi.openapi  # noqa: F401
request = json.loads(sys.stdin.buffer.read() or b"null")
if request is None:
    sys.exit(0)
known = request["fields"]
fields = lambda key, geom: known.get(key + "|" + geom)
reuse = request["write"]["reuse"]
digest = oas._write(request["config"], request["write"]["server"], fields, oas.Reuse(**reuse) if reuse else None,
                    request["write"]["dest"])
if digest is None:
    sys.exit(3)
sys.stdout.write(digest)
"""
_NO_SPLICE = 3


def start_generator(package_root: str, env: Mapping[str, str]) -> None:
    """Start a process that imports pygeoapi's generator now, to generate a document later.

    An apply that publishes calls this before its slow checks; the 0.4 s of importing
    pygeoapi then runs on another core. Nothing depends on it: when the process is not
    there or fails, :func:`write_document` generates in this process.
    """
    global _GENERATOR
    if _GENERATOR is not None:
        return
    try:
        _GENERATOR = subprocess.Popen(
            [sys.executable, "-c", _GENERATOR_CODE, package_root], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env=dict(env), close_fds=True)
    except OSError:
        _GENERATOR = None
        return
    atexit.register(stop_generator)


def stop_generator() -> None:
    """End an unused generator process (it exits on an empty request)."""
    global _GENERATOR
    proc, _GENERATOR = _GENERATOR, None
    if proc is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            proc.communicate(b"", timeout=5)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _known_fields(config: Mapping[str, Any], fields: Callable[[str, str], dict[str, dict[str, Any]] | None]
                  ) -> dict[str, Any]:
    known: dict[str, Any] = {}
    for res in (config.get("resources") or {}).values():
        for prov in (res or {}).get("providers") or []:
            if prov.get("name") == "PostgreSQL":
                key, geom = table_key(prov), str(prov.get("geom_field") or "geom")
                known[f"{key}|{geom}"] = fields(key, geom)
    return known


def _ask_generator(proc: subprocess.Popen[bytes], request: Mapping[str, Any]) -> tuple[int, bytes] | None:
    """(exit status, output) of the generator's one request; None when it could not answer."""
    try:
        out, _ = proc.communicate(json.dumps(request).encode("utf-8"), timeout=_GENERATOR_TIMEOUT_S)
        return proc.returncode, out
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class Reuse:
    """Splice the document at ``path`` (generated for the collections ``old_ids``) instead
    of generating every collection: ``changed`` ones generated again, ``removed`` taken out."""

    path: str
    old_ids: list[str]
    changed: list[str]
    removed: list[str]


def write_document(config: Mapping[str, Any], fields: Callable[[str, str], dict[str, dict[str, Any]] | None],
                   dest: str, reuse: Reuse | None = None) -> str | None:
    """Write the OpenAPI document for ``config`` to ``dest``; its sha256. Generated,
    serialized (and spliced into the one on disk, with ``reuse``) by the generator process
    when there is one, so this process never holds the document (at 10,000 collections
    ~400 MB as objects, 75 MB as text); else here. None when ``reuse``'s document cannot
    be spliced (generate it all)."""
    global _GENERATOR
    generate = {**config, "resources": {c: config["resources"][c] for c in reuse.changed}} if reuse else config
    proc, _GENERATOR = _GENERATOR, None
    server = {"server": config.get("server") or {}}
    if proc is not None:
        answer = _ask_generator(proc, {"config": generate, "fields": _known_fields(generate, fields), "write": {
            "server": server, "reuse": reuse.__dict__ if reuse else None, "dest": dest}})
        if answer is not None and answer[0] == 0 and len(answer[1]) == 64:
            return answer[1].decode("ascii")
        if answer is not None and answer[0] == _NO_SPLICE:
            return None
    return _write(generate, server, fields, reuse, dest)


def _write(generate: Mapping[str, Any], server: Mapping[str, Any],
           fields: Callable[[str, str], dict[str, dict[str, Any]] | None], reuse: Reuse | None,
           dest: str) -> str | None:
    import hashlib
    import os

    part = openapi_dict(generate, fields) if reuse is None or reuse.changed else {"paths": {}, "tags": []}
    if reuse is not None:
        try:
            with open(reuse.path, encoding="utf-8") as fh:
                old = json.load(fh)
        except (OSError, ValueError):
            return None
        if not isinstance(old, dict) or not isinstance(old.get("paths"), dict) or not isinstance(old.get("tags"), list):
            return None
        part = splice(old, part, reuse.old_ids, reuse.changed, reuse.removed)
        del old
    data = serialize(part, server).encode("utf-8")
    del part
    with open(dest, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return hashlib.sha256(data).hexdigest()


def serialize(document: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    """The text pygeoapi's ``to_json`` writes for ``document`` (pretty when the config says so)."""
    pretty = bool((config.get("server") or {}).get("pretty_print", False))

    def default(value: Any) -> Any:
        from pygeoapi.util import json_serial

        return json_serial(value)

    return json.dumps(document, default=default, indent=4 if pretty else None, separators=(",", ":"))


# --------------------------------------------------------------------------- incremental


def collection_of(path: str) -> str | None:
    """The collection a path of the document belongs to (``/collections/<id>[/...]``), else None."""
    if not path.startswith("/collections/"):
        return None
    return path[len("/collections/"):].split("/", 1)[0] or None


@dataclass(frozen=True)
class OpenAPIIndex:
    """What an OpenAPI document on disk was generated from: one fingerprint for the config
    without its resources (and the generator's version), one per collection (its config
    entry and its table's fields), and the sha256 of the document's text."""

    rest: str
    collections: dict[str, str]
    document_sha256: str

    def to_json(self) -> str:
        return json.dumps({"format": 1, "rest": self.rest, "collections": self.collections,
                           "document_sha256": self.document_sha256}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> OpenAPIIndex | None:
        try:
            data = json.loads(text)
            if data.get("format") != 1:
                return None
            return cls(str(data["rest"]), {str(k): str(v) for k, v in data["collections"].items()},
                       str(data["document_sha256"]))
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


def fingerprints(config: Mapping[str, Any], fields: Callable[[str, str], dict[str, dict[str, Any]] | None],
                 generator_version: str) -> tuple[str, dict[str, str]]:
    """(fingerprint of everything but the resources, fingerprint per collection)."""
    rest = fingerprint([generator_version, {k: v for k, v in config.items() if k != "resources"}])
    per: dict[str, str] = {}
    for cid, res in (config.get("resources") or {}).items():
        tables = [(table_key(p), fields(table_key(p), str(p.get("geom_field") or "geom")))
                  for p in (res or {}).get("providers") or [] if p.get("name") == "PostgreSQL"]
        per[cid] = fingerprint([res, tables])
    return rest, per


def splice(old: Mapping[str, Any], part: Mapping[str, Any], old_ids: Collection[str],
           changed: Collection[str], removed: Collection[str]) -> dict[str, Any]:
    """``old`` with the collections ``changed`` and ``removed`` taken out, and those of
    ``part`` (generated for the ``changed`` ones only) put in.

    Everything else in the document depends only on the config without its resources,
    which the caller checked is the same. The result equals the generator's document
    for the whole new config, up to the order of object members (a new collection's
    paths come last) and of the tags (a new collection's tag follows the others).
    """
    out_ids, new_ids = set(changed) | set(removed), set(changed)
    paths = {p: v for p, v in old["paths"].items() if collection_of(p) not in out_ids}
    paths.update({p: v for p, v in part["paths"].items() if collection_of(p) in new_ids})
    collection_tags = set(old_ids) | new_ids
    kept = [t for t in old["tags"] if t.get("name") not in out_ids]
    added = [t for t in part["tags"] if t.get("name") in new_ids]
    last = max((i for i, t in enumerate(kept) if t.get("name") in collection_tags), default=0)
    return {**old, "tags": [*kept[:last + 1], *added, *kept[last + 1:]], "paths": paths}
