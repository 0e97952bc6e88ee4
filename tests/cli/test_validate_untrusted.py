"""``honua validate`` on hostile or broken config files (issues 13 and 14): each gets
``path:line:column: message`` and exit 1, never an internal error, never a silent pass."""

from __future__ import annotations

import itertools
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, copy_example, edit, run

LAYER = "environments/dev/layers/bike-lanes.yaml"
MIG1 = "migrations/001_create_bike_lanes.yaml"
MIG2 = "migrations/002_add_parcels_layer.yaml"
MIG3 = "migrations/003_optimize_bike_lanes.yaml"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "repo")


def _line_of(path: Path, needle: str) -> int:
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in {path}")


def _error_lines(output: str, message: str) -> list[str]:
    return [ln for ln in output.splitlines() if message in ln]


# --------------------------------------------------------------------------- dependencies


@pytest.mark.parametrize("dep,suggestion", [
    ("002_does_not_exist", "002_add_parcels_layer"),  # an id prefix is not enough
    ("002_add_parcel_layer", "002_add_parcels_layer"),  # a typo of the stem
    ("02", "002"),
    ("add_parcels_layer", "002_add_parcels_layer"),
    ("zzz_unrelated_name", None),
])
def test_dependency_must_name_a_migration_exactly(repo: Path, dep: str, suggestion: str | None) -> None:
    edit(repo / MIG3, '"002_add_parcels_layer"', f'"{dep}"')
    result = run(repo, "validate")
    assert result.exit_code == 1, result.output
    line = _line_of(repo / MIG3, f'"{dep}"')
    found = _error_lines(result.output, f"depends on '{dep}', which does not exist")
    assert found and found[0].startswith(f"{MIG3}:{line}:7: "), result.output
    if suggestion:
        assert found[0].endswith(f"did you mean '{suggestion}'?"), found[0]
    else:
        assert "did you mean" not in found[0]


@pytest.mark.parametrize("dep", ["002", "002_add_parcels_layer"])
def test_dependency_by_id_or_stem(repo: Path, dep: str) -> None:
    edit(repo / MIG3, '"002_add_parcels_layer"', f'"{dep}"')
    result = run(repo, "validate")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("breakage", [
    ("    - name: Create bike lanes table", "    - nmae: Create bike lanes table"),  # a schema error
    ('  id: "001"', '  id: "not an id"'),  # even the id itself is invalid
    ("kind: Migration", "kind: Migraton"),
])
def test_a_broken_migration_is_not_reported_missing_by_its_dependents(repo: Path, breakage: tuple[str, str]) -> None:
    edit(repo / MIG1, *breakage)
    result = run(repo, "validate")
    assert result.exit_code == 1, result.output
    assert _error_lines(result.output, MIG1), result.output
    assert "which does not exist" not in result.output, result.output
    assert not [ln for ln in result.output.splitlines() if ln.startswith(MIG2)], result.output


# --------------------------------------------------------------------------- empty files


EMPTY_FILES = [
    LAYER,
    "environments/dev/services/transportation.yaml",
    "providers/gis-server.yaml",
    MIG3,
    "policies/production-policy.yaml",
    "honua.yaml",
]


@pytest.mark.parametrize("text", ["", "\n\n", "# this layer is on hold\n# (everything commented out)\n", "---\n", "--- \n...\n---\n"],
                         ids=["empty", "blank", "comments", "document-marker", "empty-documents"])
@pytest.mark.parametrize("rel", EMPTY_FILES)
def test_a_file_that_declares_nothing_is_an_error(repo: Path, rel: str, text: str) -> None:
    assert (repo / rel).exists()
    (repo / rel).write_text(text)
    result = run(repo, "validate")
    assert result.exit_code == 1, result.output
    found = _error_lines(result.output, "declares nothing")
    assert found and found[0].startswith(f"{rel}:1:1: declares nothing"), result.output
    assert "Traceback" not in result.output


