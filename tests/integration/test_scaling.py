"""Structural scaling checks (README "Performance"): what must not grow with the number of layers.

Wall times are measured by ``python -m benchmarks.run``; this test locks down the
shape behind them, on two synthetic repositories (N = 20 and N = 200 layers, from
:mod:`benchmarks.generate`, tables in the throwaway PostGIS):

* a refresh sends a constant number of SQL statements;
* a no-op plan and a drift check send exactly the refresh's statements: no per-table
  query, whatever N;
* the first plan sends one per-table check per new layer, and nothing else per layer;
* a no-op plan runs no deep diff, and a second load of an unchanged repository parses
  no YAML and no SQL (parse cache);
* an apply reads the catalog once and writes state a constant number of times;
* the forked reader does not import pydantic, and a cached plan does not import PyYAML.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks import generate
from benchmarks.state import record_applied_state
from honua_plan.context import Context
from honua_plan.providers.postgis import catalog as postgis
from honua_plan.providers.postgis.sqlexec import Session, StatementLog, connect

SMALL, LARGE = 20, 200
ENV = generate.ENVIRONMENT
REFRESH_STATEMENTS = 7  # BEGIN, server facts, relations, columns, indexes, constraints, COMMIT
SERIAL_GUARD_STATEMENTS = 1  # a plan checks the state serial its database records (honua_plan.state_serial)
EXTENT_STATEMENTS = 1  # with a server: every served extent against the live one (ST_EstimatedExtent of indexed tables)


@dataclass
class Sized:
    n: int
    repo: Path
    dsn: str
    first_plan_statements: int
    first_plan_actions: int
    specs: list[generate.SyntheticLayer]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HONUA_CACHE_DIR", str(tmp_path_factory.mktemp("parse-cache")))
        mp.delenv("HONUA_CACHE", raising=False)
        mp.setenv("HONUA_ACTOR", "test_scaling")
        yield mp


@pytest.fixture(scope="module")
def repos(pg_cluster, env: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, Sized]]:
    from tests.conftest import TEMPLATE_DB

    out: dict[int, Sized] = {}
    names = []
    try:
        for n in (SMALL, LARGE):
            name = f"scaling_{n}"
            pg_cluster.drop_database(name)
            dsn = pg_cluster.create_database(name, template=TEMPLATE_DB)
            names.append(name)
            specs = generate.layers(n)
            repo = generate.write_repo(tmp_path_factory.mktemp(f"repo{n}"), specs)
            generate.create_tables(dsn, specs, workers=1)
            env.setenv("HONUA_PG_DSN", dsn)
            log = StatementLog()
            plan = Context(repo).plan(ENV, log=log)
            record_applied_state(repo, ENV)
            out[n] = Sized(n, repo, dsn, log.count, len(plan.actions), specs)
        yield out
    finally:
        for name in names:
            pg_cluster.drop_database(name)


def _plan(sized: Sized, env: pytest.MonkeyPatch, *, refresh_only: bool = False):  # type: ignore[no-untyped-def]
    env.setenv("HONUA_PG_DSN", sized.dsn)
    log = StatementLog()
    plan = Context(sized.repo).plan(ENV, refresh_only=refresh_only, log=log)
    return plan, log


def test_refresh_sends_a_constant_number_of_statements(repos: dict[int, Sized]) -> None:
    counts = {}
    for n, sized in repos.items():
        log = StatementLog()
        with connect(sized.dsn) as conn:
            facts = postgis.refresh(Session(conn, log=log))
        assert len([t for t in facts.tables if t.name.startswith("bm_")]) == n
        counts[n] = log.count
    assert counts == {SMALL: REFRESH_STATEMENTS, LARGE: REFRESH_STATEMENTS}


def test_first_plan_checks_each_new_layer_once(repos: dict[int, Sized]) -> None:
    # invalid-geometry counts of the created layers go in UNION ALL batches of 250 tables:
    # a scan per table is unavoidable, a round trip per table is not
    for n, sized in repos.items():
        # (+ 1: JIT off for those counts; compiling 250 aggregates took 20 s per statement)
        assert sized.first_plan_statements == REFRESH_STATEMENTS + 1 + -(-n // 250)
        services = len({s.service for s in sized.specs})
        assert sized.first_plan_actions == n + services + 2  # + datasource and server


def test_noop_plan_sends_only_the_refresh(repos: dict[int, Sized], env: pytest.MonkeyPatch,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import honua_plan.plan.diff as diff

    deep_diffs: list[object] = []
    real = diff._paths
    monkeypatch.setattr(diff, "_paths", lambda a, b: deep_diffs.append(1) or real(a, b))
    hashed: list[object] = []
    real_fingerprint = diff.fingerprint
    monkeypatch.setattr(diff, "fingerprint", lambda v: hashed.append(1) or real_fingerprint(v))
    counts = {}
    for n, sized in repos.items():
        plan, log = _plan(sized, env)
        assert not plan.has_changes, [a.address for a in plan.actions]
        assert plan.drift == []
        assert len(plan.no_ops) >= n
        assert not any("ST_IsValid" in t for t in log.texts)  # no per-table query
        counts[n] = log.count
    assert counts == {SMALL: REFRESH_STATEMENTS, LARGE: REFRESH_STATEMENTS}
    assert deep_diffs == []  # unchanged canonical hash: no deep diff
    assert hashed == []  # attributes equal to their record's: its fingerprint, no dump and hash


def test_drift_sends_only_the_refresh_and_finds_what_changed(repos: dict[int, Sized],
                                                             env: pytest.MonkeyPatch) -> None:
    counts = {}
    for n, sized in repos.items():
        plan, log = _plan(sized, env, refresh_only=True)
        assert plan.drift == []
        counts[("clean", n)] = log.count
        targets = generate.drift_targets(sized.specs)  # 1% (at least one table)
        generate.alter_tables(sized.dsn, targets)
        try:
            plan, log = _plan(sized, env, refresh_only=True)
        finally:
            generate.alter_tables(sized.dsn, targets, revert=True)
        assert sorted(d.address for d in plan.drift) == sorted(f"table.{s.qualified_table}" for s in targets)
        counts[("drifted", n)] = log.count
    assert set(counts.values()) == {REFRESH_STATEMENTS}


def test_unchanged_repository_is_not_parsed_again(repos: dict[int, Sized],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import honua_plan.config.yamlload as yamlload
    import honua_plan.sql.analysis as sqlinfo
    from honua_plan.config.loader import load

    parsed: list[str] = []
    real_load, real_diagnose = yamlload.load_documents, sqlinfo.diagnose
    monkeypatch.setattr(yamlload, "load_documents", lambda t, p, pr: parsed.append(p) or real_load(t, p, pr))
    monkeypatch.setattr(sqlinfo, "diagnose", lambda t: parsed.append(t) or real_diagnose(t))
    for sized in repos.values():
        first = load(sized.repo, ENV)[0]
        parsed.clear()
        again = load(sized.repo, ENV)[0]
        assert parsed == []  # neither YAML nor SQL parsed: every file came from the cache
        assert dict(again.layers) == dict(first.layers)
        assert again.config_hash == first.config_hash


def test_cached_documents_locate_errors_like_parsed_ones(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    from honua_plan.config.yamlload import ParseCache, load_documents

    text = "a: 1\nb:\n  c: [x, {d: 2020-01-02T03:04:05Z}]\n  e: 2021-05-06\n---\nf: !!str 3\n"
    cache = ParseCache(tmp_path / "repo", directory=tmp_path / "cache")
    parsed = cache.documents("digest", text, "f.yaml", [])
    cache.save()
    again = ParseCache(tmp_path / "repo", directory=tmp_path / "cache").documents("digest", text, "f.yaml", [])
    reference = load_documents(text, "f.yaml", [])
    assert [d.data for d in again] == [d.data for d in parsed] == [d.data for d in reference]
    for key in [("b", "c", 1, "d"), ("b", "e"), ("a",), ("zz",)]:
        assert again[0].source.locate(key) == reference[0].source.locate(key)
    assert again[1].source.locate(("f",)) == reference[1].source.locate(("f",))


def _cached(tmp_path: Path, digest: str, text: str):  # type: ignore[no-untyped-def]
    """A parse cache read back from disk after ``text`` was parsed into it once."""
    from honua_plan.config.yamlload import ParseCache

    first = ParseCache(tmp_path / "repo", directory=tmp_path / "cache")
    first.documents(digest, text, "one.yaml", [])
    first.save()
    return ParseCache(tmp_path / "repo", directory=tmp_path / "cache")


def test_two_files_with_the_same_bytes_get_their_own_data(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    from datetime import date

    text = "a: {b: [1, 2]}\nwhen: 2020-01-02\n"
    cache = _cached(tmp_path, "same", text)
    one = cache.documents("same", text, "one.yaml", [])[0]
    two = cache.documents("same", text, "two.yaml", [])[0]
    assert one.data == two.data and one.data is not two.data and one.data["a"] is not two.data["a"]
    assert two.source.locate(("when",)).path == "two.yaml"
    assert cache.documents("same", text, "three.yaml", [])[0].data == {"a": {"b": [1, 2]}, "when": date(2020, 1, 2)}


def test_apply_does_constant_work_besides_recording_each_layer(repos: dict[int, Sized], env: pytest.MonkeyPatch,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    """An apply of N new layers writes the state, parses it and reads the catalog a fixed
    number of times, not once per layer."""
    import shutil

    import honua_plan.state.local as local
    from honua_plan.plan.store import save_plan
    from honua_plan.state.local import LocalWriter

    calls: dict[str, int] = {}

    def counted(name: str, fn):  # type: ignore[no-untyped-def]
        def wrapper(*a, **kw):  # type: ignore[no-untyped-def]
            calls[name] = calls.get(name, 0) + 1
            return fn(*a, **kw)
        return wrapper

    monkeypatch.setattr(LocalWriter, "write", counted("state writes", LocalWriter.write))
    monkeypatch.setattr(local, "parse_document", counted("state parses", local.parse_document))
    monkeypatch.setattr(postgis, "refresh", counted("catalog reads", postgis.refresh))
    per_n = {}
    for n, sized in repos.items():
        repo = tmp_path / f"apply{n}"
        shutil.copytree(sized.repo, repo, ignore=shutil.ignore_patterns("state"))
        env.setenv("HONUA_PG_DSN", sized.dsn)
        # a fresh state on the module's database: it must forget the module repo's state
        # serial meanwhile (else: "there is no state for 'bench', but the database records …")
        with connect(sized.dsn) as conn:
            saved = conn.execute("DELETE FROM honua_plan.state_serial RETURNING project, environment, lineage, serial").fetchall()
        try:
            ctx = Context(repo)
            plan = ctx.plan(ENV)
            assert len(plan.actions) == sized.first_plan_actions
            save_plan(plan, repo / "plan.json")
            calls.clear()
            result = ctx.apply(ENV, repo / "plan.json", yes=True)
            assert result.ok and len(result.outcomes) == sized.first_plan_actions
            per_n[n] = dict(calls)
            assert not Context(repo).plan(ENV).has_changes
        finally:
            with connect(sized.dsn) as conn:
                conn.execute("DELETE FROM honua_plan.state_serial")
                for row in saved:
                    conn.execute("INSERT INTO honua_plan.state_serial (project, environment, lineage, serial) "
                                 "VALUES (%s, %s, %s, %s)", row)
    assert per_n[SMALL] == per_n[LARGE], per_n
    assert per_n[LARGE]["catalog reads"] == 1  # the saved plan's freshness check; apply reuses it
    assert "state parses" not in per_n[LARGE]  # no state before; the writer never parses its own writes


def test_dates_from_the_cache_leave_its_entry_as_stored(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    from datetime import date, datetime

    text = "a: {b: [2020-01-02, x], c: {d: 1}}\nwhen: 2021-05-06T07:08:09Z\nn: [1]\n"
    cache = _cached(tmp_path, "dig", text)
    one = cache.documents("dig", text, "one.yaml", [])[0].data
    assert one["a"]["b"] == [date(2020, 1, 2), "x"] and isinstance(one["when"], datetime)
    assert one["a"]["c"] == {"d": 1} and one["n"] == [1]
    stored = cache._yaml["dig"][0][0]
    assert stored["a"]["b"][0] == "2020-01-02" and isinstance(stored["when"], str)  # entry unpatched
    assert one is not stored and one["a"]["b"] is not stored["a"]["b"]  # only patched paths are copies
    two = cache.documents("dig", text, "two.yaml", [])[0].data
    assert two == one and two["a"]["c"] is not one["a"]["c"]  # a second file: a copy of its own


def test_a_cached_plan_imports_neither_yaml_nor_pydantic_where_not_needed(repos: dict[int, Sized],
                                                                            env: pytest.MonkeyPatch) -> None:
    """Every import is start-up time of every command (README "Performance"): the forked
    reader parses the state file without the state models (pydantic), and a plan whose
    files all come from the parse cache never imports PyYAML in the main process."""
    import json
    import subprocess
    import sys

    sized = repos[SMALL]
    env.setenv("HONUA_PG_DSN", sized.dsn)
    reader = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from honua_plan.providers.postgis.prefetch import _read_state\n"
        "state = _read_state(Path(sys.argv[1]), sys.argv[2])\n"
        "print(json.dumps([state is not None, 'pydantic' in sys.modules]))\n"
    )
    plan = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from honua_plan.context import Context\n"
        "plan = Context(Path(sys.argv[1])).plan(sys.argv[2])\n"
        "print(json.dumps([plan.has_changes, 'yaml' in sys.modules]))\n"
    )
    Context(sized.repo).desired(ENV)  # the parse cache holds every file

    def run(code: str) -> object:
        out = subprocess.run([sys.executable, "-c", code, str(sized.repo), ENV], capture_output=True, text=True,
                             check=True, timeout=120)
        return json.loads(out.stdout)

    assert run(reader) == [True, False]  # the state was read, without the models
    assert run(plan) == [False, False]  # a no-op plan, without PyYAML (the forked reader has its own)


# --------------------------------------------------------------------------- with pygeoapi (issue 17)


@dataclass
class Published:
    n: int
    repo: Path
    dsn: str
    port: int


def _counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Count every statement psycopg sends (any module) and every HTTP request (any client)."""
    import http.client

    import psycopg

    seen: dict[str, list[str]] = {"statements": [], "requests": []}
    for cls in (psycopg.Cursor, psycopg.ServerCursor):
        for name in ("execute", "executemany", "copy"):
            fn = cls.__dict__.get(name)
            if fn is not None:
                def wrapper(self, query, *a, _fn=fn, **kw):  # type: ignore[no-untyped-def]
                    seen["statements"].append(str(query)[:80])
                    return _fn(self, query, *a, **kw)
                monkeypatch.setattr(cls, name, wrapper)
    real_request = http.client.HTTPConnection.request

    def request(self, method, url, *a, **kw):  # type: ignore[no-untyped-def]
        seen["requests"].append(f"{method} {url}")
        return real_request(self, method, url, *a, **kw)

    monkeypatch.setattr(http.client.HTTPConnection, "request", request)
    return seen


