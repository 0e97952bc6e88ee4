"""Fast YAML reading that keeps every value's line and column.

libyaml (PyYAML's ``CSafeLoader``) composes the node tree in C; one Python pass over
the nodes then builds the plain data, records where each key and value sits (so that a
pydantic error on ``spec.storage.srid`` can be reported as ``path:line:column``) and
finds duplicate keys. ruamel.yaml is kept for round-trip edits only (``metadata``
steps): it measured ~15x slower here.

Why it looks like this (see README "Performance"): reading YAML was the first wall of a
plan over thousands of layers. Three things keep it down:

* the single pass replaces PyYAML's generic constructor for the plain tags (str, int,
  float, bool, null, timestamp, map, seq); anything else (merge keys, ``!!set``,
  ``!!binary``, …) falls back to PyYAML's own constructor, so results are identical;
* anchors and aliases are refused before anything is composed (one scan of the tokens,
  only for a text with a ``&x``/``*x``): config is untrusted input, and an alias bomb
  expands a few hundred bytes to gigabytes (see ``yamlparse.alias_problem``);
* implicit tag resolution (a dozen regular expressions per scalar) is memoized;
* :class:`ParseCache`: the parsed data of a file is kept, keyed by the sha256 of its
  bytes, in a JSON file outside the repository (``$HONUA_CACHE_DIR``, else
  ``$XDG_CACHE_HOME/honua-plan``, else ``~/.cache/honua-plan``; ``HONUA_CACHE=off``
  turns it off). An unchanged file is then not parsed at all; its positions are
  computed again from the text only when an error needs them. Only files that parsed
  without any problem are cached, so every diagnostic is still produced by the parser.
  The cache never lives in the config repository: a committed cache file could make the
  engine see something other than the reviewed YAML.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import marshal
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

from honua_plan.config.source import Document, PathKey, SourceMap
from honua_plan.errors import Diagnostic

YAML_SUFFIXES = (".yaml", ".yml")


def _positions_of(text: str, path: str, index: int) -> Callable[[], dict[PathKey, tuple[int, int]]]:
    """Positions of document ``index`` of ``text``, parsed again when first asked for."""
    def compute() -> dict[PathKey, tuple[int, int]]:
        docs = load_documents(text, path, [])
        return docs[index].source.positions if index < len(docs) else {}
    return compute


def _lazy_positions(docs: list[Document], text: str, problems: list[Diagnostic]) -> list[Document]:
    """Drop the line/column maps of a file that parsed cleanly: kept for 10,000 files they
    were ~150 MB, and only an error found later needs one (rebuilt then from the text)."""
    if not problems:
        for d in docs:
            d.source.positions = {}
            d.source._lazy = _positions_of(text, d.source.path, d.index)
    return docs


def load_documents(text: str, path: str, problems: list[Diagnostic]) -> list[Document]:
    """Parse every document of ``text``; syntax errors become diagnostics, not exceptions."""
    from honua_plan.config.yamlparse import parse_documents

    return parse_documents(text, path, problems)


# --------------------------------------------------------------------------- parse cache

_CACHE_FORMAT = 2  # 2: marshal (one load per run; JSON decoded each entry again)
_CACHE_FILES_KEPT = 64  # one file per repository root; the least recently used go first
_JSON_SCALARS = (str, int, float, bool, type(None))


def _encodable(value: Any, path: list[Any], patches: list[list[Any]]) -> bool:
    """True when ``value`` survives a JSON round trip; datetimes/dates become patches."""
    t = type(value)
    if t in _JSON_SCALARS:
        return True
    if t is dict:
        for k, v in value.items():
            if type(k) is not str:
                return False
            path.append(k)
            ok = _encodable(v, path, patches)
            path.pop()
            if not ok:
                return False
        return True
    if t is list:
        for i, v in enumerate(value):
            path.append(i)
            ok = _encodable(v, path, patches)
            path.pop()
            if not ok:
                return False
        return True
    if t is datetime:
        patches.append([list(path), "datetime"])
        return True
    if t is date:
        patches.append([list(path), "date"])
        return True
    return False


def _patched(data: Any, patches: list[list[Any]]) -> Any:
    """``data`` with its dates and datetimes back. The cache's entry stays as stored: only
    the containers on a patched path are copied (a copy of the whole file cost more than
    the rest of reading it from the cache)."""
    copied: set[int] = set()

    def own(container: Any) -> Any:
        c = dict(container) if isinstance(container, dict) else list(container)
        copied.add(id(c))
        return c

    for path, kind in patches:
        convert: Callable[[str], Any] = datetime.fromisoformat if kind == "datetime" else date.fromisoformat
        if not path:
            data = convert(data)
            continue
        if id(data) not in copied:
            data = own(data)
        parent = data
        for part in path[:-1]:
            child = parent[part]
            if id(child) not in copied:
                child = parent[part] = own(child)
            parent = child
        parent[path[-1]] = convert(parent[path[-1]])
    return data


def _iso(value: Any) -> str:
    if isinstance(value, date):  # datetime is a date too
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not cacheable")


def cache_directory() -> Path | None:
    """Where parse caches live, or None when ``HONUA_CACHE`` turns them off."""
    if os.environ.get("HONUA_CACHE", "").strip().lower() in ("0", "off", "false", "no"):
        return None
    explicit = os.environ.get("HONUA_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "honua-plan"


def _salt() -> str:
    """What cached results depend on besides the input: the parsing code and libraries."""
    here = Path(__file__).resolve().parent
    parts = [str(_CACHE_FORMAT), sys.version]  # marshal's format is per version
    for p in (here / "yamlload.py", here / "yamlparse.py", here / "loader.py", *sorted((here.parent / "sql").glob("*.py"))):
        try:
            st = p.stat()
            parts.append(f"{p.name}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append(f"{p.name}:?")
    import importlib.util

    for lib in ("yaml", "sqlglot"):  # found, not imported: a cache hit needs neither (PyYAML ~20 ms)
        try:
            spec = importlib.util.find_spec(lib)
            if spec is not None and spec.origin:
                st = Path(spec.origin).stat()
                parts.append(f"{lib}:{spec.origin}:{st.st_mtime_ns}")
        except (ImportError, OSError, ValueError):
            parts.append(f"{lib}:?")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


class ParseCache:
    """Parsed YAML files and SQL diagnostics of one repository, keyed by content hash.

    Loaded once per run (one :mod:`marshal` file: plain values only, never code to run), written back only when something new was
    parsed. Entries not used by a run are dropped when they outnumber the used ones, so
    the file follows the repository instead of growing with its history.
    """

    def __init__(self, root: Path, directory: Path | None = None) -> None:
        self.directory = directory if directory is not None else cache_directory()
        digest = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:24]
        self.file = self.directory / f"{digest}.marshal" if self.directory is not None else None
        self._yaml: dict[str, Any] = {}
        self._sql: dict[str, Any] = {}
        self._used: set[str] = set()
        self._dirty = False
        self._salt = ""
        if self.file is not None:
            self._salt = _salt()
            self._read()

    @property
    def enabled(self) -> bool:
        return self.file is not None

    def _read(self) -> None:
        assert self.file is not None
        try:
            raw = marshal.loads(self.file.read_bytes())
        except (OSError, ValueError, EOFError, TypeError):
            return
        if not isinstance(raw, dict) or raw.get("salt") != self._salt:
            return
        y, s = raw.get("yaml"), raw.get("sql")
        if isinstance(y, dict) and isinstance(s, dict):
            self._yaml, self._sql = y, s

    # -- YAML -------------------------------------------------------------------

    def documents(self, digest: str, text: str, path: str, problems: list[Diagnostic]) -> list[Document]:
        """The documents of a file whose bytes hash to ``digest`` (parsed only on a miss).

        Their data is the cache's own (read-only, like every loaded document: the loader
        validates it into models and never changes it), except where dates were patched
        in; a second file with the same bytes gets a copy of its own."""
        if self.file is None:
            return _lazy_positions(load_documents(text, path, problems), text, problems)
        entry = self._yaml.get(digest)
        if isinstance(entry, list):
            if digest in self._used:
                # a second file with the same bytes: the caller gets its own copy
                entry = marshal.loads(marshal.dumps(entry))
            try:
                docs = [
                    Document(_patched(data, patches),
                             SourceMap(path, start=(line, col), _lazy=_positions_of(text, path, index)), index)
                    for index, (data, line, col, patches) in enumerate(entry)
                ]
            except (TypeError, ValueError, KeyError, IndexError):
                docs = None  # a damaged entry: parse again
            if docs is not None:
                self._used.add(digest)
                return docs
        found: list[Diagnostic] = []
        docs = _lazy_positions(load_documents(text, path, found), text, found)
        problems.extend(found)
        if not found:
            encoded = []
            for d in docs:
                patches: list[list[Any]] = []
                if not _encodable(d.data, [], patches):
                    break
                encoded.append([d.data, d.source.start[0], d.source.start[1], patches])
            else:
                try:  # a copy: what the caller gets may be changed (patches), the cache may not
                    self._yaml[digest] = json.loads(json.dumps(encoded, default=_iso)) if any(
                        e[3] for e in encoded) else marshal.loads(marshal.dumps(encoded))
                except (TypeError, ValueError):  # e.g. a recursive structure
                    return docs
                self._used.add(digest)
                self._dirty = True
        return docs

    # -- SQL diagnostics ----------------------------------------------------------

    def diagnose(self, sql_text: str, compute: Callable[[str], list[tuple[int, int, str, str]]]
                 ) -> list[tuple[int, int, str, str]]:
        if self.file is None:
            return compute(sql_text)
        key = "sql:" + hashlib.sha256(sql_text.encode("utf-8", "surrogatepass")).hexdigest()
        hit = self._sql.get(key)
        if isinstance(hit, list):
            self._used.add(key)
            return [tuple(x) for x in hit]
        result = compute(sql_text)
        self._sql[key] = [list(x) for x in result]
        self._used.add(key)
        self._dirty = True
        return result

    # -- storage ------------------------------------------------------------------

    def save(self) -> None:
        """Write the cache when something was added (best effort: errors are ignored)."""
        if self.file is None or not self._dirty:
            return
        yaml_entries, sql_entries = self._yaml, self._sql
        unused = (len(yaml_entries) + len(sql_entries)) - len(self._used)
        if unused > len(self._used):
            yaml_entries = {k: v for k, v in yaml_entries.items() if k in self._used}
            sql_entries = {k: v for k, v in sql_entries.items() if k in self._used}
        try:
            blob = marshal.dumps({"format": _CACHE_FORMAT, "salt": self._salt, "yaml": yaml_entries,
                                  "sql": sql_entries})
        except ValueError:  # pragma: no cover - entries are plain values
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".cache-", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(blob)
                os.replace(tmp, self.file)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            self._dirty = False
            self._prune()
        except OSError:
            return

    def _prune(self) -> None:
        assert self.directory is not None
        try:
            files = [p for p in self.directory.glob("*.marshal") if p != self.file]
            if len(files) < _CACHE_FILES_KEPT:
                return
            now = time.time()
            files.sort(key=lambda p: p.stat().st_mtime if p.exists() else now)
            for p in files[: len(files) - _CACHE_FILES_KEPT + 1]:
                with contextlib.suppress(OSError):
                    p.unlink()
        except OSError:
            return