def test_an_empty_document_beside_a_resource_is_fine(repo: Path) -> None:
    (repo / LAYER).write_text("---\n# leading empty document\n---\n" + (repo / LAYER).read_text())
    result = run(repo, "validate")
    assert result.exit_code == 0, result.output


def test_readme_says_why_an_empty_layer_file_is_an_error() -> None:
    text = " ".join((REPO / "README.md").read_text().split())
    assert "declares nothing" in text


# --------------------------------------------------------------------------- symbolic links


def _outside_layer(tmp_path: Path) -> Path:
    """A valid layer file outside the repository (following the link would succeed)."""
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    target = outside / "stolen.yaml"
    target.write_text((REPO / LAYER).read_text().replace("name: bike-lanes", "name: stolen"))
    return target


SymlinkCase = Callable[[Path, Path], str]  # (repo, tmp_path) -> the reported path


def _file_loop(repo: Path, tmp: Path) -> str:
    (repo / "environments/dev/layers/loop.yaml").symlink_to("loop.yaml")
    return "environments/dev/layers/loop.yaml"


def _two_file_loop(repo: Path, tmp: Path) -> str:
    (repo / "environments/dev/layers/a.yaml").symlink_to("b.yaml")
    (repo / "environments/dev/layers/b.yaml").symlink_to("a.yaml")
    return "environments/dev/layers/a.yaml"


def _folder_loop(repo: Path, tmp: Path) -> str:
    layers = repo / "environments/dev/layers"
    for p in layers.iterdir():
        p.unlink()
    layers.rmdir()
    layers.symlink_to("layers")
    return "environments/dev/layers"


def _file_outside(repo: Path, tmp: Path) -> str:
    (repo / "environments/dev/layers/stolen.yaml").symlink_to(_outside_layer(tmp))
    return "environments/dev/layers/stolen.yaml"


def _relative_file_outside(repo: Path, tmp: Path) -> str:
    _outside_layer(tmp)
    (repo / "environments/dev/layers/stolen.yaml").symlink_to("../../../../outside/stolen.yaml")
    return "environments/dev/layers/stolen.yaml"


def _folder_outside(repo: Path, tmp: Path) -> str:
    target = _outside_layer(tmp).parent
    layers = repo / "environments/dev/layers"
    (layers / "bike-lanes.yaml").rename(target / "bike-lanes.yaml")
    layers.rmdir()
    layers.symlink_to(target)
    return "environments/dev/layers"


def _project_outside(repo: Path, tmp: Path) -> str:
    outside = tmp / "outside"
    outside.mkdir(exist_ok=True)
    (repo / "honua.yaml").rename(outside / "honua.yaml")
    (repo / "honua.yaml").symlink_to(outside / "honua.yaml")
    return "honua.yaml"


def _policy_outside(repo: Path, tmp: Path) -> str:
    outside = tmp / "outside"
    outside.mkdir(exist_ok=True)
    pol = repo / "policies/production-policy.yaml"
    pol.rename(outside / "production-policy.yaml")
    pol.symlink_to(outside / "production-policy.yaml")
    return "policies/production-policy.yaml"


def _dangling(repo: Path, tmp: Path) -> str:
    (repo / "environments/dev/layers/gone.yaml").symlink_to("nowhere.yaml")
    return "environments/dev/layers/gone.yaml"


SYMLINK_CASES: dict[str, tuple[SymlinkCase, str]] = {
    "file-loop": (_file_loop, "symbolic link"),
    "two-file-loop": (_two_file_loop, "symbolic link"),
    "folder-loop": (_folder_loop, "symbolic link"),
    "file-outside": (_file_outside, "outside the repository"),
    "relative-file-outside": (_relative_file_outside, "outside the repository"),
    "folder-outside": (_folder_outside, "outside the repository"),
    "project-outside": (_project_outside, "outside the repository"),
    "policy-outside": (_policy_outside, "outside the repository"),
    "dangling": (_dangling, "symbolic link"),
}


