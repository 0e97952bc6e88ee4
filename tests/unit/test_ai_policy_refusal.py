"""The assistant cannot edit the policy that judges its changes (issue 25, reproduction 8).

A model's ``edit_resource`` on ``policies/production-policy.yaml`` with
``{"autoApprove": true, "approval": null}`` made the production plan need no approval.
Every way a tool names a file (its arguments, the file it resolves to through a linked
folder) is refused, and the refusal is what the model gets back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from honua_plan.ai.changes import editable_file, prepare
from honua_plan.ai.tools import EditResource, parse_call
from tests.helpers import copy_example

REPRO = {"path": "policies/production-policy.yaml", "patch": {"spec": {"autoApprove": True, "approval": None}}}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "repo", server=False)


@pytest.mark.parametrize("path", ["policies/production-policy.yaml", "policies/new-policy.yml",
                                  "environments/production/policy.yaml", "environments/dev/policy.yml",
                                  "honua.yaml"])
def test_the_models_tool_call_on_a_policy_is_refused(path: str) -> None:
    args, problems = parse_call("edit_resource", json.dumps({**REPRO, "path": path}))
    assert args is None and len(problems) == 1
    assert "the assistant cannot change the policy that judges its own changes" in problems[0], problems


def test_the_reproduction_writes_nothing(repo: Path) -> None:
    before = (repo / REPRO["path"]).read_text()
    # past the argument check (a model_construct'ed call): the resolver refuses it too
    change, problems = prepare(repo, "edit_resource", EditResource.model_construct(**REPRO), REPRO)
    assert change is None and "is a policy or honua.yaml" in problems[0], problems
    assert (repo / REPRO["path"]).read_text() == before


def test_a_linked_folder_does_not_lead_to_a_policy(repo: Path) -> None:
    (repo / "policies/production-policy.yaml").rename(repo / "environments/production/policy.yaml")
    os.symlink(repo / "environments" / "production", repo / "environments" / "dev" / "prod")
    _, file, why = editable_file(repo, "environments/dev/prod/policy.yaml")
    assert file is None and why is not None and "leads to environments/production/policy.yaml" in why, why


def test_layers_stay_editable(repo: Path) -> None:
    rel = "environments/dev/layers/bike-lanes.yaml"
    change, problems = prepare(repo, "edit_resource",
                               EditResource(path=rel, patch={"spec": {"ogc": {"itemLimit": 500}}}), {})
    assert problems == [] and change is not None
