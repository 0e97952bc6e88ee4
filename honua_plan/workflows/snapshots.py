"""Points in time of an environment's metadata: the files at a git commit, in a backup's
snapshot or in the working tree, and what restoring them would change."""

from __future__ import annotations

import io
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from honua_plan.errors import RecoveryError

if TYPE_CHECKING:
    pass


SHARED = ("honua.yaml", "providers/", "migrations/")


def own_path(environment: str, path: str) -> bool:
    """Files of the environment itself: its directory and its policy."""
    return path.startswith(f"environments/{environment}/") or path == f"policies/{environment}-policy.yaml"


def shared_path(path: str) -> bool:
    return any(path == s or (s.endswith("/") and path.startswith(s)) for s in SHARED)


def _git(root: Path, *args: str, text: bool = True) -> subprocess.CompletedProcess[Any]:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=text, timeout=60, check=False)


def verify_commit(root: Path, commit: str) -> str:
    """The full sha of ``commit``; RecoveryError when it names no commit of the repository."""
    try:
        proc = _git(root, "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}")
    except (OSError, subprocess.SubprocessError) as exc:
        raise RecoveryError(f"cannot run git to check commit {commit}: {exc}") from None
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RecoveryError(f"{commit} is not a commit of the repository at {root}; nothing was touched",
                            hint="git log --oneline -- environments/  (to find one)")
    return str(proc.stdout.strip())


def files_at_commit(root: Path, commit: str) -> dict[str, bytes]:
    """Every configuration file of ``commit`` (environments, policies, shared files)."""
    proc = _git(root, "ls-tree", "-r", "-z", "--name-only", commit, "--",
                "environments", "policies", "honua.yaml", "providers", "migrations")
    if proc.returncode != 0:
        raise RecoveryError(f"cannot list the files of commit {commit[:12]}: {proc.stderr.strip()}")
    out: dict[str, bytes] = {}
    for path in filter(None, proc.stdout.split("\0")):
        blob = _git(root, "show", f"{commit}:{path}", text=False)
        if blob.returncode != 0:
            raise RecoveryError(f"cannot read {path} at commit {commit[:12]}")
        out[path] = blob.stdout
    return out


def files_in_snapshot(path: Path) -> dict[str, bytes]:
    try:
        with tarfile.open(path, "r:gz") as tar:
            out: dict[str, bytes] = {}
            for m in tar.getmembers():
                fh = tar.extractfile(m) if m.isfile() else None
                if fh is not None and not m.name.startswith(("/", "..")) and ".." not in m.name.split("/"):
                    out[m.name] = fh.read()
            return out
    except (OSError, tarfile.TarError) as exc:
        raise RecoveryError(f"cannot read the metadata snapshot {path.name}: {exc}") from None


def working_files(root: Path) -> dict[str, bytes]:
    """The configuration files as they are on disk now."""
    out: dict[str, bytes] = {}
    for top in ("environments", "policies", "providers", "migrations"):
        for p in sorted((root / top).rglob("*")):
            if p.is_file():
                out[p.relative_to(root).as_posix()] = p.read_bytes()
    if (root / "honua.yaml").is_file():
        out["honua.yaml"] = (root / "honua.yaml").read_bytes()
    return out


def write_snapshot(root: Path, path: Path, environment: str) -> None:
    """A tar.gz of the environment's own and the shared metadata files, as they are now."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in sorted(working_files(root).items()):
            if own_path(environment, name) or shared_path(name):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    from honua_plan.providers.metadata import write_atomic

    write_atomic(path, buf.getvalue())


@dataclass
class MetadataChange:
    """What restoring a metadata source changes on disk."""

    source: str  # "commit abc123…" / "snapshot of backup X"
    write: dict[str, bytes] = field(default_factory=dict)
    delete: list[str] = field(default_factory=list)
    shared_differ: list[str] = field(default_factory=list)

    @property
    def paths(self) -> list[str]:
        return sorted([*self.write, *self.delete])


def metadata_change(root: Path, environment: str, files: dict[str, bytes], source: str, *,
                    include_shared: bool) -> MetadataChange:
    now = working_files(root)
    change = MetadataChange(source)
    for path, data in files.items():
        if own_path(environment, path) or (include_shared and shared_path(path)):
            if now.get(path) != data:
                change.write[path] = data
        elif shared_path(path) and now.get(path) != data:
            change.shared_differ.append(path)
    for path in now:
        if path not in files:
            if own_path(environment, path):
                change.delete.append(path)
            elif shared_path(path):
                change.shared_differ.append(path)  # only on disk: --include-shared keeps it (never deletes shared)
    change.shared_differ.sort()
    return change


def apply_files(root: Path, write: dict[str, bytes], delete: list[str]) -> None:
    from honua_plan.providers.metadata import write_atomic

    for path, data in write.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, data)
    for path in delete:
        (root / path).unlink(missing_ok=True)
