"""One test suite, run against both state backends (local files and postgres).

The postgres variant uses ``pg_dsn`` from ``tests/conftest.py`` (a fresh database of
the throwaway cluster per test).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

import honua_plan
from honua_plan.errors import StateError, StateLockedError
from honua_plan.state import (
    BackupRecord,
    Event,
    JournalRecord,
    JournalStep,
    MigrationRecord,
    ResourceRecord,
    StateBackend,
    StateDocument,
    open_backend,
)
from honua_plan.state import base as state_base

pytestmark = pytest.mark.integration

ENV = "dev"
SECRET = "Sup3rS3cret-pw"
REPO_ROOT = Path(honua_plan.__file__).resolve().parent.parent

Factory = Callable[..., StateBackend]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(params=["local", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    """Where the state lives: the same store for every backend a test opens."""
    dsn = request.getfixturevalue("pg_dsn") if kind == "postgres" else None
    return {"kind": kind, "root": tmp_path, "dsn": dsn}


@pytest.fixture
def make_backend(store: dict[str, Any]) -> Iterator[Factory]:
    """Open another backend instance on the same store (a second process, in effect)."""
    opened: list[StateBackend] = []

    def make(
        environment: str = ENV, *, dsn: str | None = None, lock_timeout: float = 0
    ) -> StateBackend:
        b = open_backend(
            store["kind"],
            environment=environment,
            root=store["root"],
            dsn=dsn or store["dsn"],
            lock_timeout=lock_timeout,
        )
        opened.append(b)
        return b

    yield make
    for b in opened:
        b.close()


@pytest.fixture
def backend(make_backend: Factory) -> StateBackend:
    return make_backend()


# --------------------------------------------------------------------------- helpers


def _admin(store: dict[str, Any]) -> psycopg.Connection[Any]:
    return psycopg.connect(store["dsn"], autocommit=True)


def _sample(doc: StateDocument) -> StateDocument:
    at = datetime(2025, 10, 4, 14, 5, 30, 123456, tzinfo=UTC)
    rec = ResourceRecord.create(
        "layer.transportation::bike-lanes",
        "Layer",
        {"table": "public.bike_lanes", "srid": 4326, "fields": ["id", "name"], "crs": None},
        serial=doc.next_serial,
        source_path="environments/dev/layers/bike-lanes.yaml",
        applied_by="alice",
        applied_at=at,
    )
    journal = JournalRecord(
        plan_id="plan-1",
        started_at=at,
        steps=[JournalStep(id="1", address=rec.address, action="create")],
    ).with_step("1", "running", at=at)
    return (
        doc.with_resource(rec)
        .with_migration(
            MigrationRecord(
                id="001_create_bike_lanes",
                description="create bike lanes",
                checksum="sha256:" + "0" * 64,
                status="applied",
                started_at=at,
                finished_at=at,
                duration_s=1.5,
                applied_by="alice",
                backup_id="dev-backup-20251004-140530",
            )
        )
        .with_backup(
            BackupRecord(
                id="dev-backup-20251004-140530",
                created_at=at,
                path="backups/dev-backup-20251004-140530.dump",
                size_bytes=1234,
                sha256="ab" * 32,
                tables=["public.bike_lanes"],
                migration_id="001_create_bike_lanes",
            )
        )
        .record_event("apply", "applied 1 change", actor="alice", details={"plan": "plan-1"}, at=at)
        .with_pending(journal)
        .with_config_commit("abc123")
    )


def _write(
    backend: StateBackend, change: Callable[[StateDocument], StateDocument] = lambda d: d
) -> StateDocument:
    with backend.lock("test write") as w:
        cur = w.read()
        return w.write(change(cur), expected_serial=cur.serial)


def _storage_present(store: dict[str, Any]) -> bool:
    if store["kind"] == "local":
        return (store["root"] / "state").exists()
    with _admin(store) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'honua_plan'"
        ).fetchone()
        schema = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'honua_plan'"
        ).fetchone()
    return bool((row and row[0]) or (schema and schema[0]))


def _raw_stored(store: dict[str, Any]) -> str:
    """Everything the backend stored, as text (files, or table rows)."""
    if store["kind"] == "local":
        parts = [p.read_text() for p in sorted((store["root"] / "state").iterdir()) if p.is_file()]
        return "\n".join(parts)
    with _admin(store) as conn:
        rows = conn.execute(
            "SELECT document::text FROM honua_plan.state UNION ALL "
            "SELECT document::text FROM honua_plan.state_history UNION ALL "
            "SELECT row_to_json(h)::text FROM honua_plan.lock_holder h"
        ).fetchall()
    return "\n".join(r[0] for r in rows)


def _stored_serials(store: dict[str, Any]) -> list[int]:
    """Serials of every stored version the backend keeps (history table / current + .bak)."""
    if store["kind"] == "local":
        out = []
        for name in (f"{ENV}.json.bak", f"{ENV}.json"):
            p = store["root"] / "state" / name
            if p.exists():
                out.append(json.loads(p.read_text())["serial"])
        return out
    with _admin(store) as conn:
        rows = conn.execute(
            "SELECT serial FROM honua_plan.state_history WHERE environment = %s ORDER BY serial",
            (ENV,),
        ).fetchall()
    return [r[0] for r in rows]


_HOLDER_SCRIPT = """
import os, sys
from pathlib import Path
from honua_plan.state import open_backend
b = open_backend(os.environ["HP_KIND"], environment=os.environ["HP_ENV"],
                 root=Path(os.environ["HP_ROOT"]), dsn=os.environ.get("HP_DSN") or None,
                 lock_timeout=0)
