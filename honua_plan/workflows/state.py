"""``honua state restore-backup``: the previous version of a local state file made the state
again, under the lock and recorded."""

from __future__ import annotations

from typing import TYPE_CHECKING

from honua_plan.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

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


def state_rm(ws: Workspace, environment: str, addresses: list[str]) -> StateDocument:
    """``honua state rm``: forget resources (the live objects are left as they are), as
    ``terraform state rm``. A datasource, server, service or layer is kept in the state's
    ``unmanaged`` list: the plan shows it as a no-op, apply neither changes nor deletes it,
    and the server keeps publishing it as it does now, until ``honua state import``."""
    from honua_plan.errors import UsageError
    from honua_plan.plan.diff import MANAGED_KINDS

    with ws.backend(environment).lock("honua state rm") as writer:
        doc = writer.read()
        missing = [a for a in addresses if a not in doc.resources]
        if missing:
            raise UsageError(f"not in the {environment} state: {', '.join(missing)}",
                             hint=f"list the addresses with `honua state list --env {environment}`")
        kept = frozenset(a for a in addresses if doc.resources[a].kind in MANAGED_KINDS)
        doc = doc.with_resources([], frozenset(addresses)).with_unmanaged(kept).record_event(
            "state-rm", f"removed from the state: {', '.join(addresses)}", actor=ws.actor,
            details={"addresses": addresses, "unmanaged": sorted(kept)})
        return writer.write(doc, expected_serial=doc.serial)


def state_import(ws: Workspace, environment: str, addresses: list[str]) -> StateDocument:
    """``honua state import``: manage again what ``state rm`` forgot (or adopt what the
    configuration declares and the state does not record): the configuration's attributes
    are recorded, nothing live changes. The next plan compares the server with them: what
    it publishes otherwise is drift, republished by the next apply."""
    from honua_plan.errors import UsageError
    from honua_plan.plan.diff import desired_resources
    from honua_plan.state.model import ResourceRecord

    declared = desired_resources(ws.desired(environment))
    with ws.backend(environment).lock("honua state import") as writer:
        doc = writer.read()
        unknown = [a for a in addresses if a not in declared]
        if unknown:
            raise UsageError(f"not in the configuration of {environment}: {', '.join(unknown)}",
                             hint="import declares what the configuration manages: add it to the configuration first")
        recorded = [a for a in addresses if a in doc.resources]
        if recorded:
            raise UsageError(f"already managed in the {environment} state: {', '.join(recorded)}")
        desired = ws.desired(environment)
        records = []
        for address in addresses:
            kind, attrs = declared[address]
            src = desired.source(address)
            records.append(ResourceRecord.create(address, kind, attrs, serial=doc.next_serial,
                                                 source_path=src.path if src else None, applied_by=ws.actor))
        doc = doc.with_resources(records).with_unmanaged(managed=frozenset(addresses)).record_event(
            "state-import", f"managed again: {', '.join(addresses)}", actor=ws.actor,
            details={"addresses": addresses})
        return writer.write(doc, expected_serial=doc.serial)


def state_mv(ws: Workspace, environment: str, source: str, destination: str) -> StateDocument:
    """``honua state mv``: record a resource under a new address (a layer or service renamed
    in the config without a delete and a create), as ``terraform state mv``."""
    from honua_plan.errors import UsageError

    if source.split(".", 1)[0] != destination.split(".", 1)[0]:
        raise UsageError(f"{source} and {destination} are not of the same kind")
    with ws.backend(environment).lock("honua state mv") as writer:
        doc = writer.read()
        if source not in doc.resources:
            raise UsageError(f"{source} is not in the {environment} state")
        if destination in doc.resources:
            raise UsageError(f"{destination} is already in the {environment} state")
        doc = doc.with_moved(source, destination).record_event(
            "state-mv", f"{source} → {destination}", actor=ws.actor,
            details={"from": source, "to": destination})
        return writer.write(doc, expected_serial=doc.serial)


