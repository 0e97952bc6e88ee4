"""Disaster recovery that restores what it names, and scheduled backups to restore from.

One unit: a recovery's steps (resolve_source, back up, stop, restore, republish, verify, record)
share the outcome they must report truthfully, and each step's failure path depends on
what the steps before it did. Points in time of the metadata are
:mod:`~honua_plan.workflows.snapshots`.

A recovery restores one point in time: a backup's data (``pg_restore`` of its tables)
together with the environment's metadata as of the commit recorded with it. The three
ways to name it (the seed's Example 4): a backup (``--latest-backup``/``--backup ID``),
the last successful deployment (the newest backup taken after it and before the next
change, and its commit; a recovery is never a deployment), or a commit (its metadata
plus the backup taken at it, else — said so — metadata only, data untouched).

Everything that can be checked is checked before anything is touched (the commit, the
dump's SHA-256 and ``pg_restore --list``, the metadata files). After the restore the
tables are compared with what the backup recorded (rows, an md5 over the rows in key
order, indexes, constraints), migrations newer than the backup become pending again, and
the collections' ``/items`` must answer with features. A failure after the service was
stopped brings the previous service back and says what state each part is in.

Only the environment's own files are restored (``environments/<env>/`` and its policy);
shared files (``honua.yaml``, ``providers/``, ``migrations/``) are listed when they differ
and restored only with ``include_shared``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from honua_plan.errors import HonuaError, RecoveryError, StateError, UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from honua_plan.config.desired import DesiredState
    from honua_plan.providers.postgis.facts import DatabaseFacts
    from honua_plan.providers.server.base import ServerProvider
    from honua_plan.state.model import BackupRecord, Event, MigrationRecord, StateDocument
    from honua_plan.workspace import Workspace
from honua_plan.apply.deployed import as_deployed, describe_backup, sha256
from honua_plan.workflows.snapshots import (
    apply_files,
    files_at_commit,
    files_in_snapshot,
    metadata_change,
    own_path,
    verify_commit,
)

DEPLOY_KINDS = ("apply", "migrate")
CHANGE_KINDS = ("apply-start", "apply", "migrate", "rollback", "apply-failed", "recover", "recover-failed")


# --------------------------------------------------------------------------- history


@dataclass(frozen=True)
class Deployment:
    at: datetime
    commit: str | None
    kind: str
    plan_id: str | None


def event_commit(context: Workspace, ev: Event, environment: str) -> str | None:
    """The git commit an apply event deployed: recorded with it, else its saved plan's."""
    commit = ev.details.get("commit")
    if isinstance(commit, str) and commit:
        return commit
    plan_id = ev.details.get("plan_id")
    if isinstance(plan_id, str) and plan_id:
        from honua_plan.plan.store import load_plan

        # a fresh clone fetches the plan kept with the state
        path = context.backend(environment).artifacts().fetch(context.state_dir, f"plans/{plan_id}.json")
        if path.is_file():
            try:
                return load_plan(path).config_commit
            except (HonuaError, OSError):
                return None
    return None


def _successful(ev: Event) -> bool:
    outcomes = ev.details.get("outcomes") or {}
    return isinstance(outcomes, dict) and all(s in ("done", "skipped") for s in outcomes.values()) \
        and ev.details.get("ok") is not False


def last_deployment(context: Workspace, doc: StateDocument) -> Deployment | None:
    """The newest apply that finished without failures (a recovery or rollback never counts)."""
    for ev in reversed(doc.events):
        if ev.kind in DEPLOY_KINDS and _successful(ev):
            commit = event_commit(context, ev, doc.environment)
            plan_id = ev.details.get("plan_id")
            return Deployment(ev.at, commit, ev.kind, plan_id if isinstance(plan_id, str) else None)
    return None


def next_change(doc: StateDocument, after: datetime) -> datetime | None:
    """When the first change after ``after`` started (an apply's start, a recovery …)."""
    for ev in doc.events:
        if ev.at > after and ev.kind in CHANGE_KINDS:
            return ev.at
    return None


def backup_commit(context: Workspace, doc: StateDocument, rec: BackupRecord) -> str | None:
    """The commit of the metadata the backup's data goes with: recorded with it, else the
    commit of the last successful deployment before it was taken."""
    if rec.commit:
        return rec.commit
    for ev in reversed(doc.events):
        if ev.at <= rec.created_at and ev.kind in DEPLOY_KINDS and _successful(ev):
            return event_commit(context, ev, doc.environment)
    return None


