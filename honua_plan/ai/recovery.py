"""``honua-ai disaster-recovery``: what is broken, what can be restored, then ``Context.recover``.

:func:`analyze` only reads, and only real signals: database health (connect + refresh,
layer tables present, invalid geometries counted), each table's live row count against
the count recorded with the latest backup, each collection's ``/items`` when a server
serves them, the failures recorded in the state's event log, the git repository, the
backups, and the last successful deployment. :func:`write_report` records the answer to
"What happened?", those signals, the data-loss window and the measured downtime in
``<state>/incidents/REC-YYYYMMDD-NNN.md`` (numbered per day).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from honua_plan.console import format_duration
from honua_plan.errors import HonuaError

if TYPE_CHECKING:
    from honua_plan.context import Context
    from honua_plan.state.model import StateDocument
    from honua_plan.workflows.recover import Deployment


@dataclass(frozen=True)
class Signal:
    ok: bool | None  # None: not checked
    label: str
    status: str
    detail: str = ""

    def line(self) -> str:
        mark = {True: "✓", False: "✗", None: "-"}[self.ok]
        return f"{mark} {self.label}: {self.status}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class RecoveryAnalysis:
    environment: str
    checks: list[Signal] = field(default_factory=list)
    last_deployment: Deployment | None = None
    latest_backup: Any = None
    backups: int = 0
    git: bool = False
    at: datetime | None = None
    first_failure: Any = None  # the earliest failure event since the last successful deployment


def _ago(now: datetime, then: datetime) -> str:
    return f"{format_duration(max(0.0, (now - then).total_seconds()))} ago"


def database_check(context: Context, environment: str, recorded: dict[str, Any] | None = None,
                   backup_id: str = "") -> list[Signal]:
    """Database health, then one line per table the latest backup recorded: live rows vs recorded."""
    from psycopg import sql

    from honua_plan.providers.postgis import catalog as postgis
    from honua_plan.providers.postgis.sqlexec import Session, connect, execute, split_name

    recorded = recorded or {}
    rows: dict[str, int | None] = {}
    try:
        resolved = context.resolve_dsn(environment)
        with connect(resolved.dsn, connect_timeout=5) as conn:
            session = Session(conn)
            facts = postgis.refresh(session)
            missing: list[str] = []
            invalid: list[str] = []
            for layer in context.desired(environment).layers.values():
                st = layer.spec.storage
                t = facts.table(st.qualified_table)
                if t is None:
                    missing.append(st.qualified_table)
                elif t.geometry(st.geometryColumn) is not None:
                    bad, _, _ = postgis.count_invalid_geometries(session, st.qualified_table, st.geometryColumn)
                    if bad:
                        invalid.append(f"{bad:,} invalid geometries in {st.qualified_table}")
            for table in sorted(recorded):
                t = facts.table(table)
                if t is None:
                    rows[table] = None
                    continue
                ident = sql.Identifier(*split_name(t.qualified_name))
                rows[table] = int(execute(conn, sql.SQL("SELECT count(*) FROM {}").format(ident))[0][0])
    except HonuaError as exc:
        return [Signal(False, "Database health", "CRITICAL", exc.message)]
    except Exception as exc:  # a broken catalog is a finding here, not a crash
        return [Signal(False, "Database health", "CRITICAL", f"{type(exc).__name__}: {exc}")]
    if missing:
        out = [Signal(False, "Database health", "CRITICAL", f"tables missing: {', '.join(sorted(set(missing)))}")]
    elif invalid:
        out = [Signal(False, "Database health", "DEGRADED", "; ".join(invalid))]
    else:
        out = [Signal(True, "Database health", "HEALTHY", f"{len(facts.tables)} tables, 0 invalid geometries")]
    for table, live in rows.items():
        had = recorded[table].rows
        if live is None:
            out.append(Signal(False, f"Rows in {table}", "TABLE MISSING", f"{had:,} rows in backup {backup_id}"))
        elif live < had:
            out.append(Signal(False, f"Rows in {table}", f"{live:,}",
                             f"{had:,} in backup {backup_id}: {had - live:,} fewer"))
        else:
            out.append(Signal(True, f"Rows in {table}", f"{live:,}", f"{had:,} in backup {backup_id}"))
    return out


def service_check(context: Context, environment: str, timeout_s: float = 5.0) -> Signal:
    """Each collection's ``/items`` on the running server (200 with features)."""
    from honua_plan.workflows.recover import items_check

    desired = context.desired(environment)
    ids = [lyr.collection_id for lyr in desired.layers.values()]
    try:
        provider = context.server_provider(environment)
    except HonuaError as exc:
        return Signal(False, "Service availability", "DEGRADED", exc.message)
    try:
        if not provider.manages_publication:
            return Signal(None, "Service availability", "not checked", "server type none: nothing is published")
        if not ids:
            return Signal(None, "Service availability", "not checked", "no layers")
        bad = items_check(provider, sorted(ids), {}, timeout_s)
        if not bad:
            return Signal(True, "Service availability", "HEALTHY", f"{len(ids)} collection(s) serve /items")
        return Signal(False, "Service availability", "DEGRADED", "; ".join(bad))
    finally:
        provider.close()