with b.lock("honua apply --env dev") as w:
    print("LOCKED", flush=True)
    sys.stdin.readline()
print("RELEASED", flush=True)
"""


def _spawn_holder(store: dict[str, Any]) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.update(
        HP_KIND=store["kind"],
        HP_ENV=ENV,
        HP_ROOT=str(store["root"]),
        HP_DSN=store["dsn"] or "",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER_SCRIPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "LOCKED":
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"holder subprocess did not lock: {line!r} {err}")
    return proc


def _assert_no_secret(text: str) -> None:
    assert SECRET not in text


# --------------------------------------------------------------------------- reading


def test_new_state_is_read_without_writing(backend: StateBackend, store: dict[str, Any]) -> None:
    reader = backend.reader()
    assert not reader.exists()
    doc = reader.read()
    assert doc.serial == 0
    assert doc.environment == ENV
    assert len(doc.lineage) == 32 and int(doc.lineage, 16) >= 0
    assert doc.resources == {} and doc.events == [] and doc.pending is None
    assert reader.history() == []
    assert backend.holder() is None
    assert not reader.exists()
    assert not _storage_present(store)


def test_describe_names_the_store(backend: StateBackend, kind: str) -> None:
    text = backend.describe()
    assert text == backend.reader().describe()
    if kind == "local":
        assert text.startswith("local ") and text.endswith("state/dev.json")
    else:
        assert text.startswith("postgres honua_plan.state at ")


def test_write_then_read_round_trips(backend: StateBackend, make_backend: Factory) -> None:
    with backend.lock("honua apply") as w:
        doc = w.read()
        assert doc.serial == 0
        wanted = _sample(doc)
        stored = w.write(wanted, expected_serial=0)
        assert w.read() == stored
    assert stored.serial == 1
    assert stored.lineage == doc.lineage
    assert stored.updated_at >= doc.updated_at
    # everything but serial and updated_at is kept as given
    assert stored.model_dump(exclude={"serial", "updated_at"}) == wanted.model_dump(
        exclude={"serial", "updated_at"}
    )
    other = make_backend().reader()
    assert other.exists()
    again = other.read()
    assert again == stored
    assert again.pending is not None and again.pending.step("1").status == "running"
    assert again.resources["layer.transportation::bike-lanes"].fingerprint.startswith("sha256:")


def test_serial_increments_by_exactly_one(
    backend: StateBackend, make_backend: Factory, store: dict[str, Any]
) -> None:
    seen = []
    with backend.lock("honua apply") as w:
        for i in range(5):
            cur = w.read()
            # whatever serial the caller's copy claims, the stored serial is expected + 1
            doc = cur.record_event("apply", f"write {i}").model_copy(update={"serial": 99})
            new = w.write(doc, expected_serial=cur.serial)
            seen.append(new.serial)
            assert [e.serial for e in new.events] == list(range(1, new.serial + 1))
            assert w.read().serial == new.serial
    assert seen == [1, 2, 3, 4, 5]
    assert make_backend().reader().read().serial == 5
    serials = _stored_serials(store)
    assert serials == sorted(serials) and serials[-1] == 5
    if store["kind"] == "postgres":
        assert serials == [1, 2, 3, 4, 5]


def test_stale_expected_serial_is_refused(backend: StateBackend, make_backend: Factory) -> None:
    doc = backend.reader().read()  # read outside the lock, as a plan does
    first = _write(backend, _sample)
    assert first.serial == 1
    with backend.lock("honua apply") as w:
        with pytest.raises(
            StateError, match=r"state changed since it was read \(serial 0, now 1\)"
        ):
            w.write(doc.model_copy(update={"lineage": first.lineage}), expected_serial=0)
        with pytest.raises(StateError, match=r"serial 7, now 1"):
            w.write(first, expected_serial=7)
        assert w.read() == first
    assert make_backend().reader().read() == first


def test_first_write_needs_expected_serial_zero(backend: StateBackend) -> None:
    with backend.lock("honua apply") as w, pytest.raises(StateError, match=r"serial 3, now 0"):
        w.write(w.read(), expected_serial=3)
    assert not backend.exists()


def test_lineage_mismatch_is_refused(backend: StateBackend) -> None:
    first = _write(backend, _sample)
    foreign = StateDocument.new(ENV)
    with backend.lock("honua apply") as w:
        with pytest.raises(StateError, match="lineage"):
            w.write(foreign, expected_serial=first.serial)
        assert w.read() == first


def test_other_environment_document_is_refused(backend: StateBackend) -> None:
    with backend.lock("honua apply") as w, pytest.raises(StateError, match="'prod'"):
        w.write(StateDocument.new("prod"), expected_serial=0)


def test_environments_are_independent(make_backend: Factory) -> None:
    dev, prod = make_backend("dev"), make_backend("prod")
    with dev.lock("honua apply --env dev") as w:
        w.write(_sample(w.read()), expected_serial=0)
        with prod.lock("honua apply --env prod") as pw:  # not blocked by dev's lock
            assert pw.read().serial == 0
            pw.write(pw.read(), expected_serial=0)
    assert dev.read().resources and not prod.read().resources
    assert dev.read().lineage != prod.read().lineage


def test_invalid_environment_name_is_refused(store: dict[str, Any]) -> None:
    with pytest.raises(StateError, match="invalid environment name"):
        open_backend(
            store["kind"],
            environment="../etc",
            root=store["root"],
            dsn=store["dsn"],
            lock_timeout=0,
        )


# --------------------------------------------------------------------------- locking


def test_second_lock_fails_fast_naming_the_holder(
    backend: StateBackend, make_backend: Factory
) -> None:
    other = make_backend()
    with backend.lock("honua apply --env dev") as w:
        holder = other.holder()
        assert holder is not None
        assert holder.pid == os.getpid()
        assert holder.host == socket.gethostname()
        assert holder.command == "honua apply --env dev"
        start = time.monotonic()
        with pytest.raises(StateLockedError) as info, other.lock("honua plan"):
            pass
        assert time.monotonic() - start < 1.0
        msg = str(info.value)
        assert msg.startswith("state for 'dev' is locked by ")
        assert f"pid {os.getpid()}" in msg
        assert f"on host {socket.gethostname()}" in msg
        assert "(honua apply --env dev)" in msg
        # the same backend object cannot take its own lock twice either
        with pytest.raises(StateLockedError), backend.lock("nested"):
            pass
        w.write(w.read(), expected_serial=0)  # the holder is unaffected


def test_lock_held_by_another_process(store: dict[str, Any], make_backend: Factory) -> None:
    proc = _spawn_holder(store)
    try:
        b = make_backend()
        with pytest.raises(StateLockedError) as info, b.lock("honua plan"):
            pass
        msg = str(info.value)
        assert f"pid {proc.pid} " in msg and "(honua apply --env dev)" in msg
        holder = b.holder()
        assert holder is not None and holder.pid == proc.pid
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=20)
        assert "RELEASED" in out, err
        assert b.holder() is None
        with b.lock("honua apply") as w:
            assert w.read().serial == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_lock_released_when_holder_process_is_killed(
    store: dict[str, Any], make_backend: Factory
) -> None:
    proc = _spawn_holder(store)
    b = make_backend()
    try:
        assert b.holder() is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # the kernel drops the flock at once; postgres ends the session when the socket closes
    with b.lock("honua apply", timeout=15) as w:
        w.write(w.read(), expected_serial=0)
    assert b.holder() is None


def test_lock_is_released_when_the_context_exits(
    backend: StateBackend, make_backend: Factory
) -> None:
    with backend.lock("honua apply") as w:
        w.write(w.read(), expected_serial=0)
    assert backend.holder() is None
    with pytest.raises(StateError, match="released"):
        w.write(w.read(), expected_serial=1)
    with make_backend().lock("honua apply") as w2:
        assert w2.read().serial == 1
    # also when the body raises
    with pytest.raises(RuntimeError), backend.lock("honua apply"):
        raise RuntimeError("boom")
    assert backend.holder() is None
    with backend.lock("again"):
        pass


def test_lock_timeout_waits_then_fails(backend: StateBackend, make_backend: Factory) -> None:
    other = make_backend(lock_timeout=0.6)
    with backend.lock("honua apply"):
        start = time.monotonic()
        with pytest.raises(StateLockedError, match=r"waited"), other.lock("honua plan"):
            pass
        assert time.monotonic() - start >= 0.5


def test_lock_waits_for_a_release(backend: StateBackend, make_backend: Factory) -> None:
    other = make_backend()
    acquired = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with backend.lock("honua apply"):
            acquired.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert acquired.wait(10)
        threading.Timer(0.3, release.set).start()
        start = time.monotonic()
        with other.lock("honua plan", timeout=10) as w:
            assert time.monotonic() - start >= 0.2
            assert w.read().serial == 0
    finally:
        release.set()
        t.join(10)


def test_stale_lock_record_is_not_an_error(store: dict[str, Any], backend: StateBackend) -> None:
    if store["kind"] == "local":
        lock_file = store["root"] / "state" / f"{ENV}.lock"
        lock_file.parent.mkdir(parents=True)
        lock_file.write_text(
            json.dumps(
                {
                    "pid": 999999,
                    "host": "gone",
                    "since": "2025-01-01T00:00:00+00:00",
                    "command": "old",
                }
            )
        )
    else:
        with backend.lock("create tables"):
            pass
        with _admin(store) as conn:
            conn.execute(
                "INSERT INTO honua_plan.lock_holder (project, environment, pid, host, since, command, server_pid)"
                " VALUES ('default', %s, 999999, 'gone', now(), 'old', 999999)",
                (ENV,),
            )
    assert backend.holder() is None
    with backend.lock("honua apply") as w:
        assert w.read().serial == 0
        holder = backend.holder()
        assert holder is not None and holder.pid == os.getpid() and holder.command == "honua apply"
    assert backend.holder() is None


def test_unlock_when_not_locked(backend: StateBackend, make_backend: Factory) -> None:
    assert "not locked" in make_backend().force_unlock()
    _write(backend)
    assert "not locked" in make_backend().force_unlock()


_DEAD_HOLDER_SCRIPT = """
import os, sys, time
from pathlib import Path
from honua_plan.state import open_backend
b = open_backend(os.environ["HP_KIND"], environment=os.environ["HP_ENV"],
                 root=Path(os.environ["HP_ROOT"]), dsn=os.environ.get("HP_DSN") or None,
                 lock_timeout=0)
