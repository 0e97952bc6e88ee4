"""``honua validate``: passes on the example and on ``honua init``; each bad input gets
``path:line:column: message``, exit 1 and no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import copy_example, edit, run

LAYER = "environments/dev/layers/bike-lanes.yaml"
MIG3 = "migrations/003_optimize_bike_lanes.yaml"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "repo")


def test_example_validates(repo: Path) -> None:
    result = run(repo, "validate")
    assert result.exit_code == 0, result.output
    assert "✓ Validated metadata syntax (dev, staging, production)" in result.output
    assert "3 layer(s), 3 migration(s)" in result.output


def test_example_validates_json(repo: Path) -> None:
    result = run(repo, "validate", "--env", "dev", "--format", "json")
    data = json.loads(result.output)
    assert data["valid"] is True and data["environments"] == ["dev"]


def test_init_output_validates(tmp_path: Path) -> None:
    target = tmp_path / "new-city"
    result = run(tmp_path, "init", str(target))
    assert result.exit_code == 0, result.output
    result = run(target, "validate")
    assert result.exit_code == 0, result.output
    assert (target / "schemas" / "layer.schema.json").exists()


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    run(tmp_path, "init", str(tmp_path / "c"))
    result = run(tmp_path, "init", str(tmp_path / "c"))
    assert result.exit_code == 1
    assert "already holds a honua.yaml" in result.output


def _layer_line(repo: Path, needle: str, path: str = LAYER) -> int:
    for i, line in enumerate((repo / path).read_text().splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(needle)


Mutation = Callable[[Path], None]

CASES: list[tuple[str, Mutation, str, str]] = [
    (
        "malformed-yaml",
        lambda r: edit(r / LAYER, "  title: \"Bike Lanes\"", "  title: \"Bike Lanes\n  oops: ["),
        LAYER,
        "invalid YAML",
    ),
    (
        "unknown-kind",
        lambda r: edit(r / LAYER, "kind: Layer", "kind: Layr"),
        LAYER,
        "unknown kind 'Layr'",
    ),
    (
        "unknown-field",
        lambda r: edit(r / LAYER, "    srid: 4326", "    srid: 4326\n    colour: red"),
        LAYER,
        "unknown field 'colour' in spec.storage",
    ),
    (
        "wrong-type",
        lambda r: edit(r / LAYER, "    srid: 4326", "    srid: forty"),
        LAYER,
        "spec.storage.srid: Input should be a valid integer",
    ),
    (
        "expected-typo",
        lambda r: edit(r / LAYER, 'expected: "> 0"', 'expected: "> zero"'),
        LAYER,
        "cannot parse expected '> zero'",
    ),
    (
        "rows-typo",
        lambda r: edit(r / MIG3, 'expected: "1 row"', 'expected: "1 rowz"'),
        MIG3,
        "a row count is written '1 row' or 'N rows'",
    ),
    (
        "duration-typo",
        lambda r: edit(r / MIG3, "timeout: 5m", "timeout: 5 minutes"),
        MIG3,
        "cannot parse duration",
    ),
    (
        "duplicate-address",
        lambda r: (r / "environments/dev/layers/zz-bike-lanes-copy.yaml").write_text((r / LAYER).read_text()),
        "environments/dev/layers/zz-bike-lanes-copy.yaml",
        "duplicate layer.transportation::bike-lanes",
    ),
    (
        "missing-service",
        lambda r: edit(r / LAYER, "service: transportation", "service: transport"),
        LAYER,
        "belongs to service 'transport', which does not exist in dev",
    ),
    (
        "missing-dependency",
        lambda r: edit(r / MIG3, '"002_add_parcels_layer"', '"009_missing"'),
        MIG3,
        "depends on '009_missing', which does not exist",
    ),
    (
        "dependency-cycle",
        lambda r: edit(r / "migrations/001_create_bike_lanes.yaml", "spec:\n  up:",
                       'spec:\n  dependencies: ["003"]\n  up:'),
        "migrations/",
        "migration dependencies form a cycle",
    ),
    (
        "bad-sql",
        lambda r: edit(r / MIG3, "ANALYZE bike_lanes;", "ANALYZE bike_lanes;\n        SELEC 1 FROM;"),
        MIG3,
        "SQL:",
    ),
    (
        "bad-identifier",
        lambda r: edit(r / LAYER, "    table: bike_lanes", "    table: bike-lanes"),
        LAYER,
        "'bike-lanes' is not a plain SQL table name",
    ),
    (
        "bad-field-identifier",
        lambda r: edit(r / LAYER, "    - name: lane_type", "    - name: lane type"),
        LAYER,
        "'lane type' is not a plain SQL identifier",
    ),
    (
        "bad-template",
        lambda r: edit(r / MIG3, "environments/{{env}}/layers", "environments/{{ env }/layers"),
        MIG3,
        "template error",
    ),
    (
        "environment-mismatch",
        lambda r: edit(r / LAYER, "environment: dev", "environment: staging"),
        LAYER,
        "metadata.environment is 'staging' but the file is under environments/dev/",
    ),
    (
        "secret-in-file",
        lambda r: edit(r / "providers/postgis-primary.yaml", "    embedded: true",
                       "    embedded: true\n    dsn: postgresql://gis:hunter2@db/city"),
        "providers/postgis-primary.yaml",
        "connection.dsn is not read: list the environment's variable in connection.env",
    ),
]


@pytest.mark.parametrize("name,mutate,path,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input(repo: Path, name: str, mutate: Mutation, path: str, message: str) -> None:
    mutate(repo)
    result = run(repo, "validate")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if message in ln]
    assert lines, result.output
    # every reported problem is path:line:column: message
    assert lines[0].startswith(path), lines[0]
    location = lines[0].split(": ", 1)[0]
    parts = location.split(":")
    assert len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit(), location
    assert "configuration error" in result.output
    if name == "secret-in-file":
        assert "hunter2" not in result.output


def test_all_problems_reported_together(repo: Path) -> None:
    edit(repo / LAYER, "    srid: 4326", "    srid: forty\n    colour: red")
    edit(repo / MIG3, '"002_add_parcels_layer"', '"009_missing"')
    result = run(repo, "validate")
    assert result.exit_code == 1
    assert "3 configuration errors" in result.output
    srid_line = _layer_line(repo, "srid: forty")
    assert f"{LAYER}:{srid_line}:5: spec.storage.srid" in result.output


def test_no_traceback_in_a_real_process(repo: Path) -> None:
    edit(repo / LAYER, "kind: Layer", "kind: Layr")
    proc = subprocess.run([sys.executable, "-m", "honua_plan", "-C", str(repo), "validate"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    assert f"{LAYER}:" in proc.stderr


def test_json_errors(repo: Path) -> None:
    edit(repo / LAYER, "kind: Layer", "kind: Layr")
    result = run(repo, "validate", "--format", "json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["valid"] is False
    assert data["errors"][0]["path"] == LAYER and data["errors"][0]["line"] > 0


def test_unknown_environment(repo: Path) -> None:
    result = run(repo, "validate", "--env", "qa")
    assert result.exit_code == 1
    assert "unknown environment 'qa'" in result.output
