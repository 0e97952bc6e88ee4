"""Policies as a checklist: windows, approvals, AI provenance, cooldown, backups."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from honua_plan.config.models import Policy
from honua_plan.plan.policy import evaluate, next_window_start
from honua_plan.state.model import Event, StateDocument

# Tuesday 2025-10-07 17:30 UTC = 10:30 in Los Angeles (PDT): inside the window
INSIDE = datetime(2025, 10, 7, 17, 30, tzinfo=UTC)
OUTSIDE = datetime(2025, 10, 6, 17, 30, tzinfo=UTC)  # a Monday


def policy(**spec: object) -> Policy:
    base: dict[str, object] = {
        "production": True, "autoApprove": False,
        "approval": {"requiredAt": "HIGH", "approvers": ["gis-ops"], "minApprovals": 1, "aiProposals": "required"},
        "deploymentWindows": [{"dayOfWeek": ["Tuesday", "Wednesday", "Thursday"], "startTime": "10:00",
                               "endTime": "12:00", "timezone": "America/Los_Angeles"}],
        "cooldown": {"sourceEnvironment": "staging", "minimum": "48h"},
        "requireBackup": True,
    }
    base.update(spec)
    return Policy.model_validate({"apiVersion": "honua.io/v1", "kind": "Policy",
                                  "metadata": {"name": "p", "environment": "production"}, "spec": base})


def staging_applied(at: datetime) -> StateDocument:
    return StateDocument.new("staging").model_copy(update={"events": [Event(at=at, kind="apply", serial=1)]})


def run(p: Policy, *, risk: str = "LOW", provenance: str = "human", now: datetime = INSIDE,
        source: StateDocument | None = None, pg_dump: bool = True) -> tuple[dict[str, tuple[str, str]], int]:
    checks, required, _ = evaluate(p, risk=risk, provenance=provenance, now=now, has_changes=True,
                                   source_state=source or staging_applied(now - timedelta(hours=50)),
                                   backup_needed=True, pg_dump_available=pg_dump)
    return {c.name: (c.status, c.message) for c in checks}, required


def test_all_satisfied() -> None:
    checks, required = run(policy(autoApprove=True))
    assert checks["deployment-window"] == ("pass", "Within deployment window")
    assert checks["cooldown"][0] == "pass" and "Satisfied" in checks["cooldown"][1]
    assert checks["backup"][0] == "pass"
    assert required == 0


def test_outside_window() -> None:
    checks, _ = run(policy(), now=OUTSIDE)
    assert checks["deployment-window"][0] == "fail"
    assert "Tue, Wed, Thu 10:00-12:00 America/Los_Angeles" in checks["deployment-window"][1]


@pytest.mark.parametrize("risk,provenance,auto,required", [
    ("LOW", "human", True, 0),
    ("HIGH", "human", True, 1),
    ("CRITICAL", "ci", True, 1),
    ("LOW", "ai", True, 1),
    ("LOW", "human", False, 1),
])
def test_approvals(risk: str, provenance: str, auto: bool, required: int) -> None:
    _, got = run(policy(autoApprove=auto), risk=risk, provenance=provenance)
    assert got == required


def test_cooldown_not_met_and_never_applied() -> None:
    checks, _ = run(policy(), source=staging_applied(INSIDE - timedelta(hours=2)))
    assert checks["cooldown"][0] == "fail" and "needs 48h" in checks["cooldown"][1]
    checks, _ = run(policy(), source=StateDocument.new("staging"))
    assert checks["cooldown"] == ("fail", "Cooldown period: staging has never been applied")


def test_backup_required_without_pg_dump() -> None:
    checks, _ = run(policy(), pg_dump=False)
    assert checks["backup"][0] == "fail" and "pg_dump" in checks["backup"][1]


def test_next_window() -> None:
    nxt = next_window_start(policy(), OUTSIDE)
    assert nxt is not None and nxt.weekday() == 1 and (nxt.hour, nxt.minute) == (10, 0)


def test_no_policy_no_checks() -> None:
    assert evaluate(None, risk="CRITICAL", provenance="ai", now=INSIDE, has_changes=True, source_state=None,
                    backup_needed=True, pg_dump_available=False) == ([], 0, [])


# ------------------------------------------------------------------ approver groups and signatures

GROUPS = {"gis-ops": ["john@city.gov", "jane@city.gov"], "dba": ["dora@city.gov"]}


def _approval(by: str, signature: str | None = None) -> object:
    from honua_plan.plan.model import Approval

    return Approval(by=by, at=INSIDE, digest="sha256:" + "a" * 64, signature=signature)


@pytest.mark.parametrize(("approvers", "by", "allowed"), [
    (GROUPS, "john@city.gov", True),
    (GROUPS, "JANE@city.gov", True),
    (GROUPS, "dora@city.gov", True),
    (GROUPS, "mallory@evil.example", False),
    (GROUPS, "gis-ops", False),  # a group's name is not a member
    (["gis-ops"], "anyone@city.gov", True),  # a plain list names no members: not checked (as before)
    ([], "anyone@city.gov", True),
])
def test_approvers_are_checked_against_the_groups(tmp_path: object, approvers: object, by: str, allowed: bool) -> None:
    from pathlib import Path

    from honua_plan.errors import ApprovalError
    from honua_plan.plan.approvals import check_approval

    p = policy(approval={"requiredAt": "HIGH", "approvers": approvers})
    assert p.spec.approval is not None and p.spec.approval.group_names == list(approvers)  # type: ignore[call-overload]
    if allowed:
        assert check_approval(p, _approval(by), Path(str(tmp_path))) is False  # type: ignore[arg-type]
    else:
        with pytest.raises(ApprovalError, match=f"{by} is not a member of gis-ops or dba"):
            check_approval(p, _approval(by), Path(str(tmp_path)))  # type: ignore[arg-type]


def test_group_names_are_the_approvers_of_the_plan() -> None:
    checks, required, approvers = evaluate(
        policy(approval={"requiredAt": "LOW", "approvers": GROUPS, "minApprovals": 2}), risk="LOW",
        provenance="human", now=INSIDE, has_changes=True, source_state=staging_applied(INSIDE - timedelta(days=3)),
        backup_needed=False, pg_dump_available=True)
    assert (required, approvers) == (2, ["gis-ops", "dba"])
    assert "2 approval(s) from gis-ops, dba" in next(c.message for c in checks if c.name == "approval")


def test_signatures_required_refuses_an_unsigned_approval(tmp_path: object) -> None:
    from pathlib import Path

    from honua_plan.errors import ApprovalError
    from honua_plan.plan.approvals import check_approval

    p = policy(approval={"approvers": GROUPS, "signatures": "required"})
    with pytest.raises(ApprovalError, match="has no signature, and the production policy has signatures: required"):
        check_approval(p, _approval("john@city.gov"), Path(str(tmp_path)))  # type: ignore[arg-type]


@pytest.mark.parametrize(("approval", "message"), [
    ({"approvers": {"gis-ops": []}}, "at least 1 item"),
    ({"approvers": {"Not A Name": ["x"]}}, "Not A Name"),
    ({"approvers": {"gis-ops": ["john@city.gov"]}, "minApprovals": 2}, "minApprovals is 2 but the approver groups have only 1 member"),
    ({"allowedSigners": "../../etc/ssh/allowed"}, "must be a path inside the repository"),
    ({"allowedSigners": "/etc/ssh/allowed"}, "must be a path inside the repository"),
    ({"signatures": "sometimes"}, "required"),
])
def test_bad_approval_settings_are_validation_errors(approval: dict[str, object], message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=re.escape(message)):
        policy(approval=approval)
