"""Paths a config names stay in their folder; output files are never devices, FIFOs or links.

Reproductions of issue 25: a migration's metadata step rewrote the production policy through
``environments/{{env}}/layers/../../../policies/…`` (7); ``state.path`` as a committed symbolic
link to a folder outside the repository received the state, plans and reports (9, second
half); ``plan --out`` replaced a device (``/dev/full``), a FIFO or a symbolic link with a
regular file (13).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.helpers import copy_example, edit, run

M003 = "migrations/003_optimize_bike_lanes.yaml"
POLICY = "policies/production-policy.yaml"
STEP_PATH = "      path: environments/{{env}}/layers/bike-lanes.yaml\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "repo", server=False)


def clean(result, code: int) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return str(result.output)


def _line_col(repo: Path, rel: str, needle: str) -> tuple[int, int]:
    """1-based line and column of the ``path:`` key on the line holding ``needle``."""
    for n, line in enumerate((repo / rel).read_text().splitlines(), 1):
        if needle in line:
            return n, line.index("path:") + 1
    raise AssertionError(needle)


# ------------------------------------------------------------------ 7: metadata steps


@pytest.mark.parametrize("path", [
    "environments/{{env}}/layers/../../../policies/production-policy.yaml",
    "policies/production-policy.yaml",
    "honua.yaml",
    "/etc/passwd",
])
def test_validate_refuses_a_metadata_step_outside_the_environment_folder(repo: Path, path: str) -> None:
    edit(repo / M003, STEP_PATH, f"      path: {path}\n")
    out = clean(run(repo, "validate"), 1)
    line, col = _line_col(repo, M003, f"path: {path}")
    assert re.search(rf"{re.escape(M003)}:{line}:{col}: .*environments/", out), out
    assert "environments/<env>/" in out or "environments/dev/" in out, out


def test_validate_refuses_another_environments_folder_after_templating(repo: Path) -> None:
    """``environments/staging/…`` passes the static check but not dev's (after templating)."""
    edit(repo / M003, STEP_PATH, "      path: environments/staging/layers/bike-lanes.yaml\n")
    out = clean(run(repo, "validate"), 1)
    line, col = _line_col(repo, M003, "path: environments/staging/")
    assert f"{M003}:{line}:{col}: path 'environments/staging/layers/bike-lanes.yaml' is outside " \
           "environments/dev/; a metadata step may edit only files under environments/dev/" in out, out


def test_validate_refuses_a_symbolic_link_that_leaves_the_environment_folder(repo: Path) -> None:
    extra = repo / "environments/dev/notes.txt"
    extra.symlink_to(Path("../../policies/production-policy.yaml"))
    edit(repo / M003, STEP_PATH, "      path: environments/{{env}}/notes.txt\n")
    out = clean(run(repo, "validate"), 1)
    line, col = _line_col(repo, M003, "path: environments/{{env}}/notes.txt")
    assert f"{M003}:{line}:{col}: path 'environments/dev/notes.txt' resolves outside environments/dev/ " \
           "through a symbolic link" in out, out


