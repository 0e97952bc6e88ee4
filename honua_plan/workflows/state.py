"""``honua state restore-backup``: the previous version of a local state file made the state
again, under the lock and recorded."""

from __future__ import annotations

from typing import TYPE_CHECKING

from honua_plan.errors import UsageError

if TYPE_CHECKING:
    from honua_plan.state.model import StateDocument
    from honua_plan.workspace import Workspace


def restore_state_backup(ws: Workspace, environment: str, *, force: bool = False) -> tuple[StateDocument, int, str | None]:
    """Make ``state/<env>.json.bak`` the state again, under the lock; returns the stored
    document, the backup's serial and where the replaced file was kept."""
    from honua_plan.errors import HonuaError, StateError
    from honua_plan.state.local import LocalBackend

    with ws.backend(environment) as backend:
        if not isinstance(backend, LocalBackend):
            raise UsageError(
                "restore-backup is for the local state backend; the postgres backend keeps every "
                "version in honua_plan.state_history"
            )
        bak = backend.reader().backup_path
        if not bak.is_file():
            raise StateError(f"no {ws._rel(bak)} to restore the state of '{environment}' from")
        current = backend.reader().read()
        if not force:
            try:
                ws.check_state(environment, backend, current)
            except HonuaError:
                pass  # the state went backwards or is missing: what this command is for
            else:
                if current.serial:
                    raise UsageError(
                        f"{ws._rel(backend.path)} (serial {current.serial}) is newer than "
                        f"{ws._rel(bak)} and nothing says it went backwards; refusing to replace it",
                        hint=f"`honua state restore-backup --env {environment} --force` replaces it anyway",
                    )
        guard = ws._serial_guard(environment)
        try:
            recorded = guard.recorded()
        except Exception:  # the database may be unreachable: restore all the same
            recorded = None
        finally:
            guard.close()
        replaced = backend.path.is_file()
        with backend.lock("honua state restore-backup") as writer:
            doc, bak_serial = writer.restore_backup_file(min_serial=recorded[1] if recorded else 0)
        return doc, bak_serial, ws._rel(backend.path.with_name(f"{environment}.json.replaced")) \
            if replaced else None
