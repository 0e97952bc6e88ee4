"""A fresh machine with only the state database and the S3 bucket recovers data and metadata
(issue 26, item 8): the state records the metadata snapshot's sha256, the bucket holds the
dump, the snapshot and the manifest that says what they go with."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg

from tests.helpers import edit, run
from tests.integration import test_remote_artifacts as artifacts
from tests.integration.test_recovery import commit_all, git
from tests.integration.test_remote_artifacts import AWS, BUCKET, boto3, objects
from tests.integration.test_remote_state import example

pytestmark = artifacts.pytestmark
s3 = artifacts.s3  # moto's server on 127.0.0.1 and a bucket
dbs = artifacts.dbs  # a data and a state database

LAYER_FILE = "environments/dev/layers/bike-lanes.yaml"


def test_a_fresh_machine_recovers_a_backup_from_the_bucket(tmp_path: Path, dbs: tuple[str, str], s3: str) -> None:
    data_dsn, state_dsn = dbs
    base = example(tmp_path / "base", data_dsn, postgres_state=True)
    edit(base / "honua.yaml", "  defaultDatasource:",
         f"  backups:\n    store: s3\n    bucket: {BUCKET}\n    endpointUrl: {s3}\n  defaultDatasource:")
    (base / ".gitignore").write_text("state/\n")
    git(base, "init", "-q")
    sha = commit_all(base, "deployed")
    env = {"HONUA_PG_DSN": data_dsn, "HONUA_STATE_DSN": state_dsn, "CI": "", **AWS}
    assert run(base, "apply", "--env", "dev", "--auto-approve", env=env).exit_code == 0
    created = run(base, "backup", "create", "--env", "dev", env=env)
    assert created.exit_code == 0, created.output
    backup_id = created.output.split("Backup created: ", 1)[1].split()[0]
    keys = objects(s3)
    for suffix in (".dump", ".metadata.tar.gz", ".manifest.json"):
        assert f"honua-plan/city-gis/backups/{backup_id}{suffix}" in keys, keys
    client = boto3.client("s3", endpoint_url=s3, aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    body = client.get_object(Bucket=BUCKET, Key=f"honua-plan/city-gis/backups/{backup_id}.manifest.json")["Body"]
    manifest = json.loads(body.read())
    assert manifest["commit"] == sha and manifest["metadata_sha256"] and manifest["environment"] == "dev"
    good_layer = (base / LAYER_FILE).read_text()

    # the disaster: rows gone, the layer file damaged, and this machine's state folder lost
    with psycopg.connect(data_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM bike_lanes WHERE id > 10")
    edit(base / LAYER_FILE, 'title: "Bike Lanes"', 'title: "Damaged"')
    shutil.rmtree(base / "state" / "backups")
    recovered = run(base, "recover", "--env", "dev", "--backup", backup_id, "--yes", env=env)
    assert recovered.exit_code == 0, recovered.output
    # the commit's files as 003's metadata step left them (recorded in the state database's events)
    assert f"✓ Metadata restored from Git ({sha[:12]}, as deployed: 1 file(s)" in recovered.output, recovered.output
    with psycopg.connect(data_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM bike_lanes").fetchone() == (42,)
    assert (base / LAYER_FILE).read_text() == good_layer
    assert run(base, "plan", "--env", "dev", "--detailed-exitcode", env=env).exit_code == 0

    # a snapshot changed in the bucket is refused against the state's sha256
    shutil.rmtree(base / "state" / "backups")
    client.put_object(Bucket=BUCKET, Key=f"honua-plan/city-gis/backups/{backup_id}.metadata.tar.gz", Body=b"x",
                      Metadata={"sha256": "0" * 64})
    refused = run(base, "recover", "--env", "dev", "--backup", backup_id, "--yes", env=env)
    assert refused.exit_code == 1, refused.output
    assert "was changed or damaged; nothing restored" in refused.output, refused.output
