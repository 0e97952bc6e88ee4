"""Any GIS server: write ``published.json``, then run the server's own reload command.

``spec.command.reload`` is an argv list run without a shell, in ``spec.command.cwd``
(relative to the repository root; default the root), with a timeout of
``max(spec.healthTimeout, 30)`` seconds. The command gets the document it should
apply in its environment:

* ``HONUA_PUBLISHED_FILE``: absolute path of ``state/<env>/published.json``
* ``HONUA_ENVIRONMENT``: the environment name

A non-zero exit is a :class:`~honua_plan.errors.ServerError` with the (redacted) tail
of its stderr. On timeout its whole process group is killed.

The command comes from the config repository, which a pull request (or an AI) may
edit, so it is never trusted on its own: it runs only when the operator of the
machine allowed exactly that argv in ``HONUA_ALLOWED_RELOAD_COMMANDS`` (one command
per line, shell words), which no config file can set. It runs with an allow-listed
environment (no DSNs, no API keys) in a folder inside the repository.

Health: ``spec.command.health`` is a URL polled until it answers 200 (a
``{collection}`` placeholder makes it one URL per collection); with ``publicUrl``
set, each ``<publicUrl>/collections/<id>`` must answer 200 too. Without either,
there is nothing to check and health passes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from honua_plan.errors import ServerError
from honua_plan.providers.server.base import (
    PlanEntry,
    PublishResult,
    ServerProvider,
    diff_published,
)
from honua_plan.providers.server.http import HealthResult, http_request, poll_collections
from honua_plan.secrets import redact

__all__ = ["ALLOW_VARIABLE", "CommandServer", "allowed_commands"]

ALLOW_VARIABLE = "HONUA_ALLOWED_RELOAD_COMMANDS"
# What the reload command inherits: a working process, nothing secret.
_INHERITED = ("PATH", "HOME", "TMPDIR", "TZ", "LANG", "LANGUAGE")


def allowed_commands(environ: Mapping[str, str] | None = None) -> list[list[str]]:
    """The reload commands the operator allowed (``HONUA_ALLOWED_RELOAD_COMMANDS``)."""
    import shlex

    text = (os.environ if environ is None else environ).get(ALLOW_VARIABLE, "")
    out: list[list[str]] = []
    for line in text.splitlines():
        if line.strip():
            try:
                out.append(shlex.split(line))
            except ValueError as exc:
                raise ServerError(f"{ALLOW_VARIABLE}: cannot read the line {line!r}: {exc}") from None
    return out


def _child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _INHERITED or k.startswith("LC_")}
    env.update(extra)
    return env


class CommandServer(ServerProvider):
    kind = "command"

    def __init__(self, server: Any, **kwargs: Any) -> None:
        super().__init__(server, **kwargs)
        opts = server.spec.command
        if opts is None:
            raise ServerError("a server of type command needs a 'command' block (reload)")
        self.options = opts

    @property
    def ogc_url(self) -> str | None:
        public = self.server.spec.publicUrl if self.server is not None else None
        return public.rstrip("/") if public else None

    @property
    def reload_timeout(self) -> float:
        return max(self.health_timeout, 30.0)

    def read(self) -> dict[str, Any] | None:
        return self.read_published_file()

    def plan(self, doc: Mapping[str, Any]) -> list[PlanEntry]:
        return diff_published(self.read(), self._normalized(doc), prune=True)

    def publish(self, doc: Mapping[str, Any], *, prune: bool = True) -> PublishResult:
        started = time.perf_counter()
        entries, merged, warnings = self.merged_for_publish(doc, prune=prune)
        path = self.write_published(merged)
        return PublishResult(tuple(entries), merged, time.perf_counter() - started, files=(str(path),),
                             warnings=tuple(warnings))

    def reload(self) -> None:
        import shlex

        argv = [str(a) for a in self.options.reload]
        name = Path(argv[0]).name
        if argv not in allowed_commands():
            raise ServerError(
                f"the reload command {shlex.join(argv)!r} was not run: the config repository "
                "cannot choose a program to run on this machine",
                hint=f"if this machine's operator trusts it, allow it outside the repository: "
                     f"export {ALLOW_VARIABLE}={shlex.quote(shlex.join(argv))}")
        root = self.root.resolve()
        cwd = (root / self.options.cwd).resolve() if self.options.cwd else root
        if not cwd.is_relative_to(root):
            raise ServerError(f"spec.command.cwd {self.options.cwd!r} is outside the repository; "
                              "the reload command was not run")
        env = _child_environment({"HONUA_PUBLISHED_FILE": str(self.published_path.resolve()),
                                  "HONUA_ENVIRONMENT": self.environment})
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True)
        except FileNotFoundError:
            raise ServerError(f"the reload command was not found: {argv[0]}",
                              hint="spec.command.reload is an argv list, e.g. [systemctl, reload, my-server]") from None
        except OSError as exc:
            raise ServerError(f"cannot run the reload command {name}: {exc.strerror}") from None
        try:
            _out, err = proc.communicate(timeout=self.reload_timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            _out, err = proc.communicate()
            raise ServerError(f"the reload command {name} did not finish within {self.reload_timeout:g}s") from None
        if proc.returncode != 0:
            tail = redact(err.decode("utf-8", "replace").strip())[-1000:]
            raise ServerError(f"the reload command {name} failed (exit {proc.returncode})"
                              + (f": {tail}" if tail else ""))

    def health(self, collection_ids: Sequence[str], timeout_s: float = 30.0) -> HealthResult:
        started = time.monotonic()
        statuses: dict[str, int] = {}
        url = self.options.health
        if url:
            targets = ([url.replace("{collection}", urllib.parse.quote(c, safe=":-_.~")) for c in collection_ids]
                       if "{collection}" in url else [url])
            for target in targets:
                statuses[target] = self._wait_ok(target, started + timeout_s)
        if self.ogc_url and collection_ids:
            remaining = max(started + timeout_s - time.monotonic(), 0.0)
            result = poll_collections(self.ogc_url, collection_ids, remaining, what="the GIS server")
            statuses.update(result.statuses)
        return HealthResult(True, statuses, time.monotonic() - started, self.ogc_url or url)

    def _wait_ok(self, url: str, deadline: float) -> int:
        status, problem, delay = 0, "", 0.1
        while True:
            try:
                resp = http_request("GET", url, timeout=max(min(5.0, deadline - time.monotonic()), 0.5),
                                    what="the health URL")
                status, problem = resp.status, f"HTTP {resp.status}"
                if status == 200:
                    return status
            except ServerError as exc:
                status, problem = 0, exc.message
            if time.monotonic() >= deadline:
                raise ServerError(redact(f"the health URL did not answer 200 in time: {problem}"))
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)