# --------------------------------------------------------------------------- metadata sources


# --------------------------------------------------------------------------- what to restore


@dataclass
class Source:
    label: str
    backup: BackupRecord | None = None
    commit: str | None = None
    files: dict[str, bytes] | None = None  # the metadata to restore (None: metadata untouched)
    metadata_note: str = ""
    data_note: str = ""
    deployed_edits: list[str] | None = None  # files the deployments' metadata steps changed after the commit


def resolve_source(context: Workspace, environment: str, doc: StateDocument, *, backup_id: str | None, latest: bool,
            deployment: bool, commit: str | None) -> Source:
    """Find and check everything a recovery needs; touches nothing."""
    from honua_plan.apply import backup as backups

    chosen = [n for n, v in (("--latest-backup", latest), ("--backup", backup_id), ("--last-deployment", deployment))
              if v]
    if len(chosen) > 1:
        raise UsageError(f"choose one of {', '.join(chosen)}")
    if not (chosen or commit):
        raise UsageError("say what to recover from: --latest-backup, --backup ID, --last-deployment or --commit SHA")
    full = verify_commit(context.root, commit) if commit else None
    record: BackupRecord | None = None
    src = Source("")
    if latest or backup_id:
        record = doc.latest_backup() if latest else doc.backup(backup_id or "")
        if record is None:
            known = ", ".join(b.id for b in doc.backups[-5:]) or "none"
            raise StateError(f"no backup {'at all' if latest else backup_id} for {environment} (recent: {known})",
                             hint=f"honua backup create --env {environment}")
        src.label = f"{'latest backup' if latest else 'backup'} {record.id}"
    elif deployment:
        dep = last_deployment(context, doc)
        if dep is None:
            raise RecoveryError(f"no successful deployment is recorded for {environment}; nothing was touched")
        until = next_change(doc, dep.at)
        taken = [b for b in doc.backups if b.created_at >= dep.at and (until is None or b.created_at < until)]
        if not taken:
            raise RecoveryError(
                f"no backup was taken after the deployment of {dep.at:%Y-%m-%d %H:%M:%S} UTC"
                f"{' and before the next change' if until else ''}: its data cannot be restored; nothing was touched",
                hint=f"restore a backup with `honua recover --env {environment} --backup ID` (see `honua backup "
                     f"list`), or the commit's metadata only with --commit; take `honua backup create --env "
                     f"{environment}` after each deployment")
        record = max(taken, key=lambda b: b.created_at)
        if full is None and dep.commit:
            full = verify_commit(context.root, dep.commit)
        src.label = f"last successful deployment ({dep.at:%Y-%m-%d %H:%M:%S} UTC" + \
            (f", commit {dep.commit[:12]})" if dep.commit else ", no commit recorded)")
    elif full is not None:
        at_commit = [b for b in doc.backups if backup_commit(context, doc, b) == full
                     or _snapshot_is_commit(context, environment, b, full)]
        record = max(at_commit, key=lambda b: b.created_at) if at_commit else None
        src.label = f"commit {full[:12]}"
        if record is None:
            src.data_note = f"metadata only, data untouched: no backup was taken at commit {full[:12]}"
    named = full is not None and commit is not None  # --commit: exactly that commit's files
    if record is not None:
        # a fresh machine downloads the backup first (checked against the state's sha256s)
        context.backup_store.ensure_local(context.state_dir, record)
        backups.check_backup_file(record, state_dir=context.state_dir)
        _check_snapshot(context, record)
        if full is None:
            recorded_commit = backup_commit(context, doc, record)
            if recorded_commit is not None:
                try:
                    full = verify_commit(context.root, recorded_commit)
                except RecoveryError:
                    if not record.metadata_path:
                        raise
                    src.metadata_note = f"commit {recorded_commit[:12]} is not in this repository"
    src.backup, src.commit = record, full
    if full is not None and (named or record is None):
        src.files = files_at_commit(context.root, full)
    elif full is not None:
        # the commit as its deployments left it when the backup was taken (metadata steps' edits)
        src.files, src.deployed_edits = as_deployed(context.root, doc, full, record.created_at if record else None)
    elif record is not None and record.metadata_path:
        src.files = files_in_snapshot(context.state_dir / record.metadata_path)
        src.metadata_note = f"snapshot of backup {record.id} ({src.metadata_note or 'no commit recorded'})"
    else:
        src.metadata_note = "unchanged (no commit recorded with the backup)"
    return src


