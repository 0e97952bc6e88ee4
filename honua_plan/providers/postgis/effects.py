"""What each SQL step of an apply actually changed, and the database's own record of it.

Why: a journal in the state file is written *after* a step's COMMIT, so a crash in
between leaves the journal saying "not done" about a step that is done; and a step
such as ``CREATE TABLE IF NOT EXISTS`` may change nothing at all, so undoing it with
its down step (``DROP TABLE``) would destroy data the apply never made. Hence:

* ``honua_plan.step_log`` (apply id, step id, completed_at, effects) gets a row
  *inside* the step's own transaction, before COMMIT: resume asks the database,
  not the journal, whether a transactional step ran;
* the effects are a catalog snapshot of the relations the step touches, taken before
  and after it in the same transaction (objects created, dropped, altered) plus the
  rows it inserted, updated or deleted (``pg_stat_xact_user_tables``);
* rollback runs a down step only for what the apply changed, and stops before a
  down step that would destroy data unless ``--allow-destroy`` (after a backup).

``HONUA_TEST_KILL_AT=<step>:<point>`` is a **test hook** (the kill matrix): the
executor SIGKILLs its own process at that point; ``<step>`` is ``migration.<id>#<n>``
(n-th up step, 1-based; points ``before``, ``after-commit``, ``after-journal``) or an
action's address (point ``after-journal``: its journal says done).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from psycopg import sql

from honua_plan.plan.model import Operation
from honua_plan.providers.postgis.sqlexec import Session
from honua_plan.sql.analysis import analyze
from honua_plan.sql.statement import Op

KILL_ENV = "HONUA_TEST_KILL_AT"

_DDL = (
    "CREATE SCHEMA IF NOT EXISTS honua_plan;"
    "CREATE TABLE IF NOT EXISTS honua_plan.step_log ("
    " apply_id text NOT NULL, step_id text NOT NULL,"
    " completed_at timestamptz NOT NULL DEFAULT now(),"
    " effects jsonb NOT NULL DEFAULT '{}'::jsonb,"
    " PRIMARY KEY (apply_id, step_id))"
)

# one row per relation that exists among the names: its qualified name and shape
_SNAPSHOT = sql.SQL(
    "SELECT n.nspname || '.' || c.relname, c.relkind::text,"
    " coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a"
    "   WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '{}'),"
    " coalesce((SELECT array_agg(n.nspname || '.' || ic.relname || ':' || i.indisvalid ORDER BY ic.relname)"
    "   FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = c.oid), '{}'),"
    " coalesce((SELECT array_agg(co.conname::text ORDER BY co.conname) FROM pg_constraint co"
    "   WHERE co.conrelid = c.oid), '{}')"
    " FROM unnest(%s::text[]) AS w(name)"
    " JOIN pg_class c ON c.oid = to_regclass(w.name)"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
)
_XACT_ROWS = sql.SQL(
    "SELECT schemaname || '.' || relname, n_tup_ins + n_tup_upd + n_tup_del"
    " FROM pg_stat_xact_user_tables WHERE n_tup_ins + n_tup_upd + n_tup_del > 0"
    "   AND schemaname <> 'honua_plan'"
)


def kill_point(step: str, point: str) -> None:
    """The test hook: SIGKILL this process when ``HONUA_TEST_KILL_AT`` names this point."""
    if os.environ.get(KILL_ENV) == f"{step}:{point}":
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def ensure_step_log(session: Session) -> None:
    """Create ``honua_plan.step_log`` if missing (idempotent, in its own transaction)."""
    conn = session.conn
    if conn is None or session.dry_run:
        return
    with conn.transaction():
        session.execute(_DDL, fetch=False)


def completed(session: Session, apply_id: str) -> dict[str, dict[str, Any]]:
    """Step id → effects of every step this apply committed (per the database)."""
    if session.conn is None or session.dry_run:
        return {}
    rows = session.execute(sql.SQL("SELECT step_id, effects FROM honua_plan.step_log WHERE apply_id = %s"),
                           [apply_id], read=True)
    return {str(r[0]): dict(r[1] or {}) for r in rows}


def record_done(session: Session, apply_id: str, step_id: str, effects: Mapping[str, Any]) -> None:
    """The completion row; inside the step's transaction when there is one."""
    session.execute(
        sql.SQL("INSERT INTO honua_plan.step_log (apply_id, step_id, effects) VALUES (%s, %s, %s::jsonb)"
                " ON CONFLICT (apply_id, step_id) DO NOTHING"),
        [apply_id, step_id, json.dumps(dict(effects))], fetch=False)


