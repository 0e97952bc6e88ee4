"""pg_dump backups before a migration: take, restore, verify, prune; no password leaks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from honua_plan.apply.backup import (
    prune_backups,
    restore_backup,
    sha256_file,
    take_backup,
)
from honua_plan.errors import ApplyError
from honua_plan.providers.embedded import pgserver
from honua_plan.providers.embedded.pgserver import pg_dump_available
from honua_plan.state.model import BackupRecord

NOW = datetime(2025, 10, 4, 14, 5, 30, tzinfo=UTC)
ROWS = 300

pytestmark = pytest.mark.skipif(not pg_dump_available(), reason="pg_dump is not installed")


@pytest.fixture
def conn(pg_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute(
            "CREATE TABLE bike_lanes (id bigserial PRIMARY KEY, name text NOT NULL, "
            "geom geometry(LineString, 4326))"
        )
        c.execute(
            "INSERT INTO bike_lanes (name, geom) SELECT 'lane ' || g, "
            "ST_SetSRID(ST_MakeLine(ST_MakePoint(-122.6 + g * 0.001, 45.5), "
            "ST_MakePoint(-122.6 + g * 0.001, 45.51)), 4326) FROM generate_series(1, %s) AS g",
            [ROWS],
        )
        c.execute("CREATE INDEX idx_bike_lanes_geom ON bike_lanes USING GIST (geom)")
        c.execute("CREATE TABLE other (id int)")
        c.execute("INSERT INTO other VALUES (1), (2)")
        yield c


def _count(conn: psycopg.Connection, table: str = "bike_lanes") -> int:
    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def test_backup_truncate_restore_gives_the_rows_back(
    conn: psycopg.Connection, pg_dsn: str, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    before = conn.execute("SELECT md5(string_agg(id || name || ST_AsText(geom), ',' ORDER BY id)) "
                          "FROM bike_lanes").fetchone()
    rec = take_backup(pg_dsn, ["bike_lanes"], directory=state_dir / "backups",
                      environment="dev", migration_id="003", now=NOW)
    assert rec.id == "dev-backup-20251004-140530"
    assert rec.path == "backups/dev-backup-20251004-140530.dump"
    file = state_dir / rec.path
    assert file.is_file() and rec.size_bytes == file.stat().st_size > 0
    assert rec.sha256 == sha256_file(file)
    assert rec.tables == ["bike_lanes"] and rec.migration_id == "003"
    assert rec.created_at == NOW and rec.kind == "pg_dump"
    assert not list((state_dir / "backups").glob("*.partial"))

    conn.execute("TRUNCATE bike_lanes")
    conn.execute("DROP INDEX idx_bike_lanes_geom")
    conn.execute("DELETE FROM other WHERE id = 1")  # not in the backup: must stay as it is
    assert _count(conn) == 0

    restore_backup(pg_dsn, rec, state_dir=state_dir)
    assert _count(conn) == ROWS
    after = conn.execute("SELECT md5(string_agg(id || name || ST_AsText(geom), ',' ORDER BY id)) "
                         "FROM bike_lanes").fetchone()
    assert after == before
    assert conn.execute("SELECT to_regclass('idx_bike_lanes_geom')").fetchone() == (
        "idx_bike_lanes_geom",
    )
    assert _count(conn, "other") == 1
    # the owned sequence came back too: the next id follows the restored rows
    conn.execute("INSERT INTO bike_lanes (name) VALUES ('new')")
    assert conn.execute("SELECT max(id) FROM bike_lanes").fetchone() == (ROWS + 1,)


def test_same_second_gets_a_suffix(conn: psycopg.Connection, pg_dsn: str, tmp_path: Path) -> None:
    d = tmp_path / "state" / "backups"
    ids = [take_backup(pg_dsn, ["public.bike_lanes"], directory=d, environment="dev",
                       migration_id=None, now=NOW).id for _ in range(3)]
    assert ids == ["dev-backup-20251004-140530", "dev-backup-20251004-140530-2",
                   "dev-backup-20251004-140530-3"]
    assert sorted(p.name for p in d.iterdir()) == sorted(f"{i}.dump" for i in ids)


def test_odd_table_names_are_quoted(conn: psycopg.Connection, pg_dsn: str, tmp_path: Path) -> None:
    conn.execute('CREATE SCHEMA "Odd Schema"')
    conn.execute('CREATE TABLE "Odd Schema"."Bike*Lanes" (id int)')
    conn.execute('INSERT INTO "Odd Schema"."Bike*Lanes" VALUES (7)')
    conn.execute('CREATE TABLE "Odd Schema"."BikeXLanes" (id int)')  # '*' must not match it
    rec = take_backup(pg_dsn, ['"Odd Schema"."Bike*Lanes"'], directory=tmp_path / "backups",
                      environment="dev", migration_id=None, now=NOW)
    conn.execute('TRUNCATE "Odd Schema"."Bike*Lanes"')
    conn.execute('DROP TABLE "Odd Schema"."BikeXLanes"')
    restore_backup(pg_dsn, rec, state_dir=tmp_path)
    assert _count(conn, '"Odd Schema"."Bike*Lanes"') == 1
    assert conn.execute("""SELECT to_regclass('"Odd Schema"."BikeXLanes"')""").fetchone() == (None,)


def test_missing_table_fails_instead_of_an_empty_dump(pg_dsn: str, tmp_path: Path) -> None:
    with pytest.raises(ApplyError, match="no_such_table"):
        take_backup(pg_dsn, ["no_such_table"], directory=tmp_path / "backups",
                    environment="dev", migration_id=None, now=NOW)
    assert not any((tmp_path / "backups").iterdir())  # no partial or empty file left


def test_sha256_mismatch_is_refused(conn: psycopg.Connection, pg_dsn: str, tmp_path: Path) -> None:
    rec = take_backup(pg_dsn, ["bike_lanes"], directory=tmp_path / "backups",
                      environment="dev", migration_id=None, now=NOW)
    conn.execute("DELETE FROM bike_lanes WHERE id > 10")
    with (tmp_path / rec.path).open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ApplyError, match="SHA-256"):
        restore_backup(pg_dsn, rec, state_dir=tmp_path)
    assert _count(conn) == 10  # nothing restored
    with pytest.raises(ApplyError, match="not found"):
        restore_backup(pg_dsn, rec.model_copy(update={"path": "backups/gone.dump"}),
                       state_dir=tmp_path)


def test_password_never_leaks(conn: psycopg.Connection, pg_dsn: str, tmp_path: Path) -> None:
    secret = "s3cr3t-" + uuid.uuid4().hex[:12]
    dsn = f"{pg_dsn} password={secret}"  # the test cluster trusts local connections
    state_dir = tmp_path / "state"
    rec = take_backup(dsn, ["bike_lanes"], directory=state_dir / "backups",
                      environment="dev", migration_id="003", now=NOW)
    assert secret not in rec.model_dump_json()
    for f in state_dir.rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes()
    conn.execute("TRUNCATE bike_lanes")
    restore_backup(dsn, rec, state_dir=state_dir)
    assert _count(conn) == ROWS

    with pytest.raises(ApplyError) as info:  # pg_dump fails: its stderr is shown, redacted
        take_backup(dsn, ["missing"], directory=state_dir / "backups", environment="dev",
                    migration_id=None, now=NOW)
    assert secret not in str(info.value) and secret not in info.value.hint
    bad = dsn.replace("dbname=", "dbname=nope_")
    with pytest.raises(ApplyError) as info:  # cannot even connect
        take_backup(bad, ["bike_lanes"], directory=state_dir / "backups", environment="dev",
                    migration_id=None, now=NOW)
    assert secret not in str(info.value)
    with pytest.raises(ApplyError) as info:
        restore_backup(bad, rec, state_dir=state_dir)
    assert secret not in str(info.value)

    uri = f"postgresql://postgres:{secret}@/{pg_dsn.split('dbname=')[1].split()[0]}"
    host = pg_dsn.split("host=")[1].split()[0]
    port = pg_dsn.split("port=")[1].split()[0]
    rec2 = take_backup(f"{uri}?host={host}&port={port}", ["bike_lanes"],
                       directory=state_dir / "backups", environment="dev", migration_id=None,
                       now=NOW)
    assert secret not in rec2.model_dump_json()


def test_missing_pg_dump(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(pgserver, "find_tool", lambda name: None)
    assert pgserver.pg_dump_available() is False
    with pytest.raises(ApplyError, match="pg_dump is not installed"):
        take_backup("dbname=x", ["t"], directory=tmp_path, environment="dev",
                    migration_id=None, now=NOW)


def _record(d: Path, name: str, at: datetime) -> BackupRecord:
    (d / f"{name}.dump").write_bytes(b"x")
    return BackupRecord(id=name, created_at=at, path=f"backups/{name}.dump", size_bytes=1,
                        sha256="0" * 64, tables=["t"])


def test_prune_keeps_recent_and_the_newest(tmp_path: Path) -> None:
    d = tmp_path / "backups"
    d.mkdir()
    old = _record(d, "dev-backup-old", NOW - timedelta(days=40))
    mid = _record(d, "dev-backup-mid", NOW - timedelta(days=10))
    new = _record(d, "dev-backup-new", NOW - timedelta(days=1))
    kept, removed = prune_backups([old, mid, new], retention_s=30 * 86400, now=NOW,
                                  state_dir=tmp_path)
    assert [r.id for r in kept] == ["dev-backup-mid", "dev-backup-new"]
    assert [r.id for r in removed] == ["dev-backup-old"]
    assert not (d / "dev-backup-old.dump").exists() and (d / "dev-backup-mid.dump").exists()

    # everything expired: the newest one still stays (a restore point must remain)
    kept, removed = prune_backups([mid, new], retention_s=3600, now=NOW, state_dir=tmp_path)
    assert [r.id for r in kept] == ["dev-backup-new"]
    assert [r.id for r in removed] == ["dev-backup-mid"]
    assert (d / "dev-backup-new.dump").exists()
    # a file already gone is not an error; a naive "now" is taken as UTC
    gone = old.model_copy(update={"created_at": NOW - timedelta(days=100)})
    kept, removed = prune_backups([gone, new], retention_s=3600,
                                  now=NOW.replace(tzinfo=None), state_dir=tmp_path)
    assert [r.id for r in removed] == ["dev-backup-old"]
    assert prune_backups([], retention_s=1, now=NOW, state_dir=tmp_path) == ([], [])


# --------------------------------------------------------------------------- contents (recovery's integrity check)


@pytest.mark.parametrize(("damage", "expected"), [
    ("DELETE FROM bike_lanes WHERE id > 290", ["290 rows, backup had 300", "checksum"]),
    ("UPDATE bike_lanes SET name = 'x' WHERE id = 7", ["checksum"]),
    ("DROP INDEX idx_bike_lanes_geom", ["index idx_bike_lanes_geom missing"]),
    ("CREATE INDEX extra ON bike_lanes (name)", ["index extra not in the backup"]),
    ("ALTER TABLE bike_lanes ADD CONSTRAINT named CHECK (id > 0)", ["constraint named not in the backup"]),
    ("DROP TABLE bike_lanes", ["table is missing"]),
    ("SELECT 1", []),
])
def test_contents_recorded_in_the_dump_snapshot_find_each_difference(
        conn: psycopg.Connection, pg_dsn: str, tmp_path: Path, damage: str, expected: list[str]) -> None:
    from honua_plan.apply.backup import compare_contents, table_contents

    rec = take_backup(pg_dsn, ["bike_lanes", "other"], directory=tmp_path / "backups", environment="dev",
                      migration_id=None, now=NOW, commit="abc123")
    assert rec.commit == "abc123" and set(rec.contents) == {"public.bike_lanes", "public.other"}
    c = rec.contents["public.bike_lanes"]
    assert c.rows == ROWS and set(c.indexes) == {"bike_lanes_pkey", "idx_bike_lanes_geom"}
    assert c.constraints == {"bike_lanes_pkey": "PRIMARY KEY (id)"}
    row = conn.execute("SELECT md5(string_agg(md5(t::text), '' ORDER BY id)) FROM bike_lanes t").fetchone()
    assert row == (c.checksum,)
    assert rec.contents["public.other"].rows == 2  # no primary key: ordered by the row text

    conn.execute(damage)
    present = [t for t in ("bike_lanes", "other")
               if conn.execute("SELECT to_regclass(%s)", [t]).fetchone() != (None,)]
    diffs = compare_contents(rec.contents, table_contents(conn, present))
    assert diffs["public.other"] == []
    got = diffs["public.bike_lanes"]
    assert len(got) == len(expected) and all(e in g for e, g in zip(expected, got, strict=True)), got


def test_check_backup_file_reads_the_dump_without_touching_anything(
        conn: psycopg.Connection, pg_dsn: str, tmp_path: Path) -> None:
    from honua_plan.apply.backup import check_backup_file

    rec = take_backup(pg_dsn, ["bike_lanes"], directory=tmp_path / "backups", environment="dev",
                      migration_id=None, now=NOW)
    check_backup_file(rec, state_dir=tmp_path)
    (tmp_path / rec.path).write_bytes(b"not a dump")
    with pytest.raises(ApplyError, match="SHA-256"):
        check_backup_file(rec, state_dir=tmp_path)
    unreadable = rec.model_copy(update={"sha256": sha256_file(tmp_path / rec.path)})
    with pytest.raises(ApplyError, match="pg_restore cannot read"):
        check_backup_file(unreadable, state_dir=tmp_path)
