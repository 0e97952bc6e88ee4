"""Promotion's comparison, pure: what travels, what never does (files, keys migrations own)."""

from __future__ import annotations

from pathlib import Path

import pytest

from honua_plan.config.loader import load
from honua_plan.state.model import MigrationRecord, StateDocument
from honua_plan.workflows.promote import compare, migration_chain
from tests.helpers import copy_example, edit

LAYER = "environments/{env}/layers/bike-lanes.yaml"
INDEX = ("    srid: 4326\n", "    srid: 4326\n    indexes:\n      - name: idx_bike_lanes_geom\n"
                               "        type: gist\n        column: geom\n")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "repo", server=False)


def applied(env: str, root: Path, *ids: str) -> StateDocument:
    from honua_plan.plan.diff import migration_checksum

    desired = load(root, env)[0]
    doc = StateDocument.new(env)
    for mid in ids:
        m = desired.migration(mid)
        assert m is not None
        doc = doc.with_migration(MigrationRecord(id=mid, checksum=migration_checksum(m), status="applied"))
    return doc


def test_loader_overlay_reads_new_and_changed_files_without_writing(repo: Path) -> None:
    layer = (repo / LAYER.format(env="staging")).read_text()
    before = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    overlay = {LAYER.format(env="staging"): layer.replace('title: "Bike Lanes"', 'title: "Overlaid"').encode(),
               "environments/staging/layers/extra.yaml": layer.replace("name: bike-lanes", "name: extra").encode()}
    desired = load(repo, "staging", overlay=overlay)[0]
    titles = {a.split("::")[1]: lyr.spec.title for a, lyr in desired.layers.items()}
    assert titles == {"bike-lanes": "Overlaid", "extra": "Bike Lanes"}
    assert {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()} == before
    assert load(repo, "staging")[0].config_hash != desired.config_hash


@pytest.mark.parametrize("dev_edit,staging_has_index,expected", [
    (None, False, "unchanged"),                                          # only 003's key differs: not copied
    (('title: "Bike Lanes"', 'title: "Bicycle Lanes"'), False, "modified"),  # copied, without 003's key
    (None, True, "unchanged"),                                           # 003 applied in both
])
def test_keys_a_migration_sets_never_travel(repo: Path, dev_edit: tuple[str, str] | None, staging_has_index: bool,
                                            expected: str) -> None:
    edit(repo / LAYER.format(env="dev"), *INDEX)  # what 003's metadata step wrote in dev
    if dev_edit:
        edit(repo / LAYER.format(env="dev"), *dev_edit)
    if staging_has_index:
        edit(repo / LAYER.format(env="staging"), *INDEX)
    src, dst = load(repo, "dev")[0], load(repo, "staging")[0]
    cmp = compare(repo, src, dst, applied("dev", repo, "001", "002", "003"), StateDocument.new("staging"))
    change = next(f for f in cmp.files if f.name == "bike-lanes.yaml")
    assert change.change == expected
    assert change.source_text is not None
    assert ("idx_bike_lanes_geom" in change.source_text) == staging_has_index
    assert ('"Bicycle Lanes"' in change.source_text) == bool(dev_edit)


def test_one_migration_brings_its_dependency_chain_and_no_file(repo: Path) -> None:
    edit(repo / LAYER.format(env="dev"), 'title: "Bike Lanes"', 'title: "Bicycle Lanes"')
    src, dst = load(repo, "dev")[0], load(repo, "staging")[0]
    assert migration_chain("003", dst)[0] == ["003", "002", "001"]
    dev = applied("dev", repo, "001", "002", "003")
    cmp = compare(repo, src, dst, dev, applied("staging", repo, "001"), migration="003")
    assert cmp.files == [] and cmp.migrations == ["002", "003"] and not cmp.problems
    cmp = compare(repo, src, dst, applied("dev", repo, "001"), StateDocument.new("staging"), migration="003")
    assert cmp.problems == ["migration 002 is not applied in dev yet", "migration 003 is not applied in dev yet"]
