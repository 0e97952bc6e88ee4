"""What the offline router understood of a request to publish a table, checked against the project.

:func:`honua_plan.ai.chat.parse_intent` decides *whether* a request asks to add a layer;
:func:`understand` works out *what* it asks for, and each part is resolved against the
live catalog and the project: the table (a live table, never a word of the sentence), the
layer's name, the service and the environments. A part it finds but cannot resolve, or a
second table, makes the whole request refused with what it did understand; it never
proposes a narrower request than the one made (``the parks and trails table`` is
``parks_and_trails`` or nothing, never ``trails``). Words of the sentence (:data:`STOP_WORDS`)
are never names; a table named like one (``as``) is reached as ``public.as`` or ``table "as"``.

Pure: the catalog comes in as a :class:`Catalog`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from honua_plan.config.models import NAME_RE

STOP_WORDS = frozenset({
    "a", "an", "the", "as", "table", "tables", "publish", "published", "publishing", "service", "services", "in",
    "and", "or", "of", "to", "into", "for", "from", "on", "at", "by", "with", "under", "is", "are", "it", "its",
    "this", "that", "these", "those", "which", "has", "have", "had", "add", "adding", "create", "make", "new",
    "serve", "expose", "layer", "layers", "named", "called", "name", "please", "we", "i", "you", "us", "our", "my",
    "your", "their", "need", "needs", "want", "wants", "would", "like", "could", "can", "data", "database",
    "postgis", "geometry", "column", "columns", "spatial", "source", "same", "one", "only", "just", "also", "then",
    "so", "but", "yet", "be", "do", "let", "lets", "let's", "up", "over", "ogc", "api", "features", "map", "maps",
    "environment", "environments", "env", "all", "every", "both", "schema", "id", "here", "there", "now", "too",
    "contains", "holds", "exists", "whole", "entire", "e.g", "i.e", "d", "ll", "s", "some", "using", "use",
    "well", "soon", "possible", "usual", "before", "requested", "discussed", "agreed", "needed", "planned",
})
ENV_ALIASES = {"prod": "production", "stage": "staging", "development": "dev", "develop": "dev", "test": "testing"}
MAX_WORDS = 5  # the longest run of words joined into a table name ("parks and trails" -> parks_and_trails)

_TOKEN = re.compile(r"\"[^\"\n]+\"|'[^'\n]+'|`[^`\n]+`|[A-Za-z0-9_][\w$]*(?:\.[A-Za-z_][\w$]*)?(?:-[\w]+)*")
_NOT_TABLE_SUFFIX = frozenset({"yaml", "yml", "json", "md", "sql", "py", "txt", "com", "org", "gov", "io", "net",
                               "html"})


@dataclass(frozen=True)
class Catalog:
    """What a request is resolved against: the live tables (``schema.name``), the first
    environment's services, the environments in promotion order, and the database's name."""

    tables: frozenset[str]
    services: tuple[str, ...]
    environments: tuple[str, ...]
    database: str = "the database"
    search_path: tuple[str, ...] = ("public",)

    def table(self, name: str) -> str | None:
        low = name.lower()
        if "." in low:
            return low if low in self.tables else None
        for schema in self.search_path:
            if f"{schema}.{low}" in self.tables:
                return f"{schema}.{low}"
        found = sorted(t for t in self.tables if t.rsplit(".", 1)[1] == low)
        return found[0] if len(found) == 1 else None


@dataclass
class Understanding:
    """The parts of a request: resolved (``understood``) and not (``not_understood``)."""

    table: str | None = None
    service: str | None = None
    name: str | None = None
    environments: tuple[str, ...] = ()  # () = every environment
    understood: list[str] = field(default_factory=list)
    not_understood: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.table is not None and not self.not_understood

    def summary(self) -> str:
        text = "I understood: " + ("; ".join(self.understood) or "nothing I can act on") + "."
        if self.not_understood:
            text += " I did not understand: " + "; ".join(self.not_understood) + "."
        return text


@dataclass(frozen=True)
class _Tok:
    text: str  # as written, quotes removed
    low: str
    start: int
    quoted: bool


def tokens(text: str) -> list[_Tok]:
    out = []
    for m in _TOKEN.finditer(text):
        raw = m.group(0)
        quoted = raw[0] in "\"'`"
        inner = raw[1:-1] if quoted else raw
        out.append(_Tok(inner, inner.lower(), m.start(), quoted))
    return out


def _word(t: _Tok) -> bool:
    """A token that may be a name: quoted, or not a word of the sentence."""
    return t.quoted or t.low not in STOP_WORDS


def _qualified(t: _Tok) -> bool:
    return not t.quoted and "." in t.low and t.low.rsplit(".", 1)[1] not in _NOT_TABLE_SUFFIX and t.low not in (
        "e.g", "i.e")


def understand(text: str, catalog: Catalog) -> Understanding:
    """The table, layer name, service and environments ``text`` asks for (see the module doc)."""
    toks = tokens(text)
    used: set[int] = set()
    u = Understanding()
    _layer_name(toks, used, u)
    _service(toks, used, u, catalog)
    _environments(text, toks, used, u, catalog)
    _tables(toks, used, u, catalog)
    if u.table is not None:
        u.understood.insert(0, f"add table {u.table} as a layer" + (f" named {u.name}" if u.name else ""))
    elif not any("table" in p for p in u.not_understood):
        u.not_understood.append("which live table to publish (name it: table NAME, or schema.table)")
    if u.service:
        u.understood.append(f"in the service {u.service}")
    if u.environments:
        u.understood.append(f"only in {', '.join(u.environments)}")
    return u


# --------------------------------------------------------------------------- the parts


def _after(toks: list[_Tok], i: int, words: Iterable[str]) -> int:
    """The index after ``toks[i]`` skipping ``words``."""
    skip = set(words)
    j = i + 1
    while j < len(toks) and toks[j].low in skip and not toks[j].quoted:
        j += 1
    return j


def _layer_name(toks: list[_Tok], used: set[int], u: Understanding) -> None:
    """``layer named X``, ``called X``, ``name it X``, ``with the name X``, ``as X``; ``table named X``
    names the table, not the layer."""
    for i, t in enumerate(toks):
        if t.quoted:
            continue
        j = None
        if t.low in ("named", "called") and not (i > 0 and toks[i - 1].low in ("table", "is")):
            j = i + 1
        elif t.low == "name" and i + 1 < len(toks) and toks[i + 1].low == "it":
            j = i + 2
        elif (t.low == "name" and i > 0 and toks[i - 1].low == "the") or (
                t.low == "as" and i + 1 < len(toks) and _word(toks[i + 1]) and not _qualified(toks[i + 1])):
            j = i + 1
        if j is None or j >= len(toks) or j in used:
            continue
        cand = toks[j]
        if not cand.quoted and cand.low in STOP_WORDS:
            continue
        used.update({i, j})
        if NAME_RE.match(cand.text) and u.name in (None, cand.text):
            u.name = cand.text
        elif u.name is not None:
            u.not_understood.append(f"two layer names ({u.name}, {cand.text})")
        else:
            u.not_understood.append(f"the layer name {cand.text!r} (a layer name is lower-case letters, digits, "
                                    "'-' and '_')")


def _service(toks: list[_Tok], used: set[int], u: Understanding, catalog: Catalog) -> None:
    """``service X``, ``in the service X``, ``the X service``: resolved against the project's services."""
    for i, t in enumerate(toks):
        if t.quoted or t.low not in ("service", "services"):
            continue
        used.add(i)
        right = _after(toks, i, ("named", "called", "the"))
        cands = []
        if right < len(toks) and right not in used and _word(toks[right]):
            cands.append(right)
        if i > 0 and i - 1 not in used and _word(toks[i - 1]):
            cands.append(i - 1)
        known = [c for c in cands if toks[c].low in catalog.services]
        if known:
            used.add(known[0])
            name = toks[known[0]].low
            if u.service not in (None, name):
                u.not_understood.append(f"two services ({u.service}, {name})")
            u.service = name
        elif cands:
            used.update(cands[:1])
            u.not_understood.append(f"the service {toks[cands[0]].text!r} (services: "
                                    f"{', '.join(catalog.services) or 'none'})")
        else:
            u.not_understood.append("which service (the word 'service' names none)")


