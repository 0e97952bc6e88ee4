"""The model's file tools before the gate: arguments, the loader's verdict on the changed
repository, merge patches, path containment, the chat's history and request context."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from honua_plan.ai.assistant import History
from honua_plan.ai.briefing import named_files, words
from honua_plan.ai.changes import editable_file, merge_patch, prepare
from honua_plan.ai.session import split_requests, worst
from honua_plan.ai.tools import (
    EditResource,
    ProposeMigration,
    RemoveResource,
    parse_call,
    tool_specs,
)
from honua_plan.config.loader import load
from tests.helpers import copy_example


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "repo", server=False)


def test_tool_parameters_are_the_models_json_schemas() -> None:
    specs = {s["function"]["name"]: s["function"]["parameters"] for s in tool_specs()}
    migration = specs["propose_migration"]
    assert migration["$defs"]["Migration"]["additionalProperties"] is False
    assert "MigrationStep" in migration["$defs"]
    assert specs["remove_resource"]["properties"]["kind"]["enum"] == ["Layer", "Service"]
    assert set(specs["edit_resource"]["required"]) == {"path", "patch"}


@pytest.mark.parametrize(("path", "why"), [
    ("../../etc/passwd", "leaves the repository"),
    ("environments/../../x.yaml", "leaves the repository"),
    ("/etc/passwd", "is absolute"),
    ("state/dev.json", "is outside environments/, migrations/"),
    ("honua.yaml", "is a policy or honua.yaml"),
    ("environments/dev/layers/x.txt", "is not a YAML file"),
    ("environments\\dev\\x.yaml", "is not a repository path"),
])
def test_edit_paths_outside_the_reviewed_folders_are_refused(path: str, why: str) -> None:
    args, problems = parse_call("edit_resource", json.dumps({"path": path, "patch": {"a": 1}}))
    assert args is None and len(problems) == 1
    assert problems[0].startswith("path: ") and why in problems[0], problems


def test_a_symbolic_link_out_of_the_editable_folders_is_refused(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.yaml"
    outside.write_text("a: 1\n")
    layers = repo / "environments" / "dev" / "layers"
    os.symlink(outside, layers / "evil.yaml")
    os.symlink(repo / "honua.yaml", layers / "project.yaml")
    for name in ("evil.yaml", "project.yaml"):
        _, file, why = editable_file(repo, f"environments/dev/layers/{name}")
        assert file is None and why is not None and "symbolic link" in why, why
    change, problems = prepare(repo, "edit_resource",
                               EditResource(path="environments/dev/layers/evil.yaml", patch={"a": 2}), {})
    assert change is None and "symbolic link" in problems[0]
    assert outside.read_text() == "a: 1\n"
    # a link inside the folders is not written through either: the model is told the file's own path
    os.symlink("bike-lanes.yaml", layers / "alias.yaml")
    _, file, why = editable_file(repo, "environments/dev/layers/alias.yaml")
    assert file is None and why == ("environments/dev/layers/alias.yaml is a symbolic link: "
                                    "edit environments/dev/layers/bike-lanes.yaml instead")


def test_merge_patch_is_rfc_7386() -> None:
    # the RFC's own example
    target = {"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"}, "tags": ["example", "sample"],
              "content": "This will be unchanged"}
    merge_patch(target, {"title": "Hello!", "phoneNumber": "+01-123-456-7890", "author": {"familyName": None},
                         "tags": ["example"]})
    assert json.loads(json.dumps(target)) == {
        "title": "Hello!", "author": {"givenName": "John"}, "tags": ["example"], "content": "This will be unchanged",
        "phoneNumber": "+01-123-456-7890"}
    t2: dict[str, object] = {"a": "b"}
    merge_patch(t2, {"a": {"bb": {"ccc": None}}})
    assert json.loads(json.dumps(t2)) == {"a": {"bb": {}}}


def test_an_edit_keeps_the_file_and_reports_the_loaders_errors(repo: Path) -> None:
    rel = "environments/dev/layers/bike-lanes.yaml"
    before = (repo / rel).read_text()
    change, problems = prepare(repo, "edit_resource", EditResource(path=rel, patch={"spec": {"geometryType": "Blob"}}),
                               {})
    assert change is None
    # file:line:col as `honua validate` prints it
    assert problems == [f"{rel}:15:3: spec.geometryType: invalid value 'Blob'; expected 'Point', 'LineString', "
                        "'Polygon', 'MultiPoint', 'MultiLineString', 'MultiPolygon', 'GeometryCollection' or 'Geometry'"]
    change, problems = prepare(repo, "edit_resource",
                               EditResource(path=rel, patch={"spec": {"ogc": {"itemLimit": 500}}}), {})
    assert problems == [] and change is not None
    after = change.files[rel]
    assert after is not None and "itemLimit: 500" in after
    assert after.splitlines()[:2] == before.splitlines()[:2]  # comments stay
    assert change.targets == ("layer.transportation::bike-lanes",)
    assert (repo / rel).read_text() == before  # nothing written before the gate
    _, same = prepare(repo, "edit_resource", EditResource(path=rel, patch={"kind": "Layer"}), {})
    assert same == [f"the patch changes nothing in {rel}"]


def test_a_policy_edit_is_refused(repo: Path) -> None:
    """The assistant never edits the policy that judges it (tests/unit/test_ai_policy_refusal.py)."""
    rel = "policies/production-policy.yaml"
    args, problems = parse_call("edit_resource", json.dumps({"path": rel, "patch": {"spec": {"approval": None}}}))
    assert args is None and "is a policy or honua.yaml" in problems[0]


def test_a_migration_is_checked_by_the_loader(repo: Path) -> None:
    raw = {"name": "drop_parcels", "migration": {
        "apiVersion": "honua.io/v1", "kind": "Migration", "metadata": {"id": "003", "author": "someone"},
        "spec": {"up": [{"name": "drop", "type": "sql", "content": "DROP TABLE parcels;"}]}}}
    args, problems = parse_call("propose_migration", json.dumps(raw))
    assert isinstance(args, ProposeMigration) and problems == []
    change, problems = prepare(repo, "propose_migration", args, raw)
    assert change is None
    assert problems == ["migrations/003_optimize_bike_lanes.yaml:6:3: duplicate migration.003 "
                        "(first declared at migrations/003_drop_parcels.yaml:6:3)"]
    raw["migration"]["metadata"]["id"] = "004"  # type: ignore[index]
    args, _ = parse_call("propose_migration", json.dumps(raw))
    change, problems = prepare(repo, "propose_migration", args, raw)
    assert problems == [] and change is not None
    text = change.files["migrations/004_drop_parcels.yaml"]
    assert text is not None and "author: ai-consultant" in text  # not the model's claim
    assert change.targets == ("migration.004",)
    (repo / "migrations/004_drop_parcels.yaml").write_text(text)
    assert load(repo)[0].migration("004") is not None  # the file the gate writes is one the loader takes


def test_a_migration_with_bad_sql_or_shape_is_refused(repo: Path) -> None:
    raw = {"name": "x", "migration": {"apiVersion": "honua.io/v1", "kind": "Migration", "metadata": {"id": "004"},
                                      "spec": {"up": [{"name": "a", "type": "sql"}]}}}
    args, problems = parse_call("propose_migration", json.dumps(raw))
    assert args is None and any("a sql step needs 'content'" in p for p in problems), problems


def test_removing_is_checked_like_the_files(repo: Path) -> None:
    # the bike-lanes layers belong to the transportation service: removing it leaves the
    # repository invalid (a migration's metadata step is judged by the plan, while pending)
    change, problems = prepare(repo, "remove_resource", RemoveResource(kind="Service", name="transportation"), {})
    assert change is None and problems[0].startswith("removing environments/dev/services/transportation.yaml")
    assert any("environments/dev/layers/bike-lanes.yaml:" in p for p in problems)
    change, problems = prepare(repo, "remove_resource", RemoveResource(kind="Layer", name="nope"), {})
    assert change is None and problems == ["there is no Layer named 'nope' in environments/ (layers: bike-lanes)"]
    (repo / "migrations/003_optimize_bike_lanes.yaml").unlink()
    change, problems = prepare(repo, "remove_resource", RemoveResource(kind="Layer", name="bike-lanes"), {})
    assert problems == [] and change is not None
    assert change.files == dict.fromkeys(f"environments/{e}/layers/bike-lanes.yaml"
                                         for e in ("dev", "production", "staging"))
    assert change.targets == ("layer.transportation::bike-lanes",)
    assert (repo / "environments/dev/layers/bike-lanes.yaml").exists()


def test_history_keeps_the_newest_turns_within_the_budget() -> None:
    h = History(budget=100)
    h.add("first request", "a" * 30)
    h.add("second", "b" * 30)
    assert [m["content"] for m in h.messages()][:2] == ["Request: first request", "a" * 30]
    h.add("third", "c" * 40)  # 13+30 + 6+30 + 5+40 > 100: the oldest goes
    assert [t[0] for t in h.turns] == ["second", "third"]
    h.add("x" * 500, "y")  # one turn larger than the budget is cut, never kept whole
    assert sum(len(a) + len(b) for a, b in h.turns) <= 100


def test_one_request_per_line_with_indented_continuations() -> None:
    seed = ("We need to add bike lanes data from our PostGIS database.\n"
            "       The table is public.bike_lanes and has a geometry column.\n")
    assert split_requests(seed) == [seed.rstrip("\n")]
    assert split_requests("first\n\nsecond\n") == ["first", "second"]
    assert split_requests('"open quote\nstill the same"\nnext') == ['"open quote\nstill the same"', "next"]
    assert worst([0, 2]) == 2 and worst([2, 1, 0]) == 1 and worst([0, 0]) == 0


def test_the_request_context_names_tables_and_files(repo: Path) -> None:
    assert {"bike_lanes", "public.parks", "city_parks"} <= words("Bike lanes, public.parks and city-parks")
    states = load(repo)
    files = named_files("what does the bike lanes layer hold? see migrations/001_create_bike_lanes.yaml", states)
    assert files[0] == "migrations/001_create_bike_lanes.yaml"
    assert {"environments/dev/layers/bike-lanes.yaml", "environments/production/layers/bike-lanes.yaml"} <= set(files)
    assert "migrations/003_optimize_bike_lanes.yaml" in named_files("explain 003_optimize_bike_lanes", states)
    assert named_files("why is production slow", states) == []


def test_a_deletion_is_committed_on_the_branch_only(tmp_path: Path) -> None:
    import subprocess

    from honua_plan.ai import gitops

    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=T", "-c", "user.email=t@example.org", "-C", str(tmp_path),
                               *args], capture_output=True, text=True, check=True).stdout

    (tmp_path / "environments").mkdir()
    (tmp_path / "environments/a.yaml").write_text("a: 1\n")
    (tmp_path / "environments/b.yaml").write_text("b: 1\n")
    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-q", "-m", "base")
    assert gitops.free_branch(tmp_path, "main") == "main-2"
    gitops.commit_files(tmp_path, "feature/x", {"environments/a.yaml": None, "environments/c.yaml": "c: 1\n"},
                        "change\n\nHonua-Provenance: ai; model=m\n")
    assert git("ls-tree", "-r", "--name-only", "feature/x").split() == ["environments/b.yaml", "environments/c.yaml"]
    assert (tmp_path / "environments/a.yaml").exists() and git("status", "--porcelain") == ""
    assert gitops.free_branch(tmp_path, "feature/x") == "feature/x-2"


def test_the_data_block_stays_within_its_budget(repo: Path) -> None:
    from honua_plan.ai.briefing import briefing
    from honua_plan.ai.chat import project_summary
    from honua_plan.context import Context

    context = Context(repo)
    request = "what does the bike lanes layer hold?"
    full = briefing(context, request, summary=project_summary(context))
    head = full.splitlines()[0]
    assert head.startswith("Project ") and "environments in promotion order: dev, staging, production" in head
    assert "Current file environments/dev/layers/bike-lanes.yaml:" in full
    small = briefing(context, request, summary=project_summary(context), budget=600)
    assert len(small) < 700 and small.startswith(head)
    assert "[cut: over the budget]" in small or "[more project data left out: over the budget]" in small
