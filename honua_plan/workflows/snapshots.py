"""Points in time of an environment's metadata: the files at a git commit, in a backup's
snapshot or in the working tree, and what restoring them would change."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from honua_plan.apply.deployed import (
    files_at_commit,
    files_in_snapshot,
    own_path,
    shared_path,
    snapshot_bytes,
    verify_commit,
    working_files,
)

if TYPE_CHECKING:
    from pathlib import Path


__all__ = ["MetadataChange", "apply_files", "files_at_commit", "files_in_snapshot", "metadata_change", "own_path",
           "shared_path", "verify_commit", "working_files", "write_snapshot"]


def write_snapshot(root: Path, path: Path, environment: str) -> None:
    """A tar.gz of the environment's own and the shared metadata files, as they are now."""
    from honua_plan.providers.metadata import write_atomic

    write_atomic(path, snapshot_bytes(working_files(root), environment))


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
