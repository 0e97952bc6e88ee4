"""``honua-ai disaster-recovery``: what is broken, what can be restored, then ``Context.recover``.

:func:`analyze` only reads: database health (connect + refresh, layer tables present,
invalid geometries), service availability (the server provider's health of the
environment's collections, short timeout), the git repository (``git status``), the
backups in the state, and the last successful deployment from the state's events
(its commit comes from the saved plan, else the state's config commit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from honua_plan.config.expected import format_duration
from honua_plan.errors import HonuaError

if TYPE_CHECKING:
    from honua_plan.context import Context
    from honua_plan.state.model import StateDocument


@dataclass(frozen=True)
class Check:
    ok: bool | None  # None: not checked
    label: str
    status: str
    detail: str = ""

    def line(self) -> str:
        mark = {True: "✓", False: "✗", None: "-"}[self.ok]
        return f"{mark} {self.label}: {self.status}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class Deployment:
    at: datetime
    commit: str | None
    kind: str
    plan_id: str | None


@dataclass
class RecoveryAnalysis:
    environment: str
    checks: list[Check] = field(default_factory=list)
    last_deployment: Deployment | None = None
    latest_backup: Any = None
    backups: int = 0
    git: bool = False


def _ago(now: datetime, then: datetime) -> str:
    return f"{format_duration(max(0.0, (now - then).total_seconds()))} ago"


def database_check(context: Context, environment: str) -> Check:
    from honua_plan.providers import postgis
    from honua_plan.providers.sqlexec import Session, connect

    try:
        resolved = context.resolve_dsn(environment, start_embedded=False)
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
                        invalid.append(f"{bad} invalid geometries in {st.qualified_table}")
    except HonuaError as exc:
        return Check(False, "Database health", "CRITICAL", exc.message)
    except Exception as exc:  # a broken catalog is a finding here, not a crash
        return Check(False, "Database health", "CRITICAL", f"{type(exc).__name__}: {exc}")
    if missing:
        return Check(False, "Database health", "CRITICAL", f"tables missing: {', '.join(sorted(set(missing)))}")
    if invalid:
        return Check(False, "Database health", "DEGRADED", "; ".join(invalid))
    return Check(True, "Database health", "HEALTHY", f"{len(facts.tables)} tables")


def service_check(context: Context, environment: str, timeout_s: float = 5.0) -> Check:
    desired = context.desired(environment)
    ids = [lyr.collection_id for lyr in desired.layers.values()]
    try:
        provider = context.server_provider(environment)
    except HonuaError as exc:
        return Check(False, "Service availability", "DEGRADED", exc.message)
    try:
        if not getattr(provider, "manages_publication", True):
            return Check(None, "Service availability", "not checked", "server type none: nothing is published")
        if not ids:
            return Check(None, "Service availability", "not checked", "no layers")
        try:
            result = provider.health(ids, timeout_s=timeout_s)
        except HonuaError as exc:
            return Check(False, "Service availability", "DEGRADED", exc.message)
        statuses = getattr(result, "statuses", {}) or {}
        up = [c for c, code in statuses.items() if code == 200]
        if result.ok:
            return Check(True, "Service availability", "HEALTHY", f"{len(ids)} collection(s) answer")
        return Check(False, "Service availability", "DEGRADED", f"{len(up)} of {len(ids)} collections answer")
    finally:
        provider.close()


def git_check(context: Context) -> Check:
    from honua_plan.ai import gitops

    lines = gitops.status_porcelain(context.root)
    if lines is None:
        return Check(False, "Git repository", "NOT A GIT REPOSITORY", "no commit to restore from")
    head = gitops.head_commit(context.root)
    if lines:
        return Check(False, "Git repository", "MODIFIED", f"{len(lines)} uncommitted change(s) to tracked files")
    return Check(True, "Git repository", "INTACT", f"HEAD {head[:9]}" if head else "no commits yet")


def last_deployment(context: Context, doc: StateDocument) -> Deployment | None:
    """The newest apply that finished without failures (a recovery never counts as one)."""
    from honua_plan.recovery import last_deployment as newest

    d = newest(context, doc)
    return Deployment(d.at, d.commit, d.kind, d.plan_id) if d is not None else None


def analyze(context: Context, environment: str, *, now: datetime | None = None) -> RecoveryAnalysis:
    from honua_plan.state.model import utcnow

    now = now or utcnow()
    out = RecoveryAnalysis(environment)
    out.checks.append(database_check(context, environment))
    out.checks.append(service_check(context, environment))
    git = git_check(context)
    out.git = git.status != "NOT A GIT REPOSITORY"
    out.checks.append(git)
    doc = context.recorded(environment)
    backups = sorted(doc.backups, key=lambda b: b.created_at)
    out.backups = len(backups)
    out.latest_backup = backups[-1] if backups else None
    if backups:
        span = f"newest {_ago(now, backups[-1].created_at)}"
        if len(backups) > 1:
            span += f", oldest {_ago(now, backups[0].created_at)}"
        out.checks.append(Check(True, "Backups available", str(len(backups)), span))
    else:
        out.checks.append(Check(False, "Backups available", "none", "no backup was taken in this environment"))
    out.last_deployment = last_deployment(context, doc)
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