@pytest.fixture(scope="module")
def published(pg_cluster, repos: dict[int, Sized], env: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, Published]]:
    """The same tables published to a real pygeoapi (one per N), applied for real.

    Each N gets its own copy of the module's database: the published repository has a
    state of its own, and the database's recorded state serial belongs to the module's
    repository (the serial guard refuses a new state on a database that has one)."""
    pytest.importorskip("pygeoapi", reason="pygeoapi is not installed: pip install 'honua-plan[server]'")
    pytest.importorskip("gunicorn", reason="gunicorn is not installed: pip install 'honua-plan[server]'")
    import socket

    import psycopg

    from honua_plan.plan.store import save_plan

    out: dict[int, Published] = {}
    names: list[str] = []
    try:
        for n, sized in repos.items():
            name = f"published_{n}"
            pg_cluster.drop_database(name)
            dsn = pg_cluster.create_database(name, template=f"scaling_{n}")
            names.append(name)
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("DELETE FROM honua_plan.state_serial")
            repo = generate.write_repo(tmp_path_factory.mktemp(f"published{n}"), sized.specs, server="pygeoapi")
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            env.setenv(generate.PORT_ENV, str(port))
            env.setenv("HONUA_PG_DSN", dsn)
            ctx = Context(repo)
            save_plan(ctx.plan(ENV), repo / "plan.json")
            assert ctx.apply(ENV, repo / "plan.json", yes=True).ok
            out[n] = Published(n, repo, dsn, port)
        yield out
    finally:
        for p in out.values():
            env.setenv(generate.PORT_ENV, str(p.port))
            Context(p.repo).server_provider(ENV).stop()
        env.delenv(generate.PORT_ENV, raising=False)
        for name in names:
            pg_cluster.drop_database(name)


