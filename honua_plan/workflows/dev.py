"""The local loop: the embedded database, sample data, ``honua serve``, ``honua test`` and
``honua dev apply`` (validate, apply layers and services, then test them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from honua_plan.errors import UsageError

if TYPE_CHECKING:
    from honua_plan.apply.executor import ApplyResult
    from honua_plan.checks.layertest import LayerReport
    from honua_plan.config.desired import DesiredState
    from honua_plan.providers.embedded.pgserver import ClusterStatus
    from honua_plan.providers.server.base import LocalServer
    from honua_plan.state.model import BackupRecord
    from honua_plan.workspace import Workspace


def db_start(ws: Workspace) -> ClusterStatus:
    cluster = ws.embedded
    cluster.start()
    return cluster.status()


def db_stop(ws: Workspace) -> tuple[int | None, ClusterStatus]:
    """Stop the embedded cluster: (the pid it stopped, or None when none ran; the status after)."""
    cluster = ws.embedded
    stopped = cluster.stop()
    return stopped, cluster.status()


def db_status(ws: Workspace) -> ClusterStatus:
    return ws.embedded.status()


def seed_data(ws: Workspace, environment: str, rows: int = 42, *, replace: bool = False) -> int:
    """Load the sample bike lanes, under the state lock; never into production, and over
    rows seed-data did not make only with ``replace``, after a pg_dump backup."""
    from honua_plan.errors import ApplyError
    from honua_plan.providers.postgis.sqlexec import connect
    from honua_plan.workflows.sample import seed_bike_lanes

    if rows < 0:
        raise UsageError("--rows must be 0 or more")
    desired = ws.desired(environment)
    if desired.policy is not None and desired.policy.spec.production:
        where = desired.locate(f"policy.{environment}", "spec", "production")
        raise UsageError(
            f"{where}: environment '{environment}' is a production environment (production: true); "
            "sample data is for development and is never loaded there"
        )
    table = "public.bike_lanes"
    resolved = ws.database(environment)
    with ws.backend(environment) as backend, \
            backend.lock(f"honua dev seed-data --env {environment}") as writer, \
            connect(resolved.dsn) as conn:
        doc = writer.read()
        ws.check_state(environment, backend, doc)
        if doc.pending is not None:
            raise ApplyError(
                f"an apply of {environment} did not finish; seed-data does not change its tables meanwhile",
                hint=f"finish it first: `honua apply --env {environment} --resume` or `--rollback`",
            )

        def guard(foreign: int) -> None:
            if not replace:
                raise UsageError(
                    f"{table} holds {foreign} row(s) not made by seed-data (no seed-data marker, "
                    "or the rows changed since it loaded them); refusing to replace them",
                    hint=f"`honua dev seed-data --env {environment} --replace` replaces them after "
                         "taking a pg_dump backup",
                )
            rec = seed_backup(ws, environment, resolved.dsn, table, desired)
            writer.write(doc.with_backup(rec).record_event(
                "backup", f"backup {rec.id} before seed-data replaced {foreign} row(s) of {table}",
                actor=ws.actor), expected_serial=doc.serial)

        return seed_bike_lanes(conn, rows, table=table, guard=guard)


def seed_backup(ws: Workspace, environment: str, dsn: str, table: str, desired: DesiredState) -> BackupRecord:
    import time

    from honua_plan.apply.backup import format_size, take_backup
    from honua_plan.errors import ApplyError
    from honua_plan.providers.embedded.pgserver import pg_dump_available
    from honua_plan.providers.postgis.connections import default_datasource

    if not pg_dump_available():
        raise ApplyError("--replace takes a backup first, but pg_dump is not installed; nothing was changed")
    ds = desired.datasources.get(default_datasource(desired.project, desired.datasources) or "")
    ws.console.print(f"Backing up 1 table ({table})…")
    t0 = time.perf_counter()
    rec = take_backup(dsn, [table], directory=ws.state_dir / "backups", environment=environment,
                      migration_id=None, lock_wait_s=ds.spec.lockTimeout if ds else None,
                      timeout_s=desired.policy.spec.backupTimeout if desired.policy else None)
    ws.console.ok(f"Backup created: {rec.id} ({format_size(rec.size_bytes)}) in {ws._rel(ws.state_dir / rec.path)}",
                    time.perf_counter() - t0)
    return rec


def serve(ws: Workspace, environment: str, *, port: int | None = None, foreground: bool = True) -> LocalServer:
    """Run the local OGC API server of an environment: in the foreground until stopped, or
    started in the background (the running server is returned)."""
    from honua_plan.errors import ServerError
    from honua_plan.providers.server.base import LocalServer

    provider = ws.server_provider(environment)
    if not isinstance(provider, LocalServer):
        raise ServerError(f"the {environment} server is not a local pygeoapi: nothing to serve here")
    if port is not None:
        provider.port_override = port
    if provider.read() is None:
        raise ServerError(f"nothing is published for {environment} yet",
                          hint=f"run `honua apply --env {environment}` (or `honua dev apply`) first")
    if foreground:
        provider.serve_foreground()
    elif not provider.is_running():
        provider.start()
    return provider


def stop_server(ws: Workspace, environment: str) -> bool:
    """Stop the local server of an environment; False when none was running (or it is not local)."""
    from honua_plan.providers.server.base import LocalServer

    provider = ws.server_provider(environment)
    return provider.stop() if isinstance(provider, LocalServer) else False


def test_layers(ws: Workspace, environment: str, layer: str | None = None) -> list[LayerReport]:
    """``honua test``; the result is recorded in the state's event log (a ``test`` event):
    promotion and the cooldown policy count healthy time from it."""
    from honua_plan.checks.layertest import run_layer_tests
    from honua_plan.errors import StateLockedError
    from honua_plan.state.model import Event

    desired = ws.desired(environment)  # a ConfigError stops here with every problem listed
    reports = run_layer_tests(desired, lambda: ws.database(environment).dsn, layer)
    failed = sorted({f"{r.layer}: {c.name}" for r in reports for c in r.checks if not c.ok})
    # a failure is a failure; a pass proves the environment healthy only when every layer ran
    ok: bool | None = False if failed else (True if reports and layer is None else None)
    message = ("layer tests failed: " + "; ".join(failed) if failed else
               f"layer tests passed ({', '.join(sorted(r.layer for r in reports)) or 'no layer'})")
    event = Event(kind="test", actor=ws.actor, message=message,
                  details={"ok": ok, "layers": sorted(r.layer for r in reports), "failed": failed})
    try:
        with ws.backend(environment) as backend:
            if backend.exists():  # never applied: nothing to be healthy yet, no state to create
                with backend.lock("honua test", timeout=5) as writer:
                    writer.append_event(event)
    except StateLockedError as exc:
        ws.console.warn(f"test result not recorded in the {environment} state: {exc.message}")
    return reports


def dev_apply(ws: Workspace, environment: str, *, confirm: Callable[[str, bool], None] | None = None,
              yes: bool = True) -> tuple[ApplyResult | None, bool]:
    """The seed's local loop: validate, apply layers/services (+ what they need), then test them."""
    import time

    from honua_plan.checks import ogc as ogctest
    from honua_plan.errors import HonuaError

    con = ws.console
    con.print(f"Applying changes to {environment} environment...")
    t0 = time.perf_counter()
    ws.validate(environment)
    con.ok("Validated metadata syntax", time.perf_counter() - t0)
    desired = ws.desired(environment)
    ds_name = desired.project.spec.defaultDatasource or next(iter(desired.datasources))
    t0 = time.perf_counter()
    facts = ws.read_facts(environment)
    con.ok(f"Connected to datasource: {ds_name}", time.perf_counter() - t0)
    full = ws.plan(environment)
    targets = tuple(a.address for a in full.actions if a.kind in ("layer", "service", "server", "validation",
                                                                   "datasource"))
    plan = ws.plan(environment, target=targets) if targets else None
    skipped = [a.address for a in full.actions if a.kind == "migration"
               and (plan is None or a.address not in {b.address for b in plan.actions})]
    result = None
    if plan is not None and plan.has_changes:
        from honua_plan.workflows.apply import apply

        result = apply(ws, environment, plan=plan, yes=yes, confirm=confirm, show=False, banner=False,
                            command="honua dev apply")
    else:
        con.ok("Layers and services already up to date")
    for address in skipped:
        mid = address.removeprefix("migration.")
        con.print(f"  Pending migration {mid} was not applied: `honua deploy migration {mid} --environment {environment}`")
    from honua_plan.providers.server.base import LocalServer

    provider = ws.server_provider(environment)
    try:
        if isinstance(provider, LocalServer) and provider.read() is not None and not provider.is_running():
            provider.start()
        con.print("")
        con.print("Testing layer...")
        variables = desired.template_vars()
        from honua_plan.checks.validate import run_check
        from honua_plan.plan.migrations import check_record
        from honua_plan.providers.postgis.sqlexec import Session, connect

        ok = True
        with connect(ws.database(environment).dsn) as conn:
            session = Session(conn)
            for layer in desired.layers.values():
                results = [run_check(session, check_record(c, "health", variables))
                           for c in layer.spec.validation.healthChecks]
                failed = [r for r in results if not r.ok]
                if failed:
                    ok = False
                    con.fail(f"Health check failed: {failed[0].name}: {failed[0].message}")
                elif results:
                    con.ok("Health check passed")
        if provider.manages_publication and provider.ogc_url:
            url = provider.ogc_url
            for layer in desired.layers.values():
                cid = layer.collection_id
                con.ok(f"OGC endpoint: {url.rstrip('/')}/collections/{cid}")
                limit = min(layer.spec.ogc.itemLimit or 1000, 10_000)
                try:
                    n = ogctest.sample_query(url, cid, limit)
                    con.ok(f"Sample query returned {n} features")
                except HonuaError as exc:
                    ok = False
                    con.fail(exc.message)
    finally:
        provider.close()
    _ = facts
    return result, ok
