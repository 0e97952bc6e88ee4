"""Diff on hand-written cases: desired + recorded + live → expected changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from honua_plan.config.loader import load_environment
from honua_plan.plan.diff import (
    check_layer,
    desired_resources,
    detect_drift,
    diff_migrations,
    diff_resources,
    migration_checksum,
    table_address,
    table_attributes,
)
from honua_plan.providers.postgis.facts import (
    ColumnFacts,
    DatabaseFacts,
    GeometryColumnFacts,
    IndexFacts,
    TableFacts,
)
from honua_plan.state.model import MigrationRecord, ResourceRecord, StateDocument
from tests.helpers import copy_example, edit

LAYER = "layer.transportation::bike-lanes"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "repo")


def bike_lanes(**over: object) -> TableFacts:
    cols = (
        ColumnFacts("id", "integer", "int4", False),
        ColumnFacts("name", "character varying(200)", "varchar", True, max_length=200),
        ColumnFacts("lane_type", "character varying(50)", "varchar", True, max_length=50),
        ColumnFacts("width_ft", "double precision", "float8", True),
        ColumnFacts("last_updated", "timestamp with time zone", "timestamptz", True),
        ColumnFacts("geom", "geometry(LineString,4326)", "geometry", True),
    )
    base: dict[str, object] = dict(
        schema="public", name="bike_lanes", kind="r", row_estimate=42, columns=cols,
        geometry_columns=(GeometryColumnFacts("geom", "LINESTRING", 4326, 2),),
        indexes=(IndexFacts("bike_lanes_pkey", "btree", ("id",), True, True, True, True,
                            "CREATE UNIQUE INDEX bike_lanes_pkey ON public.bike_lanes USING btree (id)"),),
        primary_key=("id",),
    )
    base.update(over)
    return TableFacts(**base)  # type: ignore[arg-type]


def recorded_from(desired_resources_map: dict, serial: int = 3) -> StateDocument:
    doc = StateDocument.new("dev")
    resources = {
        a: ResourceRecord.create(a, kind, attrs, serial=serial) for a, (kind, attrs) in desired_resources_map.items()
    }
    return doc.model_copy(update={"resources": resources, "serial": serial})


def test_everything_new_on_empty_state(repo: Path) -> None:
    desired = load_environment(repo, "dev")
    changes = diff_resources(desired_resources(desired), StateDocument.new("dev"))
    assert {(c.address, c.action) for c in changes} == {
        ("datasource.postgis-primary", "create"),
        ("server.gis-server", "create"),
        ("service.transportation", "create"),
        (LAYER, "create"),
    }


def test_self_diff_is_all_no_ops_with_reasons(repo: Path) -> None:
    desired = load_environment(repo, "dev")
    changes = diff_resources(desired_resources(desired), recorded_from(desired_resources(desired)))
    assert {c.action for c in changes} == {"no-op"}
    assert all(c.reason == "unchanged since serial 3" for c in changes)


def test_unchanged_attributes_are_the_records_own(repo: Path) -> None:
    recorded = recorded_from(desired_resources(load_environment(repo, "dev")))
    edit(repo / "environments/dev/layers/bike-lanes.yaml", 'title: "Bike Lanes"', 'title: "Bicycle Lanes"')
    desired = load_environment(repo, "dev")
    resources = desired_resources(desired, recorded)
    shared = recorded.resources["service.transportation"].attributes
    assert resources["service.transportation"][1] is shared  # one copy of equal values
    assert resources[LAYER][1] is not recorded.resources[LAYER].attributes  # changed: its own
    assert resources[LAYER][1]["spec"]["title"] == "Bicycle Lanes"
    changes = {c.address: c.action for c in diff_resources(resources, recorded)}
    assert changes[LAYER] == "update" and changes["service.transportation"] == "no-op"


def test_update_names_changed_paths(repo: Path) -> None:
    before = load_environment(repo, "dev")
    recorded = recorded_from(desired_resources(before))
    edit(repo / "environments/dev/layers/bike-lanes.yaml", 'title: "Bike Lanes"', 'title: "Bicycle Lanes"')
    after = load_environment(repo, "dev")
    changes = {c.address: c for c in diff_resources(desired_resources(after), recorded)}
    assert changes[LAYER].action == "update"
    assert changes[LAYER].changed_paths == ("spec.title",)
    assert changes["service.transportation"].action == "no-op"


def test_authoring_metadata_is_not_a_change(repo: Path) -> None:
    before = load_environment(repo, "dev")
    recorded = recorded_from(desired_resources(before))
    edit(repo / "environments/dev/layers/bike-lanes.yaml", "createdBy: ai-consultant", "createdBy: someone-else")
    changes = {c.address: c for c in diff_resources(desired_resources(load_environment(repo, "dev")), recorded)}
    assert changes[LAYER].action == "no-op"


def test_storage_change_is_replace(repo: Path) -> None:
    recorded = recorded_from(desired_resources(load_environment(repo, "dev")))
    edit(repo / "environments/dev/layers/bike-lanes.yaml", "    table: bike_lanes", "    table: bike_lanes_v2")
    changes = {c.address: c for c in diff_resources(desired_resources(load_environment(repo, "dev")), recorded)}
    assert changes[LAYER].action == "replace"
    assert "spec.storage.table" in changes[LAYER].changed_paths


def test_removed_layer_is_delete(repo: Path) -> None:
    desired = load_environment(repo, "dev")
    old = dict(desired_resources(desired))
    old["layer.transportation::bus-stops"] = ("layer", {"spec": {"title": "Bus stops"}})
    changes = {c.address: c for c in diff_resources(desired_resources(desired), recorded_from(old))}
    assert changes["layer.transportation::bus-stops"].action == "delete"
    assert changes[LAYER].action == "no-op"


def test_pending_and_changed_migrations(repo: Path) -> None:
    desired = load_environment(repo, "dev")
    m1 = desired.migration("001")
    assert m1 is not None
    doc = StateDocument.new("dev").model_copy(update={"migrations": [
        MigrationRecord(id="001", checksum=migration_checksum(m1), status="applied"),
        MigrationRecord(id="002", checksum="sha256:old", status="applied"),
    ]})
    pending, applied, problems = diff_migrations(desired, doc)
    assert [p.migration.metadata.id for p in pending] == ["003"]
    assert applied == ["001", "002"]
    assert len(problems) == 1
    assert "migration 002 was applied" in problems[0].message
    assert problems[0].location.path == "migrations/002_add_parcels_layer.yaml"


def test_rolled_back_migration_is_pending_again(repo: Path) -> None:
    desired = load_environment(repo, "dev")
    m3 = desired.migration("003")
    assert m3 is not None
    doc = StateDocument.new("dev").model_copy(update={"migrations": [
        MigrationRecord(id="003", checksum=migration_checksum(m3), status="rolled_back"),
    ]})
    pending, _, problems = diff_migrations(desired, doc)
    assert "003" in [p.migration.metadata.id for p in pending]
    assert not problems


LAYER_CASES = [
    ("matches", {}, []),
    ("wrong-srid", {"geometry_columns": (GeometryColumnFacts("geom", "LINESTRING", 3857, 2),)},
     ["declares SRID 4326 but public.bike_lanes.geom has SRID 3857"]),
    ("wrong-type", {"geometry_columns": (GeometryColumnFacts("geom", "POLYGON", 4326, 2),)},
     ["declares LineString but public.bike_lanes.geom holds POLYGON"]),
    ("missing-field", {"columns": bike_lanes().columns[:3] + bike_lanes().columns[4:]},
     ["field width_ft does not exist"]),
    ("incompatible-field", {"columns": (*bike_lanes().columns[:3], ColumnFacts("width_ft", "text", "text", True),
                                        *bike_lanes().columns[4:])},
     ["field width_ft is declared double but the column is text"]),
    ("pk-mismatch", {"primary_key": ("name",)}, ["the primary key of public.bike_lanes is (name)"]),
]


@pytest.mark.parametrize("name,over,messages", LAYER_CASES, ids=[c[0] for c in LAYER_CASES])
def test_layer_against_live_table(repo: Path, name: str, over: dict, messages: list[str]) -> None:
    desired = load_environment(repo, "dev")
    layer = desired.layers[LAYER]
    errors, _warnings, deferred = check_layer(desired, layer, bike_lanes(**over), created_in_plan=False)
    assert [m for m in messages if not any(m in e.message for e in errors)] == []
    assert len(errors) == len(messages)
    assert not deferred
    for e in errors:  # every mismatch points into the layer file
        assert e.location.path == "environments/dev/layers/bike-lanes.yaml" and e.location.line > 0


def test_missing_table_is_error_unless_created_in_plan(repo: Path) -> None:
    desired = load_environment(repo, "dev")
    layer = desired.layers[LAYER]
    errors, _, _ = check_layer(desired, layer, None, created_in_plan=False)
    assert "table public.bike_lanes does not exist" in errors[0].message
    errors, _, deferred = check_layer(desired, layer, None, created_in_plan=True)
    assert not errors and deferred


def test_drift_detects_added_column_and_dropped_index() -> None:
    gist = IndexFacts("idx_bike_lanes_geom", "gist", ("geom",), True, True, False, False,
                      "CREATE INDEX idx_bike_lanes_geom ON public.bike_lanes USING gist (geom)")
    t = bike_lanes(indexes=(*bike_lanes().indexes, gist))
    rec = ResourceRecord.create(table_address(t), "table", table_attributes(t), serial=1)
    doc = StateDocument.new("dev").model_copy(update={"resources": {rec.address: rec}})
    assert detect_drift(doc, DatabaseFacts(tables=(t,))) == []
    altered = bike_lanes(columns=(*t.columns, ColumnFacts("x", "integer", "int4", True)))
    drifts = detect_drift(doc, DatabaseFacts(tables=(altered,)))
    assert len(drifts) == 1 and drifts[0].change == "modified"
    assert "column x added: integer" in drifts[0].details
    assert any("index idx_bike_lanes_geom removed" in d for d in drifts[0].details)
    missing = detect_drift(doc, DatabaseFacts(tables=()))
    assert missing[0].change == "missing"


def test_row_count_changes_are_not_drift() -> None:
    t = bike_lanes()
    rec = ResourceRecord.create(table_address(t), "table", table_attributes(t), serial=1)
    doc = StateDocument.new("dev").model_copy(update={"resources": {rec.address: rec}})
    assert detect_drift(doc, DatabaseFacts(tables=(bike_lanes(row_estimate=50_000, total_bytes=10**7),))) == []


# --------------------------------------------------------------------------- JSON types


def _value_dependent_types(tp: object, where: str, seen: set[type]) -> list[str]:
    """Places where a field's JSON type could depend on its value (``True`` vs ``1``, ``1``
    vs ``1.0``): there, equal Python values could have different canonical JSON."""
    import types
    import typing
    from datetime import date

    from pydantic import BaseModel

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _value_dependent_types(args[0], where, seen)
    if tp is typing.Any or tp is object:
        return [f"{where}: {tp} (any JSON type)"]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        if tp in seen:
            return []
        seen.add(tp)
        return [p for name, f in tp.model_fields.items()
                for p in _value_dependent_types(f.annotation, f"{where}.{name}", seen)]
    if origin is typing.Literal:
        kinds = {type(a) for a in args} & {bool, int, float}
        return [f"{where}: Literal{list(args)}"] if len(kinds) > 1 else []
    if origin in (typing.Union, types.UnionType):
        scalars = set()
        for a in args:
            a = typing.get_args(a)[0] if typing.get_origin(a) is typing.Annotated else a
            if a in (bool, int, float):
                scalars.add(a)
        problems = [f"{where}: {tp}"] if len(scalars) > 1 else []
        return problems + [p for a in args for p in _value_dependent_types(a, where, seen)]
    if origin in (list, tuple, set, frozenset, dict):
        return [p for a in args if a is not Ellipsis for p in _value_dependent_types(a, f"{where}[]", seen)]
    assert tp in (str, int, float, bool, type(None)) or (isinstance(tp, type) and issubclass(tp, date)), (where, tp)
    return []


def test_no_resource_field_has_a_json_type_that_depends_on_its_value() -> None:
    # desired_resources() takes a record's fingerprint when its attributes == the desired
    # ones; that equality is canonical-JSON equality only while this holds
    from honua_plan.config.models import Datasource, Layer, Server, Service

    seen: set[type] = set()
    problems = [p for m in (Datasource, Server, Service, Layer) for p in _value_dependent_types(m, m.__name__, seen)]
    assert problems == []


def test_the_json_type_check_finds_a_numeric_union() -> None:
    from typing import Any, Literal

    from pydantic import BaseModel

    class Loose(BaseModel):
        a: int | float
        b: dict[str, Any]
        c: Literal[1, True]
        d: list[str | None]

    assert _value_dependent_types(Loose, "Loose", set()) == [
        "Loose.a: int | float", "Loose.b[]: typing.Any (any JSON type)", "Loose.c: Literal[1, True]"]


def test_fields_are_diffed_by_name_not_position() -> None:
    """Removing width_ft is one removed field, not `fields.3.name: width_ft → last_updated`."""
    from honua_plan.plan.diff import _paths

    fields = [{"name": n, "type": t} for n, t in
              (("id", "integer"), ("name", "string"), ("lane_type", "string"), ("width_ft", "number"),
               ("last_updated", "datetime"))]
    before = {"spec": {"fields": fields}}
    after = {"spec": {"fields": [f for f in fields if f["name"] != "width_ft"]}}
    assert _paths(before, after) == ("spec.fields.width_ft",)
    retyped = {"spec": {"fields": [{**f, "type": "string"} if f["name"] == "id" else f for f in fields]}}
    assert _paths(before, retyped) == ("spec.fields.id.type",)
    # lists without distinct names keep positions; plain values are aligned
    assert _paths({"k": ["a", "b"]}, {"k": ["x", "a", "b"]}) == ("k.0",)
    assert _paths({"k": [{"v": 1}, {"v": 2}]}, {"k": [{"v": 1}, {"v": 3}]}) == ("k.1.v",)


def test_a_field_path_is_shown_with_its_value() -> None:
    from honua_plan.plan.render import _lookup

    doc = {"spec": {"fields": [{"name": "id", "type": "integer"}, {"name": "width_ft", "type": "number"}]}}
    assert _lookup(doc, "spec.fields.width_ft") == {"name": "width_ft", "type": "number"}
    assert _lookup(doc, "spec.fields.width_ft.type") == "number"
    assert _lookup(doc, "spec.fields.1.type") == "number"