def _check_snapshot(context: Workspace, record: BackupRecord) -> None:
    """Refuse a metadata snapshot that changed since the backup recorded its sha256."""
    if not (record.metadata_path and record.metadata_sha256):
        return
    path = context.state_dir / record.metadata_path
    got = sha256(path.read_bytes()) if path.is_file() else None
    if got != record.metadata_sha256:
        raise RecoveryError(f"backup {record.id}: its metadata snapshot {record.metadata_path} "
                            + ("is missing" if got is None else
                               f"has sha256 {got[:12]}…, the backup recorded {record.metadata_sha256[:12]}…")
                            + "; nothing was touched")


def _snapshot_is_commit(context: Workspace, environment: str, rec: BackupRecord, commit: str) -> bool:
    """Whether a backup's metadata snapshot holds exactly the environment's files of ``commit``
    (a commit that records the files as deployed, e.g. after committing a metadata step's edit).
    Only a backup with a commit: its snapshot is the files as deployed, not a working tree."""
    if not rec.commit or not rec.metadata_path or not (context.state_dir / rec.metadata_path).is_file():
        return False
    try:
        snap = files_in_snapshot(context.state_dir / rec.metadata_path)
        at = files_at_commit(context.root, commit)
    except RecoveryError:
        return False

    def own(files: dict[str, bytes]) -> dict[str, bytes]:
        return {p: b for p, b in files.items() if own_path(environment, p)}

    return own(snap) == own(at)


# --------------------------------------------------------------------------- checks after the restore


def items_check(provider: ServerProvider, collection_ids: list[str], rows: dict[str, int], timeout_s: float) -> list[str]:
    """GET ``/collections/<id>/items?limit=1`` of each collection: 200 with features (none only
    for an empty table). Returns the problems."""
    from honua_plan.providers.server.http import collection_url, http_request

    base = provider.local_url
    if base is None:  # a server with no URL the engine can reach: nothing was checked, say so
        return [f"{cid}: not checked (the server declares no URL to reach it)" for cid in collection_ids]
    problems: list[str] = []
    for cid in collection_ids:
        url = collection_url(base, cid) + "/items?limit=1&f=json"
        try:
            resp = http_request("GET", url, timeout=min(timeout_s, 15.0), what="the OGC API")
        except HonuaError as exc:
            problems.append(f"{cid}: /items did not answer ({exc.message})")
            continue
        if resp.status != 200:
            problems.append(f"{cid}: /items answered HTTP {resp.status}")
            continue
        try:
            features = resp.json().get("features")
        except (ValueError, AttributeError):
            features = None
        if not isinstance(features, list):
            problems.append(f"{cid}: /items answered without a feature collection")
        elif not features and rows.get(cid, 0) > 0:
            problems.append(f"{cid}: /items answered no features while the table has {rows[cid]:,} rows")
    return problems


def pending_after_restore(context: Workspace, desired: DesiredState, doc: StateDocument, record: BackupRecord,
                          facts: DatabaseFacts | None) -> list[MigrationRecord]:
    """Migrations applied after the backup was taken that touch one of its tables: the
    restore undid them."""
    from honua_plan.plan.diff import MigrationChange, migration_checksum
    from honua_plan.plan.migrations import LiveState, migration_draft
    from honua_plan.providers.postgis.sqlexec import split_qualified

    restored = {".".join(split_qualified(t)) for t in record.tables}
    out = []
    for mid in doc.applied_migrations():
        rec = doc.latest_migration(mid)
        if rec is None or rec.finished_at is None or rec.finished_at <= record.created_at:
            continue
        m = desired.migration(mid)
        touched: set[str] = set()
        if m is not None:
            draft = migration_draft(desired, MigrationChange(m, migration_checksum(m), ""), LiveState(facts=facts),
                                     set())
            touched = {".".join(split_qualified(t)) for t in draft.touched}
        if m is None or touched & restored:
            out.append(rec)
    return out