@pytest.mark.server
def test_noop_plan_with_pygeoapi_sends_constant_statements_and_requests(
        published: dict[int, Published], env: pytest.MonkeyPatch, monkeypatch: pytest.MonkeyPatch) -> None:
    """A no-op plan and a clean drift check with the server up: the refresh's statements, the
    state-serial check, the one extent comparison and
    no HTTP request, whatever N (the published config is not parsed or regenerated)."""
    counts = {}
    for n, p in published.items():
        env.setenv("HONUA_PG_DSN", p.dsn)
        env.setenv(generate.PORT_ENV, str(p.port))
        ctx = Context(p.repo)
        assert ctx.server_provider(ENV).is_running()
        monkeypatch.setattr("honua_plan.providers.postgis.prefetch.FORK", False)  # a forked reader's statements would not be seen
        for refresh_only in (False, True):
            with monkeypatch.context() as mp:
                seen = _counting(mp)
                plan = Context(p.repo).plan(ENV, refresh_only=refresh_only)
            assert not plan.has_changes and plan.drift == [], [a.address for a in plan.actions]
            counts[(refresh_only, n)] = (len(seen["statements"]), len(seen["requests"]))
    assert set(counts.values()) == {(REFRESH_STATEMENTS + SERIAL_GUARD_STATEMENTS + EXTENT_STATEMENTS, 0)}, counts


