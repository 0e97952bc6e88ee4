"""A throwaway PostgreSQL + PostGIS cluster in a directory of our own.

One unit: one cluster's life cycle (initdb, settings, start, stop, databases) under one
lock file and one root directory, whose invariants every method relies on.

Used by ``honua dev db start|stop|status`` and by the test suite. The cluster lives
under one root directory::

    <root>/data          the data directory (initdb), 0700, owned by the server user
    <root>/sock          the Unix socket directory (or a short one under /tmp, see below)
    <root>/socket_dir    the socket directory actually chosen, so stop/status find it
    <root>/server.log    the server's log

The server listens on a Unix socket only (``listen_addresses = ''``) with ``trust``
authentication for local connections and ``reject`` for host connections, so the
connection string never carries a password. The "port" only names the socket file
(``.s.PGSQL.<port>``); it is derived from the root path unless given.

A Unix socket path may not exceed 107 bytes. When ``<root>/sock/.s.PGSQL.<port>``
would be longer, the socket goes to ``/tmp/honua-pg-<8 hex of sha1(root)>`` instead.

PostgreSQL refuses to run as root. When this process is root, initdb and pg_ctl run as
the ``postgres`` system user if it exists (else a ``honua-pg`` system user is created),
and that user is the cluster's superuser and the user in the connection string.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pwd
import re
import shutil
import stat
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from honua_plan.errors import EmbeddedDatabaseError

__all__ = ["ClusterStatus", "EmbeddedCluster", "find_bindir", "find_tool", "pg_dump_available", "postgis_control"]

POSTGIS_MISSING = (
    "PostGIS is not installed: run scripts/bootstrap.sh or "
    "apt-get install postgresql-15-postgis-3"
)
MAX_SOCKET_PATH = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$-]{0,62}$")
_ROOT_USER_FALLBACK = "honua-pg"
_START_TIMEOUT = 60


@dataclass(frozen=True)
class ClusterStatus:
    """What ``EmbeddedCluster.status()`` reports."""

    running: bool
    pid: int | None
    data_dir: Path
    socket_dir: Path
    port: int
    dsn: str


def _quote_conninfo(value: str) -> str:
    """Quote one libpq conninfo value when it needs it."""
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _check_dbname(name: str) -> str:
    if not _IDENT.match(name):
        raise EmbeddedDatabaseError(
            f"invalid database name {name!r}: use letters, digits, '_', '$' or '-' "
            "(at most 63 characters, not starting with a digit)"
        )
    return name


def _version_key(path: Path) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in path.parent.name.split("."))
    except ValueError:
        return (0,)


def _sharedir_for(bindir: Path) -> Path | None:
    """The share directory (holding ``extension/``) that goes with ``bindir``."""
    pg_config = bindir / "pg_config"
    if pg_config.exists():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [str(pg_config), "--sharedir"], capture_output=True, text=True, timeout=10
            )
            if out.returncode == 0 and out.stdout.strip():
                return Path(out.stdout.strip())
    # Debian layout: /usr/lib/postgresql/<ver>/bin -> /usr/share/postgresql/<ver>
    if bindir.parent.parent.name == "postgresql":
        return Path("/usr/share/postgresql") / bindir.parent.name
    share = bindir.parent / "share" / "postgresql"
    if share.is_dir():
        return share
    share = bindir.parent / "share"
    return share if share.is_dir() else None


def postgis_control(bindir: Path) -> Path | None:
    """Where the PostGIS extension of the installation ``bindir`` belongs to would be."""
    share = _sharedir_for(bindir)
    return share / "extension" / "postgis.control" if share else None


def _has_postgis(bindir: Path) -> bool:
    control = postgis_control(bindir)
    return control is not None and control.exists()


def find_tool(name: str) -> str | None:
    """``pg_dump``/``pg_restore`` next to the server binaries (same version) or on PATH.

    Here rather than in :mod:`honua_plan.apply.backup` because every plan asks whether a
    backup is possible, and that question must not import the database driver.
    """
    with contextlib.suppress(EmbeddedDatabaseError, OSError):
        candidate = find_bindir() / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def pg_dump_available() -> bool:
    """True when a ``pg_dump`` (and so a backup before a migration) is available."""
    return find_tool("pg_dump") is not None


def find_bindir() -> Path:
    """Find the PostgreSQL server binaries (initdb, pg_ctl, postgres).

    Order: ``$HONUA_PG_BINDIR``; ``pg_config --bindir``; the highest
    ``/usr/lib/postgresql/*/bin``; ``initdb`` on PATH. Among those, the first whose
    share directory has the PostGIS extension wins; without PostGIS anywhere, the
    first found is returned (starting the cluster then reports PostGIS missing).
    """
    override = os.environ.get("HONUA_PG_BINDIR")
    if override:
        path = Path(override)
        if not (path / "initdb").exists():
            raise EmbeddedDatabaseError(f"HONUA_PG_BINDIR={override} has no initdb")
        return path

    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10
            )
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    candidates.extend(debian)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(os.path.realpath(initdb)).parent)

    usable: list[Path] = []
    for cand in candidates:
        if (cand / "initdb").exists() and (cand / "pg_ctl").exists() and cand not in usable:
            usable.append(cand)
    if not usable:
        raise EmbeddedDatabaseError(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: run scripts/bootstrap.sh "
            "or apt-get install postgresql-15 postgresql-15-postgis-3"
        )
    for cand in usable:
        if _has_postgis(cand):
            return cand
    return usable[0]


@dataclass(frozen=True)
class _RunAs:
    name: str
    uid: int
    gid: int
    home: str
    prefix: tuple[str, ...]  # command prefix that drops privileges, empty when not root


def _ensure_system_user() -> pwd.struct_passwd:
    for name in ("postgres", _ROOT_USER_FALLBACK):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    proc = subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home",
         "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", _ROOT_USER_FALLBACK],
        capture_output=True, text=True,
    )
    if proc.returncode != 0 and "already exists" not in proc.stderr:
        raise EmbeddedDatabaseError(
            f"cannot create the system user {_ROOT_USER_FALLBACK!r} to run PostgreSQL "
            f"(PostgreSQL refuses to run as root): {proc.stderr.strip()}"
        )
    return pwd.getpwnam(_ROOT_USER_FALLBACK)


def _resolve_run_as() -> _RunAs:
    if os.geteuid() != 0:
        pw = pwd.getpwuid(os.geteuid())
        return _RunAs(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir, ())
    pw = _ensure_system_user()
    setpriv = shutil.which("setpriv")
    runuser = shutil.which("runuser")
    prefix: tuple[str, ...]
    if setpriv:
        prefix = (setpriv, f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups", "--")
    elif runuser:
        prefix = (runuser, "-u", pw.pw_name, "--")
    else:
        raise EmbeddedDatabaseError(
            "running as root, but neither setpriv nor runuser is available to start "
            "PostgreSQL as an unprivileged user"
        )
    return _RunAs(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir, prefix)


def _pid_is_postgres(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not Path("/proc/self").exists():
        return True  # no procfs: trust kill(0)
    try:
        raw = cmdline.read_bytes()
    except OSError:
        return False
    return b"postgres" in raw or b"postmaster" in raw


class EmbeddedCluster:
    """A local PostgreSQL + PostGIS cluster rooted at ``root``; one unit (see the module docstring).

    ``fast=True`` (tests only) turns off fsync, synchronous_commit and
    full_page_writes, and skips initdb's final sync: a crash can lose data.
    """

    def __init__(
        self,
        root: Path,
        *,
        dbname: str = "honua",
        port: int | None = None,
        fast: bool = False,
    ) -> None:
        self.root = Path(os.path.abspath(Path(root).expanduser()))
        self.dbname = _check_dbname(dbname)
        digest = hashlib.sha1(str(self.root).encode()).hexdigest()
        self._digest = digest
        self.port = int(port) if port is not None else 20000 + int(digest, 16) % 10000
        if not 1 <= self.port <= 65535:
            raise EmbeddedDatabaseError(f"invalid port {self.port}")
        self.fast = fast
        self.data_dir = self.root / "data"
        self.log_file = self.root / "server.log"
        self._socket_dir_file = self.root / "socket_dir"
        self._bindir: Path | None = None
        self._run_as: _RunAs | None = None

    # ------------------------------------------------------------------ paths, identity

    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            self._bindir = find_bindir()
        return self._bindir

    @property
    def run_as(self) -> _RunAs:
        if self._run_as is None:
            self._run_as = _resolve_run_as()
        return self._run_as

    @property
    def superuser(self) -> str:
        """The cluster's superuser: the OS user initdb ran as."""
        if os.geteuid() == 0:
            for name in ("postgres", _ROOT_USER_FALLBACK):
                with contextlib.suppress(KeyError):
                    return pwd.getpwnam(name).pw_name
            return _ROOT_USER_FALLBACK
        return pwd.getpwuid(os.geteuid()).pw_name

    @property
    def short_socket_dir(self) -> Path:
        return Path(f"/tmp/honua-pg-{self._digest[:8]}")

    def _choose_socket_dir(self) -> Path:
        preferred = self.root / "sock"
        socket_file = os.fsencode(str(preferred / f".s.PGSQL.{self.port}"))
        if len(socket_file) <= MAX_SOCKET_PATH:
            return preferred
        return self.short_socket_dir

    @property
    def socket_dir(self) -> Path:
        """The socket directory recorded at start, else the one start would choose."""
        try:
            recorded = self._socket_dir_file.read_text().strip()
        except OSError:
            recorded = ""
        return Path(recorded) if recorded else self._choose_socket_dir()

    def dsn_for(self, dbname: str, *, socket_dir: Path | None = None, port: int | None = None) -> str:
        """libpq conninfo for database ``dbname`` of this cluster (no password, ever)."""
        parts = {
            "host": str(socket_dir or self.socket_dir),
            "port": str(port or self.port),
            "dbname": dbname,
            "user": self.superuser,
        }
        return " ".join(f"{k}={_quote_conninfo(v)}" for k, v in parts.items())

    @property
    def dsn(self) -> str:
        return self.dsn_for(self.dbname)

    # ------------------------------------------------------------------ status

    def _read_pidfile(self) -> list[str] | None:
        try:
            return (self.data_dir / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise EmbeddedDatabaseError(f"cannot read {self.data_dir / 'postmaster.pid'}: {exc}") from exc

    def _live_pid(self) -> tuple[int | None, list[str] | None]:
        lines = self._read_pidfile()
        if not lines:
            return None, lines
        try:
            pid = int(lines[0].strip())
        except ValueError:
            return None, lines
        return (pid if pid > 0 and _pid_is_postgres(pid) else None), lines

    def status(self) -> ClusterStatus:
        pid, lines = self._live_pid()
        socket_dir, port = self.socket_dir, self.port
        if pid is not None and lines is not None:
            # postmaster.pid: pid, datadir, start time, port, socket dir, listen addr, ...
            with contextlib.suppress(IndexError, ValueError):
                port = int(lines[3])
            with contextlib.suppress(IndexError):
                if lines[4].strip():
                    socket_dir = Path(lines[4].strip().split(",")[0])
        return ClusterStatus(
            running=pid is not None,
            pid=pid,
            data_dir=self.data_dir,
            socket_dir=socket_dir,
            port=port,
            dsn=self.dsn_for(self.dbname, socket_dir=socket_dir, port=port),
        )

    @property
    def running(self) -> bool:
        return self._live_pid()[0] is not None

    # ------------------------------------------------------------------ process helpers

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        if self.run_as.prefix:
            env.update(HOME=self.run_as.home, USER=self.run_as.name, LOGNAME=self.run_as.name)
        env.setdefault("LC_ALL", "C.UTF-8")
        return env

    def _run(self, args: Sequence[str], *, what: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [*self.run_as.prefix, *args]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, env=self._env(), cwd=str(self.root),
                stdin=subprocess.DEVNULL, timeout=timeout,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise EmbeddedDatabaseError(f"{what} failed: {exc}") from exc
        return proc

    def _chown(self, path: Path) -> None:
        if self.run_as.prefix:
            os.chown(path, self.run_as.uid, self.run_as.gid)

    def _make_traversable(self) -> None:
        """As root, let the server user reach ``root``: add search (x) permission, and
        only that, on ancestors it could not otherwise pass (e.g. pytest's 0700 temp dir).
        """
        if not self.run_as.prefix:
            return
        groups = set(os.getgrouplist(self.run_as.name, self.run_as.gid))
        for directory in [*reversed(self.root.parents), self.root]:
            st = directory.stat()
            if st.st_uid == self.run_as.uid:
                needed = stat.S_IXUSR
            elif st.st_gid in groups:
                needed = stat.S_IXGRP
            else:
                needed = stat.S_IXOTH
            if not st.st_mode & needed:
                os.chmod(directory, stat.S_IMODE(st.st_mode) | needed)

    def _prepare_root(self) -> Path:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._make_traversable()
            self._chown(self.root)
            socket_dir = self._choose_socket_dir()
            if socket_dir == self.short_socket_dir:
                self._prepare_short_socket_dir(socket_dir)
            else:
                socket_dir.mkdir(mode=0o700, exist_ok=True)
                self._chown(socket_dir)
            self._socket_dir_file.write_text(f"{socket_dir}\n")
            if not self.log_file.exists():
                self.log_file.touch(mode=0o640)
            self._chown(self.log_file)
            if self.data_dir.exists() and self.run_as.prefix:
                if self.data_dir.stat().st_uid != self.run_as.uid:
                    for dirpath, dirnames, filenames in os.walk(self.data_dir):
                        for name in (*dirnames, *filenames):
                            os.lchown(os.path.join(dirpath, name), self.run_as.uid, self.run_as.gid)
                    self._chown(self.data_dir)
                os.chmod(self.data_dir, 0o700)
        except OSError as exc:
            raise EmbeddedDatabaseError(f"cannot prepare {self.root} for PostgreSQL: {exc}") from exc
        return socket_dir

    def _prepare_short_socket_dir(self, path: Path) -> None:
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
        st = path.lstat()
        if not stat.S_ISDIR(st.st_mode):
            raise EmbeddedDatabaseError(f"{path} exists and is not a directory")
        if st.st_uid not in (self.run_as.uid, os.geteuid()):
            raise EmbeddedDatabaseError(
                f"{path} belongs to another user (uid {st.st_uid}): refusing to put the "
                "PostgreSQL socket there; remove it or use a shorter cluster root"
            )
        self._chown(path)
        os.chmod(path, 0o700)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def _postgis_control(self) -> Path | None:
        return postgis_control(self.bindir)

    # ------------------------------------------------------------------ lifecycle

    def _initdb(self) -> None:
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise EmbeddedDatabaseError(
                f"{self.data_dir} exists but is not a PostgreSQL data directory "
                "(no PG_VERSION): remove it and start again"
            )
        with contextlib.suppress(FileNotFoundError):
            self.data_dir.rmdir()
        base = [
            str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", self.superuser,
            "--auth-local=trust", "--auth-host=reject", "-E", "UTF8", "--no-instructions",
        ]
        if self.fast:
            base.append("--no-sync")
        proc = self._run([*base, "--locale=C.UTF-8"], what="initdb")
        if proc.returncode != 0 and "locale" in (proc.stderr + proc.stdout).lower():
            shutil.rmtree(self.data_dir, ignore_errors=True)
            proc = self._run([*base, "--no-locale"], what="initdb")
        if proc.returncode != 0:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise EmbeddedDatabaseError(
                f"initdb failed for {self.data_dir}:\n{(proc.stderr or proc.stdout).strip()}"
            )
        conf = self.data_dir / "postgresql.conf"
        with conf.open("a") as fh:
            fh.write("\n# honua-plan: settings rewritten at every start\n"
                     "include_if_exists = 'honua.conf'\n")

    def _write_settings(self, socket_dir: Path) -> None:
        lines = [
            "listen_addresses = ''",
            f"port = {self.port}",
            "unix_socket_directories = '{}'".format(str(socket_dir).replace("'", "''")),
            "unix_socket_permissions = 0700",
            "logging_collector = off",
            "log_checkpoints = off",
        ]
        if self.fast:
            lines += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        path = self.data_dir / "honua.conf"
        path.write_text("# written by honua_plan.providers.embedded.pgserver; edits are overwritten\n"
                        + "\n".join(lines) + "\n")
        self._chown(path)

    def _clear_stale(self, socket_dir: Path) -> None:
        pidfile = self.data_dir / "postmaster.pid"
        if pidfile.exists():
            pidfile.unlink()
        for lock in socket_dir.glob(".s.PGSQL.*"):
            with contextlib.suppress(OSError):
                lock.unlink()

    def _check_version(self) -> None:
        try:
            data_version = (self.data_dir / "PG_VERSION").read_text().strip()
        except OSError:
            return
        major = self.bindir.parent.name if self.bindir.parent.parent.name == "postgresql" else ""
        if major and major.split(".")[0] != data_version:
            raise EmbeddedDatabaseError(
                f"{self.data_dir} was created by PostgreSQL {data_version}, but the binaries "
                f"in {self.bindir} are version {major}: remove {self.data_dir} (it is a "
                "throwaway cluster) or set HONUA_PG_BINDIR"
            )

    def start(self) -> None:
        """Create the cluster if missing, start it, ensure ``dbname`` with PostGIS.

        A no-op when the cluster is already running. A stale ``postmaster.pid`` (its
        process gone) is removed before starting.
        """
        with self._lock():
            if self.running:
                return
            control = self._postgis_control()
            if control is None or not control.exists():
                raise EmbeddedDatabaseError(POSTGIS_MISSING)
            socket_dir = self._prepare_root()
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            self._check_version()
            self._clear_stale(socket_dir)
            self._write_settings(socket_dir)
            proc = self._run(
                [str(self.bindir / "pg_ctl"), "start", "-w", "-t", str(_START_TIMEOUT),
                 "-D", str(self.data_dir), "-l", str(self.log_file)],
                what="pg_ctl start", timeout=_START_TIMEOUT + 30,
            )
            if proc.returncode != 0:
                raise EmbeddedDatabaseError(
                    f"PostgreSQL did not start (data {self.data_dir}):\n"
                    f"{(proc.stderr or proc.stdout).strip()}\n--- {self.log_file} ---\n"
                    f"{self._log_tail()}"
                )
            self.create_database(self.dbname, exist_ok=True, extensions=("postgis",))

    def stop(self) -> int | None:
        """Stop the cluster (fast shutdown): the pid of the postmaster it stopped, checked
        gone afterwards; None (a no-op) when it was not running."""
        with self._lock():
            pid = self._live_pid()[0]
            if pid is None:
                with contextlib.suppress(OSError):
                    (self.data_dir / "postmaster.pid").unlink()
                return None
            proc = self._run(
                [str(self.bindir / "pg_ctl"), "stop", "-w", "-t", str(_START_TIMEOUT),
                 "-m", "fast", "-D", str(self.data_dir)],
                what="pg_ctl stop", timeout=_START_TIMEOUT + 30,
            )
            if self.running:
                raise EmbeddedDatabaseError(
                    f"PostgreSQL did not stop (data {self.data_dir}):\n"
                    f"{(proc.stderr or proc.stdout).strip() or f'pg_ctl stop exited {proc.returncode}'}"
                )
            short = self.short_socket_dir
            if self.socket_dir == short:
                with contextlib.suppress(OSError):
                    short.rmdir()  # only when empty
            return pid

    def destroy(self) -> None:
        """Stop the cluster and remove its root directory and socket directory."""
        self.stop()
        socket_dir = self.socket_dir
        shutil.rmtree(self.root, ignore_errors=True)
        if socket_dir == self.short_socket_dir:
            shutil.rmtree(socket_dir, ignore_errors=True)

    # ------------------------------------------------------------------ SQL helpers

    def connect(self, dbname: str | None = None, **kwargs: Any) -> Any:
        """A psycopg connection (autocommit) to ``dbname`` (default: the cluster's)."""
        import psycopg

        try:
            return psycopg.connect(self.dsn_for(dbname or self.dbname), autocommit=True, **kwargs)
        except psycopg.Error as exc:
            message = f"cannot connect to the embedded cluster: {str(exc).strip()}"
            if not self.running:
                message += (
                    f"\nthe cluster at {self.root} is not running; the end of {self.log_file}:\n"
                    + self._log_tail(15)
                )
            raise EmbeddedDatabaseError(message) from exc

    def database_exists(self, name: str) -> bool:
        with self.connect("postgres") as conn:
            row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            return row is not None

    def create_database(
        self,
        name: str,
        template: str | None = None,
        *,
        exist_ok: bool = False,
        extensions: Sequence[str] = (),
        is_template: bool = False,
    ) -> str:
        """Create database ``name`` (optionally from ``template``); return its DSN.

        ``extensions`` are created in it (``IF NOT EXISTS``); ``is_template`` marks it
        as a template database. With ``exist_ok`` an existing database is kept.
        """
        import psycopg
        from psycopg import sql

        _check_dbname(name)
        if template is not None:
            _check_dbname(template)
        try:
            with self.connect("postgres") as conn:
                exists = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
                ).fetchone()
                if exists and not exist_ok:
                    raise EmbeddedDatabaseError(f"database {name!r} already exists")
                if not exists:
                    stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
                    if template is not None:
                        # FILE_COPY copies the files: much faster than the default
                        # WAL_LOG for a small template such as a fresh PostGIS database.
                        stmt += sql.SQL(" TEMPLATE {} STRATEGY FILE_COPY").format(
                            sql.Identifier(template)
                        )
                    try:
                        conn.execute(stmt)
                    except psycopg.errors.DuplicateDatabase:
                        if not exist_ok:
                            raise
            if extensions:
                with self.connect(name) as conn:
                    for ext in extensions:
                        conn.execute(
                            sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(ext))
                        )
            if is_template:
                with self.connect("postgres") as conn:
                    conn.execute(
                        sql.SQL("ALTER DATABASE {} IS_TEMPLATE true").format(sql.Identifier(name))
                    )
        except psycopg.Error as exc:
            text = str(exc).strip()
            if "postgis" in text and "control file" in text:
                raise EmbeddedDatabaseError(POSTGIS_MISSING) from exc
            raise EmbeddedDatabaseError(f"cannot create database {name!r}: {text}") from exc
        return self.dsn_for(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, terminating its sessions first."""
        import psycopg
        from psycopg import sql

        _check_dbname(name)
        ident = sql.Identifier(name)
        try:
            with self.connect("postgres") as conn:
                row = conn.execute(
                    "SELECT datistemplate FROM pg_database WHERE datname = %s", (name,)
                ).fetchone()
                if row is None:
                    return
                if row[0]:
                    conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(ident))
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        except psycopg.Error as exc:
            raise EmbeddedDatabaseError(f"cannot drop database {name!r}: {str(exc).strip()}") from exc