# --------------------------------------------------------------------------- backup create


def create_backup(context: Workspace, environment: str) -> BackupRecord:
    """``honua backup create``: the tables the environment's layers and migrations touch,
    their contents, a snapshot of its metadata files, and the deployed commit."""
    from honua_plan.apply import backup as backups
    from honua_plan.plan.diff import MigrationChange, migration_checksum
    from honua_plan.plan.migrations import LiveState, migration_draft
    from honua_plan.providers.postgis import catalog as postgis
    from honua_plan.providers.postgis.connections import default_datasource
    from honua_plan.providers.postgis.sqlexec import Session, connect

    con = context.console
    desired = context.desired(environment)
    resolved = context.database(environment)
    with connect(resolved.dsn) as conn:
        facts = postgis.refresh(Session(conn))
    wanted = {lyr.spec.storage.qualified_table for lyr in desired.layers.values()}
    for m in desired.migrations_for_env():
        draft = migration_draft(desired, MigrationChange(m, migration_checksum(m), ""), LiveState(facts=facts), set())
        wanted |= draft.touched
    tables = sorted({t.qualified_name for name in wanted if (t := facts.table(name)) is not None})
    if not tables:
        raise RecoveryError(f"{environment} has no table to back up yet (none of its layers' or migrations' "
                            "tables exists)", hint=f"honua apply --env {environment}")
    backend = context.backend(environment)
    with backend.lock("honua backup create") as writer:
        doc = writer.read()
        ds = desired.datasources.get(default_datasource(desired.project, desired.datasources) or "")
        rec = backups.take_backup(resolved.dsn, tables, directory=context.state_dir / "backups",
                                  environment=environment, migration_id=None, commit=doc.config_commit,
                                  lock_wait_s=ds.spec.lockTimeout if ds is not None else None,
                                  timeout_s=desired.policy.spec.backupTimeout if desired.policy else None)
        try:
            rec = describe_backup(rec, root=context.root, state_dir=context.state_dir, environment=environment,
                                  doc=doc)
        except BaseException:
            for name in (f"{rec.id}.dump", f"{rec.id}.metadata.tar.gz", f"{rec.id}.manifest.json"):
                (context.state_dir / "backups" / name).unlink(missing_ok=True)
            raise
        context.backup_store.upload(context.state_dir, rec)
        doc = doc.with_backup(rec).record_event("backup", f"backup {rec.id} of {', '.join(tables)}",
                                                actor=context.actor, details={"backup": rec.id, "commit": rec.commit})
        if desired.policy is not None:
            kept, removed = backups.prune_backups(doc.backups, retention_s=desired.policy.spec.backupRetention,
                                                  state_dir=context.state_dir)
            for old in removed:
                context.backup_store.delete(old)
            doc = doc.model_copy(update={"backups": kept})
        writer.write(doc, expected_serial=writer.read().serial)
    con.ok(f"Backup created: {rec.id}")
    for table, c in rec.contents.items():
        con.print(f"  {table}: {c.rows:,} rows, checksum {c.checksum[:12]}…")
    con.print(f"  commit: {rec.commit or 'not recorded (no deployment with a git commit)'}; "
              f"metadata snapshot {rec.metadata_path} (sha256 {(rec.metadata_sha256 or '')[:12]}…)")
    return rec


# --------------------------------------------------------------------------- recover


def _contents_line(table: str, c: Any) -> str:
    return (f"{table}: {c.rows:,} rows, checksum {c.checksum[:12]}…, {len(c.indexes)} index(es), "
            f"{len(c.constraints)} constraint(s)")


