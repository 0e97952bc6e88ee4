"""Name/identifier/CRS patterns run in pydantic-core; the loader maps their errors back to
our messages. ``Check.expectation`` is parsed once per text, not stored per instance."""

from __future__ import annotations

import re
from typing import Any

import pydantic
import pytest

from honua_plan.config import expected as exp
from honua_plan.config import models
from honua_plan.config.loader import _pydantic_diagnostics
from honua_plan.config.models import KINDS, PATTERN_MESSAGES, Check, Layer, LayerSpec
from honua_plan.config.yamlload import load_documents

LAYER = """\
apiVersion: honua.io/v1
kind: Layer
metadata:
  name: bike-lanes
  service: transportation
spec:
  title: Bike lanes
  geometryType: LineString
  crs: ["EPSG:4326"]
  storage:
    table: bike_lanes
    indexes:
      - name: idx_geom
        column: geom
  fields:
    - name: id
      type: integer
    - name: name
      type: string
  ogc:
    defaultCrs: EPSG:4326
  validation:
    healthChecks:
      - query: SELECT count(*) FROM bike_lanes
        expected: "> 0"
"""


def layer_data() -> tuple[dict[str, Any], Any]:
    problems: list[Any] = []
    doc = load_documents(LAYER, "layer.yaml", problems)[0]
    assert not problems
    return doc.data, doc.source


def messages(data: dict[str, Any], source: Any) -> list[str]:
    with pytest.raises(pydantic.ValidationError) as info:
        Layer.model_validate(data)
    return [d.message for d in _pydantic_diagnostics(info.value, source)]


def test_the_seed_layer_is_valid() -> None:
    data, _ = layer_data()
    assert Layer.model_validate(data).spec.ogc.defaultCrs == "EPSG:4326"


@pytest.mark.parametrize("path,value,message", [
    (("spec", "fields", 1, "name"), "lane type",
     "spec.fields.1.name: 'lane type' is not a plain SQL identifier (letters, digits, _; not starting with a digit)"),
    (("spec", "storage", "indexes", 0, "column"), "1geom",
     "spec.storage.indexes.0.column: '1geom' is not a plain SQL identifier (letters, digits, _; not starting with a digit)"),
    (("spec", "storage", "table"), "bike-lanes",
     "spec.storage.table: 'bike-lanes' is not a plain SQL table name (schema.table or table)"),
    (("metadata", "name"), "Bike Lanes",
     "metadata.name: 'Bike Lanes' is not a valid name: use lower-case letters, digits, '-' and '_' (max 63)"),
    (("spec", "crs", 0), "EPSG:12",
     "spec.crs.0: 'EPSG:12' is not a CRS: use EPSG:<code>, CRS84 or an OGC CRS URI"),
    (("spec", "ogc", "defaultCrs"), "WGS84",
     "spec.ogc.defaultCrs: 'WGS84' is not a CRS: use EPSG:<code>, CRS84 or an OGC CRS URI"),
])
def test_pattern_errors_keep_their_messages(path: tuple[str | int, ...], value: str, message: str) -> None:
    data, source = layer_data()
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert messages(data, source) == [message]


def test_env_var_message() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        models.StateConfig.model_validate({"dsnEnv": "MY-DSN"})
    (err,) = info.value.errors()
    assert err["type"] == "string_pattern_mismatch"
    assert PATTERN_MESSAGES[err["ctx"]["pattern"]].format(err["input"]) == "'MY-DSN' is not an environment variable name"