cm = b.lock("honua apply --env dev")
cm.__enter__()
child = os.fork()
if child == 0:  # keeps the flock / the database session after the holder died
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    time.sleep(120)
    os._exit(0)
print("LOCKED", child, flush=True)
os._exit(0)
"""


def _spawn_dead_holder(store: dict[str, Any]) -> tuple[int, int]:
    """A lock whose recorded holder (pid) is dead while the lock itself is still held
    (its fd / database session lives on in a forked child): what a crash leaves behind
    when the lock outlives its process. Returns (dead holder pid, child pid)."""
    env = dict(os.environ)
    env.update(HP_KIND=store["kind"], HP_ENV=ENV, HP_ROOT=str(store["root"]), HP_DSN=store["dsn"] or "",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, "-c", _DEAD_HOLDER_SCRIPT], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    out, err = proc.communicate(timeout=30)
    words = out.split()
    assert words[:1] == ["LOCKED"], err
    proc.wait()
    return proc.pid, int(words[1])


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_unlock_refuses_a_live_holder(store: dict[str, Any], make_backend: Factory) -> None:
    proc = _spawn_holder(store)
    try:
        b = make_backend()
        with pytest.raises(StateLockedError) as info:
            b.force_unlock()
        msg = str(info.value)
        assert f"pid {proc.pid} " in msg and "still running" in msg
        assert "--force" in info.value.hint
        # nothing was broken: the holder keeps the lock and can still write
        assert b.holder() is not None and b.holder().pid == proc.pid  # type: ignore[union-attr]
        with pytest.raises(StateLockedError), b.lock("honua plan"):
            pass
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=20)
        assert "RELEASED" in out, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_unlock_force_breaks_a_live_holder(store: dict[str, Any], backend: StateBackend,
                                           make_backend: Factory) -> None:
    _write(backend)
    proc = _spawn_holder(store)
    try:
        b = make_backend()
        msg = b.force_unlock(force=True)
        assert msg.startswith("warning:") and f"pid {proc.pid} " in msg and "still running" in msg
        with b.lock("honua apply", timeout=10):  # the lock is ours now
            pass
        events = b.read().events
        assert events[-1].kind == "unlock" and "forced unlock" in events[-1].message
        if store["kind"] == "postgres":  # its session was ended
            with _admin(store) as conn:
                assert not conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'honua-plan lock%%'"
                ).fetchone()[0]  # type: ignore[index]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_unlock_removes_a_dead_holders_lock(store: dict[str, Any], backend: StateBackend,
                                            make_backend: Factory) -> None:
    _write(backend)
    dead, child = _spawn_dead_holder(store)
    try:
        b = make_backend()
        holder = b.holder()
        assert holder is not None and holder.pid == dead and not _alive(dead)
        with pytest.raises(StateLockedError), b.lock("honua plan"):
            pass  # the lock is really still held
        msg = b.force_unlock()
        assert f"pid {dead} " in msg and "was dead" in msg and not msg.startswith("warning")
        with b.lock("honua apply", timeout=10):
            pass
        events = b.read().events
        assert events[-1].kind == "unlock" and "was dead" in events[-1].message
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


def test_postgres_lock_released_when_its_connection_is_killed(
    kind: str, store: dict[str, Any], backend: StateBackend, make_backend: Factory
) -> None:
    if kind != "postgres":
        pytest.skip("postgres only: terminating the lock's database session")
    other = make_backend()
    with backend.lock("honua apply --env dev") as w:
        w.write(w.read(), expected_serial=0)
        holder = other.holder()
        assert holder is not None and holder.server_pid
        with _admin(store) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (holder.server_pid,))
        with other.lock("honua apply", timeout=10) as w2:
            new_holder = other.holder()
            assert new_holder is not None and new_holder.server_pid != holder.server_pid
            # the old writer has lost its lock and must not write
            with pytest.raises(StateLockedError, match="lost the state lock"):
                w.write(w2.read(), expected_serial=1)
            w2.write(w2.read(), expected_serial=1)
    # leaving the dead writer's context does not raise
    assert other.read().serial == 2
    assert other.holder() is None


# --------------------------------------------------------------------------- atomicity


def test_failed_write_leaves_the_previous_state(
    store: dict[str, Any], backend: StateBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _write(backend, _sample)
    real = state_base.document_to_json

    def broken(doc: StateDocument) -> dict[str, Any]:
        data = real(doc)
        # serialisation fails after most of the document has been written out
        return {**data, "zzz_unserialisable": object()}

    monkeypatch.setattr(state_base, "document_to_json", broken)
    with backend.lock("honua apply") as w:
        with pytest.raises(StateError, match="unchanged"):
            w.write(w.read().record_event("apply", "doomed"), expected_serial=1)
        assert w.read() == first
        monkeypatch.setattr(state_base, "document_to_json", real)
        assert w.write(w.read(), expected_serial=1).serial == 2
    if store["kind"] == "local":
        state_dir = store["root"] / "state"
        assert json.loads((state_dir / f"{ENV}.json").read_text())["serial"] == 2
        assert json.loads((state_dir / f"{ENV}.json.bak").read_text())["serial"] == 1
        assert not [p.name for p in state_dir.iterdir() if p.name.endswith(".tmp")]
    assert _stored_serials(store)[-2:] == [1, 2]


def test_corrupt_stored_state_is_reported(store: dict[str, Any], backend: StateBackend) -> None:
    _write(backend, _sample)
    _write(backend)
    if store["kind"] == "local":
        path = store["root"] / "state" / f"{ENV}.json"
        path.write_text('{"format_version": 1, "environment": "dev", "lin')
        pattern = r"dev\.json is not valid JSON.*dev\.json\.bak"
    else:
        with _admin(store) as conn:
            conn.execute("UPDATE honua_plan.state SET document = '{\"oops\": 1}'::jsonb")
        pattern = r"honua_plan\.state row of 'dev' is not a valid state document"
    with pytest.raises(StateError, match=pattern):
        backend.read()
    with backend.lock("honua apply") as w, pytest.raises(StateError, match=pattern):
        w.write(StateDocument.new(ENV), expected_serial=2)


def test_nan_in_a_state_file_is_refused(store: dict[str, Any], backend: StateBackend) -> None:
    """Stored data skips the per-object JSON check, so the reader must refuse NaN itself."""
    if store["kind"] != "local":
        pytest.skip("jsonb cannot hold NaN")
    doc = _write(backend, lambda d: d.with_resource(ResourceRecord.create("layer.a::b", "layer", {"x": 1}, serial=1)))
    path = store["root"] / "state" / f"{ENV}.json"
    path.write_text(path.read_text().replace('"x": 1', '"x": NaN'))
    assert doc.resources["layer.a::b"].attributes == {"x": 1}
    with pytest.raises(StateError, match=r"dev\.json is not valid JSON"):
        backend.read()


# --------------------------------------------------------------------------- events


def test_events_are_append_only(backend: StateBackend, make_backend: Factory) -> None:
    doc = _write(backend, lambda d: d.record_event("plan", "one").record_event("apply", "two"))
    assert [e.message for e in doc.events] == ["one", "two"]
    assert all(e.serial == 1 for e in doc.events)
    with backend.lock("honua apply") as w:
        cur = w.read()
        with pytest.raises(StateError, match="append-only"):
            w.write(cur.model_copy(update={"events": cur.events[1:]}), expected_serial=1)
        edited = [cur.events[0].model_copy(update={"message": "rewritten"}), cur.events[1]]
        with pytest.raises(StateError, match="append-only"):
            w.write(cur.model_copy(update={"events": edited}), expected_serial=1)
        after = w.append_event(Event(kind="drift", actor="ci", message="three"))
    assert after.serial == 2
    assert [e.message for e in after.events] == ["one", "two", "three"]
    assert after.events[-1].serial == 2
    reader = make_backend().reader()
    assert [e.message for e in reader.history(limit=2)] == ["three", "two"]
    assert [e.message for e in reader.history(limit=None)] == ["three", "two", "one"]


# --------------------------------------------------------------------------- secrets


def test_secrets_never_reach_storage_or_messages(
    store: dict[str, Any], make_backend: Factory
) -> None:
    url_dsn = f"postgresql://honua:{SECRET}@db.example:5432/gis"
    kv_dsn = f"host=db.example dbname=gis user=honua password={SECRET}"
    if store["kind"] == "postgres":
        b = make_backend(dsn=make_conninfo(store["dsn"], password=SECRET))
    else:
        b = make_backend()
    _assert_no_secret(b.describe())
    _assert_no_secret(b.reader().describe())
    _assert_no_secret(repr(b))
    # structured data holds references, never values, and is stored exactly as it is;
    # free text (an event's message, the lock holder's command) is redacted however made
    attributes = {"connection": {"env": ["HONUA_PG_DSN_{{ env | upper }}"], "dsn": "${HONUA_PG_DSN}"}}
    stored = _write(
        b,
        lambda d: d.with_resource(
            ResourceRecord.create("datasource.postgis-primary", "Datasource", attributes, serial=1)
        ).record_event("apply", f"connected to {url_dsn}", details={"dsn": "${HONUA_PG_DSN}"}),
    )
    assert b.read().resources["datasource.postgis-primary"].attributes == attributes
    _assert_no_secret(stored.model_dump_json())
    _assert_no_secret(b.read().model_dump_json())
    with b.lock(f"honua apply --dsn {url_dsn}") as w:
        w.append_event(Event(kind="apply", message=f"again {kv_dsn}"))
        _assert_no_secret(_raw_stored(store))  # includes the lock holder's record
        with pytest.raises(StateLockedError) as locked, make_backend().lock("honua plan"):
            pass
        assert "honua apply --dsn postgresql://honua:***@db.example" in str(locked.value)
        _assert_no_secret(str(locked.value))
        holder = make_backend().holder()
        assert holder is not None
        _assert_no_secret(holder.command)
    assert "***" in b.read().events[0].message
    _assert_no_secret(_raw_stored(store))
    if store["kind"] == "postgres":
        # a connection failure names the store but not the password
        broken = make_backend(dsn=make_conninfo(store["dsn"], dbname="no_such_db", password=SECRET))
        with pytest.raises(StateError) as failed:
            broken.read()
        assert "no_such_db" in str(failed.value)
        _assert_no_secret(str(failed.value))
        unreachable = make_backend(dsn=f"postgresql://honua:{SECRET}@127.0.0.1:1/gis")
        with pytest.raises(StateError) as refused:
            unreachable.read()
        _assert_no_secret(str(refused.value))
        _assert_no_secret(unreachable.describe())
        assert "127.0.0.1:1/gis" in unreachable.describe()


def test_postgres_backend_needs_a_dsn(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="dsn"):
        open_backend("postgres", environment=ENV, root=tmp_path, dsn=None, lock_timeout=0)
    with pytest.raises(StateError, match="unknown state backend"):
        open_backend("s3", environment=ENV, root=tmp_path, dsn=None, lock_timeout=0)


def test_cli_unlock_refuses_a_live_holder_and_force_warns(tmp_path: Path) -> None:
    from tests.helpers import copy_example, run

    repo = copy_example(tmp_path, server=False)
    store = {"kind": "local", "root": repo, "dsn": None}
    proc = _spawn_holder(store)
    try:
        refused = run(repo, "state", "unlock", "--env", ENV)
        assert refused.exit_code == 1, refused.output
        assert f"pid {proc.pid} " in refused.output and "still running" in refused.output
        assert "--force" in refused.output
        assert (repo / "state" / f"{ENV}.lock").exists()
        forced = run(repo, "state", "unlock", "--env", ENV, "--force")
        assert forced.exit_code == 0, forced.output
        assert "still running" in forced.output and "can no longer write the state" in forced.output
        assert not (repo / "state" / f"{ENV}.lock").exists()
    finally:
        proc.kill()
        proc.wait()