def failures_check(doc: StateDocument, now: datetime, since: datetime | None) -> tuple[Signal, Any]:
    """Failures the state recorded since the last successful deployment (else the last 7 days)."""
    from datetime import timedelta

    from honua_plan.state.health import is_failure

    start = since or now - timedelta(days=7)
    failed = [e for e in doc.events if is_failure(e) and e.at >= start]
    scope = "since the last successful deployment" if since else "in the last 7d"
    if not failed:
        return Signal(True, "Recent failures", "none", scope), None
    last = failed[-1]
    return Signal(False, "Recent failures", str(len(failed)),
                 f"{scope}; latest: {last.kind} {_ago(now, last.at)}: {last.message or '-'}"), failed[0]


def git_check(context: Context) -> Signal:
    from honua_plan.ai import gitops

    lines = gitops.status_porcelain(context.root)
    if lines is None:
        return Signal(False, "Git repository", "NOT A GIT REPOSITORY", "no commit to restore from")
    head = gitops.head_commit(context.root)
    if lines:
        return Signal(False, "Git repository", "MODIFIED", f"{len(lines)} uncommitted change(s) to tracked files")
    return Signal(True, "Git repository", "INTACT", f"HEAD {head[:9]}" if head else "no commits yet")


def assess_recovery(context: Context, environment: str, *, now: datetime | None = None) -> RecoveryAnalysis:
    from honua_plan.state.model import utcnow

    now = now or utcnow()
    out = RecoveryAnalysis(environment, at=now)
    doc = context.recorded(environment)
    backups = sorted(doc.backups, key=lambda b: b.created_at)
    latest = backups[-1] if backups else None
    out.checks.extend(database_check(context, environment, dict(latest.contents) if latest else None,
                                     latest.id if latest else ""))
    out.checks.append(service_check(context, environment))
    from honua_plan.workflows.recover import last_deployment

    out.last_deployment = last_deployment(context, doc)
    check, out.first_failure = failures_check(doc, now, out.last_deployment.at if out.last_deployment else None)
    out.checks.append(check)
    git = git_check(context)
    out.git = git.status != "NOT A GIT REPOSITORY"
    out.checks.append(git)
    out.backups = len(backups)
    out.latest_backup = latest
    if backups:
        span = f"newest {_ago(now, backups[-1].created_at)}"
        if len(backups) > 1:
            span += f", oldest {_ago(now, backups[0].created_at)}"
        out.checks.append(Signal(True, "Backups available", str(len(backups)), span))
    else:
        out.checks.append(Signal(False, "Backups available", "none", "no backup was taken in this environment"))
    return out


def options(a: RecoveryAnalysis, *, now: datetime) -> list[tuple[str, bool]]:
    """The seed's three options, each with whether it is available."""
    b = a.latest_backup
    first = (f"Restore from latest automated backup ({_ago(now, b.created_at)}: {b.id})", True) if b is not None \
        else ("Restore from latest automated backup (none available)", False)
    d = a.last_deployment
    if d is not None and d.commit and a.git:
        second = (f"Restore from last successful deployment ({_ago(now, d.at)}: commit {d.commit[:9]})", True)
    else:
        second = ("Restore from last successful deployment (no deployment with a git commit recorded)", False)
    third = ("Restore from specific Git commit", True) if a.git else \
        ("Restore from specific Git commit (not a git repository)", False)
    return [first, second, third]