def test_pattern_checks_are_stricter_than_re_never_looser() -> None:
    # Rust's $ does not match before a final newline; EPSG codes are ASCII digits
    data, source = layer_data()
    data["spec"]["fields"][0]["name"] = "id\n"
    data["spec"]["crs"] = ["EPSG:\u0664\u0663\u0662\u0666", "http://www.opengis.net/def/crs/EPSG/0/\x1c4326"]
    assert messages(data, source) == [
        "spec.crs.0: 'EPSG:٤٣٢٦' is not a CRS: use EPSG:<code>, CRS84 or an OGC CRS URI",
        "spec.crs.1: 'http://www.opengis.net/def/crs/EPSG/0/\\x1c4326' is not a CRS: use EPSG:<code>, CRS84 or an OGC CRS URI",
        "spec.fields.0.name: 'id\\n' is not a plain SQL identifier (letters, digits, _; not starting with a digit)",
    ]
    data["spec"]["crs"] = ["CRS84", "OGC:CRS84", "https://www.opengis.net/def/crs/EPSG/0/3857"]
    data["spec"]["fields"][0]["name"] = "id$1"
    Layer.model_validate(data)


def _core_patterns(schema: Any) -> set[str]:
    if isinstance(schema, dict):
        found = {schema["pattern"]} if schema.get("type") == "str" and "pattern" in schema else set()
        return found.union(*(_core_patterns(v) for v in schema.values()))
    if isinstance(schema, list):
        return set().union(*(_core_patterns(v) for v in schema))
    return set()


def test_every_pattern_has_a_message() -> None:
    """Else a raw "String should match pattern '^[a-z...'" would reach the user."""
    used = set().union(*(_core_patterns(m.__pydantic_core_schema__) for m in KINDS.values()))
    assert used and used <= set(PATTERN_MESSAGES)


def test_regex_constants_follow_the_patterns() -> None:
    for name in ("IDENT", "QUALIFIED", "NAME", "ENV_VAR", "CRS"):
        assert getattr(models, f"{name}_RE").pattern == getattr(models, f"{name}_PATTERN")
    assert models.IDENT_RE.match("bike_lanes") and not models.IDENT_RE.match("bike lanes")


def test_duplicate_fields_are_listed_once_sorted() -> None:
    data, source = layer_data()
    data["spec"]["fields"] = [{"name": n, "type": "string"} for n in ("b", "a", "b", "c", "a", "b")]
    assert messages(data, source) == ["spec.fields: field listed twice: a, b"]
    assert LayerSpec._unique_fields([]) == []


def test_expectation_is_parsed_once_per_text() -> None:
    assert Check.__private_attributes__ == {}
    exp.parse_cached.cache_clear()
    a = Check.model_validate({"query": "SELECT 1", "expected": ">= 10"})
    b = Check.model_validate({"query": "SELECT 2", "expected": ">= 10"})
    assert a.expectation is b.expectation
    assert a.expectation == exp.parse(">= 10", "query")
    assert (a.expectation.kind, a.expectation.op, a.expectation.number) == ("compare", ">=", 10.0)
    perf = Check.model_validate({"type": "performance", "query": "SELECT 1", "expected": "< 100ms"})
    assert perf.expectation.kind == "time" and perf.expectation.number == 100.0
    assert exp.parse_cached.cache_info().hits >= 2


@pytest.mark.parametrize("value,text", [(True, "all true"), (False, "all false"), (3, "= 3"), (0.5, "= 0.5")])
def test_expected_scalars_become_text(value: object, text: str) -> None:
    assert Check.model_validate({"query": "SELECT 1", "expected": value}).expected == text


def test_expected_typos_are_reported_every_time() -> None:
    for _ in range(2):  # a failed parse is not cached as a success
        with pytest.raises(pydantic.ValidationError, match=re.escape("cannot parse expected '1 rowz'")):
            Check.model_validate({"query": "SELECT 1", "expected": "1 rowz"})
    with pytest.raises(pydantic.ValidationError, match="expected must be a string"):
        Check.model_validate({"query": "SELECT 1", "expected": ["> 0"]})


def test_default_ogc_block_is_shared_and_equal() -> None:
    data, _ = layer_data()
    del data["spec"]["ogc"]
    first, second = Layer.model_validate(data), Layer.model_validate(data)
    assert first.spec.ogc == models.LayerOgc()
    assert first.spec.ogc is second.spec.ogc
    assert "ogc" not in first.spec.model_fields_set
