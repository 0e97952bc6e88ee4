"""Running from CI and several machines (issue 19, items 3 and 4).

* two projects sharing one postgres state database never see each other's state;
* state tables of an earlier version (keyed by environment alone) are upgraded in place;
* ``state.path`` is honoured: every local file goes there, none to ``state/``;
* the embedded fallback is refused under CI and for production, naming the variables;
* every plan names its database, and a saved plan refuses to apply to another one.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from honua_plan.context import Context
from honua_plan.plan.store import load_plan, save_plan
from honua_plan.providers.embedded.pgserver import pg_dump_available
from honua_plan.providers.postgis.connections import ResolvedDsn, database_ref
from honua_plan.state import StateDocument, open_backend
from honua_plan.state.model import ResourceRecord
from honua_plan.state.serialguard import SerialGuard
from honua_plan.workflows.sample import seed_bike_lanes
from tests.conftest import TEMPLATE_DB
from tests.helpers import copy_example, drop_performance_check, edit, run

if TYPE_CHECKING:
    from honua_plan.providers.embedded.pgserver import EmbeddedCluster

pytestmark = pytest.mark.integration

NewDb = Callable[[], str]


@pytest.fixture
def new_db(pg_cluster: EmbeddedCluster) -> Iterator[NewDb]:
    """Make more fresh PostGIS databases (each dropped afterwards)."""
    made: list[str] = []

    def make() -> str:
        name = f"t_{uuid.uuid4().hex[:8]}"
        made.append(name)
        return pg_cluster.create_database(name, template=TEMPLATE_DB)

    yield make
    for name in made:
        pg_cluster.drop_database(name)


def example(dest: Path, dsn: str, *, name: str | None = None, postgres_state: bool = False) -> Path:
    """The example (no server) on the seed's 42-row table in ``dsn``; ``name``: its
    metadata.name; ``postgres_state``: state in the database named by HONUA_STATE_DSN."""
    repo = copy_example(dest, server=False)
    drop_performance_check(repo)
    if name is not None:
        edit(repo / "honua.yaml", "  name: city-gis", f"  name: {name}")
    if postgres_state:
        edit(repo / "honua.yaml", "    backend: local\n", "    backend: postgres\n    dsnEnv: HONUA_STATE_DSN\n")
    with psycopg.connect(dsn, autocommit=True) as conn:
        seed_bike_lanes(conn, 42)
    return repo


def plan_json(repo: Path, env: dict[str, str], environment: str = "dev") -> dict[str, Any]:
    result = run(repo, "plan", "--env", environment, "--format", "json", env=env)
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


def actions(plan: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a["address"], a["action"]) for a in plan["actions"]]


# --------------------------------------------------------------------------- projects


def test_two_projects_sharing_one_state_database_never_see_each_other(
        tmp_path: Path, pg_dsn: str, new_db: NewDb) -> None:
    a_db, b_db = new_db(), new_db()
    a = example(tmp_path / "a", a_db, postgres_state=True)  # project city-gis
    b = example(tmp_path / "b", b_db, name="parks", postgres_state=True)
    env_a = {"HONUA_STATE_DSN": pg_dsn, "HONUA_PG_DSN": a_db}
    env_b = {"HONUA_STATE_DSN": pg_dsn, "HONUA_PG_DSN": b_db}
    fresh_b = plan_json(b, env_b)
    assert fresh_b["state_serial"] == 0 and ("migration.001", "apply") in actions(fresh_b)

    result = run(a, "apply", "--env", "dev", "--auto-approve", env=env_a)
    assert result.exit_code == 0, result.output

    after = plan_json(b, env_b)  # B's own changes, nothing of A's
    assert actions(after) == actions(fresh_b)
    assert after["state_serial"] == 0 and after["state_lineage"] != plan_json(a, env_a)["state_lineage"]
    assert not [x for x in after["actions"] if x["action"] == "delete"]

    # the locks are per project too: B applies while A holds its own lock
    a_backend = open_backend("postgres", environment="dev", root=a, dsn=pg_dsn, project="city-gis")
    with a_backend.lock("honua apply --env dev"):
        result = run(b, "apply", "--env", "dev", "--auto-approve", env=env_b)
        assert result.exit_code == 0, result.output
    a_backend.close()
    for repo, env in ((a, env_a), (b, env_b)):
        result = run(repo, "plan", "--env", "dev", "--detailed-exitcode", env=env)
        assert result.exit_code == 0, result.output
        assert result.output.startswith("No changes. The dev environment matches the configuration.\n")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT project, environment, serial > 0 FROM honua_plan.state ORDER BY 1").fetchall()
        history = conn.execute("SELECT DISTINCT project FROM honua_plan.state_history ORDER BY 1").fetchall()
    assert rows == [("city-gis", "dev", True), ("parks", "dev", True)]
    assert history == [("city-gis",), ("parks",)]


def test_state_project_and_honua_project_choose_the_key(tmp_path: Path, pg_dsn: str, new_db: NewDb,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    a_db = new_db()
    a = example(tmp_path / "a", a_db, postgres_state=True)
    edit(a / "honua.yaml", "    dsnEnv: HONUA_STATE_DSN\n", "    dsnEnv: HONUA_STATE_DSN\n    project: city-gis-main\n")
    env = {"HONUA_STATE_DSN": pg_dsn, "HONUA_PG_DSN": a_db}
    assert run(a, "apply", "--env", "dev", "--auto-approve", env=env).exit_code == 0
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT project FROM honua_plan.state").fetchall() == [("city-gis-main",)]
    other = plan_json(a, {**env, "HONUA_PROJECT": "pr-42"})  # a workspace of its own: nothing recorded
    assert other["state_serial"] == 0
    bad = run(a, "plan", "--env", "dev", env={**env, "HONUA_PROJECT": "PR 42"})
    assert bad.exit_code == 1 and "HONUA_PROJECT='PR 42' is not a valid project name" in bad.output
    assert "Traceback" not in bad.output


# the tables as versions before projects made them
_LEGACY_DDL = """
CREATE SCHEMA honua_plan;
CREATE TABLE honua_plan.state (environment text PRIMARY KEY, lineage text NOT NULL,
  serial bigint NOT NULL CHECK (serial >= 0), format_version integer NOT NULL, document jsonb NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE honua_plan.state_history (environment text NOT NULL, serial bigint NOT NULL, lineage text NOT NULL,
  document jsonb NOT NULL, written_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (environment, serial));
CREATE TABLE honua_plan.lock_holder (environment text PRIMARY KEY, pid integer NOT NULL, host text NOT NULL,
  username text, since timestamptz NOT NULL, command text NOT NULL, server_pid integer NOT NULL);
CREATE TABLE honua_plan.state_serial (environment text PRIMARY KEY, lineage text NOT NULL, serial bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now());
"""


def _one_write(doc: StateDocument) -> StateDocument:
    return doc.with_resource(ResourceRecord.create("layer.transportation::bike-lanes", "layer", {"t": 1},
                                                   serial=doc.next_serial))


def test_state_tables_of_an_earlier_version_are_upgraded_in_place(tmp_path: Path, pg_dsn: str) -> None:
    # a state written the old way: made with today's code in a scratch schema, copied over
    scratch = open_backend("postgres", environment="dev", root=tmp_path, dsn=pg_dsn, schema="scratch")
    with scratch.lock("seed") as w:
        old = w.write(_one_write(w.read()), expected_serial=0)
    scratch.close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(_LEGACY_DDL)
        conn.execute("INSERT INTO honua_plan.state SELECT environment, lineage, serial, format_version, document,"
                     " updated_at FROM scratch.state")
        conn.execute("INSERT INTO honua_plan.state_history SELECT environment, serial, lineage, document,"
                     " written_at FROM scratch.state_history")
        conn.execute("INSERT INTO honua_plan.state_serial VALUES ('dev', %s, 1, now())", (old.lineage,))

    def backend(project: str) -> Any:
        return open_backend("postgres", environment="dev", root=tmp_path, dsn=pg_dsn, project=project)

    # before the upgrade every project reads the old rows, as the earlier version did (a plan keeps working)
    assert backend("city-gis").reader().read().lineage == old.lineage
    assert backend("city-gis").holder() is None
    guard = SerialGuard("dev", lambda: pg_dsn, project="city-gis")
    assert guard.recorded() == (old.lineage, 1)
    # the first lock upgrades the tables: the old rows go to the project that takes it
    city = backend("city-gis")
    with city.lock("honua apply --env dev") as w:
        doc = w.read()
        assert (doc.lineage, doc.serial) == (old.lineage, 1)
        new = w.write(_one_write(doc), expected_serial=1)
    guard.record(new)
    guard.close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT project, environment, serial FROM honua_plan.state").fetchall() == [
            ("city-gis", "dev", 2)]
        assert conn.execute("SELECT project, serial FROM honua_plan.state_history ORDER BY 2").fetchall() == [
            ("city-gis", 1), ("city-gis", 2)]
        assert conn.execute("SELECT project, serial FROM honua_plan.state_serial").fetchall() == [("city-gis", 2)]
        with pytest.raises(psycopg.errors.NotNullViolation):  # an older version cannot write rows without a project
            conn.execute("INSERT INTO honua_plan.state (environment, lineage, serial, format_version, document)"
                         " VALUES ('dev', 'x', 1, 1, '{}')")
    parks = backend("parks")
    assert not parks.reader().exists() and parks.reader().read().serial == 0
    assert SerialGuard("dev", lambda: pg_dsn, project="parks").recorded() is None
    assert backend("city-gis").reader().read().serial == 2


def test_serial_guard_keeps_projects_sharing_a_target_database_apart(pg_dsn: str) -> None:
    a = SerialGuard("dev", lambda: pg_dsn, project="city-gis")
    doc = StateDocument.new("dev")
    a.record(doc.model_copy(update={"serial": 7}))
    a.close()
    b = SerialGuard("dev", lambda: pg_dsn, project="parks")
    b.check(StateDocument.new("dev"), "state/dev.json", None)  # no state of its own, and none recorded: fine
    assert b.recorded() is None
    b.close()


# --------------------------------------------------------------------------- state.path


def test_state_path_is_honoured(tmp_path: Path, pg_dsn: str) -> None:
    repo = example(tmp_path / "repo", pg_dsn)
    (repo / "state").rmdir()
    edit(repo / "honua.yaml", "    path: state\n", "    path: .honua-state\n")
    env = {"HONUA_PG_DSN": pg_dsn}
    saved = str(tmp_path / "plan.json")
    result = run(repo, "plan", "--env", "dev", "--out", saved, env=env)
    assert result.exit_code == 0, result.output
    result = run(repo, "apply", "--env", "dev", saved, env=env)
    assert result.exit_code == 0, result.output
    here = repo / ".honua-state"
    plan_id = load_plan(saved).id
    assert json.loads((here / "dev.json").read_text())["serial"] > 0
    assert (here / "plans" / f"{plan_id}.json").is_file()  # the journal's copy of the plan
    if pg_dump_available():  # migration 003 backs up the table it indexes
        assert list((here / "backups").glob("*.dump"))
    assert not (repo / "state").exists()
    ctx = Context(repo)
    assert ctx.state_dir == here
    assert ctx.embedded.root == here / ".pg"
    assert ctx.server_provider("dev").state_dir == here / "dev"
    result = run(repo, "state", "show", "--env", "dev", env=env)
    assert result.exit_code == 0, result.output
    assert not (repo / "state").exists()


def test_state_path_outside_the_repository_is_a_config_error(tmp_path: Path) -> None:
    repo = copy_example(tmp_path / "repo", server=False)
    edit(repo / "honua.yaml", "    path: state\n", "    path: ../elsewhere\n")
    result = run(repo, "validate")
    assert result.exit_code == 1
    assert re.search(r"honua\.yaml:\d+:\d+: .*'\.\./elsewhere' is not a folder inside the repository", result.output)
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- no embedded by accident


@pytest.mark.parametrize(("ci", "environment", "why"), [
    ("true", "production", "because CI is set"),
    ("true", "dev", "because CI is set"),
    ("", "production", "because the policy of 'production' says production: true"),
])
def test_embedded_fallback_is_refused_naming_the_variables(tmp_path: Path, ci: str, environment: str, why: str) -> None:
    repo = copy_example(tmp_path / "repo", server=False)
    env = {"CI": ci, "HONUA_PG_DSN": "", f"HONUA_PG_DSN_{environment.upper()}": ""}
    result = run(repo, "plan", "--env", environment, env=env)
    assert result.exit_code == 1
    assert (f"datasource 'postgis-primary' has no connection for environment '{environment}': set "
            f"HONUA_PG_DSN_{environment.upper()} or HONUA_PG_DSN; the embedded PostGIS fallback is refused {why}"
            ) in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not (repo / "state" / ".pg").exists()  # nothing started


def test_ci_plan_of_production_names_its_database(tmp_path: Path, pg_dsn: str) -> None:
    repo = copy_example(tmp_path / "repo", server=False)
    env = {"CI": "true", "HONUA_PG_DSN": "", "HONUA_PG_DSN_PRODUCTION": pg_dsn}
    ref = database_ref(ResolvedDsn(pg_dsn, "test"))
    assert run(repo, "migrate", "render", "--env", "production", env=env).exit_code == 0  # under CI: in the files
    result = run(repo, "plan", "--env", "production", env=env)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1] == f"Database: {ref.describe()}"
    assert "(embedded PostGIS)" not in result.output
    data = plan_json(repo, env, "production")
    assert data["database"] == {"host": ref.host, "port": ref.port, "dbname": ref.dbname, "embedded": False}


# --------------------------------------------------------------------------- a saved plan, its database


def test_a_saved_plan_refuses_to_apply_to_another_database(tmp_path: Path, pg_dsn: str, new_db: NewDb) -> None:
    other = new_db()
    repo = example(tmp_path / "repo", pg_dsn)
    with psycopg.connect(other, autocommit=True) as conn:
        seed_bike_lanes(conn, 42)  # the same content: only the database differs
    made, there = database_ref(ResolvedDsn(pg_dsn, "t")), database_ref(ResolvedDsn(other, "t"))
    saved, older = tmp_path / "plan.json", tmp_path / "old.json"
    result = run(repo, "plan", "--env", "dev", "--out", str(saved), env={"HONUA_PG_DSN": pg_dsn})
    assert result.exit_code == 0, result.output
    result = run(repo, "apply", "--env", "dev", str(saved), env={"HONUA_PG_DSN": other})
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert f"plan.json was made against database {made.describe()}; refusing to apply it to {there.describe()}" in text
    assert "Traceback" not in result.output
    assert not (repo / "state" / "dev.json").exists()  # nothing applied, nothing recorded

    # a plan file made before plans recorded their database is refused too (its digest is valid)
    save_plan(load_plan(saved).model_copy(update={"database": None}), older)
    result = run(repo, "apply", "--env", "dev", str(older), env={"HONUA_PG_DSN": pg_dsn})
    assert result.exit_code == 1
    assert "does not say which database it was made against" in " ".join(result.output.split())

    result = run(repo, "apply", "--env", "dev", str(saved), env={"HONUA_PG_DSN": pg_dsn})
    assert result.exit_code == 0, result.output
    assert f"Database: {made.describe()}\n" in result.output
    events = json.loads((repo / "state" / "dev.json").read_text())["events"]
    started = [e for e in events if e["kind"] == "apply-start"]
    assert started and started[-1]["details"]["database"] == made.model_dump()
