"""The embedded default server: pygeoapi under gunicorn, configured from the published document.

One unit: one gunicorn process and the files it serves (configuration, OpenAPI document,
digest, pid, log); publish, reload, restart and health each depend on both. What the
configuration says is :mod:`~honua_plan.providers.server.pygeoapi_config`.

Files, all under ``state/<env>/server/`` and all written atomically (temp + rename)::

    pygeoapi-config.yml   rendered from the published document (no secret in it)
    openapi.json          what ``pygeoapi openapi generate -f json … --no-fail-on-invalid-collection``
                          writes, built in process from the catalog (:mod:`.pygeoapi_openapi`)
    .pygeoapi-config.sha256  digests of the config and published.json as written: a plan
                          that finds both unchanged does not parse the config
    gunicorn.pid          the gunicorn master
    server.log            gunicorn's error log, with pygeoapi's own output (--capture-output)

Why it works the way it does (``docs/reference/pygeoapi.md``):

* pygeoapi reads its config once per worker at import, so a reload is: write the
  files, ``SIGHUP`` the gunicorn master (graceful worker replacement, no dropped
  requests), wait until the old workers are gone, then :meth:`health` asks
  ``/ogc/collections`` once (every published id listed) and ``/ogc/collections/<id>``
  for a bounded sample (the changed collections and a few unchanged), concurrently.
* Workers run ``honua_plan/providers/server/pygeoapi_app.py`` (pygeoapi's app, its config read by
  libyaml) and the master imports pygeoapi's libraries once
  (``honua_plan/providers/server/pygeoapi_gunicorn.py``), so a reload's workers only read the config. The same HUP clears pygeoapi's per-worker table-model
  cache, so a column added by a migration is served after the reload.
* URLs live under ``/ogc``: ``server.url`` is ``http://host:port/ogc`` (or
  ``spec.publicUrl``) for the links pygeoapi writes, and gunicorn strips the prefix
  from the request path because its environment has ``SCRIPT_NAME=/ogc``.
* SRID 4326 is announced as CRS84 (lon, lat); ``EPSG/0/4326`` would swap axes.
* The database password never enters the file: the provider's ``data.password`` is
  ``${HONUA_PYGEOAPI_DB_PASSWORD}`` (pygeoapi interpolates ``${VAR}``), and the value
  is put in the environment of gunicorn only (the OpenAPI document needs no connection). Several
  datasources with passwords get ``HONUA_PYGEOAPI_DB_PASSWORD_<DATASOURCE>`` each.
* Nothing else is interpolated. pygeoapi's ``yaml_load`` expands ``${VAR}`` through an
  implicit resolver, which PyYAML applies to *plain* scalars only, so every string of
  the config is written double-quoted (the reference above is the one plain scalar),
  and a layer's text is served exactly as written, ``${HONUA_PG_DSN}`` included. The
  OpenAPI document is JSON: pygeoapi would load a YAML one through ``yaml_load`` too,
  and its own ``safe_dump`` writes plain scalars. The server processes get an
  allow-listed environment (:func:`server_env`): PATH, HOME, TMPDIR, locale, libpq's
  file locations, pygeoapi's own variables and the password variables, nothing else.
* A Unix-socket DSN works: pygeoapi passes ``host`` to SQLAlchemy's ``URL.create``,
  and psycopg2/libpq take a directory as host. Other libpq keywords of the DSN
  (sslmode, connect_timeout, …) go to the provider's ``options``, which pygeoapi
  hands to ``psycopg2.connect``.
* A change of port, workers, base path or password needs a restart, not a HUP (the
  master keeps its argv and environment): :meth:`reload` compares and restarts.

pygeoapi (``pip install 'honua-plan[server]'``) is imported only here, lazily; the
server runs in its own processes (``python -m gunicorn``), never in ours.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from honua_plan.config import slots
from honua_plan.errors import ServerError
from honua_plan.providers.server.base import (
    LocalServer,
    PlanEntry,
    PublishResult,
    call_resolver,
    diff_published,
    merge_published,
)
from honua_plan.providers.server.http import HealthResult, check_served, http_request
from honua_plan.secrets import redact

if TYPE_CHECKING:
    from honua_plan.providers.postgis.facts import DatabaseFacts
from honua_plan.providers.server.pygeoapi_config import (
    PASSWORD_ENV,
    ConnParams,
    EnvReference,
    _digest,
    _quoted,
    _QuotedDumper,
    _reference,
    _typed_by_pygeoapi,
    config_sidecar,
    connection_params,
    dump_config,
    password_env_names,
    render_config,
    server_env,
    server_env_allowed,
    sidecar_path,
)

INSTALL_HINT = "pip install 'honua-plan[server]'"
CONFIG_FILE = "pygeoapi-config.yml"
OPENAPI_FILE = "openapi.json"  # JSON: pygeoapi loads a YAML one with ${VAR} expansion
DIGEST_FILE = ".pygeoapi-config.sha256"  # of the config as honua wrote it: unchanged -> no parse
PID_FILE = "gunicorn.pid"
LOG_FILE = "server.log"
DEFAULT_PORT = 5555
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])  # the directory honua_plan is imported from

__all__ = [
    "PASSWORD_ENV",
    "ConnParams",
    "PygeoapiServer",
    "connection_params",
    "password_env_names",
    "render_config",
    "require_pygeoapi",
    "server_env",
    "server_env_allowed",
]


def require_pygeoapi() -> str:
    """pygeoapi's version; ServerError with the install command when it or gunicorn is missing.

    Found, not imported: importing pygeoapi costs 0.4 s, spent only where its generator runs.
    """
    from importlib.util import find_spec

    if find_spec("pygeoapi") is None:
        raise ServerError(f"pygeoapi is not installed: {INSTALL_HINT}")
    if find_spec("gunicorn") is None:
        raise ServerError(f"gunicorn is not installed (it serves pygeoapi): {INSTALL_HINT}")
    return _pygeoapi_version()


# --------------------------------------------------------------------------- connection


# --------------------------------------------------------------------------- config (pure)


_AS_WRITTEN: Any = object()  # _read_config: the file is the one rendered from published.json


_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


_QuotedDumper.add_representer(str, _quoted)
_QuotedDumper.add_representer(EnvReference, _reference)


# --------------------------------------------------------------------------- processes


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [p.decode("utf-8", "replace") for p in raw.split(b"\0") if p]


def _environ(pid: int) -> dict[str, str] | None:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    out: dict[str, str] = {}
    for item in raw.split(b"\0"):
        if b"=" in item:
            k, v = item.split(b"=", 1)
            out[k.decode("utf-8", "replace")] = v.decode("utf-8", "replace")
    return out


def _children(pid: int) -> set[int] | None:
    """Child pids of ``pid`` (from /proc); None where /proc is not available."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    out: set[int] = set()
    try:  # the kernel's own list (CONFIG_PROC_CHILDREN): no scan of every process
        for task in (proc / str(pid) / "task").iterdir():
            out.update(int(c) for c in (task / "children").read_text().split())
        return out
    except (OSError, ValueError):
        out.clear()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="utf-8", errors="replace")
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                out.add(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return out


def _file_digest(path: Path) -> str:
    """sha256 of a file's bytes, streamed (equal to ``_digest`` of its UTF-8 text)."""
    import hashlib

    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _pygeoapi_version() -> str:
    """The installed pygeoapi's version, without importing it (the generator may change with it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pygeoapi")
    except PackageNotFoundError:
        return "?"


def _gunicorn_supports(flag: str) -> bool:
    try:
        from gunicorn.config import KNOWN_SETTINGS
    except ImportError:
        return False
    return any(flag in (getattr(s, "cli", None) or []) for s in KNOWN_SETTINGS)


# --------------------------------------------------------------------------- provider


class PygeoapiServer(LocalServer):
    """pygeoapi under gunicorn, one per environment, files under ``state/<env>/server/``; one unit
    with its process (see the module docstring)."""

    kind = "pygeoapi"

    def __init__(self, server: Any, **kwargs: Any) -> None:
        super().__init__(server, **kwargs)
        from honua_plan.config.models import PygeoapiOptions

        self.options = server.spec.pygeoapi if server is not None else PygeoapiOptions()
        self.server_dir = (self.state_dir / "server").absolute()  # gunicorn runs with --chdir
        self.config_path = self.server_dir / CONFIG_FILE
        self.openapi_path = self.server_dir / OPENAPI_FILE
        self.twin_path = Path(sidecar_path(str(self.config_path)))
        self.openapi_index_path = self.server_dir / "openapi.index.json"
        self._openapi_index: str | None = None
        self.openapi_generated = 0  # collections the last publish generated OpenAPI paths for
        self.pid_path = self.server_dir / PID_FILE
        self.log_path = self.server_dir / LOG_FILE
        self.digest_path = self.server_dir / DIGEST_FILE
        self.timings: dict[str, float] = {}
        # datasource -> DatabaseFacts: the catalog the caller already read (apply), so the
        # OpenAPI document needs no read of its own
        self.catalog: dict[str, Any] = {}
        self._datasource_of: dict[str, str] = {}
        self._config_text = ""
        # the collections the last publish created or updated: health asks each of them
        # (None: not known, a sample of all)
        self.last_changed: list[str] | None = None  # collection id -> datasource, of the last render
        self.port_override: int | None = None  # `honua serve --port`

    # -- addresses --------------------------------------------------------------

    @property
    def host(self) -> str:
        return str(self.options.host)

    @property
    def port(self) -> int:
        if self.port_override is not None:
            return self.port_override
        name = self.options.portEnv
        if name and slots.server_port_problem(name) is None and os.environ.get(name):
            value = os.environ[name]
            if not value.isdigit() or not 0 < int(value) < 65536:  # the value is not quoted: it is data
                raise ServerError(f"{name} is not a TCP port (1-65535)")
            return int(value)
        by_env = self.options.environmentPorts.get(self.environment)
        if by_env:
            return int(by_env)
        return int(self.options.port or DEFAULT_PORT)

    @property
    def base_path(self) -> str:
        path = "/" + str(self.options.basePath or "").strip("/")
        return "" if path == "/" else path

    def warm_up(self) -> None:
        """Import pygeoapi's OpenAPI generator in another process while the apply checks."""
        from importlib.util import find_spec

        from honua_plan.providers.server.pygeoapi_openapi import start_generator

        if find_spec("pygeoapi") is not None:
            start_generator(_PACKAGE_ROOT, server_env({}))

    def use_catalog(self, datasource: str, facts: DatabaseFacts) -> None:
        """The OpenAPI document's fields come from the catalog the engine read (no reflection)."""
        self.catalog[datasource] = facts

    @property
    def local_url(self) -> str:
        host = self.host
        if host in ("0.0.0.0", "", "*", "127.0.0.1"):
            host = "localhost"  # as people type it (and the seed shows it); resolves to loopback
        elif host in ("::", "[::]"):
            host = "[::1]"
        elif ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}{self.base_path}"

    @property
    def ogc_url(self) -> str:
        """Where clients (and ``honua test``) reach the landing page: ``publicUrl`` if set.

        :meth:`health` always polls :attr:`local_url`, the process just (re)started.
        """
        return self.public_url

    @property
    def public_url(self) -> str:
        public = self.server.spec.publicUrl if self.server is not None else None
        return (public or self.local_url).rstrip("/")

    # -- read / plan ------------------------------------------------------------

    def read(self) -> dict[str, Any] | None:
        """``published.json``, corrected by the pygeoapi config actually on disk.

        A collection the config no longer has is not published; a resource in the
        config that the document does not know is reported with what the config says.
        """
        doc = self.read_published_file()
        config = self._read_config(written_from=doc)
        if config is _AS_WRITTEN:
            return doc
        if config is None:
            return doc if doc is None or not doc.get("collections") else {**doc, "collections": {}}
        doc = doc or {"format_version": 1, "environment": self.environment, "services": {}, "collections": {}}
        resources: Mapping[str, Any] = config.get("resources") or {}
        collections: dict[str, Any] = dict(doc.get("collections") or {})
        for cid in list(collections):
            if cid not in resources:
                del collections[cid]
        for cid, res in resources.items():
            prov = ((res or {}).get("providers") or [{}])[0]
            entry = dict(collections.get(cid) or {})
            schema = ((prov.get("data") or {}).get("search_path") or ["public"])[0]
            seen = {
                "title": res.get("title"),
                "table": f"{schema}.{prov.get('table')}",
                "id_field": prov.get("id_field"),
                "geom_field": prov.get("geom_field", "geom"),
                "title_field": prov.get("title_field"),
                "item_limit": (res.get("limits") or {}).get("max_items"),
            }
            if not entry:
                service, _, layer = cid.partition("::")
                entry = {"service": service, "layer": layer, "description": res.get("description"),
                         "schema": schema, "crs": prov.get("crs"), "bbox": (res.get("extents") or {}).get(
                             "spatial", {}).get("bbox")}
            entry.update(seen)
            collections[cid] = entry
        return {**doc, "collections": collections}

    def _read_config(self, written_from: Mapping[str, Any] | None = None) -> Any:
        """The config on disk; :data:`_AS_WRITTEN` (not parsed) when it is byte for byte the
        one honua rendered from ``written_from`` (its digest file says so)."""
        if written_from is not None:
            # the files' bytes are hashed as they stream: neither text is held (10 MB each at
            # 10,000 collections), and they are the UTF-8 of the texts the digests were made of
            try:
                recorded = self.digest_path.read_text(encoding="ascii").split()
                if recorded == [_file_digest(self.config_path), _file_digest(self.published_path)]:
                    return _AS_WRITTEN
            except (OSError, UnicodeDecodeError):
                pass
        try:
            text = self.config_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ServerError(f"cannot read {self.config_path}: {exc.strerror}") from None
        try:
            data = yaml.load(text, Loader=_BaseLoader)  # a safe loader (libyaml's when present)
        except yaml.YAMLError as exc:
            raise ServerError(f"{self.config_path} is not valid YAML: {exc}") from None
        return data if isinstance(data, dict) else None

    def plan(self, doc: Mapping[str, Any]) -> list[PlanEntry]:
        return diff_published(self.read(), doc, prune=True)

    # -- publish ------------------------------------------------------------------

    def _connections(self, doc: Mapping[str, Any]) -> dict[str, ConnParams]:
        names = sorted({str(c.get("datasource") or "") for c in (doc.get("collections") or {}).values()})
        return {name: connection_params(call_resolver(self.dsn_resolver, name)) for name in names}

    def _password_env(self, connections: Mapping[str, ConnParams]) -> tuple[dict[str, str], dict[str, str]]:
        """(datasource → variable name, variable name → value)."""
        with_pw = [n for n, c in connections.items() if c.password]
        names = password_env_names(with_pw)
        values: dict[str, str] = {}
        for ds, var in names.items():
            pw = connections[ds].password or ""
            if _typed_by_pygeoapi(pw):
                raise ServerError(
                    f"the password of datasource '{ds}' looks like a number or boolean, which pygeoapi's "
                    "config loader would convert (it interpolates ${VAR} and then types the value)",
                    hint="use a password with at least one letter, or connect without one (peer/trust/.pgpass)",
                )
            values[var] = pw
        return names, values

    def render(self, doc: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """The pygeoapi config for ``doc`` and the secret environment it needs."""
        connections = self._connections(doc)
        names, values = self._password_env(connections)
        self._datasource_of = {cid: str(c.get("datasource") or "") for cid, c in (doc.get("collections") or {}).items()}
        config = render_config(
            doc, host=self.host, port=self.port, url=self.public_url, connections=connections, password_envs=names,
        )
        return config, values

    def publish(self, doc: Mapping[str, Any], *, prune: bool = True) -> PublishResult:
        require_pygeoapi()
        started = time.perf_counter()
        desired = self._normalized(doc)
        current = self.read()
        entries = diff_published(current, desired, prune=prune)
        merged = merge_published(current, desired, prune=prune)
        warnings = self.fill_extents(merged)
        config, secret_env = self.render(merged)
        self.server_dir.mkdir(parents=True, exist_ok=True)
        self._write_files(config, secret_env)
        published = self.write_published(merged)
        self._write_digest(published)
        self.last_changed = [e.collection for e in entries
                             if e.kind == "collection" and e.action in ("create", "update")]
        return PublishResult(
            tuple(entries), merged, time.perf_counter() - started,
            files=(str(self.config_path), str(self.openapi_path), str(self.published_path)),
            warnings=tuple(warnings),
        )

    def _write_files(self, config: Mapping[str, Any], secret_env: Mapping[str, str]) -> None:
        """Config and OpenAPI, each to a temp file, then both renamed into place.

        The OpenAPI document comes from pygeoapi's generator run here on the catalog
        facts (:mod:`.pygeoapi_openapi`), not from ``pygeoapi openapi generate`` (a
        connection and a table reflection per collection); ``secret_env`` is not needed
        for it, as nothing connects with the password.
        """
        from honua_plan.providers.metadata import write_atomic

        tmp_cfg = self.server_dir / f".{CONFIG_FILE}.new"
        tmp_oas = self.server_dir / f".{OPENAPI_FILE}.new"
        tmp_twin = self.server_dir / ".twin.new"
        try:
            started = time.perf_counter()
            text = dump_config(config)
            write_atomic(tmp_cfg, text.encode("utf-8"))
            twin = config_sidecar(config, text)
            if twin is not None:
                write_atomic(tmp_twin, twin.encode("utf-8"))
            self.timings["config_write"] = time.perf_counter() - started
            started = time.perf_counter()
            self._openapi(config, tmp_oas)
            self.timings["openapi_generate"] = time.perf_counter() - started
            self.digest_path.unlink(missing_ok=True)  # rewritten once published.json says the same
            self.openapi_index_path.unlink(missing_ok=True)  # written again once the document is in place
            os.replace(tmp_oas, self.openapi_path)
            if self._openapi_index is not None:
                write_atomic(self.openapi_index_path, self._openapi_index.encode("utf-8"))
            # the twin first: a worker reading between the two renames finds a twin that is
            # not of the YAML it read (its digest says so) and parses the YAML
            if twin is not None:
                os.replace(tmp_twin, self.twin_path)
            else:
                self.twin_path.unlink(missing_ok=True)
            os.replace(tmp_cfg, self.config_path)
            self._config_text = text
            (self.server_dir / "openapi.yml").unlink(missing_ok=True)  # left by older versions
        finally:
            tmp_cfg.unlink(missing_ok=True)
            tmp_oas.unlink(missing_ok=True)
            tmp_twin.unlink(missing_ok=True)

    def _write_digest(self, published: Path) -> None:
        """Record that the config on disk is the one rendered from ``published.json`` as it is now."""
        from honua_plan.providers.metadata import write_atomic

        text = f"{_digest(self._config_text)} {_digest(published.read_text(encoding='utf-8'))}\n"
        write_atomic(self.digest_path, text.encode("ascii"))

    def _openapi(self, config: Mapping[str, Any], dest: Path) -> None:
        """Write the OpenAPI document for ``config`` to ``dest``: only the changed collections generated again.

        pygeoapi's generator takes 0.4 s for 1,000 collections (4 s for 10,000) however few
        changed. The document on disk is reused when its index (``openapi.index.json``)
        says it was generated from the same config without its resources, and its text is
        unchanged: the collections whose config entry or table fields changed are generated
        alone and spliced in (:func:`~.pygeoapi_openapi.splice`); when half or more changed,
        or anything is in doubt, the whole document is generated.
        """
        import honua_plan.providers.server.pygeoapi_openapi as oas

        resources: Mapping[str, Any] = config.get("resources") or {}
        by_table: dict[str, str] = {}  # schema.table -> datasource
        for cid, res in resources.items():
            ds = self._datasource_of.get(cid, "")
            for prov in (res or {}).get("providers") or []:
                by_table[oas.table_key(prov)] = ds
        facts = self._catalog_facts(sorted(set(by_table.values())))

        def fields(key: str, geom_field: str) -> dict[str, dict[str, Any]] | None:
            f = facts.get(by_table.get(key, ""))
            table = f.table(key) if f is not None else None
            return oas.provider_fields(table.columns, geom_field) if table is not None else None

        rest, per = oas.fingerprints(config, fields, _pygeoapi_version())
        index = self._openapi_on_disk(rest)
        digest: str | None = None
        # pygeoapi leaves out the feature paths of every collection when one table is
        # missing: such a document is not made of per-collection parts
        complete = all(fields(oas.table_key(p), str(p.get("geom_field") or "geom")) is not None
                       for res in resources.values() for p in (res or {}).get("providers") or []
                       if p.get("name") == "PostgreSQL")
        if index is not None and resources and complete:
            changed = [cid for cid in resources if index.collections.get(cid) != per[cid]]
            removed = [cid for cid in index.collections if cid not in resources]
            if index.collections and 2 * (len(changed) + len(removed)) < len(resources):
                digest = oas.write_document(config, fields, str(dest), oas.Reuse(
                    str(self.openapi_path), list(index.collections), changed, removed))
                self.openapi_generated = len(changed)
        if digest is None:
            digest = oas.write_document(config, fields, str(dest))
            self.openapi_generated = len(resources)
        assert digest is not None  # without reuse there is always a document
        self._openapi_index = oas.OpenAPIIndex(rest, per, digest).to_json()

    def _openapi_on_disk(self, rest: str) -> Any:
        """The index of the OpenAPI document on disk when it may be reused (same config
        apart from the resources, text unchanged since), else None. The document itself is
        read by whoever splices it (the generator process)."""
        from honua_plan.providers.server.pygeoapi_openapi import OpenAPIIndex

        try:
            index = OpenAPIIndex.from_json(self.openapi_index_path.read_text(encoding="utf-8"))
            if index is None or index.rest != rest:
                return None
            if _file_digest(self.openapi_path) != index.document_sha256:  # streamed: 75 MB at 10,000
                return None
        except (OSError, ValueError):
            return None
        return index

    def _catalog_facts(self, datasources: Sequence[str]) -> dict[str, Any]:
        """The catalog of each datasource: given by the caller (:attr:`catalog`), else one read each."""
        from honua_plan.providers.postgis import catalog as postgis
        from honua_plan.providers.postgis.sqlexec import Session, connect

        out: dict[str, Any] = {}
        for ds in datasources:
            if ds in self.catalog:
                out[ds] = self.catalog[ds]
                continue
            with connect(call_resolver(self.dsn_resolver, ds), application_name="honua-plan openapi") as conn:
                out[ds] = self.catalog[ds] = postgis.refresh(Session(conn), exact_sizes=False)
        return out

    # -- process ------------------------------------------------------------------

    def _argv(self, *, daemon: bool) -> list[str]:
        argv = [
            # pygeoapi's app, its config read by libyaml (honua_plan/providers/server/pygeoapi_app.py), found
            # through --pythonpath: the server's environment has no PYTHONPATH
            sys.executable, "-m", "gunicorn", "honua_plan.providers.server.pygeoapi_app:APP",
            "--pythonpath", _PACKAGE_ROOT,
            # pygeoapi's libraries imported once in the master: a reload's workers fork with them
            "--config", str(Path(__file__).with_name("pygeoapi_gunicorn.py")),
            "--bind", f"{self.host}:{self.port}",
            "--workers", str(self.options.workers),
            "--pid", str(self.pid_path),
            "--graceful-timeout", "10",
            "--timeout", "60",
            "--chdir", str(self.server_dir),
        ]
        if _gunicorn_supports("--no-control-socket"):
            argv.append("--no-control-socket")
        if daemon:
            argv += ["--daemon", "--error-logfile", str(self.log_path), "--capture-output"]
        return argv

    def _process_env(self, secret_env: Mapping[str, str]) -> dict[str, str]:
        """gunicorn's environment: the allow-list (:func:`server_env`), never ours whole."""
        extra = {**secret_env, "PYGEOAPI_CONFIG": str(self.config_path),
                 "PYGEOAPI_OPENAPI": str(self.openapi_path), "PYTHONUNBUFFERED": "1"}
        if self.base_path:
            extra["SCRIPT_NAME"] = self.base_path
        return server_env(extra)

    def pid(self) -> int | None:
        """The gunicorn master's pid when it runs (a stale pid file is removed)."""
        try:
            text = self.pid_path.read_text().strip()
        except OSError:
            return None
        if not text.isdigit():
            return None
        pid = int(text)
        cmd = _cmdline(pid)
        if _pid_alive(pid) and (not cmd or (any("gunicorn" in p for p in cmd) and str(self.pid_path) in cmd)):
            return pid
        self.pid_path.unlink(missing_ok=True)
        return None

    def is_running(self) -> bool:
        return self.pid() is not None

    def _secret_env_now(self) -> dict[str, str]:
        doc = self.read()
        if not doc or not doc.get("collections"):
            return {}
        _, values = self._password_env(self._connections(doc))
        return values

    def _ensure_files(self) -> None:
        if not (self.config_path.is_file() and self.openapi_path.is_file()):
            self.publish(self.read() or {}, prune=True)

    def _port_free(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((self.host, self.port))
            except OSError as exc:
                hint = "set spec.pygeoapi.port in the Server file" + (
                    f" or {self.options.portEnv}" if self.options.portEnv else "")
                raise ServerError(f"cannot serve on {self.host}:{self.port}: {exc.strerror}", hint=hint) from None

    def _rotate_log(self, max_bytes: int = 10 * 1024 * 1024) -> None:
        with contextlib.suppress(OSError):
            if self.log_path.stat().st_size > max_bytes:
                os.replace(self.log_path, self.log_path.with_suffix(".log.1"))

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return redact("\n".join(text.splitlines()[-lines:]))

    def start(self, *, timeout_s: float | None = None) -> None:
        """Start gunicorn in the background and wait until the landing page answers."""
        require_pygeoapi()
        if self.is_running():
            return
        self._ensure_files()
        self._port_free()
        secret_env = self._secret_env_now()
        self.server_dir.mkdir(parents=True, exist_ok=True)
        self._rotate_log()
        started = time.perf_counter()
        t0 = time.monotonic()
        mark = self.log_path.stat().st_size if self.log_path.exists() else 0
        try:
            proc = subprocess.run(self._argv(daemon=True), env=self._process_env(secret_env), cwd=self.server_dir,
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            raise ServerError("gunicorn did not daemonize within 60s") from None
        if proc.returncode != 0:
            raise ServerError(redact(f"gunicorn failed to start (exit {proc.returncode}): "
                                     f"{(proc.stderr or proc.stdout).strip()[-1500:]}"))
        timeout = float(timeout_s if timeout_s is not None else max(self.health_timeout, 30.0))
        deadline = time.monotonic() + timeout
        while True:
            pid = self.pid()
            if pid is not None:
                try:
                    resp = http_request("GET", self.local_url + "/", timeout=2.0, what="pygeoapi")
                    if resp.status == 200:
                        break
                except ServerError:
                    pass
            elif time.monotonic() > t0 + 10.0:
                raise ServerError("pygeoapi (gunicorn) exited during start-up:\n" + self._log_since(mark))
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"pygeoapi did not answer on {self.local_url}/ within {timeout:g}s:\n"
                                  + self._log_since(mark))
            time.sleep(0.1)
        self.timings["start"] = time.perf_counter() - started

    def _log_since(self, mark: int) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(mark)
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return redact("\n".join(text.splitlines()[-30:]))

    def stop(self, timeout_s: float = 15.0) -> bool:
        """Stop the gunicorn master (SIGTERM, then SIGKILL) and its workers; False if none ran."""
        pid = self.pid()
        if pid is None:
            return False
        workers = _children(pid) or set()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        for p in [pid, *workers]:
            if _pid_alive(p):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while any(_pid_alive(p) for p in [pid, *workers]) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.pid_path.unlink(missing_ok=True)
        return True

    def _needs_restart(self, pid: int, secret_env: Mapping[str, str]) -> str | None:
        cmd = _cmdline(pid)
        want = self._argv(daemon=True)
        if cmd and "-m" in cmd and cmd[cmd.index("-m"):] != want[want.index("-m"):]:
            return "its command line changed (port, workers or paths)"
        env = _environ(pid)
        if env is None:
            return None
        if env.get("SCRIPT_NAME", "") != self.base_path:
            return "the base path changed"
        if env.get("PYGEOAPI_OPENAPI") != str(self.openapi_path) or not all(map(server_env_allowed, env)):
            return "its environment is not the allow-listed one"
        now = {k: v for k, v in env.items() if k.startswith(PASSWORD_ENV)}
        if now != dict(secret_env):
            return "the database password changed"
        return None

    def reload(self) -> None:
        """Serve what was published: SIGHUP a running server (restart if needed), or start one."""
        require_pygeoapi()
        pid = self.pid()
        if pid is None:
            self.start()
            return
        started = time.perf_counter()
        secret_env = self._secret_env_now()
        reason = self._needs_restart(pid, secret_env)
        if reason:
            self.stop()
            self.start()
            self.timings["reload"] = time.perf_counter() - started
            return
        old = _children(pid)
        os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + 30.0
        if old is None:  # no /proc: give gunicorn its usual time
            time.sleep(1.5)
        else:
            while time.monotonic() < deadline:
                if not _pid_alive(pid):
                    raise ServerError("pygeoapi (gunicorn) exited on reload:\n" + self.log_tail())
                now = _children(pid) or set()
                if not (old & now) and now:
                    break
                time.sleep(0.05)
            else:
                raise ServerError("pygeoapi did not replace its workers within 30s of SIGHUP:\n" + self.log_tail())
        self.timings["reload"] = time.perf_counter() - started

    def _alive_problem(self) -> str | None:
        if self.pid() is None:
            return "pygeoapi (gunicorn) is not running:\n" + self.log_tail()
        return None

    def health(self, collection_ids: Sequence[str], timeout_s: float = 30.0) -> HealthResult:
        started = time.perf_counter()
        result = check_served(self.local_url, collection_ids, timeout_s, changed=self.last_changed,
                              what="pygeoapi", alive=self._alive_problem)
        self.timings["health"] = time.perf_counter() - started
        return result

    def serve_foreground(self, doc: Mapping[str, Any] | None = None) -> int:
        """``honua serve``: run gunicorn in this terminal until Ctrl-C; its exit code back."""
        require_pygeoapi()
        if doc is not None:
            self.publish(doc, prune=True)
        pid = self.pid()
        if pid is not None:
            raise ServerError(f"pygeoapi already runs for {self.environment} (pid {pid}) on {self.local_url}",
                              hint="stop it with `honua serve --env ENV --stop`")
        self._ensure_files()
        self._port_free()
        argv = self._argv(daemon=False)
        proc = subprocess.Popen(argv, env=self._process_env(self._secret_env_now()), cwd=self.server_dir)

        def forward(signum: int, _frame: Any) -> None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, forward)  # `kill <honua serve>` stops gunicorn too
        try:
            return proc.wait()
        except KeyboardInterrupt:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                return proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                return proc.wait()
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
