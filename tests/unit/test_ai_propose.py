"""``propose layer`` generation: pure, from hand-built table facts (no database)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from honua_plan.ai.propose import (
    alias_for,
    build_layer,
    check_rendered,
    default_branch,
    geometry_type_name,
    layer_name_for,
    render_layer_yaml,
    title_for,
)
from honua_plan.config.models import Layer
from honua_plan.errors import UsageError
from honua_plan.providers.postgis.facts import ColumnFacts, GeometryColumnFacts, TableFacts

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 10, 4, 12, 0, tzinfo=UTC)


def bike_lanes(schema: str = "public", name: str = "bike_lanes", **kw: object) -> TableFacts:
    """The facts postgis.refresh reads for the seed's table (migration 001 / sample.py DDL)."""
    cols = (
        ColumnFacts("id", "integer", "int4", False),
        ColumnFacts("name", "character varying(200)", "varchar", True, max_length=200),
        ColumnFacts("lane_type", "character varying(50)", "varchar", True, max_length=50),
        ColumnFacts("width_ft", "double precision", "float8", True),
        ColumnFacts("last_updated", "timestamp with time zone", "timestamptz", True),
        ColumnFacts("geom", "geometry(LineString,4326)", "geometry", True),
    )
    args: dict[str, object] = {
        "schema": schema, "name": name, "kind": "r", "row_estimate": 42, "columns": cols,
        "geometry_columns": (GeometryColumnFacts("geom", "LINESTRING", 4326, 2),), "primary_key": ("id",),
    }
    args.update(kw)
    return TableFacts(**args)  # type: ignore[arg-type]


def example_layer() -> Layer:
    return Layer.model_validate(yaml.safe_load((REPO / "environments/dev/layers/bike-lanes.yaml").read_text()))


def draft_for(table: TableFacts, **kw: object) -> dict:
    args: dict[str, object] = {"name": "bike-lanes", "service": "transportation", "environment": "dev",
                               "created": NOW, "default_crs": "EPSG:4326"}
    args.update(kw)
    return build_layer(table, **args).document  # type: ignore[arg-type]


def test_names_titles_aliases() -> None:
    assert layer_name_for("public.bike_lanes") == "bike-lanes"
    assert layer_name_for("Parcels_2024") == "parcels-2024"
    assert title_for("bike_lanes") == "Bike Lanes"
    assert alias_for("id") == "ID" and alias_for("lane_type") == "Lane Type" and alias_for("osm_id") == "OSM ID"
    assert default_branch("bike-lanes") == "feature/add-bike-lanes-layer"
    assert geometry_type_name("MULTIPOLYGON") == "MultiPolygon"
    assert geometry_type_name("LINESTRINGM") == "LineString"
    assert geometry_type_name("GEOMETRY") == "Geometry"


def test_generated_spec_equals_the_examples_bike_lanes_layer() -> None:
    text = render_layer_yaml(draft_for(bike_lanes()), "environments/dev/layers/bike-lanes.yaml")
    generated = check_rendered(text)
    example = example_layer()
    g, e = generated.spec, example.spec
    assert [(f.name, f.type, f.maxLength, f.nullable) for f in g.fields] == \
        [(f.name, f.type, f.maxLength, f.nullable) for f in e.fields]
    assert g.storage == e.storage
    for key in ("geometryType", "idField", "displayField", "geometryField", "crs", "ogc", "validation"):
        assert getattr(g, key) == getattr(e, key), key
    md = generated.metadata
    assert (md.name, md.service, md.environment, md.createdBy) == ("bike-lanes", "transportation", "dev", "ai-consultant")


def test_rendered_text_has_the_seed_layout() -> None:
    text = render_layer_yaml(draft_for(bike_lanes()), "environments/dev/layers/bike-lanes.yaml")
    lines = text.splitlines()
    assert lines[0] == "# yaml-language-server: $schema=../../../schemas/layer.schema.json"
    assert lines[1] == "# environments/dev/layers/bike-lanes.yaml"
    assert "  created: 2025-10-04T12:00:00Z" in lines
    assert "  createdBy: ai-consultant" in lines
    # the example file's spec, from "crs:" on, is the same text except the aliases written by hand
    example = (REPO / "environments/dev/layers/bike-lanes.yaml").read_text()
    tail = text[text.index("  crs:"):]
    expected_tail = example[example.index("  crs:"):]
    expected_tail = expected_tail.replace('"Street Name"', '"Name"').replace('"Width (feet)"', '"Width Ft"')
    assert tail == expected_tail


def test_other_schema_numeric_and_not_null_columns() -> None:
    cols = (
        ColumnFacts("gid", "bigint", "int8", False),
        ColumnFacts("area", "numeric(12,2)", "numeric", False),
        ColumnFacts("code", "character(4)", "bpchar", True, max_length=4),
        ColumnFacts("tags", "text[]", "_text", True),
        ColumnFacts("the_geom", "geometry(MultiPolygon,2913)", "geometry", True),
    )
    t = TableFacts(schema="cadastre", name="Parcels", kind="r", row_estimate=0, columns=cols,
                   geometry_columns=(GeometryColumnFacts("the_geom", "MULTIPOLYGON", 2913, 2),), primary_key=("gid",))
    draft = build_layer(t, name="parcels", service="land", environment="dev", created=NOW, default_crs="EPSG:4326")
    spec = draft.document["spec"]
    assert spec["storage"] == {"table": "Parcels", "schema": "cadastre", "geometryColumn": "the_geom",
                               "primaryKey": "gid", "srid": 2913}
    assert spec["crs"] == ["EPSG:2913", "EPSG:3857", "EPSG:4326"]
    assert spec["fields"][0] == {"name": "gid", "type": "long", "alias": "GID", "nullable": False}
    assert spec["fields"][1] == {"name": "area", "type": "decimal", "alias": "Area", "precision": 12, "scale": 2,
                                 "nullable": False}
    assert spec["fields"][2]["maxLength"] == 4 and spec["displayField"] == "code"
    assert draft.skipped == ("tags (text[])",)
    assert spec["validation"]["healthChecks"][0]["query"] == 'SELECT COUNT(*) FROM cadastre."Parcels"'
    check_rendered(render_layer_yaml(draft.document, "environments/dev/layers/parcels.yaml"))


@pytest.mark.parametrize(("kw", "message"), [
    ({"geometry_columns": ()}, "no PostGIS geometry column"),
    ({"geometry_columns": (GeometryColumnFacts("geom", "LINESTRING", 0, 2),)}, "has no SRID"),
    ({"primary_key": ("id", "name")}, "composite primary key"),
])
def test_tables_that_cannot_be_layers(kw: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        draft_for(bike_lanes(**kw))


def test_no_primary_key_falls_back_to_an_id_column() -> None:
    doc = draft_for(bike_lanes(primary_key=()))
    assert doc["spec"]["idField"] == "id"
    with pytest.raises(UsageError, match="no geometry column the_geom"):
        draft_for(bike_lanes(), geometry_column="the_geom")