def chosen_option(choice: int, offered: str, analysis: RecoveryAnalysis, event: Any) -> str:
    """The option as it ran, for the report, the incident and the notification: the backup the
    recovery event says was restored (``--backup ID`` is not the latest), the commit."""
    details = dict(event.details) if event is not None else {}
    backup, commit = details.get("backup"), details.get("commit")
    if event is None:
        return f"{choice}: {offered}"
    taken = details.get("backup_taken")
    when = f"taken {str(taken)[:19].replace('T', ' ')} UTC" if taken else ""
    latest = analysis.latest_backup is not None and analysis.latest_backup.id == backup
    data = (f"backup {backup} ({when}{', the latest' if latest else ', not the latest'})" if backup
            else "no backup (metadata only, data untouched)")
    if choice == 1:
        return f"1: Restore from {data}" + (f", metadata of commit {commit[:12]}" if commit else "")
    if choice == 2:
        return f"2: Restore the last successful deployment (commit {str(commit)[:12]}): {data}"
    return f"3: Restore from Git commit {str(commit)[:12]}: {data}"


# --------------------------------------------------------------------------- the recovery report


def next_report_id(folder: Any, now: datetime) -> tuple[str, Any]:
    """``REC-YYYYMMDD-NNN``, the next number of that day; the file is created (exclusively)."""
    import os

    folder.mkdir(parents=True, exist_ok=True)
    day = f"REC-{now:%Y%m%d}-"
    taken = [int(p.stem[len(day):]) for p in folder.glob(f"{day}*.md") if p.stem[len(day):].isdigit()]
    n = max(taken, default=0) + 1
    while True:
        rid = f"{day}{n:03d}"
        path = folder / f"{rid}.md"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            n += 1
            continue
        return rid, path


def write_report(context: Context, environment: str, *, what: str, analysis: RecoveryAnalysis, option: str,
                 event: Any, error: str | None) -> tuple[str, Any]:
    """Write ``<state>/incidents/REC-…md``: what happened, the signals, the figures measured."""
    from honua_plan.providers.metadata import write_atomic
    from honua_plan.secrets import redact
    from honua_plan.workflows.recover import downtime_text

    now = analysis.at or datetime.now().astimezone()
    rid, path = next_report_id(context.state_dir / "incidents", now)
    details = dict(event.details) if event is not None else {}
    incident_at = analysis.first_failure.at if analysis.first_failure is not None else analysis.at
    incident_src = (f"first failure recorded since the last deployment: {analysis.first_failure.kind}"
                    if analysis.first_failure is not None else
                    "detected when disaster recovery started; no earlier failure recorded")
    backup_at = datetime.fromisoformat(details["backup_taken"]) if details.get("backup_taken") else None
    if backup_at is not None and incident_at is not None:
        window = (f"{format_duration(max(0.0, (incident_at - backup_at).total_seconds()))}: changes between the "
                  f"backup ({backup_at:%Y-%m-%d %H:%M:%S} UTC) and the incident ({incident_at:%Y-%m-%d %H:%M:%S} UTC) "
                  "are not restored")
    else:
        window = "none: no data was restored (metadata only, or the recovery did not run)"
    if event is None:
        result = f"NOT STARTED: {error}" if error else "NOT STARTED"
    else:
        result = ("SUCCEEDED" if details.get("ok") else "FAILED") + (f": {error}" if error else "")
    lines = [
        f"# Recovery {rid}: {environment}",
        "",
        f"- **Environment:** {environment}",
        f"- **When:** {now:%Y-%m-%d %H:%M:%S} UTC",
        f"- **Who:** {context.actor}",
        f"- **Option:** {option}",
        f"- **Result:** {result}",
        f"- **Backup restored:** {details.get('backup') or 'none'}",
        f"- **Commit:** {details.get('commit') or 'none'}",
        f"- **Incident time:** {incident_at:%Y-%m-%d %H:%M:%S} UTC ({incident_src})" if incident_at else
        "- **Incident time:** unknown",
        f"- **Data-loss window:** {window}",
        f"- **Downtime:** {downtime_text(details) if event is not None else 'none: nothing was stopped'}",
        "",
        "## What happened?",
        "",
        what,
        "",
        "## Analysis (before recovery)",
        "",
        *[f"- {c.line()}" for c in analysis.checks],
        "",
        "## After recovery",
        "",
        *([f"- {k}: {details[k]}" for k in ("database", "metadata", "service") if k in details] or ["- (nothing ran)"]),
    ]
    if details.get("pending"):
        lines.append(f"- migrations pending again: {', '.join(details['pending'])}")
    write_atomic(path, redact("\n".join(lines) + "\n").encode())
    context.backend(environment).artifacts().keep(context.state_dir, path)  # with the state, for other machines
    return rid, path
