"""Run a plan's pending migrations on a schema-only copy of the database (Atlas's dev
database), so layers are checked against the schema the plan will produce.

How: ``pg_dump --schema-only`` of the target (the ``honua_plan`` bookkeeping schema left
out), restored into a throwaway database on a *scratch server*, the migrations' SQL steps
run there in plan order, the catalog read back, and the database dropped again. The
scratch server is the one named by ``HONUA_SCRATCH_DSN`` (a role that may CREATE DATABASE
and CREATE ROLE: the simulation's own server, never production) or the embedded PostGIS.

The migrations are untrusted (a pull request wrote them), and ``honua plan`` runs them
here: they run as a throwaway role that is not a superuser and owns only the copy (no
``COPY … TO PROGRAM``, no files, no other database), with a statement timeout. Nothing
is written to the target: the dump only reads.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from honua_plan.config.desired import DesiredState
from honua_plan.config.models import Migration
from honua_plan.errors import PlanError
from honua_plan.plan.simulation import Simulation
from honua_plan.providers.embedded.pgserver import EmbeddedCluster
from honua_plan.providers.postgis.connections import client_tool_connection
from honua_plan.secrets import redact, register

__all__ = ["SCRATCH_ENV", "SimStep", "simulate", "simulate_pending", "steps_of"]

STEP_TIMEOUT_S = 60.0
TOOL_TIMEOUT_S = 120.0
_PRIVILEGE = "42501"


@dataclass(frozen=True)
class SimStep:
    """One migration SQL step to run: its migration, index in ``spec.up``, rendered SQL and
    whether it runs in a transaction (as the executor would)."""

    migration: str
    index: int
    name: str
    sql: str
    transactional: bool = True


def _tool(bindir: Path | None, name: str) -> str | None:
    from honua_plan.providers.embedded.pgserver import find_tool

    if bindir is not None and (bindir / name).exists():
        return str(bindir / name)
    return find_tool(name)


def _run(argv: list[str], env: dict[str, str], what: str) -> str | None:
    """None when the tool succeeded, else its error (redacted)."""
    try:
        proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=TOOL_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return redact(f"{what}: {exc}")
    if proc.returncode != 0:
        return redact(f"{what} failed: {(proc.stderr or proc.stdout).strip()[:500]}")
    return None


def _with(dsn: str, **changes: str) -> str:
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    params.update(changes)
    return make_conninfo(**params)


def simulate(target_dsn: str, scratch_admin_dsn: str, steps: Sequence[SimStep], *, where: str,
             bindir: Path | None = None) -> Simulation:
    """Copy the target's schema to a throwaway database on the scratch server, run
    ``steps`` there as a non-superuser, and return the resulting catalog."""
    from honua_plan.providers.postgis import catalog as postgis
    from honua_plan.providers.postgis.sqlexec import Session

    started = time.perf_counter()

    migrations = tuple(dict.fromkeys(s.migration for s in steps))

    def done(status: str, **kw: Any) -> Simulation:
        return Simulation(status=status, where=where, seconds=round(time.perf_counter() - started, 2),
                          migrations=migrations, **kw)

    pg_dump, pg_restore = _tool(bindir, "pg_dump"), _tool(bindir, "pg_restore")
    if pg_dump is None or pg_restore is None:
        return done("unavailable", detail="pg_dump/pg_restore are not installed")
    tag = secrets.token_hex(6)
    dbname, role, password = f"honua_sim_{tag}", f"honua_sim_{tag}", secrets.token_urlsafe(24)
    register(password)
    try:
        admin = psycopg.connect(scratch_admin_dsn, autocommit=True, connect_timeout=10,
                                application_name="honua-plan-simulate")
    except psycopg.Error as exc:
        return done("unavailable", detail=redact(f"cannot connect to the scratch server: {str(exc).strip()}"))
    with tempfile.TemporaryDirectory(prefix="honua-sim-") as tmp, admin:
        dump = str(Path(tmp) / "schema.dump")
        conninfo, env = client_tool_connection(target_dsn, "honua-plan-simulate")
        error = _run([pg_dump, "--schema-only", "--format=custom", "--no-owner", "--no-privileges",
                      "--exclude-schema=honua_plan", f"--file={dump}", f"--dbname={conninfo}"], env, "pg_dump")
        if error:
            return done("unavailable", detail=error)
        created_role = created_db = False
        try:
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)))
            created_role = True
            admin.execute(sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0").format(
                sql.Identifier(dbname), sql.Identifier(role)))
            created_db = True
            copy_dsn = _with(scratch_admin_dsn, dbname=dbname)
            conninfo, env = client_tool_connection(copy_dsn, "honua-plan-simulate")
            error = _run([pg_restore, "--no-owner", "--no-privileges", "--exit-on-error",
                          f"--dbname={conninfo}", dump], env, "pg_restore")
            if error:
                return done("unavailable", detail=error)
            with psycopg.connect(copy_dsn, autocommit=True) as conn:
                _hand_over(conn, role)
            sim_dsn = _with(scratch_admin_dsn, dbname=dbname, user=role, password=password)
            with psycopg.connect(sim_dsn, autocommit=True, application_name="honua-plan-simulate") as conn:
                conn.execute(sql.SQL("SET statement_timeout = {}").format(
                    sql.Literal(f"{int(STEP_TIMEOUT_S * 1000)}ms")))
                run = 0
                for step in steps:
                    try:
                        if step.transactional:
                            with conn.transaction():
                                conn.execute(step.sql.encode())
                        else:
                            conn.execute(step.sql.encode())
                    except psycopg.Error as exc:
                        message = redact((exc.diag.message_primary or str(exc)).strip())
                        failure = (step.migration, step.index, message)
                        status = "partial" if exc.sqlstate == _PRIVILEGE else "failed"
                        facts = postgis.refresh(Session(conn)) if status == "partial" else None
                        return done(status, steps_run=run, failure=failure, facts=facts)
                    run += 1
                facts = postgis.refresh(Session(conn))
            return done("simulated", steps_run=run, facts=facts)
        except psycopg.Error as exc:
            return done("unavailable", detail=redact(f"the scratch database could not be prepared: {str(exc).strip()}"))
        finally:
            _cleanup(admin, dbname if created_db else None, role if created_role else None)


def _hand_over(conn: psycopg.Connection[tuple[object, ...]], role: str) -> None:
    """Make the throwaway role the owner of the copy's own schemas and relations (not of
    what extensions installed), so migrations can alter them without being a superuser."""
    conn.execute(sql.SQL("""
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT n.nspname FROM pg_namespace n
           WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
             AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass
                             AND d.objid = n.oid AND d.deptype = 'e')
  LOOP EXECUTE format('ALTER SCHEMA %I OWNER TO %I', r.nspname, {role}); END LOOP;
  FOR r IN SELECT c.oid::regclass AS rel, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
             AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
             AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                             AND d.objid = c.oid AND d.deptype = 'e')
             AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                             AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
  LOOP EXECUTE format('ALTER %s %s OWNER TO %I',
         CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                        WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, r.rel, {role});
  END LOOP;