def recover(context: Workspace, environment: str, *, backup_id: str | None = None, latest: bool = False,
            deployment: bool = False, commit: str | None = None, include_shared: bool = False, yes: bool = False,
            confirm: Callable[[str, bool], None] | None = None, reason: str = "") -> bool:
    from honua_plan.apply import backup as backups
    from honua_plan.console import format_duration
    from honua_plan.providers.server.base import LocalServer
    from honua_plan.state.model import utcnow

    con = context.console
    doc0 = context.recorded(environment)
    src = resolve_source(context, environment, doc0, backup_id=backup_id, latest=latest, deployment=deployment,
                  commit=commit)
    source_name = f"commit {src.commit[:12]}" if src.commit else src.metadata_note
    if src.deployed_edits:
        source_name += f" as deployed ({', '.join(src.deployed_edits)} as its migrations' metadata steps left it)"
    meta = metadata_change(context.root, environment, src.files, source_name,
                           include_shared=include_shared) if src.files is not None else None
    record = src.backup

    con.print("Recovery Plan:")
    con.rule()
    con.print(f"Restoring: {src.label}")
    server = context.desired(environment).server()
    steps = [f"Put {environment} in maintenance mode (stop serving)" if server and server.spec.type != "none" else
             f"Maintenance mode: not needed ({environment} serves nothing: server type none)"]
    if record is not None:
        steps.append(f"Restore database from backup {record.id} ({record.created_at:%Y-%m-%d %H:%M:%S} UTC; "
                     f"{', '.join(record.tables)})")
    else:
        steps.append(f"Database: not restored ({src.data_note or 'no backup chosen'})")
    if meta is not None:
        what = f"commit: {src.commit[:12]}" if src.commit else src.metadata_note
        steps.append(f"Restore metadata from {'Git' if src.commit else 'the backup'} ({what}): "
                     f"{len(meta.paths)} file(s) of {environment} change")
    else:
        steps.append(f"Metadata: {src.metadata_note}")
    steps += ["Validate data integrity (rows, checksums, indexes, constraints per table)",
              "Run health checks (each collection's /items)", "Exit maintenance mode (publish and reload)"]
    for i, s in enumerate(steps, 1):
        con.print(f"{i}. {s}")
    if meta is not None:
        for p in meta.paths:
            con.print(f"     {'-' if p in meta.delete else '~'} {p}")
        if meta.shared_differ:
            con.print("")
            con.print(f"Shared files only on disk, not in {meta.source} (kept: shared files are never deleted):"
                      if include_shared else
                      f"Shared files that differ from {meta.source} (kept; pass --include-shared to restore them too):")
            for p in meta.shared_differ:
                con.print(f"  {p}")
    con.print("")
    if confirm is not None:
        confirm("Proceed?", yes)

    started = time.perf_counter()
    resolved = context.database(environment)
    provider = context.server_provider(environment)
    serves = provider.manages_publication
    status = {"database": "not restored (unchanged)" if record is not None else "not restored (metadata only, data untouched)",
              "metadata": "unchanged", "service": "not touched"}
    previous_files: dict[str, bytes | None] = {}
    # measured, recorded in the recover event (the recovery report reads them from there)
    times: dict[str, str | None] = {"maintenance_started": None, "service_back": None,
                                    "backup_taken": record.created_at.isoformat() if record is not None else None}
    ok = True
    pending: list[Any] = []
    db_line = ""
    svc_line = ""
    try:
        with context.backend(environment).lock("honua recover") as writer:
            doc = writer.read()
            previous_doc = provider.read() if serves else None
            was_running = isinstance(provider, LocalServer) and provider.is_running()
            try:
                try:
                    if serves and isinstance(provider, LocalServer):
                        provider.stop()
                        times["maintenance_started"] = utcnow().isoformat()
                        status["service"] = "stopped (maintenance mode)"
                        con.ok("Maintenance mode activated", time.perf_counter() - started)
                    else:
                        con.print("  - Maintenance mode: nothing to stop (nothing is served)")
                    if record is not None:
                        t0 = time.perf_counter()
                        backups.restore_backup(resolved.dsn, record, state_dir=context.state_dir)
                        status["database"] = f"restored from backup {record.id}"
                        con.ok(f"Database restored from backup {record.id}", time.perf_counter() - t0)
                    if meta is not None:
                        t0 = time.perf_counter()
                        previous_files = {p: (context.root / p).read_bytes() if (context.root / p).is_file() else None
                                          for p in meta.paths}
                        apply_files(context.root, meta.write, meta.delete)
                        status["metadata"] = f"restored from {meta.source}"
                        con.ok(f"Metadata restored from Git ({src.commit[:12]}"
                               + (f", as deployed: {len(src.deployed_edits)} file(s) as metadata steps left them)"
                                  if src.deployed_edits else ")") if src.commit else
                               f"Metadata restored from the {src.metadata_note}", time.perf_counter() - t0)
                    desired = context._reload_desired(environment)
                except HonuaError as exc:
                    con.fail(exc.message)
                    if previous_files:
                        apply_files(context.root, {p: b for p, b in previous_files.items() if b is not None},
                                    [p for p, b in previous_files.items() if b is None])
                        context._reload_desired(environment)
                        status["metadata"] = "unchanged (put back as it was)"
                    _bring_back(context, provider, serves, previous_doc, was_running, status)
                    _back(times, status)
                    now_desired, now_facts, undone = None, None, []
                    if record is not None and status["database"].startswith("restored"):
                        try:  # the data is restored: state follows it even though the rest failed
                            now_desired, now_facts = context._reload_desired(environment), context.read_facts(environment)
                            undone = pending_after_restore(context, now_desired, doc, record, now_facts)
                        except HonuaError:
                            now_desired, now_facts = None, None
                    _record(context, writer, doc, environment, record, src, reason, False, undone, status,
                            desired=now_desired, facts=now_facts, error=exc.message, times=times)
                    raise RecoveryError(f"recovery of {environment} failed: {exc.message}",
                                        hint="; ".join(f"{k}: {v}" for k, v in status.items())) from None

                # integrity: the restored tables against what the backup recorded
                from honua_plan.providers.postgis import catalog as postgis
                from honua_plan.providers.postgis.sqlexec import Session, connect

                t0 = time.perf_counter()
                problems: list[str] = []
                with connect(resolved.dsn) as conn:
                    facts = postgis.refresh(Session(conn))
                    live_contents: dict[str, Any] = {}
                    if record is not None:
                        present = [t for t in record.tables if facts.table(t) is not None]
                        live_contents = backups.table_contents(conn, present)
                rows_by_collection: dict[str, int] = {}
                if record is not None:
                    if not record.contents:
                        problems.append(f"backup {record.id} recorded no row counts or checksums (taken by an older "
                                        "honua-plan): the restored data cannot be verified")
                    diffs = backups.compare_contents(record.contents, live_contents)
                    for table, bad in diffs.items():
                        if bad:
                            problems.append(f"{table}: {'; '.join(bad)}")
                            con.fail(f"{table}: {'; '.join(bad)}", indent=2)
                        else:
                            con.ok(f"{_contents_line(table, record.contents[table])}: match the backup", indent=2)
                for layer in desired.layers.values():
                    st = layer.spec.storage
                    t = facts.table(st.qualified_table)
                    if t is None:
                        problems.append(f"{st.qualified_table} is missing"
                                        + ("" if record is not None else " (data untouched: metadata only)"))
                        continue
                    c = live_contents.get(t.qualified_name)
                    rows_by_collection[layer.collection_id] = c.rows if c is not None else max(t.row_estimate, 0)
                if problems:
                    con.fail("Data integrity: " + "; ".join(problems), time.perf_counter() - t0)
                    ok = False
                elif record is not None:
                    con.ok("Data integrity validated", time.perf_counter() - t0)
                else:
                    con.ok("Layer tables present (data untouched: metadata only)", time.perf_counter() - t0)
                if record is not None:
                    pending = pending_after_restore(context, desired, doc, record, facts)
                db_line = ("HEALTHY" if not problems and record is not None else
                           f"NOT HEALTHY ({'; '.join(problems)})" if problems else
                           "not restored (metadata only, data untouched)")

                # health: publish what the restored metadata declares, then /items must answer
                t0 = time.perf_counter()
                if serves:
                    try:
                        from honua_plan.workflows.publish import publish_callbacks

                        publish, _, _ = publish_callbacks(context, desired, desired.server())  # type: ignore[arg-type]
                        publish(desired)
                        status["service"] = "serving the restored configuration"
                        target = desired.server()
                        bad = items_check(provider, sorted(lyr.collection_id for lyr in desired.layers.values()),
                                          rows_by_collection, target.spec.healthTimeout if target else 30.0)
                    except HonuaError as exc:
                        bad = [exc.message]
                        _bring_back(context, provider, serves, previous_doc, was_running, status)
                    _back(times, status, healthy=not bad or status["service"].startswith("previous"))
                    if bad:
                        ok = False
                        con.fail("Health checks failed: " + "; ".join(bad), time.perf_counter() - t0)
                        svc_line = f"NOT HEALTHY ({'; '.join(bad)})"
                    else:
                        con.ok(f"Health checks passed ({len(desired.layers)} collection(s) serve /items with "
                               "features)", time.perf_counter() - t0)
                        svc_line = "HEALTHY"
                    if status["service"].startswith("DOWN"):
                        con.fail(f"Maintenance mode: {status['service']}")
                    else:
                        con.ok("Maintenance mode deactivated")
                    if status["service"] != "serving the restored configuration":
                        svc_line += f"; {status['service']}"
                else:
                    con.print("  - Health checks: not run (server type none: nothing is served)")
                    svc_line = "not checked (server type none: nothing is served)"
                doc = _record(context, writer, doc, environment, record, src, reason, ok, pending, status,
                              desired=desired, facts=facts, times=times,
                              published=status["service"] == "serving the restored configuration"
                              or (not serves and status["metadata"].startswith("restored")))
            except BaseException:
                if status["service"].startswith("stopped"):  # never leave it down
                    _bring_back(context, provider, serves, previous_doc, was_running, status)
                    con.fail(f"Stopped: {'; '.join(f'{k}: {v}' for k, v in status.items())}")
                raise
    finally:
        provider.close()

    con.print("")
    con.print("Recovery completed successfully!" if ok else
              "Recovery finished with problems: see the ✗ lines above.")
    con.print("")
    con.print("Status:")
    con.print(f"  - Database: {db_line}")
    con.print(f"  - Services: {svc_line}")
    con.print(f"  - Metadata: {status['metadata']}")
    con.print(f"  - Downtime: {downtime_text(times)}")
    con.print(f"  - Recovery took: {format_duration(time.perf_counter() - started)}")
    if record is not None:
        lost = (utcnow() - record.created_at).total_seconds()
        con.print(f"  - Data loss window: changes after {record.created_at:%Y-%m-%d %H:%M:%S} UTC "
                  f"({format_duration(lost)} ago) are not in the backup")
    if pending:
        con.print("")
        con.print(f"Migrations newer than the backup are pending again: {', '.join(r.id for r in pending)}")
        con.print(f"  re-apply them: honua plan --env {environment} && honua apply --env {environment}")
    if meta is not None and status["metadata"].startswith("restored"):
        for line in git_advice(context, environment, meta.paths, src.commit):
            con.print(line)
    if not ok:
        raise RecoveryError(f"recovery of {environment} did not restore everything",
                            hint=f"database: {db_line}; services: {svc_line}; metadata: {status['metadata']}")
    return ok


