"""Where backups are kept: the state folder (``local``, the default) or an S3-compatible
object store (``s3``: AWS, MinIO, Ceph, Garage), set by ``backups:`` in honua.yaml.

A backup is always written to the state folder first (pg_dump writes a file); the s3
store then uploads it (and the metadata snapshot beside it) under
``<prefix>/<project>/<path>``, with its sha256 as object metadata, and its manifest
(``<id>.manifest.json``: commit, files, sha256s). A machine that lacks the files (a fresh
CI runner, a new server after a disaster) downloads them before a restore, and the
sha256s recorded in the state (the dump's and the snapshot's) are checked before anything
is restored from them. Retention deletes in the store what it deletes locally.

Credentials come from the usual AWS variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, a profile, an instance role) through
boto3's own chain; the endpoint from ``endpointUrl`` or ``AWS_ENDPOINT_URL``. boto3 is
imported only when the s3 store is used.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from honua_plan.errors import ApplyError
from honua_plan.secrets import redact

if TYPE_CHECKING:
    from honua_plan.config.models import BackupStoreConfig
    from honua_plan.state.model import BackupRecord

__all__ = ["BackupStore", "LocalStore", "S3Store", "open_store"]


def _files(rec: BackupRecord) -> list[str]:
    return [rec.path, *([rec.metadata_path] if rec.metadata_path else [])]


def _recorded(rec: BackupRecord, name: str) -> str | None:
    """The sha256 the state recorded for one of the backup's files."""
    return rec.sha256 if name == rec.path else rec.metadata_sha256


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class BackupStore(ABC):
    """Keeps the files of backups beyond this machine (or not: :class:`LocalStore`)."""

    description: str

    @abstractmethod
    def upload(self, state_dir: Path, rec: BackupRecord) -> None:
        """Copy the backup's files (under ``state_dir``) to the store."""

    @abstractmethod
    def ensure_local(self, state_dir: Path, rec: BackupRecord) -> None:
        """Make the backup's files present under ``state_dir``, checked against the state."""

    @abstractmethod
    def delete(self, rec: BackupRecord) -> None:
        """Remove the backup from the store (retention)."""


class LocalStore(BackupStore):
    """The state folder is the store (the default)."""

    description = "the local state folder"

    def upload(self, state_dir: Path, rec: BackupRecord) -> None:
        return None

    def ensure_local(self, state_dir: Path, rec: BackupRecord) -> None:
        return None

    def delete(self, rec: BackupRecord) -> None:
        return None


class S3Store(BackupStore):
    """Objects ``<prefix>/<project>/<backups/…>`` in ``bucket``."""

    def __init__(self, bucket: str, prefix: str, project: str, *, endpoint_url: str | None = None,
                 region: str | None = None, client: Any = None) -> None:
        self.bucket = bucket
        self.root = "/".join(p for p in (prefix.strip("/"), project) if p)
        self.endpoint_url = endpoint_url
        self.region = region
        self._client = client
        self.description = f"s3://{bucket}/{self.root}"

    def client(self) -> Any:
        if self._client is None:
            try:
                import boto3
            except ImportError:
                raise ApplyError("backups.store is s3 but boto3 is not installed: pip install 'honua-plan[s3]'") \
                    from None
            self._client = boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region)
        return self._client

    def key(self, name: str) -> str:
        return f"{self.root}/{name}"

    def _fail(self, doing: str, exc: BaseException) -> ApplyError:
        return ApplyError(f"backup store {self.description}: {doing} failed: {redact(str(exc))}",
                          hint="check the bucket, the endpoint and the AWS credentials in the environment")

    def upload(self, state_dir: Path, rec: BackupRecord) -> None:
        from honua_plan.apply.deployed import manifest_path

        manifest = manifest_path(rec)
        extra = [manifest] if (state_dir / manifest).is_file() else []  # what the dump goes with, beside it
        for name in [*_files(rec), *extra]:
            path = state_dir / name
            digest = _recorded(rec, name) if name != manifest else None
            digest = digest or _sha256(path)
            try:
                self.client().upload_file(str(path), self.bucket, self.key(name),
                                          ExtraArgs={"Metadata": {"sha256": digest}})
            except Exception as exc:  # botocore's errors, the network
                raise self._fail(f"uploading {name}", exc) from None

    def ensure_local(self, state_dir: Path, rec: BackupRecord) -> None:
        for name in _files(rec):
            path = state_dir / name
            if path.exists():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.download")
            try:
                self.client().download_file(self.bucket, self.key(name), str(tmp))
                head = self.client().head_object(Bucket=self.bucket, Key=self.key(name))
            except Exception as exc:
                tmp.unlink(missing_ok=True)
                raise self._fail(f"downloading {name}", exc) from None
            # the state's record; a backup recorded before snapshots had one: the object's own
            want = _recorded(rec, name) or (head.get("Metadata") or {}).get("sha256")
            got = _sha256(tmp)
            if want is None or got != want:
                tmp.unlink(missing_ok=True)
                raise ApplyError(f"backup {rec.id}: the copy of {name} in {self.description} has sha256 {got[:12]}…, "
                                 f"the state recorded {str(want)[:12]}…: it was changed or damaged; nothing restored")
            tmp.replace(path)

    def delete(self, rec: BackupRecord) -> None:
        from honua_plan.apply.deployed import manifest_path

        for name in [*_files(rec), manifest_path(rec)]:
            try:
                self.client().delete_object(Bucket=self.bucket, Key=self.key(name))
            except Exception as exc:
                raise self._fail(f"deleting {name}", exc) from None


def open_store(config: BackupStoreConfig | None, project: str) -> BackupStore:
    """The store ``backups:`` of honua.yaml names (local when absent)."""
    if config is None or config.store == "local":
        return LocalStore()
    assert config.bucket is not None  # the model requires it for s3
    return S3Store(config.bucket, config.prefix, project, endpoint_url=config.endpointUrl, region=config.region)
