"""Saved plans and approvals are bound to their content (issue 14, item 3), real PostGIS.

An attacker with write access to a saved plan file appends ``DROP TABLE victim;`` to a
step's SQL, edits a plan after it was approved, approves as someone outside the policy's
group, or forges a signed approval. Each is refused before anything runs, and the table
``victim`` is still there. Signatures use real ed25519 keys made by ``ssh-keygen``.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.helpers import copy_example, run
from tests.integration.test_apply_engine import assert_clean_exit, seed, without_performance_check

pytestmark = pytest.mark.integration

TAMPER = "plan file was modified after it was made/approved: digest mismatch"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = copy_example(tmp_path / "repo", server=False)
    without_performance_check(r)
    return r


@pytest.fixture
def env(pg_dsn: str) -> dict[str, str]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE victim (id int)")
    seed(pg_dsn, 42)
    return {"HONUA_PG_DSN": pg_dsn}


def victim_exists(pg_dsn: str) -> bool:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        return conn.execute("SELECT to_regclass('public.victim')").fetchone() != (None,)


def restamp(data: dict[str, Any]) -> dict[str, Any]:
    """What a careful attacker does after editing: recompute the (unkeyed) digest."""
    from honua_plan.plan.store import parse_plan, plan_digest

    data = {**data, "digest": None}
    data["digest"] = plan_digest(parse_plan(json.dumps(data)))
    return data


def make_plan(repo: Path, env: dict[str, str], out: Path, environment: str = "dev") -> dict[str, Any]:
    result = run(repo, "plan", "--env", environment, "--out", str(out), env=env)
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def first_sql(data: dict[str, Any]) -> str:
    """The JSON path of the first SQL step (the first actions are provider records)."""
    for i, a in enumerate(data["actions"]):
        for j, op in enumerate(a["operations"]):
            if op["sql"]:
                return f"actions[{i}].operations[{j}].sql"
    raise AssertionError("no SQL step in the plan")


def add_drop(data: dict[str, Any]) -> dict[str, Any]:
    i, j = map(int, re.findall(r"\d+", first_sql(data)))
    op = data["actions"][i]["operations"][j]
    op["sql"] = op["sql"].rstrip("\n") + "\nDROP TABLE victim;\n"
    return data


def write_policy(repo: Path, environment: str, approval: str) -> None:
    (repo / "policies" / f"{environment}-policy.yaml").write_text(
        "apiVersion: honua.io/v1\nkind: Policy\n"
        f"metadata:\n  name: {environment}-policy\n  environment: {environment}\n"
        "spec:\n  autoApprove: false\n  approval:\n" + approval)


# --------------------------------------------------------------------------- item 1: edited SQL


@pytest.mark.parametrize("careful", [False, True], ids=["digest-left", "digest-recomputed"])
def test_sql_appended_to_a_saved_plan_is_refused_and_shown(
        repo: Path, env: dict[str, str], pg_dsn: str, tmp_path: Path, careful: bool) -> None:
    plan_file = tmp_path / "plan.json"
    data = add_drop(make_plan(repo, env, plan_file))
    if careful:
        data = restamp(data)
    plan_file.write_text(json.dumps(data, indent=2) + "\n")

    # show reads the file only: it catches the edit by its digest, and in any case shows the
    # reviewer the exact SQL (what apply would refuse to run, see below)
    shown = run(repo, "show", str(plan_file), env=env)
    assert_clean_exit(shown, 0 if careful else 1)
    assert "DROP TABLE victim;" in shown.output
    assert (TAMPER in shown.output) is not careful
    md = run(repo, "show", "--format", "markdown", str(plan_file), env=env)
    assert "DROP TABLE victim;" in md.output and "<details><summary>SQL</summary>" in md.output

    result = run(repo, "apply", "--env", "dev", str(plan_file), env=env)
    assert_clean_exit(result, 1)
    if careful:  # the digest matches, but the file is a record, never the source of SQL
        assert "does not match the configuration" in result.output
        assert first_sql(data) in result.output
    else:
        assert TAMPER in result.output
    assert victim_exists(pg_dsn)
    assert not (repo / "state" / "dev.json").exists() or json.loads(
        (repo / "state" / "dev.json").read_text())["serial"] == 0


def test_an_untouched_saved_plan_shows_its_sql_and_applies(repo: Path, env: dict[str, str], pg_dsn: str,
                                                             tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.json"
    data = make_plan(repo, env, plan_file)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", data["digest"])
    shown = run(repo, "show", str(plan_file), env=env)
    assert_clean_exit(shown, 0)
    i, j = map(int, re.findall(r"\d+", first_sql(data)))
    assert data["actions"][i]["operations"][j]["sql"].strip().splitlines()[0].strip() in shown.output
    assert "digest mismatch" not in shown.output
    assert_clean_exit(run(repo, "apply", "--env", "dev", str(plan_file), env=env), 0)
    assert victim_exists(pg_dsn)


# --------------------------------------------------------------------------- item 2: approvals bind the digest


def test_a_plan_edited_after_its_approval_is_refused(repo: Path, env: dict[str, str], pg_dsn: str,
                                                      tmp_path: Path) -> None:
    write_policy(repo, "dev", "    requiredAt: LOW\n")
    plan_file = tmp_path / "plan.json"
    make_plan(repo, env, plan_file)
    approved = run(repo, "approve", str(plan_file), "--by", "john@city.gov", env=env)
    assert_clean_exit(approved, 0)
    data = json.loads(plan_file.read_text())
    (approval,) = data["approvals"]
    assert approval["by"] == "john@city.gov" and approval["digest"] == data["digest"] and approval["at"]

    # an edit that leaves every operation alone, with the plan's digest recomputed:
    # only the approval's own digest can tell
    data["warnings"] = ["reviewed and harmless"]
    plan_file.write_text(json.dumps(restamp(data), indent=2) + "\n")
    result = run(repo, "apply", "--env", "dev", str(plan_file), env=env)
    assert_clean_exit(result, 1)
    assert TAMPER in result.output and "john@city.gov" in result.output
    assert victim_exists(pg_dsn)

    # approving the edited file does not launder it: its digest no longer matches
    data = add_drop(json.loads(plan_file.read_text()))
    plan_file.write_text(json.dumps(data, indent=2) + "\n")
    again = run(repo, "approve", str(plan_file), "--by", "jane@city.gov", env=env)
    assert_clean_exit(again, 1)
    assert TAMPER in again.output


# --------------------------------------------------------------------------- item 3: approver groups

GROUPS = ("    requiredAt: LOW\n    approvers:\n      gis-ops: [john@city.gov, jane@city.gov]\n"
          "      dba: [dora@city.gov]\n")


def test_an_approver_outside_the_policy_group_is_refused(repo: Path, env: dict[str, str], pg_dsn: str,
                                                          tmp_path: Path) -> None:
    write_policy(repo, "dev", GROUPS)
    assert_clean_exit(run(repo, "validate", "--env", "dev", env=env), 0)
    plan_file = tmp_path / "plan.json"
    data = make_plan(repo, env, plan_file)
    assert data["approvers"] == ["gis-ops", "dba"]

    refused = run(repo, "approve", str(plan_file), "--by", "mallory@evil.example", env=env)
    assert_clean_exit(refused, 1)
    assert "mallory@evil.example is not a member of gis-ops or dba" in refused.output
    assert json.loads(plan_file.read_text())["approvals"] == []

    # an approval by an outsider written straight into the file is refused by apply
    forged = {**data, "approvals": [{"by": "mallory@evil.example", "at": "2025-10-08T09:45:00Z",
                                      "digest": data["digest"], "comment": ""}]}
    plan_file.write_text(json.dumps(forged, indent=2) + "\n")
    result = run(repo, "apply", "--env", "dev", str(plan_file), env=env)
    assert_clean_exit(result, 1)
    assert "mallory@evil.example is not a member of gis-ops or dba" in result.output
    assert not (repo / "state" / "dev.json").exists()

    plan_file.write_text(json.dumps(data, indent=2) + "\n")
    assert_clean_exit(run(repo, "approve", str(plan_file), "--by", "Jane@City.gov", env=env), 0)
    applied = run(repo, "apply", "--env", "dev", str(plan_file), env=env)
    assert_clean_exit(applied, 0)
    assert "✓ Approval verified (approved by: Jane@City.gov)" in applied.output
    assert victim_exists(pg_dsn)


# --------------------------------------------------------------------------- item 4: SSH signatures


def keygen(directory: Path, name: str) -> Path:
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    return key


def ssh_sign(key: Path, message: bytes) -> str:
    out = subprocess.run(["ssh-keygen", "-Y", "sign", "-f", str(key), "-n", "honua-plan"],
                         input=message, capture_output=True, check=True)
    return out.stdout.decode()


@pytest.fixture
def keys(tmp_path: Path, repo: Path) -> dict[str, Path]:
    kdir = tmp_path / "keys"
    kdir.mkdir()
    found = {n: keygen(kdir, n) for n in ("john", "mallory")}
    signers = repo / ".honua" / "allowed_signers"
    signers.parent.mkdir()
    pub = found["john"].with_suffix(".pub").read_text().split()
    signers.write_text(f"john@city.gov {pub[0]} {pub[1]}\n")
    write_policy(repo, "dev", GROUPS + "    signatures: required\n")
    return found


def _forge(data: dict[str, Any], key: Path, digest: str) -> dict[str, Any]:
    from datetime import datetime

    from honua_plan.plan.signing import approval_message

    at = "2025-10-08T09:45:00Z"
    sig = ssh_sign(key, approval_message(digest, "john@city.gov", datetime.fromisoformat(at)))
    return {**data, "approvals": [{"by": "john@city.gov", "at": at, "digest": data["digest"],
                                   "comment": "", "signature": sig}]}


FORGERIES: dict[str, Callable[[dict[str, Any], dict[str, Path]], dict[str, Any]]] = {
    "key-not-in-allowed-signers": lambda d, k: _forge(d, k["mallory"], d["digest"]),
    "signature-of-another-digest": lambda d, k: _forge(d, k["john"], "sha256:" + "0" * 64),
    "no-signature": lambda d, k: {**d, "approvals": [
        {"by": "john@city.gov", "at": "2025-10-08T09:45:00Z", "digest": d["digest"], "comment": ""}]},
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_a_forged_signed_approval_is_refused(repo: Path, env: dict[str, str], pg_dsn: str, tmp_path: Path,
                                             keys: dict[str, Path], forgery: str) -> None:
    plan_file = tmp_path / "plan.json"
    data = make_plan(repo, env, plan_file)
    plan_file.write_text(json.dumps(FORGERIES[forgery](data, keys), indent=2) + "\n")
    result = run(repo, "apply", "--env", "dev", str(plan_file), env=env)
    assert_clean_exit(result, 1)
    assert "signature" in result.output and "john@city.gov" in result.output
    assert not (repo / "state" / "dev.json").exists()
    assert victim_exists(pg_dsn)


def test_a_signed_approval_is_made_and_verified(repo: Path, env: dict[str, str], pg_dsn: str, tmp_path: Path,
                                                keys: dict[str, Path]) -> None:
    plan_file = tmp_path / "plan.json"
    make_plan(repo, env, plan_file)
    unsigned = run(repo, "approve", str(plan_file), "--by", "john@city.gov", env=env)
    assert_clean_exit(unsigned, 1)
    assert "signatures: required" in unsigned.output and "--key" in unsigned.output

    # a key that is not john's in allowed_signers is refused at once
    wrong = run(repo, "approve", str(plan_file), "--by", "john@city.gov", "--key", str(keys["mallory"]), env=env)
    assert_clean_exit(wrong, 1)
    assert json.loads(plan_file.read_text())["approvals"] == []

    signed = run(repo, "approve", str(plan_file), "--by", "john@city.gov",
                 env={**env, "HONUA_SIGNING_KEY": str(keys["john"])})
    assert_clean_exit(signed, 0)
    data = json.loads(plan_file.read_text())
    assert data["approvals"][0]["signature"].startswith("-----BEGIN SSH SIGNATURE-----")
    applied = run(repo, "apply", "--env", "dev", str(plan_file), env=env)
    assert_clean_exit(applied, 0)
    assert "✓ Approval verified (approved by: john@city.gov, signed)" in applied.output
    assert victim_exists(pg_dsn)
