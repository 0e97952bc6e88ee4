"""Put a proposal on a new git branch without touching the user's checkout.

Plumbing only (``hash-object``, a temporary index, ``write-tree``, ``commit-tree``,
``update-ref``): HEAD, the index and the working tree stay as they were, and the
new branch holds HEAD plus the proposed files. Pushing and opening a pull request
need a remote and credentials, so they are left to the user.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from honua_plan.ai import AI_ACTOR
from honua_plan.errors import UsageError

AUTHOR_NAME = "honua ai-consultant"
AUTHOR_EMAIL = f"{AI_ACTOR}@honua.invalid"


def _git(root: Path, *args: str, env: Mapping[str, str] | None = None, input: bytes | None = None,
         check: bool = True) -> str:
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, input=input,
                              env=dict(env) if env is not None else None, timeout=60, check=False)
    except FileNotFoundError:
        raise UsageError("git is not installed: cannot create a branch (rerun without --branch)") from None
    except subprocess.TimeoutExpired:
        raise UsageError(f"git {args[0]} timed out") from None
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise UsageError(f"git {args[0]} failed: {err or 'exit ' + str(proc.returncode)}")
    return proc.stdout.decode(errors="replace").strip()


def is_repository(root: Path) -> bool:
    try:
        proc = subprocess.run(["git", "-C", str(root), "rev-parse", "--is-inside-work-tree"],
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0 and proc.stdout.strip() == "true"


def check_branch(root: Path, branch: str) -> None:
    """Raise UsageError unless ``root`` is in a git repository and ``branch`` is a new, valid name."""
    if not is_repository(root):
        raise UsageError(f"{root} is not a git repository: cannot create branch {branch}",
                         hint="run `git init` there (and commit), or rerun without --branch")
    proc = subprocess.run(["git", "-C", str(root), "check-ref-format", "--branch", branch],
                          capture_output=True, text=True, timeout=10, check=False)
    if proc.returncode != 0:
        raise UsageError(f"{branch!r} is not a valid branch name")
    if _git(root, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", check=False):
        raise UsageError(f"branch {branch} already exists", hint="choose another --branch, or delete it first")


def commit_files(root: Path, branch: str, files: Mapping[str, str | None], message: str) -> str:
    """Commit ``files`` (path relative to ``root`` -> text, or None to delete it) on top of HEAD
    as new ``branch``; return the sha."""
    check_branch(root, branch)
    prefix = _git(root, "rev-parse", "--show-prefix")
    head = _git(root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False) or None
    with tempfile.TemporaryDirectory(prefix="honua-ai-git-") as tmp:
        env = {**os.environ, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
        if head:
            _git(root, "read-tree", head, env=env)
        else:
            _git(root, "read-tree", "--empty", env=env)
        for rel, text in files.items():
            if text is None:
                _git(root, "update-index", "--force-remove", "--", f"{prefix}{rel}", env=env)
                continue
            blob = _git(root, "hash-object", "-w", "--stdin", input=text.encode("utf-8"), env=env)
            _git(root, "update-index", "--add", "--cacheinfo", f"100644,{blob},{prefix}{rel}", env=env)
        tree = _git(root, "write-tree", env=env)
        who = {"GIT_AUTHOR_NAME": AUTHOR_NAME, "GIT_AUTHOR_EMAIL": AUTHOR_EMAIL}
        if not _git(root, "config", "user.email", check=False):
            who |= {"GIT_COMMITTER_NAME": AUTHOR_NAME, "GIT_COMMITTER_EMAIL": AUTHOR_EMAIL}
        parents = ["-p", head] if head else []
        commit = _git(root, "commit-tree", tree, *parents, "-F", "-", input=message.encode("utf-8"),
                      env={**env, **who})
    # the empty old value makes update-ref fail if the branch appeared meanwhile
    _git(root, "update-ref", "-m", "honua-ai propose", f"refs/heads/{branch}", commit, "")
    return commit


def status_porcelain(root: Path) -> list[str] | None:
    """``git status --porcelain`` lines, or None when ``root`` is not in a git repository."""
    if not is_repository(root):
        return None
    out = _git(root, "status", "--porcelain", "--untracked-files=no", "--", ".", check=False)
    return [line for line in out.splitlines() if line.strip()]


def free_branch(root: Path, branch: str) -> str:
    """``branch``, or ``branch-2``, ``-3``… when it exists already (a proposal never overwrites one)."""
    name, n = branch, 1
    while _git(root, "rev-parse", "--verify", "--quiet", f"refs/heads/{name}", check=False):
        n += 1
        name = f"{branch}-{n}"
    return name


def head_commit(root: Path) -> str | None:
    return _git(root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False) or None