def _back(times: dict[str, str | None], status: dict[str, str], *, healthy: bool = True) -> None:
    """Stamp the moment the service answers again (after a maintenance stop)."""
    from honua_plan.state.model import utcnow

    if times["maintenance_started"] and times["service_back"] is None and healthy \
            and not status["service"].startswith("DOWN"):
        times["service_back"] = utcnow().isoformat()


def downtime_text(times: dict[str, Any]) -> str:
    """Maintenance start → service back, as measured (or why there is no figure)."""
    from datetime import datetime

    from honua_plan.console import format_duration

    start, back = times.get("maintenance_started"), times.get("service_back")
    if not start:
        return "none: nothing was stopped (nothing is served)"
    if not back:
        return f"still down since {start[:19].replace('T', ' ')} UTC (the service did not answer again)"
    seconds = (datetime.fromisoformat(back) - datetime.fromisoformat(start)).total_seconds()
    return f"{format_duration(seconds)} (maintenance start to service back)"


def _bring_back(context: Workspace, provider: Any, serves: bool, previous_doc: Any, was_running: bool,
                status: dict[str, str]) -> None:
    """Serve the previous configuration again (it was stopped for maintenance)."""
    if not serves:
        status["service"] = "nothing is served (server type none)"
        return
    try:
        if previous_doc is not None:
            provider.publish(previous_doc, prune=True)
        if was_running or previous_doc is not None:
            provider.reload()
            if previous_doc and previous_doc.get("collections"):
                provider.health(sorted(previous_doc["collections"]), 30.0)
        status["service"] = "previous configuration serving again"
    except HonuaError as exc:
        status["service"] = f"DOWN: the previous configuration could not be served again ({exc.message})"


