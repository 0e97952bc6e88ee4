"""Whose state a row is: the project key that lets several repositories share one state
database (the postgres backend keys its rows by project and environment).

The key is ``spec.state.project`` of honua.yaml, else ``metadata.name``; the environment
variable ``HONUA_PROJECT`` overrides both for one run (as ``TF_WORKSPACE`` selects a
Terraform workspace), e.g. a throwaway state per pull request.

A key is **bound to its repository**: the state backend records, the first time the lock
is taken under a key, an identity of the repository that took it (:class:`RepoIdentity`:
the root commit(s) of its git history, ``git rev-list --max-parents=0 HEAD``; the ``origin``
remote's URL, without credentials, for a shallow clone that has no root commit; and the
project's folder inside the git work tree). Another repository that names the same key
(``spec.state.project`` in a pull request, say) is refused on read and on lock, with the
command that hands the key over deliberately: ``honua state rebind --yes``. A checkout
without git history has no identity: it binds nothing, and under a bound key it is let
through with a warning (the state folder, the CI runner and the key are the operator's;
what config cannot change is the git history its runner checked out).
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from honua_plan.errors import ProjectKeyError, UsageError

PROJECT_ENV = "HONUA_PROJECT"
DEFAULT_PROJECT = "default"
"""The key of a backend opened without one (the Python API, the backend test suite)."""


def project_key(name: str, configured: str | None = None) -> str:
    """The state key of project ``name`` (its ``metadata.name``) with ``spec.state.project``."""
    override = os.environ.get(PROJECT_ENV, "")
    if override:
        from honua_plan.config.models import NAME_RE

        if not NAME_RE.match(override):
            raise UsageError(
                f"{PROJECT_ENV}={override!r} is not a valid project name: use lower-case letters, "
                "digits, '-' and '_' (max 63)")
        return override
    return configured or name


REBIND = "honua state rebind --env {env} --yes"


@dataclass(frozen=True)
class RepoIdentity:
    """Which repository a checkout is: root commits, remote (no credentials), folder in it."""

    roots: str | None = None
    remote: str | None = None
    folder: str = ""

    def to_json(self) -> dict[str, str]:
        return {k: v for k, v in (("roots", self.roots), ("remote", self.remote), ("folder", self.folder)) if v}

    @classmethod
    def from_json(cls, data: Any) -> RepoIdentity:
        d = data if isinstance(data, dict) else {}
        return cls(roots=d.get("roots") or None, remote=d.get("remote") or None, folder=str(d.get("folder") or ""))

    def describe(self) -> str:
        parts = []
        if self.roots:
            parts.append("root commit " + ", ".join(r[:12] for r in self.roots.split(",")))
        if self.remote:
            parts.append(f"remote {self.remote}")
        if self.folder:
            parts.append(f"folder {self.folder}")
        return "; ".join(parts) or "no identity"

    def same(self, other: RepoIdentity) -> bool | None:
        """True or False when the two can be compared (root commits first, else remotes), None
        when they cannot (one side knows neither)."""
        if self.roots and other.roots:
            return self.roots == other.roots and self.folder == other.folder
        if self.remote and other.remote:
            return self.remote == other.remote and self.folder == other.folder
        return None

    def merged(self, other: RepoIdentity) -> RepoIdentity:
        """This identity with what ``other`` (the same repository) knows and it does not."""
        return RepoIdentity(self.roots or other.roots, self.remote or other.remote, self.folder)


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20,
                              stdin=subprocess.DEVNULL, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def clean_remote(url: str) -> str:
    """A remote URL as ``host/path``: no scheme, user, password or token, no ``.git``."""
    u = url.strip()
    m = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/]*@)?([^/:]+)(?::\d+)?/(.*)$", u)
    if m:
        host, path = m.groups()
    else:
        m = re.match(r"^(?:[^@/]+@)?([^:/]+):(.*)$", u)  # scp-like: git@host:org/repo.git
        if not m:
            return u.removesuffix(".git").rstrip("/")
        host, path = m.groups()
    return f"{host.lower()}/{path.strip('/').removesuffix('.git')}"


@functools.lru_cache(maxsize=8)
def repository_identity(root: Path) -> RepoIdentity | None:
    """The identity of the git repository ``root`` is in, or None without git history."""
    folder = _git(root, "rev-parse", "--show-prefix")
    if folder is None:
        return None
    roots = None
    if _git(root, "rev-parse", "--is-shallow-repository") != "true":  # a shallow clone's roots are not the root
        found = _git(root, "rev-list", "--max-parents=0", "HEAD")
        roots = ",".join(sorted(found.split())) if found else None
    url = _git(root, "config", "--get", "remote.origin.url")
    remote = clean_remote(url) if url else None
    if not roots and not remote:
        return None
    return RepoIdentity(roots=roots, remote=remote, folder=folder.strip("/"))


def check_binding(project: str, environment: str, bound: RepoIdentity | None, mine: RepoIdentity | None,
                  where: str) -> None:
    """ProjectKeyError when ``project`` is bound to another repository than ``mine``."""
    if bound is None:
        return
    same = bound.same(mine) if mine is not None else None
    if same is None:
        print(f"warning: the state key '{project}' ({where}) is bound to a repository ({bound.describe()}); "
              f"this checkout ({mine.describe() if mine else 'no git history'}) cannot be compared with it, so "
              "that it is the same repository is not checked", file=sys.stderr)
        return
    if same is False and mine is not None:
        raise ProjectKeyError(
            f"the state key '{project}' ({where}) belongs to another repository ({bound.describe()}); this one is "
            f"{mine.describe()}: refused (spec.state.project or {PROJECT_ENV} names another project's state)",
            hint=f"choose a key of this project's own; or, to hand the key over to this repository deliberately, "
                 f"`{REBIND.format(env=environment)}`")


def next_binding(bound: RepoIdentity | None, mine: RepoIdentity, *, claim: bool = False) -> RepoIdentity | None:
    """What to record under the lock once :func:`check_binding` let ``mine`` through: ``mine``
    for an unbound key (or a claim), the binding with what ``mine`` adds when they are the
    same repository, else the binding unchanged."""
    if bound is None or claim:
        return mine
    return bound.merged(mine) if bound.same(mine) else bound
