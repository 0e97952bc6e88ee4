"""pygeoapi's OpenAPI document, built from the catalog facts the engine already read.

``pygeoapi openapi generate`` loads every collection's provider to list its fields: a
database connection and a SQLAlchemy table reflection per collection, in a new Python
process (38 s for 1,000 collections on the benchmark host). The document depends on the
provider only through ``fields`` (and ``editable``/``properties``/``time_field``, which
honua's config never sets), so :func:`openapi_document` runs pygeoapi's own generator
(:func:`pygeoapi.openapi.get_oas`) on the config in this process, with a stand-in
provider answering ``fields`` from one catalog read (:class:`~honua_plan.providers.postgis.facts.TableFacts`):
the same document, no connection per collection.

The field types follow ``PostgreSQLProvider.get_fields``: the JSON type of SQLAlchemy's
``python_type`` for the column (``string`` when it has none) and a format for date,
time, timestamp and interval columns; the geometry column is left out.

pygeoapi is imported here only (lazily), as in :mod:`.pygeoapi`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from honua_plan.providers.postgis.facts import ColumnFacts

__all__ = ["field_schema", "openapi_document", "provider_fields", "table_key"]

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
    properties: list[str] = []  # noqa: RUF012 - read only, as pygeoapi's
    time_field = None

    def __init__(self, fields: dict[str, dict[str, Any]]) -> None:
        self.fields = fields

    def get_schema(self, *_args: Any) -> Any:
        raise NotImplementedError  # as BaseProvider: the generator skips the schema


def openapi_document(config: Mapping[str, Any], fields: Callable[[str, str], dict[str, dict[str, Any]] | None]) -> str:
    """The OpenAPI JSON pygeoapi would generate for ``config``.

    ``fields(table_key, geom_field)`` gives a table's fields, or None when the table does
    not exist: pygeoapi's provider then fails to connect, and the generator (run with
    ``fail_on_invalid_collection=False``, as honua runs it) leaves the feature paths out.
    """
    import importlib

    from pygeoapi.api import itemtypes
    from pygeoapi.provider.base import ProviderConnectionError
    from pygeoapi.util import to_json

    oas = importlib.import_module("pygeoapi.openapi")  # the module (``pygeoapi.openapi`` is also a click group)
    original = itemtypes.load_plugin

    def load_plugin(plugin_type: str, plugin_def: dict[str, Any]) -> Any:
        if plugin_type != "provider" or plugin_def.get("name") != "PostgreSQL":
            return original(plugin_type, plugin_def)
        found = fields(table_key(plugin_def), str(plugin_def.get("geom_field") or "geom"))
        if found is None:
            raise ProviderConnectionError(f"table {table_key(plugin_def)} does not exist")
        return _CatalogProvider(found)

    with _LOCK:
        itemtypes.load_plugin = load_plugin
        try:
            document = oas.get_oas(dict(config), fail_on_invalid_collection=False)
        finally:
            itemtypes.load_plugin = original
    return str(to_json(document, pretty=bool((config.get("server") or {}).get("pretty_print", False))))