def _record(context: Workspace, writer: Any, doc: StateDocument, environment: str, record: BackupRecord | None,
            src: Source, reason: str, ok: bool, pending: list[Any], status: dict[str, str], *,
            desired: Any = None, facts: Any = None, error: str | None = None,
            times: dict[str, str | None] | None = None, published: bool = False) -> StateDocument:
    """State follows the database: restored tables' shapes, undone migrations pending, the event;
    and what was ``published``: the layers, services and providers of the restored files."""
    from honua_plan.plan.diff import table_address, table_attributes
    from honua_plan.state.model import MigrationRecord, ResourceRecord, utcnow

    if facts is not None:
        names = set(record.tables if record else []) | {lyr.spec.storage.qualified_table
                                                        for lyr in desired.layers.values()}
        records = []
        for name in sorted(names):
            t = facts.table(name)
            if t is not None:
                records.append(ResourceRecord.create(table_address(t), "table", table_attributes(t),
                                                     serial=doc.next_serial, applied_by=context.actor))
        doc = doc.with_resources(records)
    if published and desired is not None:
        doc = _record_published(context, doc, desired)
    for rec in pending:
        doc = doc.with_migration(MigrationRecord(
            id=rec.id, description=rec.description, checksum=rec.checksum, status="pending",
            finished_at=utcnow(), applied_by=context.actor, backup_id=record.id if record else None,
            error=f"undone by restoring backup {record.id if record else '?'}, taken before it ran"))
    if src.commit and status["metadata"].startswith("restored"):
        doc = doc.with_config_commit(src.commit)
    doc = doc.record_event(
        "recover" if error is None else "recover-failed",
        f"recovered {src.label}" if error is None else f"recovery from {src.label} failed: {error}",
        actor=context.actor,
        details={"reason": reason, "ok": ok and error is None, "backup": record.id if record else None,
                 "commit": src.commit, "pending": [r.id for r in pending], **status, **(times or {})})
    writer.write(doc, expected_serial=writer.read().serial)
    return doc