def test_apply_refuses_a_symbolic_link_planted_after_validation(
        repo: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The config is valid when loaded and planned; just before the metadata step runs, the
    layer file becomes a link to the production policy: the provider refuses it on the real
    path, and the policy is byte-identical."""
    from honua_plan.providers import metadata
    from tests.helpers import drop_performance_check

    drop_performance_check(repo)
    policy_before = (repo / POLICY).read_bytes()
    layer = repo / "environments/dev/layers/bike-lanes.yaml"
    original_run = metadata.MetadataProvider.run
    planted: list[str] = []

    def plant_then_run(self, ctx, action, op, step_id=None):  # type: ignore[no-untyped-def]
        layer.unlink()
        layer.symlink_to(Path("../../../policies/production-policy.yaml"))
        planted.append(op.path)
        return original_run(self, ctx, action, op, step_id)

    monkeypatch.setattr(metadata.MetadataProvider, "run", plant_then_run)
    result = run(repo, "apply", "--env", "dev", "--auto-approve", env={"HONUA_PG_DSN": pg_dsn})
    assert planted == ["environments/dev/layers/bike-lanes.yaml"]
    assert result.exit_code == 1, result.output
    assert "resolves outside environments/dev/ through a symbolic link" in result.output, result.output
    assert (repo / POLICY).read_bytes() == policy_before


def test_the_provider_check_refuses_dot_dot_and_other_folders(repo: Path) -> None:
    from honua_plan.config.paths import metadata_step_problem

    assert metadata_step_problem(repo, "dev", "environments/dev/layers/bike-lanes.yaml") is None
    for bad in ("environments/dev/layers/../../../policies/production-policy.yaml", "policies/production-policy.yaml",
                "environments/production/layers/bike-lanes.yaml", "/etc/passwd", "environments/dev", ""):
        assert metadata_step_problem(repo, "dev", bad) is not None, bad


# ------------------------------------------------------------------ 9: state.path


def test_state_path_linked_outside_the_repository_is_refused(repo: Path, tmp_path: Path, pg_dsn: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (repo / "state").rmdir()
    (repo / "state").symlink_to(outside)
    env = {"HONUA_PG_DSN": pg_dsn}
    for args in (("plan", "--env", "dev", "--out", str(tmp_path / "p.json")),
                 ("apply", "--env", "dev", "--auto-approve"),
                 ("state", "list", "--env", "dev")):
        out = clean(run(repo, *args, env=env), 1)
        assert "spec.state.path 'state' resolves outside the repository" in out, out
        assert "HONUA_STATE_DIR" in out
    assert list(outside.iterdir()) == []


def test_honua_state_dir_names_a_folder_outside_the_repository(
        repo: Path, tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's variable (not the config) may put the local files elsewhere."""
    from honua_plan.config.paths import resolve_state_dir
    from honua_plan.errors import ContainmentError

    outside = tmp_path / "operator-state"
    (repo / "state").rmdir()
    (repo / "state").symlink_to(outside)
    with pytest.raises(ContainmentError, match="resolves outside the repository"):
        resolve_state_dir(repo, "state")
    monkeypatch.setenv("HONUA_STATE_DIR", str(outside))
    assert resolve_state_dir(repo, "state") == outside
    clean(run(repo, "plan", "--env", "dev", env={"HONUA_PG_DSN": pg_dsn, "HONUA_STATE_DIR": str(outside)}), 0)


# ------------------------------------------------------------------ 13: output files


def _targets(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    victim = tmp_path / "victim.txt"
    victim.write_text("do not touch\n")
    link = tmp_path / "link.json"
    link.symlink_to(victim)
    folder = tmp_path / "folder"
    folder.mkdir()
    return {"FIFO": fifo, "symbolic link": link, "directory": folder}


def _snapshot(path: Path) -> tuple[int, int, bool]:
    st = os.lstat(path)
    return st.st_ino, st.st_mode, path.is_symlink()


def test_plan_out_refuses_a_fifo_a_symbolic_link_and_a_directory(repo: Path, tmp_path: Path, pg_dsn: str) -> None:
    targets = _targets(tmp_path)
    for kind, target in targets.items():
        before = _snapshot(target)
        result = run(repo, "plan", "--env", "dev", "--out", str(target), env={"HONUA_PG_DSN": pg_dsn})
        out = clean(result, 1)
        if kind == "directory":  # click's own check of --out
            assert "is a directory" in out, out
        else:
            assert f"cannot write plan file {target}: it is a {kind}" in out, out
            assert "refused" in out, out
        assert _snapshot(target) == before, kind
    assert (tmp_path / "victim.txt").read_text() == "do not touch\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_the_one_writer_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    from honua_plan.errors import OutputFileError
    from honua_plan.files import write_text_atomic

    for kind, target in _targets(tmp_path).items():
        before = _snapshot(target)
        with pytest.raises(OutputFileError, match="refused"):
            write_text_atomic(target, "x")
        assert _snapshot(target) == before, kind
    plain = tmp_path / "plain.txt"
    write_text_atomic(plain, "one")
    os.chmod(plain, 0o600)
    write_text_atomic(plain, "two")
    assert plain.read_text() == "two" and (plain.stat().st_mode & 0o777) == 0o600


def test_a_link_inside_the_state_folder_that_leaves_it_is_refused(repo: Path, tmp_path: Path) -> None:
    from honua_plan.config.paths import resolve_state_dir
    from honua_plan.errors import ContainmentError

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (repo / "state" / "plans").symlink_to(outside)
    with pytest.raises(ContainmentError, match=r"state/plans in the state folder is a symbolic link to .*elsewhere"):
        resolve_state_dir(repo, "state")
    (repo / "state" / "plans").unlink()
    (repo / "state" / "dev").mkdir()
    (repo / "state" / "dev" / "published.json").symlink_to(repo / POLICY)
    with pytest.raises(ContainmentError, match="outside the state folder"):
        resolve_state_dir(repo, "state")
    (repo / "state" / "dev" / "published.json").unlink()
    (repo / "state" / "dev" / "ok.json").symlink_to(repo / "state" / "dev.json")  # inside: allowed
    assert resolve_state_dir(repo, "state") == repo / "state"


def test_allowed_signers_linked_outside_the_repository_is_refused(repo: Path, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from honua_plan.config.loader import load_environment
    from honua_plan.errors import ApprovalError
    from honua_plan.plan.approvals import check_approval
    from honua_plan.plan.model import Approval

    mine = tmp_path / "my_signers"
    mine.write_text("john@city.gov ssh-ed25519 AAAA\n")
    (repo / ".honua").mkdir()
    (repo / ".honua" / "allowed_signers").symlink_to(mine)
    policy = load_environment(repo, "production").policy
    approval = Approval(by="john@city.gov", at=datetime.now(UTC), digest="sha256:x", signature="sig")
    with pytest.raises(ApprovalError, match=r"allowedSigners \.honua/allowed_signers resolves outside the repository"):
        check_approval(policy, approval, repo)
