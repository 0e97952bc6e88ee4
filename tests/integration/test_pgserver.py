"""The embedded PostgreSQL + PostGIS cluster, against real initdb/pg_ctl."""

from __future__ import annotations

import os
import pwd
import signal
import stat
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from honua_plan.errors import EmbeddedDatabaseError
from honua_plan.providers.embedded.pgserver import MAX_SOCKET_PATH, ClusterStatus, EmbeddedCluster

pytestmark = pytest.mark.integration


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still alive")


def _children(pid: int) -> list[int]:
    kids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == pid:
                kids.append(int(proc.name))
    return kids


def test_session_database_has_postgis(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        version = conn.execute("SELECT postgis_version()").fetchone()
        assert version is not None and version[0]
        srid = conn.execute("SELECT ST_SRID(ST_SetSRID(ST_MakePoint(1, 2), 4326))").fetchone()
        assert srid == (4326,)
        conn.execute("CREATE TABLE lanes (id int PRIMARY KEY, geom geometry(LineString, 4326))")


def test_each_test_gets_a_fresh_database(pg_dsn: str, pg_cluster: EmbeddedCluster) -> None:
    assert "password" not in pg_dsn
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("SELECT current_database()").fetchone()
        assert row is not None
        assert row[0].startswith("t_")
        # the table created by the previous test is not here
        assert conn.execute("SELECT to_regclass('lanes')").fetchone() == (None,)
    assert pg_cluster.database_exists(row[0])


def test_create_and_drop_database(pg_cluster: EmbeddedCluster) -> None:
    dsn = pg_cluster.create_database("t_scratch", template="honua_template")
    assert "dbname=t_scratch" in dsn
    try:
        assert pg_cluster.database_exists("t_scratch")
        with pytest.raises(EmbeddedDatabaseError, match="already exists"):
            pg_cluster.create_database("t_scratch")
        pg_cluster.create_database("t_scratch", exist_ok=True)
        # an open session does not prevent the drop: it is terminated
        conn = psycopg.connect(dsn, autocommit=True)
    finally:
        pg_cluster.drop_database("t_scratch")
    assert not pg_cluster.database_exists("t_scratch")
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    conn.close()
    pg_cluster.drop_database("t_scratch")  # dropping a missing database is a no-op
    with pytest.raises(EmbeddedDatabaseError, match="invalid database name"):
        pg_cluster.create_database("bad name; DROP")


def test_start_status_stop_are_idempotent(pg_root: Path) -> None:
    cluster = EmbeddedCluster(pg_root / "pg", dbname="city", fast=True)
    before = cluster.status()
    assert isinstance(before, ClusterStatus)
    assert before.running is False and before.pid is None
    cluster.start()
    try:
        status = cluster.status()
        assert status.running and status.pid
        assert status.data_dir == pg_root / "pg" / "data"
        assert status.socket_dir == pg_root / "pg" / "sock"
        assert 20000 <= status.port <= 29999
        assert status.dsn == cluster.dsn
        assert cluster.dsn == (
            f"host={pg_root / 'pg' / 'sock'} port={status.port} dbname=city "
            f"user={cluster.superuser}"
        )
        assert (pg_root / "pg" / "server.log").exists()
        assert (pg_root / "pg" / "socket_dir").read_text().strip() == str(status.socket_dir)
        data_stat = status.data_dir.stat()
        assert stat.S_IMODE(data_stat.st_mode) == 0o700
        assert pwd.getpwuid(data_stat.st_uid).pw_name == cluster.superuser
        if os.geteuid() == 0:
            assert cluster.superuser != "root"

        cluster.start()  # no-op on a running cluster
        assert cluster.status().pid == status.pid

        with psycopg.connect(cluster.dsn) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("city",)
            assert conn.execute("SELECT postgis_version()").fetchone()
            settings = dict(
                conn.execute(
                    "SELECT name, setting FROM pg_settings WHERE name IN "
                    "('listen_addresses', 'fsync', 'port')"
                ).fetchall()
            )
        assert settings == {"listen_addresses": "", "fsync": "off", "port": str(status.port)}

        cluster.stop()
        assert cluster.status().running is False
        assert not (status.data_dir / "postmaster.pid").exists()
        cluster.stop()  # no-op on a stopped cluster

        cluster.start()  # restart: the data directory and database are kept
        with psycopg.connect(cluster.dsn) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("city",)
    finally:
        cluster.destroy()
    assert not (pg_root / "pg").exists()


def test_port_is_deterministic_and_overridable(pg_root: Path) -> None:
    a = EmbeddedCluster(pg_root / "a")
    assert EmbeddedCluster(pg_root / "a").port == a.port
    assert 20000 <= a.port <= 29999
    assert EmbeddedCluster(pg_root / "a", port=25432).port == 25432


def test_default_is_durable(pg_root: Path) -> None:
    cluster = EmbeddedCluster(pg_root / "pg")
    assert cluster.fast is False


def test_long_root_falls_back_to_short_socket_dir(pg_root: Path) -> None:
    root = pg_root / ("long-directory-name-" * 5) / "cluster"
    cluster = EmbeddedCluster(root, fast=True)
    assert len(os.fsencode(str(root / "sock" / f".s.PGSQL.{cluster.port}"))) > MAX_SOCKET_PATH
    short = cluster.short_socket_dir
    assert str(short).startswith("/tmp/honua-pg-") and len(short.name) == len("honua-pg-") + 8
    cluster.start()
    try:
        status = cluster.status()
        assert status.running
        assert status.socket_dir == short
        assert (root / "socket_dir").read_text().strip() == str(short)
        assert (short / f".s.PGSQL.{status.port}").exists()
        assert f"host={short} " in cluster.dsn
        # a fresh object (as `honua dev db status` in another process) finds the socket
        again = EmbeddedCluster(root)
        assert again.status().socket_dir == short
        with psycopg.connect(again.dsn) as conn:
            assert conn.execute("SELECT postgis_version()").fetchone()
    finally:
        cluster.destroy()
    assert not short.exists()


def test_stale_postmaster_pid_is_detected(pg_root: Path) -> None:
    cluster = EmbeddedCluster(pg_root / "pg", fast=True)
    cluster.start()
    try:
        pidfile = cluster.data_dir / "postmaster.pid"

        # 1. the postmaster crashed: its pid file is left behind
        pid = cluster.status().pid
        assert pid is not None
        children = _children(pid)
        os.kill(pid, signal.SIGKILL)
        for child in [pid, *children]:  # they exit on postmaster death
            _wait_gone(child)
        assert pidfile.exists()
        assert cluster.status().running is False
        cluster.start()
        assert cluster.status().running

        # 2. the pid in a left-over pid file now belongs to an unrelated process
        cluster.stop()
        sleeper = subprocess.Popen(["sleep", "60"])
        try:
            lines = ["0"] * 8
            lines[0] = str(sleeper.pid)
            lines[1] = str(cluster.data_dir)
            pidfile.write_text("\n".join(lines) + "\n")
            assert cluster.status().running is False
            cluster.start()
            status = cluster.status()
            assert status.running and status.pid != sleeper.pid
            with psycopg.connect(cluster.dsn) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        finally:
            sleeper.kill()
            sleeper.wait()
    finally:
        cluster.destroy()


def test_missing_postgis_is_reported(pg_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = EmbeddedCluster(pg_root / "pg", fast=True)
    monkeypatch.setattr(cluster, "_postgis_control", lambda: pg_root / "nope" / "postgis.control")
    with pytest.raises(EmbeddedDatabaseError) as excinfo:
        cluster.start()
    assert str(excinfo.value) == (
        "PostGIS is not installed: run scripts/bootstrap.sh or "
        "apt-get install postgresql-15-postgis-3"
    )
    assert not (pg_root / "pg" / "data").exists()
