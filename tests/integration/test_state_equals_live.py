"""The state equals what is live after every command (issue 26): a targeted deploy publishes
only what it records, and ``honua state rm`` forgets without unpublishing.

Each case ends with ``plan --detailed-exitcode`` (exit 0), ``drift`` (exit 0) and an HTTP
check against the real pygeoapi server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from honua_plan.workflows.sample import seed_bike_lanes
from tests.helpers import copy_example, drop_performance_check, edit, free_port, run
from tests.integration.test_served_layers import get

pytest.importorskip("pygeoapi", reason="the served-layer tests need the 'server' extra")

CID = "transportation::bike-lanes"
LAYER = f"layer.{CID}"


@pytest.fixture
def served(tmp_path: Path, pg_dsn: str) -> Iterator[tuple[Path, dict[str, str], str]]:
    repo = copy_example(tmp_path / "repo")
    drop_performance_check(repo)
    port = free_port()
    edit(repo / "providers/gis-server.yaml", "{dev: 5555,", f"{{dev: {port},")
    env = {"HONUA_PG_DSN": pg_dsn, "CI": ""}
    try:
        yield repo, env, f"http://localhost:{port}/ogc"
    finally:
        run(repo, "serve", "--env", "dev", "--stop", env=env)


def state_list(repo: Path, env: dict[str, str]) -> list[str]:
    result = run(repo, "state", "list", "--env", "dev", "--format", "json", env=env)
    assert result.exit_code == 0, result.output
    return list(json.loads(result.output)["resources"])


def plan_json(repo: Path, env: dict[str, str]) -> dict:
    result = run(repo, "plan", "--env", "dev", "--format", "json", env=env)
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.output))


def settled(repo: Path, env: dict[str, str]) -> None:
    """Nothing to do and nothing drifted: the state is what is live."""
    planned = run(repo, "plan", "--env", "dev", "--detailed-exitcode", env=env)
    assert planned.exit_code == 0, planned.output
    drift = run(repo, "drift", "--env", "dev", env=env)
    assert drift.exit_code == 0, drift.output


def test_a_targeted_deploy_publishes_only_what_it_records(served: tuple[Path, dict[str, str], str],
                                                          pg_dsn: str) -> None:
    repo, env, base = served
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # the city's table, with rows, before honua
        seed_bike_lanes(conn, 42)
    deployed = run(repo, "deploy", "migration", "003", "--environment", "dev", "--yes", env=env)
    assert deployed.exit_code == 0, deployed.output
    assert "Health check" not in deployed.output  # the layer's checks belong to the apply that publishes it
    recorded = state_list(repo, env)
    # the targeted deploy did not record the layer: it must not serve it either
    assert LAYER not in recorded, recorded
    assert get(f"{base}/collections/{CID}?f=json")[0] == 404
    planned = plan_json(repo, env)
    assert (LAYER, "create") in [(a["address"], a["action"]) for a in planned["actions"]], planned["actions"]
    drift = run(repo, "drift", "--env", "dev", env=env)
    assert drift.exit_code == 0, drift.output

    # the untargeted apply then records and publishes it
    applied = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
    assert applied.exit_code == 0, applied.output
    assert LAYER in state_list(repo, env) and "service.transportation" in state_list(repo, env)
    assert get(f"{base}/collections/{CID}?f=json")[0] == 200
    settled(repo, env)


def test_a_targeted_layer_is_published_with_what_the_state_already_serves(
        served: tuple[Path, dict[str, str], str], pg_dsn: str) -> None:
    repo, env, base = served
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        seed_bike_lanes(conn, 42)
    assert run(repo, "migrate", "baseline", "003", "--env", "dev", "--reason", "made before honua",
               env=env).exit_code == 0
    layer = (repo / "environments/dev/layers/bike-lanes.yaml").read_text()
    (repo / "environments/dev/layers/lanes-copy.yaml").write_text(layer.replace("name: bike-lanes", "name: lanes-copy"))
    targeted = run(repo, "apply", "--env", "dev", "--auto-approve", "--target", LAYER, env=env)
    assert targeted.exit_code == 0, targeted.output
    recorded = state_list(repo, env)
    assert LAYER in recorded and "layer.transportation::lanes-copy" not in recorded, recorded
    assert get(f"{base}/collections/{CID}?f=json")[0] == 200
    assert get(f"{base}/collections/transportation::lanes-copy?f=json")[0] == 404
    planned = plan_json(repo, env)
    assert [(a["address"], a["action"]) for a in planned["actions"] if a["kind"] == "layer"] == \
        [("layer.transportation::lanes-copy", "create")]
    (repo / "environments/dev/layers/lanes-copy.yaml").unlink()
    settled(repo, env)
    assert get(f"{base}/collections/{CID}?f=json")[0] == 200


def test_state_rm_forgets_and_the_next_apply_leaves_the_layer_served(
        served: tuple[Path, dict[str, str], str], pg_dsn: str) -> None:
    repo, env, base = served
    (repo / "migrations/003_optimize_bike_lanes.yaml").unlink()  # it edits the layer file removed below
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        seed_bike_lanes(conn, 42)
    applied = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
    assert applied.exit_code == 0, applied.output
    assert get(f"{base}/collections/{CID}?f=json")[0] == 200

    removed = run(repo, "state", "rm", LAYER, "--env", "dev", env=env)
    assert removed.exit_code == 0, removed.output
    planned = plan_json(repo, env)
    assert planned["actions"] == [], planned["actions"]
    noop = next(n for n in planned["no_ops"] if n["address"] == LAYER)
    assert noop["reason"].startswith("unmanaged (state rm): not changed by apply"), noop
    assert f"honua state import {LAYER}" in noop["reason"]
    text = run(repo, "plan", "--env", "dev", env=env).output
    assert (f"{LAYER}: unmanaged (state rm): not changed by apply; `honua state import {LAYER}` to manage "
            "it again") in text, text
    settled(repo, env)

    # an unrelated apply: a new migration on another table, and the service's title
    (repo / "migrations/004_parcels_note.yaml").write_text(
        'apiVersion: honua.io/v1\nkind: Migration\nmetadata:\n  id: "004"\n  description: "Parcels note"\n'
        '  environments: [dev]\nspec:\n  dependencies: ["002"]\n  up:\n    - name: Add note\n'
        "      type: sql\n      content: |\n        ALTER TABLE parcels ADD COLUMN note text;\n"
        "  down:\n    - name: Drop note\n      type: sql\n      content: |\n"
        "        ALTER TABLE parcels DROP COLUMN note;\n")
    # and an edit of the forgotten layer: not applied while it is unmanaged
    edit(repo / "environments/dev/layers/bike-lanes.yaml", 'title: "Bike Lanes"', 'title: "Forgotten Bike Lanes"')
    planned = plan_json(repo, env)
    assert LAYER not in [a["address"] for a in planned["actions"]], planned["actions"]
    unrelated = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
    assert unrelated.exit_code == 0, unrelated.output
    status, collection = get(f"{base}/collections/{CID}?f=json")
    assert status == 200 and not collection["title"].startswith("Forgotten"), collection
    assert get(f"{base}/collections/{CID}/items?limit=100&f=json")[1]["numberMatched"] == 42
    assert LAYER not in state_list(repo, env)
    settled(repo, env)

    # the layer removed from the configuration while unmanaged: still left alone
    layer_file = repo / "environments/dev/layers/bike-lanes.yaml"
    text = layer_file.read_text()
    layer_file.unlink()
    planned = plan_json(repo, env)
    assert not any(a["address"] == LAYER for a in planned["actions"]), planned["actions"]
    settled(repo, env)
    assert get(f"{base}/collections/{CID}?f=json")[0] == 200

    # managed again: the configuration is recorded, and the server's older copy is drift to republish
    layer_file.write_text(text)
    imported = run(repo, "state", "import", LAYER, "--env", "dev", env=env)
    assert imported.exit_code == 0, imported.output
    assert LAYER in state_list(repo, env)
    pending = run(repo, "plan", "--env", "dev", "--detailed-exitcode", env=env)
    assert pending.exit_code == 2 and "update collection transportation::bike-lanes: title changed" in pending.output, \
        pending.output
    assert run(repo, "apply", "--env", "dev", "--auto-approve", env=env).exit_code == 0
    assert get(f"{base}/collections/{CID}?f=json")[1]["title"] == "Forgotten Bike Lanes"
    settled(repo, env)
