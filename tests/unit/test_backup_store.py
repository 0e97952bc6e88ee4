"""The backup store settings and the names of durable files kept with the state (issue 19)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from honua_plan.apply.backupstore import LocalStore, S3Store, open_store
from honua_plan.config.models import BackupStoreConfig
from honua_plan.errors import StateError
from honua_plan.state.artifacts import LocalArtifacts, check_name


@pytest.mark.parametrize("name", ["plans/0123.json", "incidents/REC-1.md", "a"])
def test_names_inside_the_state_folder(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "/etc/passwd", "../x", "plans/../../x", "a\\b", "a\nb"])
def test_names_outside_the_state_folder_are_refused(name: str) -> None:
    with pytest.raises(StateError, match="not a name inside the state folder"):
        check_name(name)
    with pytest.raises(StateError):
        LocalArtifacts().get(name)


def test_s3_needs_a_bucket_and_a_safe_prefix() -> None:
    with pytest.raises(ValidationError, match="needs a bucket"):
        BackupStoreConfig(store="s3")
    with pytest.raises(ValidationError):
        BackupStoreConfig(store="s3", bucket="b", prefix="../up")
    with pytest.raises(ValidationError):
        BackupStoreConfig(store="s3", bucket="b", endpointUrl="file:///etc")
    with pytest.raises(ValidationError):
        BackupStoreConfig(store="s3", bucket="b", secret="x")  # type: ignore[call-arg]


def test_the_store_honua_yaml_names() -> None:
    assert isinstance(open_store(None, "p"), LocalStore)
    assert isinstance(open_store(BackupStoreConfig(), "p"), LocalStore)
    store = open_store(BackupStoreConfig(store="s3", bucket="city-backups", prefix="gis/honua",
                                         endpointUrl="http://minio:9000"), "city-gis")
    assert isinstance(store, S3Store)
    assert store.key("backups/dev-backup-1.dump") == "gis/honua/city-gis/backups/dev-backup-1.dump"
    assert store.description == "s3://city-backups/gis/honua/city-gis"
