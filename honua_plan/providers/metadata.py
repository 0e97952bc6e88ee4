"""The metadata provider: it writes the YAML files a plan's ``metadata`` steps edit.

The edit itself is pure and planned (:mod:`honua_plan.config.yamledit`);
:func:`write_atomic` (over :mod:`honua_plan.files`) writes the files, here and for the server
adapters. A step edits only the applied environment's own files: checked by ``validate``
after templating, and here again on the real path, just before the edit, so a symbolic link
planted after validation does not lead the edit out of ``environments/<env>/``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from honua_plan.config.paths import metadata_step_problem
from honua_plan.errors import ContainmentError
from honua_plan.files import write_bytes_atomic
from honua_plan.providers.base import Provider, StepContext

if TYPE_CHECKING:
    from honua_plan.plan.model import Action, Operation


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file, fsync and rename: never a torn file; a
    target that is a symbolic link or not a regular file is refused (:mod:`honua_plan.files`)."""
    write_bytes_atomic(path, data)


class MetadataProvider(Provider):
    """Edits the repository's YAML files, journaling each file's bytes before the first edit.

    A file that already holds the step's changes (``honua migrate render`` wrote them, the
    pull request carries them) is only verified: nothing is written or journaled, and the
    executor says so. Only a file that lacks them is edited (the dev loop; under CI the plan
    refuses it), and the executor then asks for the file to be committed."""

    name: ClassVar[str] = "metadata"
    operations: ClassVar[frozenset[str]] = frozenset({"metadata"})

    def run(self, ctx: StepContext, action: Action, op: Operation, step_id: str | None = None
            ) -> dict[str, Any] | None:
        import base64

        from honua_plan.config.yamledit import edit_text, missing_changes

        assert op.path is not None and op.changes is not None
        root = ctx.desired.root
        why = metadata_step_problem(root, ctx.desired.environment, op.path)
        if why is not None:
            raise ContainmentError(f"migration step '{op.name}' refused: {why}")
        path = Path(os.path.realpath(root / op.path))  # checked above: inside environments/<env>/
        original = path.read_bytes()
        if not missing_changes(original.decode(), op.changes):
            return None  # rendered into the pull request (honua migrate render): verified, nothing written
        key = f"file:{op.path}"  # the original bytes first: rollback restores them exactly
        if key not in ctx.step_details(action.address):
            ctx.journal_details(action.address, {key: base64.b64encode(original).decode()})
        ctx.remember_file(op.path, original)
        write_atomic(path, edit_text(original.decode(), op.changes, where=op.path).encode())
        return None