END $$""").format(role=sql.Literal(role)))


def _cleanup(admin: psycopg.Connection[tuple[object, ...]], dbname: str | None, role: str | None) -> None:
    try:
        if dbname is not None:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        if role is not None:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    except psycopg.Error:
        pass  # a leftover honua_sim_* database or role is harmless, and named for what it is


SCRATCH_ENV = "HONUA_SCRATCH_DSN"
NO_SCRATCH = (f"no scratch database: set {SCRATCH_ENV} (a server where a role may CREATE DATABASE and "
              "CREATE ROLE) or start the embedded PostGIS (honua dev db start); plan --simulate starts it")


def steps_of(desired: DesiredState, migrations: Sequence[Migration]) -> list[SimStep]:
    """The SQL steps of ``migrations`` as apply would run them (metadata steps do not touch
    the database); a step holding a statement that cannot run in a transaction runs alone."""
    from honua_plan.config import templating
    from honua_plan.sql.analysis import analyze

    variables = desired.template_vars()
    out: list[SimStep] = []
    for m in migrations:
        for i, step in enumerate(m.spec.up):
            if step.type != "sql" or not step.content:
                continue
            text = templating.render_template(step.content, variables)
            transactional = step.transaction if step.transaction is not None else all(
                s.transactional for s in analyze(text))
            out.append(SimStep(m.metadata.id, i, step.name, text, transactional))
    return out


def simulate_pending(target_dsn: str, desired: DesiredState, migrations: Sequence[Migration],
                     embedded: EmbeddedCluster, *, force: bool) -> Simulation:
    """Simulate ``migrations`` on the scratch server: ``HONUA_SCRATCH_DSN``, else the
    embedded PostGIS when it runs (or, with ``force``, after starting it)."""
    steps = steps_of(desired, migrations)
    ids = tuple(m.metadata.id for m in migrations)
    if not steps:
        return Simulation(status="skipped", detail="the pending migrations have no SQL steps", migrations=ids)
    admin = os.environ.get(SCRATCH_ENV, "").strip()
    bindir: Path | None = None
    if admin:
        params = conninfo_to_dict(admin)
        where = f"{SCRATCH_ENV} {params.get('host') or 'local socket'}:{params.get('port') or '5432'}"
    else:
        if not embedded.running and not force:  # (forced: started below, or its error says why not)
            return Simulation(status="skipped", detail=NO_SCRATCH, migrations=ids)
        if not embedded.running:
            embedded.start()
        admin, where, bindir = embedded.dsn_for("postgres"), "embedded PostGIS", embedded.bindir
    sim = simulate(target_dsn, admin, steps, where=where, bindir=bindir)
    if force and sim.status == "unavailable":
        raise PlanError(f"plan --simulate: {sim.describe()}")
    return sim