@pytest.mark.parametrize("name", list(SYMLINK_CASES))
def test_symlinks_loops_and_escapes_are_config_errors(repo: Path, tmp_path: Path, name: str) -> None:
    make, message = SYMLINK_CASES[name]
    rel = make(repo, tmp_path)
    result = run(repo, "validate")
    assert result.exit_code == 1, result.output
    assert "internal error" not in result.output, result.output
    found = [ln for ln in result.output.splitlines() if ln.startswith(f"{rel}:1:1: ")]
    assert found and message in found[0], result.output
    assert "stolen" not in result.output.replace("stolen.yaml", "")  # the outside file was not read


def test_a_symlink_inside_the_repository_is_followed(repo: Path) -> None:
    shared = repo / "shared"
    shared.mkdir()
    (repo / LAYER).rename(shared / "bike-lanes.yaml")
    (repo / LAYER).symlink_to("../../../shared/bike-lanes.yaml")
    # migration 003's metadata step edits this file: through the link it would edit shared/, outside
    # environments/dev/, which is refused (tests/integration/test_containment.py); here only reading counts
    (repo / MIG3).unlink()
    result = run(repo, "validate")
    assert result.exit_code == 0, result.output
    assert "3 layer(s)" in result.output


def test_a_metadata_step_path_through_a_symlink_loop_is_a_config_error(repo: Path) -> None:
    (repo / "environments/dev/layers/x").symlink_to("x")  # not a .yaml: the loader skips it
    edit(repo / MIG3, "path: environments/{{env}}/layers/bike-lanes.yaml",
         "path: environments/{{env}}/layers/x/bike-lanes.yaml")
    result = run(repo, "validate")
    assert result.exit_code == 1, result.output
    assert "internal error" not in result.output, result.output
    line = _line_of(repo / MIG3, "layers/x/bike-lanes.yaml")
    assert _error_lines(result.output, f"{MIG3}:{line}:"), result.output


# --------------------------------------------------------------------------- YAML aliases


