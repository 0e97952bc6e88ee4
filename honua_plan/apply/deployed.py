"""The metadata as deployed: a commit's files plus what the deployments' metadata steps wrote.

A migration's metadata step edits a layer file during apply (003 adds
``spec.storage.indexes``), so what production runs is not the deployed commit's files
alone. Each apply records, in its event (``details.files``), every file it edited: the
sha256 of the file before (``before``), and the content and sha256 after. Replaying those
edits over the commit's files (each only where the file still is what the edit started
from) gives the files as deployed at any moment.

Every backup records that point in time: the commit, a tar.gz snapshot of the
environment's own and shared files as deployed, the snapshot's sha256, and a manifest
``<id>.manifest.json`` beside the dump (uploaded with it) that repeats them, so the bucket
alone says what each dump goes with.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from honua_plan.errors import RecoveryError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from honua_plan.state.model import BackupRecord, Event, StateDocument

SHARED = ("honua.yaml", "providers/", "migrations/")
DEPLOY_KINDS = ("apply", "migrate")
FILE_KINDS = ("apply", "migrate", "rollback")  # the events that record edited files (an apply's _finish)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def own_path(environment: str, path: str) -> bool:
    """Files of the environment itself: its directory and its policy."""
    return path.startswith(f"environments/{environment}/") or path == f"policies/{environment}-policy.yaml"


def shared_path(path: str) -> bool:
    return any(path == s or (s.endswith("/") and path.startswith(s)) for s in SHARED)


# --------------------------------------------------------------------------- git


def git(root: Path, *args: str, text: bool = True) -> subprocess.CompletedProcess[Any]:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=text, timeout=60, check=False)


def verify_commit(root: Path, commit: str) -> str:
    """The full sha of ``commit``; RecoveryError when it names no commit of the repository."""
    try:
        proc = git(root, "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}")
    except (OSError, subprocess.SubprocessError) as exc:
        raise RecoveryError(f"cannot run git to check commit {commit}: {exc}") from None
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RecoveryError(f"{commit} is not a commit of the repository at {root}; nothing was touched",
                            hint="git log --oneline -- environments/  (to find one)")
    return str(proc.stdout.strip())


def files_at_commit(root: Path, commit: str) -> dict[str, bytes]:
    """Every configuration file of ``commit`` (environments, policies, shared files)."""
    proc = git(root, "ls-tree", "-r", "-z", "--name-only", commit, "--",
               "environments", "policies", "honua.yaml", "providers", "migrations")
    if proc.returncode != 0:
        raise RecoveryError(f"cannot list the files of commit {commit[:12]}: {proc.stderr.strip()}")
    out: dict[str, bytes] = {}
    for path in filter(None, proc.stdout.split("\0")):
        blob = git(root, "show", f"{commit}:{path}", text=False)
        if blob.returncode != 0:
            raise RecoveryError(f"cannot read {path} at commit {commit[:12]}")
        out[path] = blob.stdout
    return out


def working_files(root: Path) -> dict[str, bytes]:
    """The configuration files as they are on disk now."""
    out: dict[str, bytes] = {}
    for top in ("environments", "policies", "providers", "migrations"):
        for p in sorted((root / top).rglob("*")):
            if p.is_file():
                out[p.relative_to(root).as_posix()] = p.read_bytes()
    if (root / "honua.yaml").is_file():
        out["honua.yaml"] = (root / "honua.yaml").read_bytes()
    return out


# --------------------------------------------------------------------------- what a deployment wrote


def edited_details(root: Path, edited: Mapping[str, bytes]) -> dict[str, Any]:
    """For an apply's event: each file its metadata steps edited (``edited``: path → the
    bytes before), as it is now. Empty when nothing was edited."""
    files: dict[str, Any] = {}
    for path, before in sorted(edited.items()):
        target = root / path
        if not target.is_file():
            continue
        now = target.read_bytes()
        if now != before:
            files[path] = {"before": sha256(before), "sha256": sha256(now),
                           "content": base64.b64encode(now).decode("ascii")}
    return {"files": files} if files else {}


def _files_of(ev: Event) -> dict[str, Any]:
    files = ev.details.get("files")
    return files if isinstance(files, dict) else {}


def _ok(ev: Event) -> bool:
    outcomes = ev.details.get("outcomes") or {}
    return isinstance(outcomes, dict) and all(s in ("done", "skipped") for s in outcomes.values()) \
        and ev.details.get("ok") is not False


def replay(files: dict[str, bytes], events: Iterable[Event], *, commit: str | None,
           until: datetime | None = None) -> tuple[dict[str, bytes], list[str]]:
    """``files`` (a commit's) with the edits the deployments recorded up to ``until``, from the
    first successful deployment of ``commit`` on (all recorded ones when it has none). An
    edit applies only where the file is still what it started from (a later commit that
    already holds the edit, or changed the file otherwise, keeps its own). Returns the files
    and the paths an edit changed."""
    events = [e for e in events if until is None or e.at <= until]
    start = next((i for i, e in enumerate(events)
                  if e.kind in DEPLOY_KINDS and _ok(e) and e.details.get("commit") == commit), 0)
    out = dict(files)
    changed: list[str] = []
    for ev in events[start:]:
        if ev.kind not in FILE_KINDS:
            continue
        for path, rec in sorted(_files_of(ev).items()):
            if not isinstance(rec, dict) or not isinstance(rec.get("content"), str):
                continue
            current = out.get(path)
            if current is not None and sha256(current) == rec.get("before"):
                out[path] = base64.b64decode(rec["content"])
                if path not in changed:
                    changed.append(path)
    return out, sorted(p for p in changed if out[p] != files.get(p))


def as_deployed(root: Path, doc: StateDocument, commit: str, until: datetime | None = None
                ) -> tuple[dict[str, bytes], list[str]]:
    """The files of ``commit`` as its deployments left them (see :func:`replay`)."""
    return replay(files_at_commit(root, commit), doc.events, commit=commit, until=until)


# --------------------------------------------------------------------------- snapshots and manifests


def snapshot_bytes(files: Mapping[str, bytes], environment: str) -> bytes:
    """A tar.gz of the environment's own and the shared files (fixed mtime: same files, same bytes)."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name, data in sorted(files.items()):
            if own_path(environment, name) or shared_path(name):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def files_in_snapshot(path: Path) -> dict[str, bytes]:
    try:
        with tarfile.open(path, "r:gz") as tar:
            out: dict[str, bytes] = {}
            for m in tar.getmembers():
                fh = tar.extractfile(m) if m.isfile() else None
                if fh is not None and not m.name.startswith(("/", "..")) and ".." not in m.name.split("/"):
                    out[m.name] = fh.read()
            return out
    except (OSError, tarfile.TarError) as exc:
        raise RecoveryError(f"cannot read the metadata snapshot {path.name}: {exc}") from None


def manifest_path(rec: BackupRecord) -> str:
    """``backups/<id>.manifest.json``, beside the dump."""
    return f"{Path(rec.path).parent.as_posix()}/{rec.id}.manifest.json"


def manifest(rec: BackupRecord, environment: str) -> bytes:
    data = rec.model_dump(mode="json")
    return json.dumps({"environment": environment, **data}, indent=2, sort_keys=True).encode()


def describe_backup(rec: BackupRecord, *, root: Path, state_dir: Path, environment: str, doc: StateDocument
                    ) -> BackupRecord:
    """Record with a backup the metadata its data goes with: the commit last deployed (the
    record's own, else the state's), the files as deployed then (else the working tree),
    their snapshot and its sha256; write the manifest beside the dump."""
    from honua_plan.providers.metadata import write_atomic

    commit = rec.commit or doc.config_commit
    files: dict[str, bytes] | None = None
    if commit:
        try:
            files, _ = as_deployed(root, doc, verify_commit(root, commit), rec.created_at)
        except RecoveryError:
            files = None  # not in this repository: the files on disk are the best record
    data = snapshot_bytes(files if files is not None else working_files(root), environment)
    snap = (state_dir / rec.path).with_name(f"{rec.id}.metadata.tar.gz")
    write_atomic(snap, data)
    rec = rec.model_copy(update={"commit": commit, "metadata_path": snap.relative_to(state_dir).as_posix(),
                                 "metadata_sha256": sha256(data)})
    write_atomic(state_dir / manifest_path(rec), manifest(rec, environment))
    return rec
