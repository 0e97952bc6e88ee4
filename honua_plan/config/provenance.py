"""Where a change came from, as git records it: the ``Honua-Provenance`` commit trailer.

An AI proposal commits its files with ``Honua-Provenance: ai; model=<name>``. A plan of that
branch made later by a person (or CI) still carries provenance ``ai``, so a policy's
``aiProposals: required`` applies to it: :func:`ai_model` finds the trailer on any commit
between the merge base with the default branch and HEAD that touched the configuration, and on
the default branch itself in the commits HEAD brought in (a merge, fast-forward or squash).
git runs with a fixed argv (no shell); no git, no repository or no base is "no trailer".
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

TRAILER = "Honua-Provenance"
#: the repository paths whose commits count (a README edit is nobody's proposal)
CONFIG_PATHS = ("honua.yaml", "environments", "migrations", "providers", "policies")
_BASES = ("origin/HEAD", "origin/main", "origin/master", "main", "master")
_VALUE = re.compile(r"^\s*ai\s*(?:;\s*model\s*=\s*(?P<model>[^;\s]+))?", re.IGNORECASE)


def trailer(model: str | None) -> str:
    """The trailer line an AI commit carries."""
    return f"{TRAILER}: ai" + (f"; model={model}" if model else "")


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def ai_model(root: Path) -> str | None:
    """The model of the newest AI-provenance commit on this branch that touched the config
    (``"unknown"`` when the trailer names none); None when there is none."""
    head = (_git(root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}") or "").strip()
    if not head:
        return None
    base = None
    for ref in _BASES:
        sha = (_git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}") or "").strip()
        if sha and sha != head:
            base = (_git(root, "merge-base", head, sha) or "").strip() or None
            if base is not None:
                break
    if base is None or base == head:
        return _merged_model(root, head)
    log = _git(root, "log", f"--format=%(trailers:key={TRAILER},valueonly,separator=%x1f)%x1e",
               f"{base}..{head}", "--", *CONFIG_PATHS)
    for entry in (log or "").split("\x1e"):
        for value in entry.strip().split("\x1f"):
            m = _VALUE.match(value)
            if value.strip() and m:
                return m.group("model") or "unknown"
    return None


_LINE = re.compile(rf"^\s*{TRAILER}\s*:(?P<value>.*)$", re.IGNORECASE | re.MULTILINE)


def _merged_model(root: Path, head: str) -> str | None:
    """On the default branch (an AI branch merged into it): the trailer of what HEAD brought in,
    i.e. the commits a merge commit merged (``HEAD^1..HEAD``), or HEAD itself (a fast-forward,
    or a squash whose message kept the trailer line anywhere in its body)."""
    parents = (_git(root, "rev-list", "--parents", "-n", "1", head) or "").split()[1:]
    span = [f"{parents[0]}..{head}"] if parents else ["-n", "1", head]
    log = _git(root, "log", "--format=%B%x1e", *span, "--", *CONFIG_PATHS)
    for body in (log or "").split("\x1e"):
        for line in _LINE.finditer(body):
            m = _VALUE.match(line.group("value"))
            if m:
                return m.group("model") or "unknown"
    return None