def accept_drift(ws: Workspace, environment: str, *, yes: bool = False,
                 confirm: Callable[[str, bool], None] | None = None, reviewed: list[str] | None = None) -> int:
    """``honua apply --refresh-only``: record the live shape of every drifted table as the
    new baseline (as Terraform's refresh-only apply); nothing live changes. Returns how many
    records changed."""
    from honua_plan.plan.diff import table_address, table_attributes
    from honua_plan.plan.render import render_text
    from honua_plan.state.model import ResourceRecord

    con = ws.console
    plan = ws.plan(environment, refresh_only=True, refuse_unfinished=True)
    tables = [d for d in plan.drift if d.kind == "table"]
    if reviewed is not None and sorted(d.address for d in plan.drift) != reviewed:
        from honua_plan.errors import StalePlanError

        raise StalePlanError("the saved refresh-only plan is stale: the drift is not the one it showed",
                             hint=f"make a new one: honua plan --env {environment} --refresh-only --out plan.json")
    if not tables:
        con.print(f"No drift. The {environment} environment matches the recorded state.")
        return 0
    con.print(render_text(plan, colour=con.colour).rstrip("\n"))
    if confirm is not None:
        confirm("Accept the live shape of these tables as the recorded state?", yes)
    facts = ws.read_facts(environment)
    with ws.backend(environment).lock("honua apply --refresh-only") as writer:
        doc = writer.read()
        records, removed = [], set()
        for d in tables:
            live = facts.table(d.address.removeprefix("table."))
            if live is None:
                removed.add(d.address)
            else:
                records.append(ResourceRecord.create(table_address(live), "table", table_attributes(live),
                                                     serial=doc.next_serial, applied_by=ws.actor))
        doc = doc.with_resources(records, frozenset(removed)).record_event(
            "refresh-only", f"drift accepted as the baseline: {', '.join(d.address for d in tables)}",
            actor=ws.actor, details={"addresses": [d.address for d in tables]})
        stored = writer.write(doc, expected_serial=doc.serial)
    con.ok(f"Accepted the live shape of {len(tables)} table(s) as the recorded state (serial {stored.serial}); "
           "nothing live was changed")
    return len(tables)


def migrate_baseline(ws: Workspace, environment: str, migration_id: str, reason: str) -> list[str]:
    """``honua migrate baseline ID``: adopt an existing database, as Flyway's baseline: the
    migrations up to ``ID`` (in order) that are not applied are recorded as applied without
    running. Returns their ids."""
    from honua_plan.plan.diff import migration_checksum
    from honua_plan.state.model import MigrationRecord, utcnow

    migrations = ws.desired(environment).migrations_for_env()
    ids = [m.metadata.id for m in migrations]
    if migration_id not in ids:
        raise UsageError(f"no migration {migration_id} for {environment} (known: {', '.join(ids) or 'none'})")
    if not reason.strip():
        raise UsageError("say why with --reason (it is recorded)")
    upto = migrations[:ids.index(migration_id) + 1]
    with ws.backend(environment).lock("honua migrate baseline") as writer:
        doc = writer.read()
        adopted = [m for m in upto if (r := doc.latest_migration(m.metadata.id)) is None or r.status != "applied"]
        now = utcnow()
        for m in adopted:
            doc = doc.with_migration(MigrationRecord(
                id=m.metadata.id, description=f"baseline: {m.metadata.description}", checksum=migration_checksum(m),
                status="applied", started_at=now, finished_at=now, duration_s=0.0, applied_by=ws.actor))
        doc = doc.record_event("migrate-baseline", f"baseline at {migration_id}: {reason}", actor=ws.actor,
                               details={"migrations": [m.metadata.id for m in adopted], "reason": reason})
        writer.write(doc, expected_serial=doc.serial)
    return [m.metadata.id for m in adopted]


def migrate_repair(ws: Workspace, environment: str, migration_id: str, reason: str) -> tuple[str, str]:
    """``honua migrate repair ID``: accept the edited spec of an applied migration (Flyway's
    repair), with the reason recorded; nothing runs. Returns (old, new) checksums."""
    from honua_plan.plan.diff import migration_checksum

    m = ws.desired(environment).migration(migration_id)
    if m is None:
        raise UsageError(f"no migration {migration_id} in migrations/")
    if not reason.strip():
        raise UsageError("say why with --reason (it is recorded)")
    new = migration_checksum(m)
    with ws.backend(environment).lock("honua migrate repair") as writer:
        doc = writer.read()
        latest = doc.latest_migration(m.metadata.id)
        if latest is None or latest.status != "applied":
            raise UsageError(f"migration {m.metadata.id} is not applied in {environment}: nothing to repair")
        if latest.checksum == new:
            raise UsageError(f"migration {m.metadata.id} is unchanged since it was applied: nothing to repair")
        doc = doc.with_migration(latest.model_copy(update={"checksum": new}))
        doc = doc.record_event("migrate-repair", f"migration {m.metadata.id}: checksum accepted ({reason})",
                               actor=ws.actor, details={"migration": m.metadata.id, "from": latest.checksum,
                                                        "to": new, "reason": reason})
        writer.write(doc, expected_serial=doc.serial)
    return latest.checksum, new
