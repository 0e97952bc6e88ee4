"""Policies as a checklist: windows, approvals, AI provenance, cooldown, backups."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from honua_plan.config.models import Policy
from honua_plan.plan.policy import evaluate_policy, next_window_start
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


def staging_applied(at: datetime, *, tested: bool = True) -> StateDocument:
    """Staging applied at ``at`` and (``tested``) a passing ``honua test`` a minute later."""
    events = [Event(at=at, kind="apply", serial=1)]
    if tested:
        events.append(Event(at=at + timedelta(minutes=1), kind="test", serial=2, details={"ok": True}))
    return StateDocument.new("staging").model_copy(update={"events": events})


def with_events(doc: StateDocument, *events: tuple[datetime, str, bool | None]) -> StateDocument:
    evs = [Event(at=at, kind=kind, serial=len(doc.events) + i + 1, details={} if ok is None else {"ok": ok})
           for i, (at, kind, ok) in enumerate(events)]
    return doc.model_copy(update={"events": [*doc.events, *evs]})


def run(p: Policy, *, risk: str = "LOW", provenance: str = "human", now: datetime = INSIDE,
        source: StateDocument | None = None, pg_dump: bool = True) -> tuple[dict[str, tuple[str, str]], int]:
    checks, required, _ = evaluate_policy(p, risk=risk, provenance=provenance, now=now, has_changes=True,
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


H = timedelta(hours=1)


@pytest.mark.parametrize("events,status,text", [
    # applied 50h ago, tested then: healthy for 50h
    ([], "pass", "Satisfied (staging healthy for 50h)"),
    # a failed test 10h ago: healthy time counts from that failure (once a test passed again)
    ([(INSIDE - 10 * H, "test", False), (INSIDE - 9 * H, "test", True)], "fail", "staging healthy for 10h, needs 48h"),
    # failed and not passed since
    ([(INSIDE - 10 * H, "test", False)], "fail", "staging failed 10h ago and has not passed a test since"),
    # a rollback is a failure too
    ([(INSIDE - 5 * H, "rollback", None), (INSIDE - 4 * H, "test", True)], "fail", "staging healthy for 5h, needs 48h"),
    # a new apply without a test after it: unknown
    ([(INSIDE - 60 * H, "test", True), (INSIDE - 3 * H, "apply", None)], "fail",
     "staging health unknown: no `honua test` recorded since its last change (3h ago)"),
    # a recovery that did not restore everything is a change and a failure
    ([(INSIDE - 5 * H, "recover", False)], "fail", "staging failed 5h ago and has not passed a test since"),
    ([(INSIDE - 5 * H, "recover", True)], "fail", "staging health unknown: no `honua test` recorded since its last"),
    # a later apply that failed (and rolled back): failing until a test passes
    ([(INSIDE - 49 * H, "apply-failed", None)], "fail", "staging failed 49h ago and has not passed a test since"),
    # a failure older than a later, tested change does not count
    ([(INSIDE - 49 * H, "apply-failed", None), (INSIDE - 48.5 * H, "apply", None), (INSIDE - 48.4 * H, "test", True)],
     "pass", "Satisfied (staging healthy for 48h 30m)"),
])
def test_cooldown_counts_from_the_last_failure(events: list[tuple[datetime, str, bool | None]], status: str,
                                               text: str) -> None:
    source = with_events(staging_applied(INSIDE - 50 * H), *events)
    checks, _ = run(policy(), source=source)
    assert checks["cooldown"][0] == status and text in checks["cooldown"][1], checks["cooldown"]


def test_cooldown_untested_is_unknown() -> None:
    checks, _ = run(policy(), source=staging_applied(INSIDE - 50 * H, tested=False))
    assert checks["cooldown"] == ("fail", "Cooldown period: staging health unknown: no `honua test` recorded "
                                          "since its last change (50h ago)")


def test_backup_required_without_pg_dump() -> None:
    checks, _ = run(policy(), pg_dump=False)
    assert checks["backup"][0] == "fail" and "pg_dump" in checks["backup"][1]


def test_next_window() -> None:
    nxt = next_window_start(policy(), OUTSIDE)
    assert nxt is not None and nxt.weekday() == 1 and (nxt.hour, nxt.minute) == (10, 0)


def test_no_policy_no_checks() -> None:
    assert evaluate_policy(None, risk="CRITICAL", provenance="ai", now=INSIDE, has_changes=True, source_state=None,
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
    checks, required, approvers = evaluate_policy(
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
