"""Checks that bind a saved plan to what runs: approvals against the policy, and the
plan's actions against the ones the configuration derives now.

A plan file is a record for review, never the source of SQL: apply re-plans from the
configuration, the recorded state and the live database, and refuses a saved plan whose
actions differ (:func:`compare_actions`). An approval is valid when it approves this
content (its digest, see :func:`honua_plan.plan.store.verify_digest`), comes from a
member of the policy's approver groups, and, where the policy asks for it, carries an
SSH signature that verifies against the repository's ``allowed_signers``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from honua_plan.config.models import Policy
from honua_plan.config.paths import inside_real
from honua_plan.errors import ApprovalError, PlanTamperedError
from honua_plan.plan.model import Action, Approval, Plan
from honua_plan.plan.signing import KEY_ENV, approval_message, verify

__all__ = ["check_approval", "compare_actions", "valid_approvers"]

# Fields that depend on table statistics (row estimates), not on the configuration: they
# may move between plan and apply without changing anything that runs.
_VOLATILE = {"estimated_s", "findings", "risk"}  # risk follows the findings (e.g. plan --simulate's)


def check_approval(policy: Policy | None, approval: Approval, root: Path) -> bool:
    """Raise :class:`ApprovalError` unless the policy allows ``approval``; True when it is signed.

    Without groups (``approvers`` a plain list, or no approval section) any approver is
    accepted, as before groups existed; a signature, when there is one, is always verified.
    """
    ap = policy.spec.approval if policy is not None else None
    env = policy.metadata.environment if policy is not None else ""
    if ap is not None:
        members = ap.members
        if members is not None:
            who = approval.by.casefold()
            if not any(who in {m.casefold() for m in ms} for ms in members.values()):
                raise ApprovalError(
                    f"{approval.by} is not a member of {' or '.join(members)} (the approvers of the {env} policy)",
                    hint="ask a member of the group to approve, or change the group in the policy (a reviewed change)")
        if ap.signatures == "required" and approval.signature is None:
            raise ApprovalError(
                f"the approval by {approval.by} has no signature, and the {env} policy has signatures: required",
                hint=f"sign it with your SSH key: honua approve PLAN --by {approval.by} --key ~/.ssh/id_ed25519 "
                     f"(or set {KEY_ENV})")
    if approval.signature is None:
        return False
    signers = root / (ap.allowedSigners if ap is not None else ".honua/allowed_signers")
    if not inside_real(signers, root):  # a committed link may not lead the check out of the repository
        raise ApprovalError(f"allowedSigners {signers.relative_to(root)} resolves outside the repository "
                            f"({os.path.realpath(signers)}); refused")
    verify(approval_message(approval.digest, approval.by, approval.at), approval.signature,
           signer=approval.by, allowed_signers=signers)
    return True


def valid_approvers(plan: Plan, policy: Policy | None, root: Path) -> tuple[list[str], bool]:
    """Check every approval of ``plan`` (raising on the first invalid one): distinct approvers, all signed?"""
    seen: dict[str, str] = {}
    signed = bool(plan.approvals)
    for a in plan.approvals:
        signed = check_approval(policy, a, root) and signed
        seen.setdefault(a.by.casefold(), a.by)
    return list(seen.values()), signed


def _view(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _view(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_view(v) for v in value]
    return value


def _first_difference(saved: Any, fresh: Any, path: str) -> str | None:
    if isinstance(saved, dict) and isinstance(fresh, dict):
        for key in sorted(set(saved) | set(fresh), key=lambda k: (k not in saved, str(k))):
            if saved.get(key) != fresh.get(key):
                return _first_difference(saved.get(key), fresh.get(key), f"{path}.{key}")
        return None
    if isinstance(saved, list) and isinstance(fresh, list):
        for i, (s, f) in enumerate(zip(saved, fresh, strict=False)):
            if s != f:
                return _first_difference(s, f, f"{path}[{i}]")
        return None if len(saved) == len(fresh) else f"{path} (length {len(saved)}, derived {len(fresh)})"
    return None if saved == fresh else path


def compare_actions(saved: list[Action], derived: list[Action], *, source: str, environment: str) -> None:
    """Raise :class:`PlanTamperedError` unless the saved actions are the ones derived now
    (everything that runs, in order; row-estimate-dependent fields aside)."""
    old = _view([a.model_dump(mode="json") for a in saved])
    new = _view([a.model_dump(mode="json") for a in derived])
    where = _first_difference(old, new, "actions")
    if where is not None:
        raise PlanTamperedError(
            f"{source} does not match the configuration: {where} differs from what the configuration, "
            "the recorded state and the database give now (a plan file is a record, never the source of SQL)",
            hint=f"make a new plan: honua plan --env {environment} --out plan.json, and review it")
