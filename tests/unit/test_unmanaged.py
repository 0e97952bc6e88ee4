"""Unmanaged addresses (``honua state rm``) and the publish of what the state records (issue 26)."""

from __future__ import annotations

import json
from pathlib import Path

from honua_plan.config.desired import DesiredState
from honua_plan.config.loader import load_environment
from honua_plan.plan.diff import desired_resources, diff_resources
from honua_plan.providers.server.compile import compile_published
from honua_plan.state.model import ResourceRecord, StateDocument
from honua_plan.workflows.publish import published_document
from tests.helpers import copy_example, edit

LAYER = "layer.transportation::bike-lanes"


def recorded_all(repo: Path) -> tuple[DesiredState, StateDocument]:
    desired = load_environment(repo, "dev")
    doc = StateDocument.new("dev").with_resources([
        ResourceRecord.create(a, k, attrs, serial=1) for a, (k, attrs) in desired_resources(desired).items()])
    return desired, doc


def test_an_unmanaged_address_is_a_no_op_never_a_create_or_delete(tmp_path: Path) -> None:
    desired, doc = recorded_all(copy_example(tmp_path / "repo"))
    forgotten = doc.with_unmanaged(frozenset({LAYER, "layer.gone::x"}))
    assert LAYER not in forgotten.resources and forgotten.unmanaged == ["layer.gone::x", LAYER]
    changes = {c.address: c for c in diff_resources(desired_resources(desired), forgotten)}
    assert changes[LAYER].action == "no-op"
    assert changes[LAYER].reason == ("unmanaged (state rm): not changed by apply; "
                                     f"`honua state import {LAYER}` to manage it again")
    assert changes["layer.gone::x"].action == "no-op" and "not in the configuration" in changes["layer.gone::x"].reason
    # recorded again (state import, or an apply): managed
    again = forgotten.with_resources([doc.resources[LAYER]])
    assert again.unmanaged == ["layer.gone::x"]
    assert doc.to_json_data()["unmanaged"] == [] and json.loads(json.dumps(forgotten.to_json_data()))["unmanaged"]
    assert StateDocument.model_validate(forgotten.to_json_data()).unmanaged == forgotten.unmanaged


def test_the_publish_is_what_the_state_records_plus_the_unmanaged_as_published(tmp_path: Path) -> None:
    repo = copy_example(tmp_path / "repo")
    desired, doc = recorded_all(repo)
    served = compile_published(desired)
    cid = LAYER.removeprefix("layer.")
    assert published_document(desired, doc, None)["collections"].keys() == {cid}
    # not recorded: not published
    assert published_document(desired, doc.without_resource(LAYER), served)["collections"] == {}
    # edited in the configuration but not applied: published as recorded
    edit(repo / "environments/dev/layers/bike-lanes.yaml", 'title: "Bike Lanes"', 'title: "Edited"')
    edited = load_environment(repo, "dev")
    assert compile_published(edited)["collections"][cid]["title"] == "Edited"
    assert published_document(edited, doc, served)["collections"][cid]["title"] == "Bike Lanes"
    # unmanaged: kept exactly as the server publishes it, whatever the configuration says
    forgotten = doc.with_unmanaged(frozenset({LAYER}))
    kept = dict(served["collections"][cid], bbox=[1.0, 2.0, 3.0, 4.0])
    now = {**served, "collections": {cid: kept}}
    assert published_document(edited, forgotten, now)["collections"][cid] == kept
    assert published_document(edited, forgotten, None)["collections"] == {}  # not published now: not invented


def _plan(repo: Path, **request: tuple[str, ...]) -> dict[str, list[str]]:
    from datetime import UTC, datetime

    from honua_plan.plan.builder import PlanRequest, build_plan
    from honua_plan.plan.migrations import LiveState

    plan = build_plan(load_environment(repo, "dev"), StateDocument.new("dev"), LiveState(),
                      PlanRequest(now=datetime.now(UTC), **request))  # type: ignore[arg-type]
    return {a.address: [c.query or c.name for c in a.checks] for a in plan.actions}


def test_a_target_or_an_exclude_keeps_the_publish_of_what_it_keeps(tmp_path: Path) -> None:
    repo = copy_example(tmp_path / "repo")
    layer = (repo / "environments/dev/layers/bike-lanes.yaml").read_text()
    (repo / "environments/dev/layers/copy.yaml").write_text(
        layer.replace("name: bike-lanes", "name: copy").replace("FROM bike_lanes", "FROM bike_lanes /* copy */"))
    full = _plan(repo)
    assert {"layer.transportation::copy", "server.gis-server", "validation.dev"} <= full.keys()
    # a migration alone: the reload (the served table's schema), no layer, no layer's checks
    migration = _plan(repo, target=("migration.003",))
    assert "server.gis-server" in migration and "validation.dev" not in migration
    assert not any(a.startswith(("layer.", "service.")) for a in migration), migration
    # a layer: its service, the reload, its own checks only
    one = _plan(repo, target=(LAYER,))
    assert {LAYER, "service.transportation", "server.gis-server", "validation.dev"} <= one.keys()
    assert "layer.transportation::copy" not in one
    assert one["validation.dev"] and not any("copy" in q for q in one["validation.dev"]), one["validation.dev"]
    # an excluded layer: the others are still published, and checked without it
    rest = _plan(repo, exclude=("layer.transportation::copy",))
    assert {LAYER, "server.gis-server", "validation.dev"} <= rest.keys() and "layer.transportation::copy" not in rest
    assert not any("copy" in q for q in rest["validation.dev"]), rest["validation.dev"]
