"""Everything a CI runner needs is in the backend (issue 19, items 1 and 2).

Four clones of one repository share only the postgres state database and an S3 bucket
(moto's server on 127.0.0.1, boto3's real client): a plan saved and approved on the
first is applied by its id on the second, which is killed mid-way; the third resumes
it (the plan comes from the state database) and takes a backup (uploaded to S3); the
fourth restores that backup with ``recover --latest-backup`` (downloaded, its sha256
checked). No clone ever sees another's ``state/`` folder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from honua_plan.providers.embedded.pgserver import pg_dump_available
from tests.conftest import TEMPLATE_DB
from tests.helpers import REPO, edit, run
from tests.integration.test_apply_faults import M005, M005_TEXT
from tests.integration.test_remote_state import example

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not pg_dump_available(), reason="pg_dump is not installed")]

moto_server = pytest.importorskip("moto.server", reason="moto is not installed (dev extra)")
boto3 = pytest.importorskip("boto3", reason="boto3 is not installed (s3 extra)")

BUCKET = f"honua-backups-{uuid.uuid4().hex[:8]}"  # moto keeps its buckets for the whole process
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture
def s3() -> Iterator[str]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    if BUCKET not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
def dbs(pg_cluster: Any) -> Iterator[tuple[str, str]]:
    names = [f"t_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    dsns = [pg_cluster.create_database(n, template=TEMPLATE_DB) for n in names]
    yield dsns[0], dsns[1]
    for n in names:
        pg_cluster.drop_database(n)


def objects(endpoint: str) -> list[str]:
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def journal(state_dsn: str) -> dict[str, Any] | None:
    with psycopg.connect(state_dsn, autocommit=True) as conn:
        row = conn.execute("SELECT document FROM honua_plan.state WHERE environment = 'dev'").fetchone()
    return None if row is None else row[0].get("pending")


def test_plan_apply_resume_and_recover_on_four_clones(tmp_path: Path, dbs: tuple[str, str], s3: str) -> None:
    data_dsn, state_dsn = dbs
    base = example(tmp_path / "base", data_dsn, postgres_state=True)
    edit(base / "honua.yaml", "  defaultDatasource:",
         f"  backups:\n    store: s3\n    bucket: {BUCKET}\n    endpointUrl: {s3}\n  defaultDatasource:")
    env = {"HONUA_PG_DSN": data_dsn, "HONUA_STATE_DSN": state_dsn, "CI": "", **AWS}
    first = run(base, "apply", "--env", "dev", "--auto-approve", env=env)
    assert first.exit_code == 0, first.output
    (base / M005).write_text(M005_TEXT)

    def clone(name: str) -> Path:
        dest = tmp_path / name
        shutil.copytree(base, dest, ignore=shutil.ignore_patterns("state"))
        (dest / "state").mkdir()
        return dest

    # clone 1: plan, save, approve; the approved plan is kept with the state
    one = clone("one")
    saved = run(one, "plan", "--env", "dev", "--out", str(one / "plan.json"), env=env)
    assert saved.exit_code == 0, saved.output
    plan_id = json.loads((one / "plan.json").read_text())["id"]
    approved = run(one, "approve", str(one / "plan.json"), "--by", "alice", env=env)
    assert approved.exit_code == 0, approved.output

    # clone 2: apply it by id (no plan file here), killed while step 2 of 005 sleeps
    two = clone("two")
    assert not (two / "plan.json").exists()
    proc = subprocess.Popen([sys.executable, "-m", "honua_plan", "-C", str(two), "apply", "--env", "dev", plan_id],
                            env={**os.environ, **env}, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the slow step never started"
            steps = {s["id"]: s for s in (journal(state_dsn) or {}).get("steps", [])}
            step = steps.get("migration.005")
            if step and step["status"] == "running" and step["details"].get("ops_done") == [0]:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        out = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == -signal.SIGKILL, out
    assert journal(state_dsn) is not None

    # clone 3: resume (the journal's plan comes from the state database), then a backup to S3
    three = clone("three")
    resumed = run(three, "apply", "--env", "dev", "--resume", env=env)
    assert resumed.exit_code == 0, resumed.output
    assert "Migration 005 completed successfully on dev" in resumed.output
    assert journal(state_dsn) is None
    assert run(three, "plan", "--env", "dev", "--detailed-exitcode", env=env).exit_code == 0
    backup = run(three, "backup", "create", "--env", "dev", env=env)
    assert backup.exit_code == 0, backup.output
    keys = objects(s3)
    assert any(k.startswith("honua-plan/city-gis/backups/") and k.endswith(".dump") for k in keys), keys
    assert any(k.endswith(".metadata.tar.gz") for k in keys), keys

    # the data changes after the backup; clone 4 has no backup file and restores from S3
    with psycopg.connect(data_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM bike_lanes WHERE id > 10")
    four = clone("four")
    assert not list((four / "state").iterdir())
    recovered = run(four, "recover", "--env", "dev", "--latest-backup", "--yes", env=env)
    assert recovered.exit_code == 0, recovered.output
    assert "Database restored from backup" in recovered.output
    with psycopg.connect(data_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM bike_lanes").fetchone()[0] == 42
    assert list((four / "state" / "backups").glob("*.dump"))


def test_a_backup_changed_in_the_store_is_not_restored(tmp_path: Path, dbs: tuple[str, str], s3: str) -> None:
    """The sha256 recorded in the state is checked on download: a replaced object is refused."""
    data_dsn, state_dsn = dbs
    base = example(tmp_path / "base", data_dsn, postgres_state=True)
    edit(base / "honua.yaml", "  defaultDatasource:",
         f"  backups:\n    store: s3\n    bucket: {BUCKET}\n    endpointUrl: {s3}\n  defaultDatasource:")
    env = {"HONUA_PG_DSN": data_dsn, "HONUA_STATE_DSN": state_dsn, "CI": "", **AWS}
    assert run(base, "apply", "--env", "dev", "--auto-approve", env=env).exit_code == 0
    created = run(base, "backup", "create", "--env", "dev", env=env)
    assert created.exit_code == 0, created.output
    backup_id = created.output.split("Backup created: ", 1)[1].split()[0]
    key = f"honua-plan/city-gis/backups/{backup_id}.dump"
    assert key in objects(s3)
    client = boto3.client("s3", endpoint_url=s3, aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    client.put_object(Bucket=BUCKET, Key=key, Body=b"not the dump")
    other = tmp_path / "other"
    shutil.copytree(base, other, ignore=shutil.ignore_patterns("state"))
    (other / "state").mkdir()
    result = run(other, "recover", "--env", "dev", "--latest-backup", "--yes", env=env)
    assert result.exit_code == 1, result.output
    assert "was changed or damaged; nothing restored" in result.output
    assert "Traceback" not in result.output