_SCOPE = re.compile(r"\bonly\s+(?:in|on|to|for)\s+(?:the\s+)?(?P<a>[\w-]+)"
                    r"|\b(?:in|on|to|for)\s+(?:the\s+)?(?P<b>[\w-]+)\s+only\b", re.IGNORECASE)


def _environments(text: str, toks: list[_Tok], used: set[int], u: Understanding, catalog: Catalog) -> None:
    """Environment names (``dev``, ``prod``…) scope the proposal to them; a scope naming no
    environment ("only in qa") is not understood."""
    envs = set(catalog.environments)
    found: list[str] = []
    for i, t in enumerate(toks):
        name = ENV_ALIASES.get(t.low, t.low) if not t.quoted else t.low
        if i not in used and name in envs and (t.low in envs or name in envs):
            used.add(i)
            if name not in found:
                found.append(name)
    for m in _SCOPE.finditer(text):
        word = (m.group("a") or m.group("b")).lower()
        name = ENV_ALIASES.get(word, word)
        if name not in envs and word not in STOP_WORDS:
            u.not_understood.append(f"the environment {word!r} (environments: {', '.join(catalog.environments)})")
    u.environments = tuple(e for e in catalog.environments if e in found)


def _tables(toks: list[_Tok], used: set[int], u: Understanding, catalog: Catalog) -> None:
    """Every table the request names: ``schema.table``, ``table X`` / ``X table`` (X a run of
    words, joined by ``_``), quoted names after ``table``, and any run of words that is a
    live table's name. One live table is the proposal; none or two is a refusal."""
    named: list[str] = []  # resolved, in order
    unknown: list[str] = []

    def add(qualified: str) -> None:
        if qualified not in named:
            named.append(qualified)

    for i, t in enumerate(toks):
        if i in used:
            continue
        if _qualified(t):
            used.add(i)
            found = catalog.table(t.low)
            (add(found) if found else unknown.append(t.text))
        elif t.low in ("table", "tables") and not t.quoted:
            j = _after(toks, i, ("is", "named", "called"))
            if j < len(toks) and j not in used and toks[j].quoted:
                used.add(j)
                found = catalog.table(toks[j].text)
                (add(found) if found else unknown.append(toks[j].text))
    # runs of words: the longest one that is a live table, anywhere; then what surrounds "table"
    i = 0
    while i < len(toks):
        hit = None
        for n in range(min(MAX_WORDS, len(toks) - i), 0, -1):
            span = range(i, i + n)
            if any(k in used or toks[k].quoted or "." in toks[k].low for k in span):
                continue
            if not (_word(toks[i]) and _word(toks[i + n - 1])):
                continue
            found = catalog.table("_".join(toks[k].low.replace("-", "_") for k in span))
            if found:
                hit = (n, found)
                break
        if hit:
            used.update(range(i, i + hit[0]))
            add(hit[1])
            i += hit[0]
        else:
            i += 1
    for i, t in enumerate(toks):
        if t.quoted or t.low not in ("table", "tables"):
            continue
        phrases = []
        j = _after(toks, i, ("is", "named", "called"))
        run: list[str] = []
        while j < len(toks) and j not in used and len(run) < MAX_WORDS and (
                _word(toks[j]) or (run and _joins(toks, j, j + 1, used))):
            run.append(toks[j].text)
            j += 1
        if run:
            phrases.append(" ".join(run).removesuffix(" and").removesuffix(" of"))
        k, back = i - 1, list[str]()
        while k >= 0 and k not in used and len(back) < MAX_WORDS and (
                _word(toks[k]) or (back and _joins(toks, k, k - 1, used))):
            back.insert(0, toks[k].text)
            k -= 1
        if back:
            phrases.append(" ".join(back))
        unknown += [p for p in phrases if p not in unknown]
    for name in unknown:
        u.not_understood.append(f"the table {name!r}: there is no such live table in {catalog.database}")
    if len(named) > 1:
        u.not_understood.append(f"{len(named)} tables ({', '.join(named)}): one request proposes one layer, "
                                "ask for each table on its own")
    elif named:
        u.table = named[0]


def _joins(toks: list[_Tok], k: int, nxt: int, used: set[int]) -> bool:
    """``toks[k]`` is "and"/"of" between two words of one name ("parks and roads")."""
    return (toks[k].low in ("and", "of") and 0 <= nxt < len(toks) and nxt not in used and _word(toks[nxt]))


def catalog_for(facts: object, services: Iterable[str], environments: Iterable[str], database: str) -> Catalog:
    """A :class:`Catalog` from the engine's catalog facts (:class:`DatabaseFacts`)."""
    tables = frozenset(t.qualified_name.lower() for t in getattr(facts, "tables", ()))
    path = tuple(getattr(facts, "search_path", ("public",)) or ("public",))
    return Catalog(tables, tuple(services), tuple(environments), database, path)


__all__ = ["STOP_WORDS", "Catalog", "Understanding", "catalog_for", "tokens", "understand"]
