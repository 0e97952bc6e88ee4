"""Plan files: atomic save, strict load with clear errors, approvals, digest."""

from __future__ import annotations

import json
import os
import re
import stat
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from honua_plan.errors import PlanError, PlanTamperedError
from honua_plan.plan.model import PLAN_FORMAT_VERSION, Approval, Plan
from honua_plan.plan.render import render_json
from honua_plan.plan.store import (
    TAMPERED,
    load_plan,
    parse_plan,
    plan_digest,
    record_approval,
    save_plan,
    verify_digest,
)
from tests.unit.plan_fixtures import empty_plan, mixed_plan, sample_plan

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
NOW = datetime(2025, 10, 8, 9, 45, tzinfo=UTC)


@pytest.fixture
def plan_file(tmp_path: Path) -> Path:
    path = tmp_path / "plan.json"
    save_plan(sample_plan(), path)
    return path


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _data(plan: Plan | None = None) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(render_json(plan or sample_plan()))
    return data


# -------------------------------------------------------------- save / load


@pytest.mark.parametrize("build", [sample_plan, empty_plan])
def test_round_trip(tmp_path: Path, build: Callable[[], Plan]) -> None:
    plan = build()
    path = tmp_path / "plan.json"
    save_plan(plan, path)
    stamped = plan.model_copy(update={"digest": plan_digest(plan)})  # the file carries its digest
    assert load_plan(path) == stamped
    assert load_plan(str(path)) == stamped


def test_file_format(plan_file: Path) -> None:
    raw = plan_file.read_bytes()
    assert raw == (render_json(sample_plan()) + "\n").encode("utf-8")
    assert raw.endswith(b"}\n")
    assert raw.splitlines()[1].startswith(b'  "format_version": 2')
    assert json.loads(raw)["digest"] == plan_digest(sample_plan())
    assert raw == (GOLDEN / "plan_dev.json").read_bytes()


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    save_plan(sample_plan(), path)
    save_plan(empty_plan(), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]
    assert load_plan(path).model_copy(update={"digest": None}) == empty_plan()


def test_save_creates_parent_dirs_and_keeps_mode(tmp_path: Path) -> None:
    path = tmp_path / "plans" / "dev" / "plan.json"
    save_plan(sample_plan(), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    os.chmod(path, 0o640)
    save_plan(empty_plan(), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_save_into_unwritable_place_is_a_plan_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PlanError, match="cannot write plan file"):
        save_plan(sample_plan(), blocker / "plan.json")


def test_save_redacts_secrets(tmp_path: Path) -> None:
    plan = mixed_plan()  # migration.004 SQL mentions postgresql://etl:s3cret@...
    path = tmp_path / "plan.json"
    save_plan(plan, path)
    text = path.read_text(encoding="utf-8")
    assert "s3cret" not in text
    assert "postgresql://etl:***@db.internal/gis" in text
    # the digest is computed on the redacted plan: the file still matches what was reviewed
    assert plan_digest(load_plan(path)) == plan_digest(plan)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match=r"plan file .*nope\.json not found") as exc:
        load_plan(tmp_path / "nope.json")
    assert "honua plan" in exc.value.hint


def test_directory_is_not_a_plan(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="is a directory"):
        load_plan(tmp_path)


def test_corrupt_json_reports_line_and_column(plan_file: Path) -> None:
    text = plan_file.read_text(encoding="utf-8")
    broken = text.replace('"environment": "dev",', '"environment": "dev"', 1)
    plan_file.write_text(broken, encoding="utf-8")
    with pytest.raises(json.JSONDecodeError) as decode:
        json.loads(broken)
    line, col = decode.value.lineno, decode.value.colno
    assert line > 1
    with pytest.raises(PlanError) as err:
        load_plan(plan_file)
    assert err.value.message.startswith(f"{plan_file}:{line}:{col}: invalid JSON: Expecting ','")