def _record_published(context: Workspace, doc: StateDocument, desired: DesiredState) -> StateDocument:
    """The state's records of what the recovery published: each layer and service the restored
    files declare (as an apply records them), and no record of one they no longer declare (the
    publication pruned it). Shared providers are not restored by default: not recorded here."""
    from honua_plan.plan.diff import desired_resources
    from honua_plan.state.model import ResourceRecord

    current = {a: v for a, v in desired_resources(desired).items() if v[0] in ("layer", "service")}
    records = []
    for address, (kind, attrs) in sorted(current.items()):
        rec = doc.resources.get(address)
        if rec is None or rec.kind != kind or rec.attributes != attrs:
            src = desired.source(address)
            records.append(ResourceRecord.create(address, kind, attrs, serial=doc.next_serial,
                                                 source_path=src.path if src is not None else None,
                                                 applied_by=context.actor))
    gone = frozenset(a for a, r in doc.resources.items() if r.kind in ("layer", "service") and a not in current)
    return doc.with_resources(records, gone)


def git_advice(context: Workspace, environment: str, paths: list[str], commit: str | None) -> list[str]:
    """When the repository's HEAD does not hold the files the recovery restored (the next
    deployment from HEAD would undo it): which ones, and the git commands that make it agree."""
    from honua_plan.apply.deployed import git

    proc = git(context.root, "rev-parse", "--verify", "--quiet", "HEAD")
    head = proc.stdout.strip() if proc.returncode == 0 else ""
    if not head:
        return []
    try:
        at_head = files_at_commit(context.root, head)
    except RecoveryError:
        return []
    differ = [p for p in paths if at_head.get(p) != ((context.root / p).read_bytes()
                                                    if (context.root / p).is_file() else None)]
    if not differ:
        return []
    quoted = " ".join(differ)
    lines = ["", f"The repository's HEAD ({head[:12]}) still says otherwise for {len(differ)} restored file(s):",
             *[f"  ~ {p}" for p in differ],
             "  the working tree holds what is served now; keep it in git:",
             f"    git add -A -- {quoted} && git commit -m \"Recover {environment}\""]
    if commit and commit != head and git(context.root, "merge-base", "--is-ancestor", commit, head).returncode == 0:
        lines.append(f"  or undo the commits after it: git revert --no-edit {commit[:12]}..HEAD")
    return lines
