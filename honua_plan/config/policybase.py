"""The policy that judges a change: the base's, never the one the change writes.

A pull request (or the assistant) may edit ``policies/*.yaml``, ``environments/<env>/policy.yaml``
or ``honua.yaml``; judged by what it wrote, it could lower its own approvals and remove its
windows and cooldown. So approvals, windows and cooldown come from the policy as of:

1. ``--policy-base REV`` / ``HONUA_POLICY_BASE`` (an operator's explicit choice);
2. in CI on a pull request (``CI`` and ``GITHUB_BASE_REF`` set), the merge base of HEAD with
   the target branch (``origin/<ref>``, else ``<ref>``);
3. else the commit of the environment's last deployment (``config_commit`` of its state);
4. else (first deployment) the working tree: there is nothing older to trust, and the plan
   says so.

Files are read with one ``git cat-file --batch`` (``<rev>:./<path>``, relative to the
workspace root), a fixed argv, no shell, no network. A base that cannot be read is an
error, never a silent fall back to the working tree.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from honua_plan.config.desired import DesiredState
from honua_plan.config.loader import load_policy, policy_paths
from honua_plan.config.models import Policy
from honua_plan.config.paths import PROJECT_FILE
from honua_plan.errors import ConfigError, PolicyError

__all__ = ["BASE_ENV", "Judge", "git_files", "judging_policy", "watched_paths"]

BASE_ENV = "HONUA_POLICY_BASE"
_HINT = ("fetch the history it needs (actions/checkout with fetch-depth: 0, or `git fetch origin`), "
         "or name the base with --policy-base REV")


@dataclass(frozen=True)
class Judge:
    """The judging policy of one environment, where it was read, and what differs from it."""

    policy: Policy | None
    revision: str | None  # None: the working tree
    source: str
    digest: str
    changed: tuple[str, ...]  # watched files that differ in the working tree

    @property
    def policy_changed(self) -> bool:
        return any(p != PROJECT_FILE for p in self.changed)

    @property
    def project_changed(self) -> bool:
        return PROJECT_FILE in self.changed


def watched_paths(environment: str) -> tuple[str, ...]:
    """The files that judge ``environment``: honua.yaml and the places of its policy."""
    return (PROJECT_FILE, *policy_paths(environment))


def _git(root: Path, *args: str, stdin: str | None = None) -> bytes | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], input=stdin.encode() if stdin is not None else None,
                             capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_files(root: Path, rev: str, paths: Sequence[str]) -> dict[str, bytes | None]:
    """The content of ``paths`` (relative to ``root``) at commit ``rev``; None where absent.

    Raises PolicyError when git cannot read the revision at all."""
    query = "".join(f"{rev}:./{p}\n" for p in paths)
    raw = _git(root, "cat-file", "--batch", stdin=query)
    if raw is None:
        raise PolicyError(f"cannot read the policy at {rev[:12]}: git cat-file failed", hint=_HINT)
    out: dict[str, bytes | None] = {}
    pos = 0
    for p in paths:
        end = raw.index(b"\n", pos)
        header = raw[pos:end].split()
        pos = end + 1
        if header[-1] == b"missing" or len(header) != 3 or header[1] != b"blob":
            out[p] = None
            continue
        size = int(header[2])
        out[p] = raw[pos:pos + size]
        pos += size + 1  # the content and its newline
    return out


def _commit(root: Path, rev: str) -> str | None:
    if not rev or rev.startswith("-"):  # a revision from an option, a variable or the state is never an option
        return None
    sha = _git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    return sha.decode().strip() or None if sha else None


def _base(root: Path, recorded_commit: str | None, explicit: str | None,
          env: Mapping[str, str]) -> tuple[str | None, str]:
    """(the base commit or None for the working tree, how it was chosen)."""
    explicit = explicit or env.get(BASE_ENV) or None
    if explicit:
        sha = _commit(root, explicit)
        if sha is None:
            raise PolicyError(f"--policy-base {explicit}: no such commit in {root}", hint=_HINT)
        return sha, f"--policy-base {explicit} ({sha[:12]})"
    target = env.get("GITHUB_BASE_REF") if env.get("CI") else None
    if target:
        ref = next((r for r in (f"origin/{target}", target) if _commit(root, r)), None)
        head = _commit(root, "HEAD")
        merge_base = _git(root, "merge-base", "HEAD", ref) if ref and head else None
        sha = merge_base.decode().strip() if merge_base else ""
        if not sha:
            raise PolicyError(f"cannot find the merge base of HEAD with {target} (GITHUB_BASE_REF): the plan "
                              "must be judged by the target branch's policy", hint=_HINT)
        return sha, f"{target} (merge base {sha[:12]})"
    if recorded_commit:
        sha = _commit(root, recorded_commit)
        if sha is None:
            raise PolicyError(f"the last deployment was of commit {recorded_commit[:12]}, which this repository "
                              "does not have: its policy judges this plan", hint=_HINT)
        return sha, f"the last deployment (commit {sha[:12]})"
    return None, "the working tree (no deployment recorded)"


def _digest(files: Mapping[str, bytes | None]) -> str:
    h = hashlib.sha256()
    for path in sorted(files):
        content = files[path]
        h.update(f"{path}\0{hashlib.sha256(content).hexdigest() if content is not None else '-'}\n".encode())
    return "sha256:" + h.hexdigest()


def _working_tree(root: Path, paths: Sequence[str]) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for p in paths:
        try:
            out[p] = (root / p).read_bytes()
        except OSError:
            out[p] = None
    return out


def judging_policy(root: Path, desired: DesiredState, recorded_commit: str | None, *,
                   explicit: str | None = None, env: Mapping[str, str] | None = None, read: bool = True) -> Judge:
    """The policy that judges ``desired``'s plans (see the module's docstring). ``read=False``:
    a refresh-only plan (drift), which no policy judges: the working tree's, without git."""
    paths = watched_paths(desired.environment)
    here = _working_tree(root, paths)
    if not read:
        return Judge(desired.policy, None, "the working tree (a refresh-only plan: nothing to judge)", _digest(here), ())
    rev, source = _base(root, recorded_commit, explicit, os.environ if env is None else env)
    if rev is None:
        return Judge(desired.policy, None, source, _digest(here), ())
    there = git_files(root, rev, paths)
    try:
        policy = load_policy(root, desired.environment, {p: c for p, c in there.items() if c is not None})
    except ConfigError as exc:
        raise PolicyError(f"the policy of {desired.environment} at {source} does not load: "
                          + "; ".join(str(d) for d in exc.diagnostics[:3]), hint=_HINT) from None
    changed = tuple(p for p in paths if here[p] != there[p])
    return Judge(policy, rev, source, _digest(there), changed)