def test_truncated_file(plan_file: Path) -> None:
    plan_file.write_bytes(plan_file.read_bytes()[:200])
    with pytest.raises(PlanError, match=r"plan\.json:\d+:\d+: invalid JSON"):
        load_plan(plan_file)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(PlanError, match="not UTF-8"):
        load_plan(path)


def test_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    _write_json(path, [1, 2])
    with pytest.raises(PlanError, match="expected a JSON object, found list"):
        load_plan(path)


def test_no_format_version(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    data = _data()
    del data["format_version"]
    _write_json(path, data)
    with pytest.raises(PlanError, match="not a honua plan file \\(no format_version\\)"):
        load_plan(path)


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    data = _data()
    data["format_version"] = PLAN_FORMAT_VERSION + 1
    data["some_future_field"] = {"x": 1}
    _write_json(path, data)
    with pytest.raises(PlanError, match="written by a newer honua-plan") as exc:
        load_plan(path)
    assert f"plan format {PLAN_FORMAT_VERSION + 1}" in exc.value.message
    assert "upgrade" in exc.value.hint


@pytest.mark.parametrize("bad", [0, "1", 1.5, True, None])
def test_bad_format_version(tmp_path: Path, bad: object) -> None:
    path = tmp_path / "plan.json"
    data = _data()
    data["format_version"] = bad
    _write_json(path, data)
    with pytest.raises(PlanError, match="format"):
        load_plan(path)


def test_schema_errors_are_listed(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    data = _data()
    data["actions"][3]["risk"] = "EXTREME"
    data["surprise"] = 1
    _write_json(path, data)
    with pytest.raises(PlanError, match=r"is not a valid plan file: actions\[3\]\.risk: .*\(and 1 more\)") as exc:
        load_plan(path)
    messages = [d.message for d in exc.value.diagnostics]
    assert any(m.startswith("actions[3].risk:") for m in messages)
    assert any(m.startswith("surprise:") for m in messages)
    assert "actions[3].risk" in exc.value.details
    assert "EXTREME" not in exc.value.details  # inputs are not echoed (they may hold secrets)


def test_parse_plan_names_its_source() -> None:
    with pytest.raises(PlanError, match=r"^<stdin>:1:1: invalid JSON"):
        parse_plan("", source="<stdin>")


# ------------------------------------------------------------------ approve


def test_approve_adds_an_approval_and_keeps_the_digest(plan_file: Path) -> None:
    before = load_plan(plan_file)
    assert not before.approved
    new = record_approval(plan_file, "john@city.gov", "looks good", now=NOW)
    digest = plan_digest(sample_plan())
    assert new.approvals == [Approval(by="john@city.gov", at=NOW, digest=digest, comment="looks good")]
    assert new.approved
    assert load_plan(plan_file) == new
    assert plan_digest(new) == plan_digest(before) == digest == new.digest
    assert new.model_copy(update={"approvals": []}) == before


def test_second_approver_is_appended(plan_file: Path) -> None:
    record_approval(plan_file, "john@city.gov", now=NOW)
    new = record_approval(plan_file, "  maria@city.gov ", now=NOW)
    assert [a.by for a in new.approvals] == ["john@city.gov", "maria@city.gov"]


def test_duplicate_approver_is_refused(plan_file: Path) -> None:
    record_approval(plan_file, "john@city.gov", now=NOW)
    saved = plan_file.read_bytes()
    with pytest.raises(PlanError, match=r"John@City\.gov has already approved this plan \(at 2025-10-08T09:45:00\+00:00\)"):
        record_approval(plan_file, "John@City.gov", now=NOW)
    assert plan_file.read_bytes() == saved


def test_empty_approver_is_refused(plan_file: Path) -> None:
    with pytest.raises(PlanError, match="approver's name"):
        record_approval(plan_file, "   ")


def test_approve_defaults_to_now_in_utc(plan_file: Path) -> None:
    new = record_approval(plan_file, "john@city.gov")
    assert new.approvals[0].at.tzinfo is not None
    naive = record_approval(plan_file, "maria@city.gov", now=datetime(2025, 10, 8, 9, 45))
    assert naive.approvals[1].at == NOW


def test_approve_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="not found"):
        record_approval(tmp_path / "missing.json", "john@city.gov")


def test_concurrent_approvals_are_all_kept(plan_file: Path) -> None:
    names = [f"approver{i}@city.gov" for i in range(8)]
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            record_approval(plan_file, name, now=NOW)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(a.by for a in load_plan(plan_file).approvals) == sorted(names)


# ------------------------------------------------------------------- digest


def test_digest_is_hex_sha256_and_stable() -> None:
    digest = plan_digest(sample_plan())
    assert digest.startswith("sha256:") and len(digest) == 71 and int(digest[7:], 16) >= 0
    assert plan_digest(sample_plan()) == digest
    assert plan_digest(Plan.model_validate_json(render_json(sample_plan()))) == digest


def test_digest_ignores_approvals_only() -> None:
    plan = sample_plan()
    approved = plan.model_copy(update={"approvals": [Approval(by="a", at=NOW, digest="sha256:x")]})
    assert plan_digest(approved) == plan_digest(plan)
    action = plan.actions[3].model_copy(update={"risk": "LOW"})
    changed = plan.model_copy(update={"actions": [*plan.actions[:3], action, *plan.actions[4:]]})
    assert plan_digest(changed) != plan_digest(plan)
    assert plan_digest(plan.model_copy(update={"state_serial": 8})) != plan_digest(plan)


# ------------------------------------------------------------------ bound to content


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    _write_json(path, data)


@pytest.mark.parametrize("change", [
    lambda d: d["actions"][0]["operations"][0].update(sql="DROP TABLE victim;"),
    lambda d: d.update(approvals_required=0),
    lambda d: d.update(digest=None),
    lambda d: d.pop("digest"),
    lambda d: d["database"].update(host="db.elsewhere.internal"),
    lambda d: d.pop("database"),
], ids=["sql", "approvals_required", "digest-null", "digest-missing", "database", "database-missing"])
def test_an_edited_file_fails_its_digest(plan_file: Path, change: Callable[[dict[str, Any]], None]) -> None:
    _edit(plan_file, change)
    plan = load_plan(plan_file)  # still a well-formed plan: only the digest tells
    with pytest.raises(PlanTamperedError, match=re.escape(TAMPERED)):
        verify_digest(plan, source=str(plan_file))
    saved = plan_file.read_bytes()
    with pytest.raises(PlanTamperedError, match=re.escape(TAMPERED)):
        record_approval(plan_file, "john@city.gov", now=NOW)
    assert plan_file.read_bytes() == saved  # nothing approved


def test_an_approval_binds_the_digest_it_approved(plan_file: Path) -> None:
    record_approval(plan_file, "john@city.gov", now=NOW)
    assert verify_digest(load_plan(plan_file)) == plan_digest(sample_plan())
    # content edited and its digest recomputed: the approval still names the old digest
    _edit(plan_file, lambda d: d.update(warnings=["harmless"]))
    edited = load_plan(plan_file)
    _edit(plan_file, lambda d: d.update(digest=plan_digest(edited)))
    with pytest.raises(PlanTamperedError, match=r"the approval by john@city\.gov at .* is for sha256:"):
        verify_digest(load_plan(plan_file))


def test_authorize_refuses_before_anything_is_written(plan_file: Path) -> None:
    saved = plan_file.read_bytes()

    def refuse(plan: Plan, approval: Approval) -> None:
        assert approval.digest == plan.digest and approval.by == "mallory"
        raise PlanError("not allowed")

    with pytest.raises(PlanError, match="not allowed"):
        record_approval(plan_file, "mallory", now=NOW, authorize=refuse)
    assert plan_file.read_bytes() == saved


def test_plan_format_1_is_no_longer_read(plan_file: Path) -> None:
    _edit(plan_file, lambda d: d.update(format_version=1))
    with pytest.raises(PlanError, match="uses plan format 1, which this honua-plan no longer reads"):
        load_plan(plan_file)
