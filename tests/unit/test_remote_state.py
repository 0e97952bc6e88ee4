"""Running from CI and several machines, the pure parts: the project key, ``state.path``,
the refused embedded fallback, and the database a plan names (issue 19, items 3 and 4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from honua_plan.config.models import Policy, Project
from honua_plan.errors import DatabaseError, UsageError
from honua_plan.plan.model import DatabaseRef
from honua_plan.plan.render import render_markdown, render_text
from honua_plan.plan.store import load_plan, save_plan, verify_digest
from honua_plan.providers.postgis.connections import (
    ResolvedDsn,
    database_ref,
    embedded_refusal,
    resolve_connection,
)
from honua_plan.state.keys import PROJECT_ENV, project_key
from tests.unit.plan_fixtures import drift_plan, empty_plan, sample_plan

REF = DatabaseRef(host="db.city.internal", port="5432", dbname="city_gis_dev")


def _project(state: dict[str, Any] | None = None) -> Project:
    spec: dict[str, Any] = {"environments": ["dev", "production"]}
    if state is not None:
        spec["state"] = state
    return Project.model_validate({"apiVersion": "honua.io/v1", "kind": "Project",
                                   "metadata": {"name": "city-gis"}, "spec": spec})


def _policy(production: bool) -> Policy:
    return Policy.model_validate({"apiVersion": "honua.io/v1", "kind": "Policy",
                                  "metadata": {"name": "p", "environment": "production"},
                                  "spec": {"production": production}})


# ------------------------------------------------------------------ project key


def test_project_key_is_metadata_name_then_state_project_then_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PROJECT_ENV, raising=False)
    assert project_key("city-gis") == "city-gis"
    assert project_key("city-gis", "parks") == "parks"
    monkeypatch.setenv(PROJECT_ENV, "pr-42")
    assert project_key("city-gis", "parks") == "pr-42"
    monkeypatch.setenv(PROJECT_ENV, "")  # empty: not set
    assert project_key("city-gis") == "city-gis"


def test_an_invalid_project_variable_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PROJECT_ENV, "Not A Name")
    with pytest.raises(UsageError, match=r"HONUA_PROJECT='Not A Name' is not a valid project name"):
        project_key("city-gis")


def test_state_project_is_a_name() -> None:
    assert _project({"project": "parks"}).spec.state.project == "parks"
    with pytest.raises(ValueError, match=r"not a valid name|pattern"):
        _project({"project": "Parks Department"})


# ------------------------------------------------------------------ state.path


@pytest.mark.parametrize("path", ["state", ".honua-state", "var/honua", "./state"])
def test_state_path_inside_the_repository(path: str) -> None:
    assert _project({"path": path}).spec.state.path == path


@pytest.mark.parametrize("path", ["/var/lib/honua", "../shared", "state/../..", "~/state", "", ".", "C:/state",
                                  "a\nb"])
def test_state_path_outside_the_repository_is_refused(path: str) -> None:
    with pytest.raises(ValueError, match="is not a folder inside the repository"):
        _project({"path": path})


# ------------------------------------------------------------------ embedded fallback


def test_embedded_fallback_is_refused_under_ci_and_for_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    assert embedded_refusal("dev", None) is None
    assert embedded_refusal("dev", _policy(False)) is None
    assert embedded_refusal("production", _policy(True)) == "the policy of 'production' says production: true"
    monkeypatch.setenv("CI", "true")
    assert embedded_refusal("dev", None) == "CI is set (the embedded PostGIS is for the local dev loop)"
    monkeypatch.setenv("CI", "")  # set but empty: not CI (how a test opts back into the dev loop)
    assert embedded_refusal("dev", None) is None


def test_refused_fallback_names_the_variables_to_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("HONUA_PG_DSN_PRODUCTION", "HONUA_PG_DSN"):
        monkeypatch.delenv(var, raising=False)
    env_names = ["HONUA_PG_DSN_{{ env | upper }}", "HONUA_PG_DSN"]
    with pytest.raises(DatabaseError) as err:
        resolve_connection("postgis-primary", env_names, None, True, "production", tmp_path,
                           refuse_embedded="CI is set (the embedded PostGIS is for the local dev loop)")
    assert err.value.message == (
        "datasource 'postgis-primary' has no connection for environment 'production': set "
        "HONUA_PG_DSN_PRODUCTION or HONUA_PG_DSN; the embedded PostGIS fallback is refused because CI is set "
        "(the embedded PostGIS is for the local dev loop)")
    assert not (tmp_path / "state").exists()  # nothing started, nothing made
    monkeypatch.setenv("HONUA_PG_DSN", "host=db.city.internal dbname=city_gis")
    found = resolve_connection("postgis-primary", env_names, None, True, "production", tmp_path,
                               refuse_embedded="CI is set")
    assert found.origin == "env HONUA_PG_DSN" and found.embedded_db is None


def test_embedded_cluster_follows_state_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HONUA_PG_DSN", raising=False)
    found = resolve_connection("pg", ["HONUA_PG_DSN"], None, True, "dev", tmp_path, state_path=".honua-state")
    assert found.cluster_root == tmp_path / ".honua-state" / ".pg"
    assert found.origin == "embedded .honua-state/.pg database honua_dev"


# ------------------------------------------------------------------ the database of a plan


@pytest.mark.parametrize(("dsn", "expected"), [
    ("host=db.city.internal port=6432 dbname=gis user=etl password=s3cret", ("db.city.internal", "6432", "gis")),
    ("postgresql://etl:s3cret@db.city.internal/gis", ("db.city.internal", "5432", "gis")),
    ("hostaddr=10.0.0.5 dbname=gis", ("10.0.0.5", "5432", "gis")),
    ("dbname=gis user=etl", ("", "5432", "gis")),
])
def test_database_ref_names_host_port_and_database_never_the_user_or_password(
        monkeypatch: pytest.MonkeyPatch, dsn: str, expected: tuple[str, str, str]) -> None:
    for var in ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER"):
        monkeypatch.delenv(var, raising=False)
    ref = database_ref(ResolvedDsn(dsn, "env HONUA_PG_DSN"))
    assert (ref.host, ref.port, ref.dbname) == expected
    assert not ref.embedded
    assert "etl" not in ref.model_dump_json() and "s3cret" not in ref.model_dump_json()


def test_database_ref_uses_libpq_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHOST", "pg.example")
    monkeypatch.setenv("PGPORT", "5433")
    monkeypatch.setenv("PGDATABASE", "gis")
    ref = database_ref(ResolvedDsn("user=etl", "env HONUA_PG_DSN"))
    assert ref.describe() == "pg.example:5433/gis"


def test_embedded_database_is_described_as_such() -> None:
    ref = database_ref(ResolvedDsn("host=/tmp/sock port=20001 dbname=honua_dev user=postgres", "embedded",
                                   embedded_db="honua_dev"))
    assert ref.describe() == "/tmp/sock:20001/honua_dev (embedded PostGIS)"


def test_text_and_markdown_name_the_database() -> None:
    plan = sample_plan()
    text = render_text(plan)
    assert text.splitlines()[1] == "Database: db.city.internal:5432/city_gis_dev"
    assert "database `db.city.internal:5432/city_gis_dev`" in render_markdown(plan)
    assert render_text(empty_plan().model_copy(update={"database": REF})) == (
        "No changes. The dev environment matches the configuration.\n"
        "Database: db.city.internal:5432/city_gis_dev\n")
    drift = render_text(drift_plan().model_copy(update={"database": REF})).splitlines()
    assert drift[0].startswith("Drift in dev: 2 resources") and drift[1] == "Database: db.city.internal:5432/city_gis_dev"
    no_drift = empty_plan().model_copy(update={"database": REF, "refresh_only": True})
    assert render_text(no_drift).splitlines()[1] == "Database: db.city.internal:5432/city_gis_dev"


def test_a_plan_file_made_before_the_database_was_recorded_loads_and_verifies(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    save_plan(empty_plan(), path)  # no database: the file has no "database" key, as older files
    assert '"database"' not in path.read_text()
    old = load_plan(path)
    verify_digest(old, source=str(path))  # its digest (made without the field) still verifies
    assert old.database is None
    assert "Database:" not in render_text(old)