def op_tables(op: Operation) -> list[str]:
    """The relations a SQL step touches (from the plan, else from its SQL)."""
    names = list(op.tables)
    if op.sql:
        for st in analyze(op.sql):
            names += [t for t in (*st.tables, st.table) if t]
    return sorted(set(names))


def snapshot(session: Session, tables: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Qualified name → {kind, columns, indexes (name → valid), constraints} of the relations that exist."""
    if not tables or session.conn is None or session.dry_run:
        return {}
    rows = session.execute(_SNAPSHOT, [list(tables)], read=True)
    out: dict[str, dict[str, Any]] = {}
    for name, kind, cols, idx, cons in rows:
        indexes = {}
        for item in idx:
            iname, _, valid = str(item).rpartition(":")
            indexes[iname] = valid == "true"
        out[str(name)] = {"kind": kind, "columns": list(cols), "indexes": indexes, "constraints": list(cons)}
    return out


def xact_rows(session: Session) -> dict[str, int]:
    """Rows this transaction inserted, updated or deleted, per table."""
    if session.conn is None or session.dry_run:
        return {}
    return {str(n): int(c) for n, c in session.execute(_XACT_ROWS, read=True)}


def effects(before: Mapping[str, Any], after: Mapping[str, Any], rows: Mapping[str, int] | None = None) -> dict[str, Any]:
    """What changed between two snapshots: objects as ``table:s.t``, ``column:s.t.c``, ``index:s.i``."""
    created: list[str] = []
    dropped: list[str] = []
    altered: list[str] = []
    for name in sorted(set(before) | set(after)):
        b, a = before.get(name), after.get(name)
        if b is None and a is not None:
            created.append(f"table:{name}")
            created += [f"index:{i}" for i in a["indexes"]]
            continue
        if a is None:
            dropped.append(f"table:{name}")
            continue
        assert b is not None
        changed = False
        for kind, old, new in (("column", set(b["columns"]), set(a["columns"])),
                               ("constraint", set(b["constraints"]), set(a["constraints"]))):
            created += [f"{kind}:{name}.{x}" for x in sorted(new - old)]
            dropped += [f"{kind}:{name}.{x}" for x in sorted(old - new)]
            changed = changed or old != new
        bi, ai = b["indexes"], a["indexes"]
        created += [f"index:{i}" for i in sorted(set(ai) - set(bi))]
        dropped += [f"index:{i}" for i in sorted(set(bi) - set(ai))]
        changed = changed or set(ai) != set(bi)
        if changed:
            altered.append(f"table:{name}")
    return {"created": created, "dropped": dropped, "altered": altered, "rows": dict(rows or {})}


def changed_anything(eff: Mapping[str, Any]) -> bool:
    return bool(eff.get("created") or eff.get("dropped") or eff.get("altered") or eff.get("rows"))


def _matches(name: str | None, qualified: str) -> bool:
    """``bike_lanes`` (search_path) or ``public.bike_lanes`` against ``public.bike_lanes``."""
    if not name:
        return False
    name = name.lower()
    return qualified == name if "." in name else qualified.rsplit(".", 1)[-1] == name


def touched_tables(all_effects: Iterable[Mapping[str, Any]]) -> set[str]:
    """Qualified tables an apply created, dropped, altered or wrote rows to (its objects' tables too)."""
    out: set[str] = set()
    for eff in all_effects:
        for item in [*eff.get("created", []), *eff.get("dropped", []), *eff.get("altered", [])]:
            kind, _, obj = item.partition(":")
            if kind == "table":
                out.add(obj)
            elif kind in ("column", "constraint"):
                out.add(obj.rsplit(".", 1)[0])
        out |= set(eff.get("rows", {}))
    return out


def undo_needed(op: Operation, all_effects: Sequence[Mapping[str, Any]]) -> bool:
    """Whether down step ``op`` undoes something the apply's up steps changed.

    A drop of a table, column, index or constraint runs only when the apply created
    that object; any other statement runs when the apply changed its table; a
    statement whose table is unknown runs when the apply changed anything at all.
    """
    if not any(changed_anything(e) for e in all_effects):
        return False
    created = {c for e in all_effects for c in e.get("created", [])}
    tables = touched_tables(all_effects)
    for st in analyze(op.sql or ""):
        targets = [t for t in (*st.tables, st.table) if t]
        if st.op is Op.drop_table:
            if any(_matches(t, c.partition(":")[2]) for t in targets for c in created if c.startswith("table:")):
                return True
        elif st.op is Op.drop_index and st.index:
            if any(_matches(st.index, c.partition(":")[2]) for c in created if c.startswith("index:")):
                return True
        elif st.op in (Op.drop_column, Op.drop_constraint) and targets:
            member = st.column if st.op is Op.drop_column else st.object_name
            kind = "column" if st.op is Op.drop_column else "constraint"
            for c in created:
                k, _, obj = c.partition(":")
                table, _, m = obj.rpartition(".")
                if k == kind and (member or "").lower() == m and any(_matches(t, table) for t in targets):
                    return True
        elif targets:
            if any(_matches(t, q) for t in targets for q in tables):
                return True
        elif st.op not in (Op.analyze, Op.select, Op.set_config):
            return True  # nothing to tell it by: the apply changed something, so undo
    return False


def destroys(session: Session, op: Operation) -> list[str]:
    """What down step ``op`` would destroy now: ``s.t`` holding rows, ``s.t.c`` holding values (DS101/DS102)."""
    if session.conn is None or session.dry_run or not op.sql:
        return []
    out: list[str] = []
    for st in analyze(op.sql):
        if st.op in (Op.drop_table, Op.truncate):
            for t in (list(st.tables) or ([st.table] if st.table else [])):
                q = _qualified(session, t)
                if q and _has_rows(session, q, None):
                    out.append(q)
        elif st.op is Op.drop_column and st.table and st.column:
            q = _qualified(session, st.table)
            if q and _has_column(session, q, st.column) and _has_rows(session, q, st.column):
                out.append(f"{q}.{st.column}")
    return sorted(set(out))


def _qualified(session: Session, name: str | None) -> str | None:
    if not name:
        return None
    rows = session.execute(
        sql.SQL("SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.oid = to_regclass(%s) AND c.relkind IN ('r', 'p', 'm')"), [name], read=True)
    return str(rows[0][0]) if rows else None


def _has_column(session: Session, table: str, column: str) -> bool:
    schema, name = table.split(".", 1)
    return bool(session.execute(sql.SQL("SELECT 1 FROM information_schema.columns WHERE table_schema = %s"
                                        " AND table_name = %s AND column_name = %s"),
                                [schema, name, column], read=True))


def _has_rows(session: Session, table: str, column: str | None) -> bool:
    schema, name = table.split(".", 1)
    where = sql.SQL("") if column is None else sql.SQL(" WHERE {} IS NOT NULL").format(sql.Identifier(column))
    q = sql.SQL("SELECT EXISTS (SELECT 1 FROM {}{})").format(sql.Identifier(schema, name), where)
    return bool(session.execute(q, read=True)[0][0])


def index_valid(session: Session, op: Operation) -> tuple[bool | None, str]:
    """For a CONCURRENTLY step: (True, name) when every index it builds exists and is valid,
    (False, name) when one is missing or INVALID, (None, "") when the step builds no named index."""
    names: list[tuple[str | None, str]] = []
    for st in analyze(op.sql or ""):
        if st.op is Op.create_index and st.index:
            schema = st.table.rsplit(".", 1)[0] if st.table and "." in st.table else None
            names.append((schema, st.index))
        elif st.op not in (Op.set_config,):
            return None, ""
    if not names:
        return None, ""
    shown = []
    for schema, name in names:
        rows = session.execute(
            sql.SQL("SELECT n.nspname || '.' || c.relname, i.indisvalid FROM pg_index i"
                    " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE c.oid = to_regclass(%s)"),
            [f"{schema}.{name}" if schema else name], read=True)
        if not rows or not rows[0][1]:
            return False, name
        shown.append(str(rows[0][0]))
    return True, ", ".join(shown)