@pytest.mark.server
def test_one_changed_layer_is_checked_with_a_bounded_number_of_requests(
        published: dict[int, Published], env: pytest.MonkeyPatch, monkeypatch: pytest.MonkeyPatch) -> None:
    """Applying one changed layer reloads pygeoapi and checks health with one /collections
    request and a fixed sample (the changed collection and 3 unchanged), whatever N; the
    OpenAPI document needs no connection per collection."""
    from honua_plan.plan.store import save_plan
    from honua_plan.providers.server.http import HEALTH_SAMPLE_UNCHANGED

    per_n = {}
    for n, p in published.items():
        env.setenv("HONUA_PG_DSN", p.dsn)
        env.setenv(generate.PORT_ENV, str(p.port))
        layer = p.repo / "environments" / ENV / "layers" / "layer-00000.yaml"
        layer.write_text(layer.read_text().replace('title: "Layer 0"', 'title: "Layer 0, renamed"'))
        ctx = Context(p.repo)
        plan = ctx.plan(ENV)
        assert plan.has_changes
        save_plan(plan, p.repo / "change.json")
        from honua_plan.providers.server import pygeoapi_openapi

        generated: list[int] = []
        whole = pygeoapi_openapi.write_document

        def counted(config, fields, dest, reuse=None, _seen=generated, _whole=whole):  # type: ignore[no-untyped-def]
            _seen.append(len(reuse.changed) if reuse is not None else len(config["resources"]))
            return _whole(config, fields, dest, reuse)

        from honua_plan.providers.postgis import catalog as postgis

        scanned_again: list[int] = []
        extents_many = postgis.table_extents_many

        def extents_counted(session, columns, *a, _seen=scanned_again, _fn=extents_many, **kw):  # type: ignore[no-untyped-def]
            _seen.append(len(columns))
            return _fn(session, columns, *a, **kw)

        with monkeypatch.context() as mp:
            seen = _counting(mp)
            mp.setattr(pygeoapi_openapi, "write_document", counted)
            mp.setattr(postgis, "table_extents_many", extents_counted)
            assert ctx.apply(ENV, p.repo / "change.json", yes=True).ok
        # the changed layer's extent came from the re-derivation's geometry scan (no SQL ran
        # in between): its table was scanned once, not twice
        assert sum(scanned_again) == 0, scanned_again
        # only the changed collection's OpenAPI paths were generated, and the spliced document
        # is the whole one (generated again here with the index removed)
        assert generated == [1], generated
        provider = Context(p.repo).server_provider(ENV)
        spliced = json.loads(provider.openapi_path.read_text())
        provider.openapi_index_path.unlink()
        provider.publish(provider.read())
        full = json.loads(provider.openapi_path.read_text())
        assert {**spliced, "tags": sorted(spliced["tags"], key=lambda t: t["name"])} == \
            {**full, "tags": sorted(full["tags"], key=lambda t: t["name"])}
        per_collection = [r for r in seen["requests"] if "/collections/" in r]
        listing = [r for r in seen["requests"] if r.split("?")[0].endswith("/collections")]
        assert len(per_collection) == 1 + HEALTH_SAMPLE_UNCHANGED, seen["requests"]
        assert any("layer-00000" in r for r in per_collection)
        assert 1 <= len(listing) <= 3  # retried only while the new workers boot
        per_n[n] = (len(seen["statements"]), len(per_collection))
        served = Context(p.repo).server_provider(ENV)
        assert served.read()["collections"]["svc-000::layer-00000"]["title"] == "Layer 0, renamed"
    assert per_n[SMALL] == per_n[LARGE], per_n
