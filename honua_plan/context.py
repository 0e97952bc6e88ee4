"""The one object behind every command: a workspace with its verbs.

The CLI converts flags and calls one method here; the Python API is the same path
(``Context("path/to/repo").validate("dev")``). Reading (config, state, refresh, plan) is
the :class:`~honua_plan.workspace.Workspace`'s; each verb is one call into
:mod:`honua_plan.workflows`. Methods return values; printing is the console's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from honua_plan.workspace import Workspace

if TYPE_CHECKING:
    from honua_plan.apply.executor import ApplyResult
    from honua_plan.checks.layertest import LayerReport
    from honua_plan.plan.model import Plan
    from honua_plan.providers.embedded.pgserver import ClusterStatus
    from honua_plan.providers.server.base import LocalServer
    from honua_plan.state.model import BackupRecord, StateDocument
    from honua_plan.workflows.ci import CIResult

Confirm = Callable[[str, bool], None]


class Context(Workspace):
    """A workspace and the verbs over it."""

    # ------------------------------------------------------------------ apply

    def ci_plan(self, out_dir: Path) -> CIResult:
        from honua_plan.workflows.ci import ci_plan

        return ci_plan(self, out_dir)

    def ci_deploy(self, out_dir: Path) -> CIResult:
        from honua_plan.workflows.ci import ci_deploy

        return ci_deploy(self, out_dir)

    def ci_drift(self, out_dir: Path) -> CIResult:
        from honua_plan.workflows.ci import ci_drift

        return ci_drift(self, out_dir)

    def accept_drift(self, environment: str, *, yes: bool = False, confirm: Confirm | None = None,
                     reviewed: list[str] | None = None) -> int:
        from honua_plan.workflows.state import accept_drift

        return accept_drift(self, environment, yes=yes, confirm=confirm, reviewed=reviewed)

    def keep_plan(self, plan: Plan, path: Path) -> None:
        from honua_plan.workflows.plans import keep_plan

        keep_plan(self, plan, path)

    def plan_file(self, ref: Path, environment: str | None = None) -> Path:
        from honua_plan.workflows.plans import plan_file

        return plan_file(self, ref, environment)

    def approve(self, plan_file: Path, by: str, comment: str = "", *, key: Path | None = None) -> Plan:
        from honua_plan.workflows.apply import approve

        return approve(self, plan_file, by, comment, key=key)

    def apply(
        self,
        environment: str,
        plan_file: Path | None = None,
        *,
        yes: bool = False,
        resume: bool = False,
        rollback: bool = False,
        allow_destroy: bool = False,
        assume_done: frozenset[str] = frozenset(),
        assume_not_done: frozenset[str] = frozenset(),
        confirm: Confirm | None = None,
        plan: Plan | None = None,
        command: str = "honua apply",
        show: bool = True,
        banner: bool = True,
        target: tuple[str, ...] = (),
        exclude: tuple[str, ...] = (),
        replace: tuple[str, ...] = (),
    ) -> ApplyResult | None:
        """Plan (or load a saved plan), check it, and apply it under the state lock."""
        from honua_plan.workflows.apply import apply

        return apply(self, environment, plan_file, yes=yes, resume=resume, rollback=rollback,
                     allow_destroy=allow_destroy, assume_done=assume_done, assume_not_done=assume_not_done,
                     confirm=confirm, plan=plan, command=command, show=show, banner=banner,
                     target=target, exclude=exclude, replace=replace)

    def promote(self, src: str, dst: str, *, migration: str | None = None, auto_validate: bool = False,
                yes: bool = False, confirm: Confirm | None = None, allow_untested: bool = False,
                allow_predicted_failure: bool = False) -> ApplyResult | None:
        from honua_plan.workflows.promote import promote

        return promote(self, src, dst, migration=migration, auto_validate=auto_validate, yes=yes,
                       confirm=confirm, allow_untested=allow_untested, allow_predicted_failure=allow_predicted_failure)

    def recover(self, environment: str, *, backup_id: str | None = None, latest: bool = False,
                last_deployment: bool = False, commit: str | None = None, include_shared: bool = False,
                yes: bool = False, confirm: Confirm | None = None, reason: str = "") -> bool:
        """Disaster recovery: restore a point in time (a backup's data and its commit's metadata)."""
        from honua_plan.workflows.recover import recover

        return recover(self, environment, backup_id=backup_id, latest=latest, deployment=last_deployment,
                       commit=commit, include_shared=include_shared, yes=yes, confirm=confirm, reason=reason)

    def backup_create(self, environment: str) -> BackupRecord:
        """``honua backup create``: the environment's tables, their contents, its metadata and commit."""
        from honua_plan.workflows.recover import create_backup

        return create_backup(self, environment)

    def restore_state_backup(self, environment: str, *, force: bool = False) -> tuple[StateDocument, int, str | None]:
        """Make ``state/<env>.json.bak`` the state again (``honua state restore-backup``)."""
        from honua_plan.workflows.state import restore_state_backup

        return restore_state_backup(self, environment, force=force)

    # ------------------------------------------------------------------ the local loop

    def db_start(self) -> ClusterStatus:
        from honua_plan.workflows.dev import db_start

        return db_start(self)

    def db_stop(self) -> tuple[int | None, ClusterStatus]:
        """Stop the embedded cluster: (the pid it stopped, or None when none ran; the status after)."""
        from honua_plan.workflows.dev import db_stop

        return db_stop(self)

    def db_status(self) -> ClusterStatus:
        from honua_plan.workflows.dev import db_status

        return db_status(self)

    def seed_data(self, environment: str, rows: int = 42, *, replace: bool = False) -> int:
        from honua_plan.workflows.dev import seed_data

        return seed_data(self, environment, rows, replace=replace)

    def serve(self, environment: str, *, port: int | None = None, foreground: bool = True) -> LocalServer:
        """Run the local OGC API server of an environment (``honua serve``)."""
        from honua_plan.workflows.dev import serve

        return serve(self, environment, port=port, foreground=foreground)

    def stop_server(self, environment: str) -> bool:
        """``honua serve --stop``: False when no server was running."""
        from honua_plan.workflows.dev import stop_server

        return stop_server(self, environment)

    def test_layers(self, environment: str, layer: str | None = None) -> list[LayerReport]:
        """``honua test``, recorded in the state's event log."""
        from honua_plan.workflows.dev import test_layers

        return test_layers(self, environment, layer)

    def dev_apply(self, environment: str, *, confirm: Confirm | None = None,
                  yes: bool = True) -> tuple[ApplyResult | None, bool]:
        """The seed's local loop: validate, apply layers/services (+ what they need), then test them."""
        from honua_plan.workflows.dev import dev_apply

        return dev_apply(self, environment, confirm=confirm, yes=yes)

    # ------------------------------------------------------------------ scaffolding

    def init(self, target: Path | str, *, force: bool = False) -> list[Path]:
        from honua_plan.workflows.scaffold import scaffold

        return scaffold(Path(target), force=force)

    def schema_export(self, out: Path | str | None = None) -> list[Path]:
        from honua_plan.workflows.schemas import export

        return export(Path(out) if out else self.root / "schemas")
