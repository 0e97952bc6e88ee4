"""The metadata provider: it writes the YAML files a plan's ``metadata`` steps edit.

The edit itself is pure and planned (:mod:`honua_plan.config.yamledit`);
:func:`write_atomic` is the only writer of files, here and for the server adapters.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from honua_plan.providers.base import Provider, StepContext

if TYPE_CHECKING:
    from honua_plan.plan.model import Action, Operation


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file, fsync and rename: never a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class MetadataProvider(Provider):
    """Edits the repository's YAML files, journaling each file's bytes before the first edit."""

    name: ClassVar[str] = "metadata"
    operations: ClassVar[frozenset[str]] = frozenset({"metadata"})

    def run(self, ctx: StepContext, action: Action, op: Operation, step_id: str | None = None
            ) -> dict[str, Any] | None:
        import base64

        from honua_plan.config.yamledit import edit_text

        assert op.path is not None and op.changes is not None
        path = ctx.desired.root / op.path
        original = path.read_bytes()
        key = f"file:{op.path}"  # the original bytes first: rollback restores them exactly
        if key not in ctx.step_details(action.address):
            ctx.journal_details(action.address, {key: base64.b64encode(original).decode()})
        ctx.remember_file(op.path, original)
        write_atomic(path, edit_text(original.decode(), op.changes, where=op.path).encode())
        return None