def _billion_laughs() -> str:
    """A small file whose aliases expand to 10**9 list items."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    names = "abcdefghi"
    for prev, name in itertools.pairwise(names):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def _layer_with(extra: str) -> str:
    return (REPO / LAYER).read_text() + extra


ALIAS_CASES: dict[str, tuple[str, str, str]] = {
    # name: (file, text, needle on the reported line)
    "billion-laughs-layer": (LAYER, "__BOMB__", '*a'),
    "self-reference": (LAYER, _layer_with("  extra: &loop [*loop]\n"), "*loop"),
    "self-reference-mapping": (LAYER, _layer_with("  extra: &m {k: *m}\n"), "*m"),
    "billion-laughs-project": ("honua.yaml", "__BOMB__", "*a"),
    "billion-laughs-provider": ("providers/postgis-primary.yaml", "__BOMB__", "*a"),
    "merge-key": (LAYER, _layer_with("x-base: &base {a: 1}\nx-copy:\n  <<: *base\n"), "*base"),
}


def _limited_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


@pytest.mark.parametrize("name,cache", [(n, "on") for n in ALIAS_CASES] + [("self-reference", "off")])
def test_yaml_aliases_are_refused_before_expansion(repo: Path, tmp_path: Path, name: str, cache: str) -> None:
    rel, text, needle = ALIAS_CASES[name]
    if text == "__BOMB__":
        text = (repo / rel).read_text() + _billion_laughs()
        assert len(_billion_laughs()) < 600
    (repo / rel).write_text(text)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HONUA_CACHE": cache,
           "HONUA_CACHE_DIR": str(tmp_path / "cache")}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "honua_plan", "-C", str(repo), "validate"],
                          capture_output=True, text=True, timeout=10, env=env,
                          preexec_fn=_limited_memory)
    assert time.monotonic() - t0 < 10
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "internal error" not in out and "Traceback" not in out, out
    line = _line_of(repo / rel, needle)
    col = (repo / rel).read_text().splitlines()[line - 1].index(needle) + 1
    found = _error_lines(out, "YAML aliases are not allowed in config files")
    assert found and found[0].startswith(f"{rel}:{line}:{col}: "), out


def test_anchors_alone_are_refused(repo: Path) -> None:
    (repo / LAYER).write_text(_layer_with("  extra: &unused 1\n"))
    result = run(repo, "validate")
    assert result.exit_code == 1
    line = _line_of(repo / LAYER, "&unused")
    assert _error_lines(result.output, f"{LAYER}:{line}:10: YAML anchors are not allowed in config files")


def test_alias_check_is_fast_and_small() -> None:
    from honua_plan.config.yamlparse import parse_documents

    problems: list[Any] = []
    t0 = time.perf_counter()
    docs = parse_documents(_billion_laughs() * 20, "bomb.yaml", problems)
    assert time.perf_counter() - t0 < 0.5
    assert docs == [] and problems and "YAML aliases are not allowed" in problems[0].message


def test_plain_documents_refuses_aliases(tmp_path: Path) -> None:
    """The early peek at honua.yaml/providers (before the loader) must not expand a bomb either."""
    from honua_plan.config.yamlparse import plain_documents

    path = tmp_path / "honua.yaml"
    path.write_text(_billion_laughs())
    assert plain_documents(path) == []
    path.write_text("a: 1\n")
    assert plain_documents(path) == [{"a": 1}]


def test_plain_documents_does_not_read_outside_the_root(tmp_path: Path) -> None:
    from honua_plan.config.yamlparse import plain_documents

    (tmp_path / "outside.yaml").write_text("a: 1\n")
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo/honua.yaml").symlink_to(tmp_path / "outside.yaml")
    assert plain_documents(tmp_path / "repo/honua.yaml", root=tmp_path / "repo") == []
    assert plain_documents(tmp_path / "repo/honua.yaml", root=tmp_path) == [{"a": 1}]


def test_metadata_edit_refuses_aliases() -> None:
    """The round-trip (ruamel) editor of metadata steps refuses aliases like the loader."""
    from honua_plan.config.yamledit import edit_text
    from honua_plan.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        edit_text(_billion_laughs(), {"spec.x": 1}, where="environments/dev/layers/x.yaml")
    assert str(info.value.diagnostics[0]).startswith("environments/dev/layers/x.yaml:2:")
    assert "YAML aliases are not allowed in config files" in str(info.value.diagnostics[0])


# --------------------------------------------------------------------------- durations


def _set(rel: str, old: str, new: str) -> Callable[[Path], None]:
    return lambda r: edit(r / rel, old, new)


POLICY = "policies/production-policy.yaml"
DATASOURCE = "providers/postgis-primary.yaml"

# (model, field) -> (file, how to put VALUE there, zero allowed)
DURATION_FIELDS: dict[tuple[str, str], tuple[str, Callable[[Path, str], None], bool]] = {
    ("StateConfig", "lockTimeout"): ("honua.yaml", lambda r, v: edit(r / "honua.yaml", "    path: state", f"    path: state\n    lockTimeout: {v}"), True),
    ("DatasourceSpec", "lockTimeout"): (DATASOURCE, lambda r, v: edit(r / DATASOURCE, "lockTimeout: 2s", f"lockTimeout: {v}"), False),
    ("DatasourceSpec", "statementTimeout"): (DATASOURCE, lambda r, v: edit(r / DATASOURCE, "statementTimeout: 10m", f"statementTimeout: {v}"), False),
    ("DatasourceSpec", "connectTimeout"): (DATASOURCE, lambda r, v: edit(r / DATASOURCE, "statementTimeout: 10m", f"statementTimeout: 10m\n  connectTimeout: {v}"), False),
    ("ServerSpec", "healthTimeout"): ("providers/gis-server.yaml", lambda r, v: edit(r / "providers/gis-server.yaml", "healthTimeout: 30s", f"healthTimeout: {v}"), False),
    ("Check", "timeout"): (MIG3, lambda r, v: edit(r / MIG3, 'expected: "1 row"', f'expected: "1 row"\n        timeout: {v}'), False),
    ("MigrationStep", "lockTimeout"): (MIG3, lambda r, v: edit(r / MIG3, "      type: sql\n", f"      type: sql\n      lockTimeout: {v}\n"), False),
    ("MigrationStep", "statementTimeout"): (MIG3, lambda r, v: edit(r / MIG3, "      type: sql\n", f"      type: sql\n      statementTimeout: {v}\n"), False),
    ("RollbackPolicy", "timeout"): (MIG3, lambda r, v: edit(r / MIG3, "    timeout: 5m", f"    timeout: {v}"), False),
    ("Cooldown", "minimum"): (POLICY, lambda r, v: edit(r / POLICY, "minimum: 48h", f"minimum: {v}"), False),
    ("PolicySpec", "backupRetention"): (POLICY, lambda r, v: edit(r / POLICY, "backupRetention: 30d", f"backupRetention: {v}"), False),
    ("PolicySpec", "backupTimeout"): (POLICY, lambda r, v: edit(r / POLICY, "backupRetention: 30d", f"backupRetention: 30d\n  backupTimeout: {v}"), False),
}

# the reproductions, a unitless number and zero; every other bad form is in tests/unit/test_durations.py
BAD_DURATIONS = ['"-1"', "nan", '"inf"', "30", "0s"]
GOOD_DURATIONS = ["30s", "5m", "2h", "1h30m", "7d", "250ms", '"1.5s"']


def _duration_fields() -> set[tuple[str, str]]:
    """Every field of a config model whose values are parsed as durations."""
    from pydantic import BaseModel

    from honua_plan.config import models

    found: set[tuple[str, str]] = set()
    seen: set[type] = set()

    def visit(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, info in model.model_fields.items():
            if any(getattr(m, "func", None) in models.DURATION_PARSERS
                   for m in [*info.metadata, *_metadata_in(info.annotation)]):
                found.add((model.__name__, name))
            for sub in _models_in(info.annotation):
                visit(sub)

    def _metadata_in(tp: Any) -> list[Any]:  # Optional[Annotated[float, ...]] keeps it inside
        out = list(getattr(tp, "__metadata__", ()))
        for arg in getattr(tp, "__args__", ()) or ():
            out += _metadata_in(arg)
        return out

    def _models_in(tp: Any) -> list[type[BaseModel]]:
        out = [tp] if isinstance(tp, type) and issubclass(tp, BaseModel) else []
        for arg in getattr(tp, "__args__", ()) or ():
            out += _models_in(arg)
        return out

    for model in models.KINDS.values():
        visit(model)
    return found


def test_every_duration_field_is_covered() -> None:
    assert _duration_fields() == set(DURATION_FIELDS)


@pytest.mark.parametrize("value", BAD_DURATIONS)
@pytest.mark.parametrize("field", list(DURATION_FIELDS), ids=lambda f: ".".join(f))
def test_bad_durations_are_validation_errors(repo: Path, field: tuple[str, str], value: str) -> None:
    rel, put, zero_ok = DURATION_FIELDS[field]
    if zero_ok and value in ("0s", "0ms"):
        pytest.skip("zero is meaningful here")
    put(repo, value)
    result = run(repo, "validate")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    line = _line_of(repo / rel, f"{field[1]}: {value}")
    found = [ln for ln in result.output.splitlines() if ln.startswith(f"{rel}:{line}:")]
    assert found and "duration" in found[0], result.output


@pytest.mark.parametrize("field", list(DURATION_FIELDS), ids=lambda f: ".".join(f))
def test_good_durations(repo: Path, field: tuple[str, str]) -> None:
    _, put, _ = DURATION_FIELDS[field]
    value = GOOD_DURATIONS[list(DURATION_FIELDS).index(field) % len(GOOD_DURATIONS)]
    put(repo, value)
    result = run(repo, "validate")
    assert result.exit_code == 0, result.output


def test_zero_state_lock_timeout_means_fail_at_once(repo: Path) -> None:
    DURATION_FIELDS[("StateConfig", "lockTimeout")][1](repo, "0s")
    result = run(repo, "validate")
    assert result.exit_code == 0, result.output
