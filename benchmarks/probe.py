"""Run the honua CLI in this process and count the SQL statements it sends.

``python -m benchmarks.probe COUNT_FILE -- <honua arguments>`` behaves like
``python -m honua_plan <honua arguments>`` and, at exit, writes to COUNT_FILE a JSON
object ``{"statements": n, "exit_code": c}``: ``n`` counts every call of psycopg's
``Cursor.execute`` / ``executemany`` / ``copy`` (and ``Connection.execute``, which goes
through a cursor), i.e. every statement (or multi-statement batch) sent to PostgreSQL by
any module: the engine's ``sqlexec``, the state backends, the executor. It also counts
HTTP requests (``"requests"``: every ``http.client`` request, which urllib uses) and
records the pygeoapi server's own timings (``"server"``: publish, start, reload, health
and the OpenAPI document, in seconds) when the command published.

psycopg is patched when it is first imported (an import hook), so a command that never
touches the database does not pay for importing it.
"""

from __future__ import annotations

import atexit
import importlib.abc
import importlib.util
import json
import sys
from collections.abc import Sequence
from typing import Any

_count = 0
_requests = 0
_server_timings: dict[str, float] = {}
_exit_code: int | None = None


def _counted(fn: Any) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        global _count
        _count += 1
        return fn(*args, **kwargs)

    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapper


def _patch(psycopg: Any) -> None:
    for cls in (psycopg.Cursor, psycopg.ServerCursor):
        for name in ("execute", "executemany", "copy"):
            fn = cls.__dict__.get(name)
            if fn is not None and not hasattr(fn, "__wrapped__"):
                setattr(cls, name, _counted(fn))


class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "psycopg":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module: Any) -> None:
            original(module)
            _patch(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _patch_http() -> None:
    import http.client

    original = http.client.HTTPConnection.request

    def request(self: Any, *args: Any, **kwargs: Any) -> Any:
        global _requests
        _requests += 1
        return original(self, *args, **kwargs)

    http.client.HTTPConnection.request = request  # type: ignore[method-assign]


def _patch_server() -> None:
    """Collect PygeoapiServer.timings (and the publish's own time) of every provider."""
    from honua_plan.providers.server import pygeoapi

    cls = pygeoapi.PygeoapiServer
    original_publish, original_close = cls.publish, cls.close

    def publish(self: Any, *args: Any, **kwargs: Any) -> Any:
        import time

        started = time.perf_counter()
        try:
            return original_publish(self, *args, **kwargs)
        finally:
            _server_timings["publish"] = _server_timings.get("publish", 0.0) + time.perf_counter() - started

    def close(self: Any) -> None:
        for key, value in self.timings.items():
            _server_timings[key] = _server_timings.get(key, 0.0) + value
        self.timings.clear()
        original_close(self)

    cls.publish = publish  # type: ignore[method-assign]
    cls.close = close  # type: ignore[method-assign]


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[1] != "--":
        sys.exit("usage: python -m benchmarks.probe COUNT_FILE -- <honua arguments>")
    count_file, honua_args = args[0], args[2:]

    def report() -> None:
        with open(count_file, "w", encoding="utf-8") as fh:
            json.dump({"statements": _count, "requests": _requests, "exit_code": _exit_code,
                       "server": {k: round(v, 3) for k, v in _server_timings.items()}}, fh)

    atexit.register(report)
    if "psycopg" in sys.modules:  # pragma: no cover - imported by a site hook
        _patch(sys.modules["psycopg"])
    else:
        sys.meta_path.insert(0, _Hook())
    _patch_http()
    _patch_server()
    import honua_plan.providers.postgis.prefetch
    from honua_plan.cli import main as honua

    honua_plan.providers.postgis.prefetch.FORK = False  # a forked reader's statements would not be counted here

    global _exit_code
    try:
        honua(args=honua_args, prog_name="honua")
    except SystemExit as exc:
        code = exc.code
        _exit_code = code if isinstance(code, int) else (0 if code is None else 1)
        raise
    _exit_code = 0


if __name__ == "__main__":
    main()
