"""Config templates are data, not code (issue 14 item 1).

Templates render in a sandbox with no globals and only the documented variables (``env``,
``environment``, ``project``); any other name, attribute or item access, call or filter
outside a short allow-list is a validation error at ``file:line:col``. Text whose
``{{``/``{%`` does not open a template expression (a SQL array literal) is left alone.
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from honua_plan.config import templating
from tests.helpers import copy_example, edit, run

M001 = "migrations/001_create_bike_lanes.yaml"
ANCHOR = "        CREATE TABLE IF NOT EXISTS bike_lanes ("
SENTINEL = "honua-sentinel-Zq81x"
VARS = templating.variables_for("dev", "city")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "repo", server=False)


def _inject(repo: Path, sql_line: str) -> int:
    """Put ``sql_line`` first in migration 001's up SQL; return its line in the file."""
    edit(repo / M001, ANCHOR, f"        {sql_line}\n{ANCHOR}")
    lines = (repo / M001).read_text().splitlines()
    return next(i for i, ln in enumerate(lines, 1) if sql_line in ln)


# --------------------------------------------------------------------------- the attacks


def test_template_cannot_run_a_shell_command(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    line = _inject(repo, "SELECT '{{ cycler.__init__.__globals__.os.system('id > pwned') }}';")
    result = run(repo, "validate")
    assert not (repo / "pwned").exists()
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    col = (repo / M001).read_text().splitlines()[line - 1].index("cycler") + 1
    assert f"{M001}:{line}:{col}: template error: 'cycler' is not a template variable" in result.output


def test_environ_payload_cannot_reach_a_plan(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HONUA_TEST_API_KEY", SENTINEL)
    _inject(repo, "SELECT '{{ cycler.__init__.__globals__.os.environ }}';")
    env = {"HONUA_TEST_API_KEY": SENTINEL, "HONUA_PG_DSN": "postgresql://u:pw@127.0.0.1:1/none"}
    validate = run(repo, "validate", env=env)
    plan = run(repo, "plan", "--env", "dev", "--out", str(repo / "plan.json"), env=env)
    for result in (validate, plan):
        assert result.exit_code == 1, result.output
        assert SENTINEL not in result.output and "HONUA_TEST_API_KEY" not in result.output
        assert "'cycler' is not a template variable" in result.output
    assert not (repo / "plan.json").exists()


def test_datasource_env_name_templates_are_checked(repo: Path) -> None:
    edit(repo / "providers/postgis-primary.yaml", "HONUA_PG_DSN_{{ env | upper }}", "HONUA_{{ env.__class__ }}")
    result = run(repo, "validate")
    assert result.exit_code == 1, result.output
    line = next(i for i, text in enumerate((repo / "providers/postgis-primary.yaml").read_text().splitlines(), 1)
                if "HONUA_{{ env.__class__ }}" in text)
    assert f"providers/postgis-primary.yaml:{line}:" in result.output
    assert "attribute access (.__class__) is not allowed" in result.output


# --------------------------------------------------------------------------- what is refused

REFUSED = [
    ("{{ cycler }}", "'cycler' is not a template variable"),
    ("{{ lipsum() }}", "'lipsum' is not a template variable"),
    ("{{ range(3) }}", "'range' is not a template variable"),
    ("{{ namespace }}", "'namespace' is not a template variable"),
    ("{{ dict(a=1) }}", "'dict' is not a template variable"),
    ("{{ joiner }}", "'joiner' is not a template variable"),
    ("{{ self }}", "'self' is not a template variable"),
    ("{{ config }}", "'config' is not a template variable"),
    ("{{ env.__class__ }}", "attribute access (.__class__) is not allowed"),
    ("{{ env.upper() }}", "a call is not allowed"),
    ("{{ env.upper }}", "attribute access (.upper) is not allowed"),
    ("{{ env['__class__'] }}", "item access ([...]) is not allowed"),
    ("{{ env[0] }}", "item access ([...]) is not allowed"),
    ("{{ env | attr('__class__') }}", "filter 'attr' is not allowed"),
    ("{{ env | format(env) }}", "filter 'format' is not allowed"),
    ("{{ env | map('upper') }}", "filter 'map' is not allowed"),
    ("{{ env | replace('', env) }}", "filter 'replace' is not allowed"),
    ("{% if env is callable %}x{% endif %}", "test 'callable' is not allowed"),
    ("{{ env % env }}", "operator '%' is not allowed"),
    ("{{ env * 100000000 }}", "operator '*' is not allowed"),
    ("{{ env ** 9 ** 9 }}", "operator '**' is not allowed"),
    ("{% for x in env %}{% for y in env %}{{ x ~ y }}{% endfor %}{% endfor %}", "'for' is not allowed"),
    ("{% set f = env %}{{ f }}", "'set' is not allowed"),
    ("{% macro m() %}x{% endmacro %}{{ m() }}", "'macro' is not allowed"),
    ("{% raw %}{{ env }}{% endraw %}", "'raw' is not allowed"),
    ("{% include 'x' %}", "'include' is not allowed"),
    ("{% extends 'x' %}", "'extends' is not allowed"),
    ("{% import 'x' as y %}", "'import' is not allowed"),
    ("{{ env }", "template error"),
]


@pytest.mark.parametrize("text,message", REFUSED, ids=[t for t, _ in REFUSED])
def test_refused(text: str, message: str) -> None:
    with pytest.raises(templating.TemplateProblem) as info:
        templating.render_template(f"SELECT 1;\n{text}", VARS)
    assert message in str(info.value)
    assert info.value.line == 2


@pytest.mark.parametrize("text,message", REFUSED[:12], ids=[t for t, _ in REFUSED[:12]])
def test_refused_in_validate(repo: Path, text: str, message: str) -> None:
    line = _inject(repo, f"SELECT 1; -- {text}")
    result = run(repo, "validate")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert any(ln.startswith(f"{M001}:{line}:") and message in ln for ln in result.output.splitlines()), \
        result.output


# --------------------------------------------------------------------------- what still works

RENDERED = [
    ("environments/{{env}}/layers/x.yaml", "environments/dev/layers/x.yaml"),
    ("HONUA_PG_DSN_{{ env | upper }}", "HONUA_PG_DSN_DEV"),
    ("SELECT '{{ environment }}', '{{ project }}'", "SELECT 'dev', 'city'"),
    ("{%- if env == 'dev' %}A{% else %}B{% endif %}", "A"),
    ("{{ env | trim | lower }}-{{ project | default('x') }}", "dev-city"),
    ("{% if env in ['dev', 'staging'] and env is defined %}test{% elif not env %}{% endif %}", "test"),
    # a template and a SQL array literal in one text: the literal's braces stay as they are
    ("SELECT '{{1,2},{3,4}}'::int[], '{{ env }}', '{#}', '{%}'", "SELECT '{{1,2},{3,4}}'::int[], 'dev', '{#}', '{%}'"),
    ("SELECT '{{{ env }}}'", "SELECT '{dev}'"),
    ("SELECT '{{ env ~ \"}}\" }}'", "SELECT 'dev}}'"),
]


@pytest.mark.parametrize("text,expected", RENDERED, ids=[t for t, _ in RENDERED])
def test_rendered(text: str, expected: str) -> None:
    assert templating.render_template(text, VARS) == expected


PLAIN = [
    "SELECT '{{1,2},{3,4}}'::int[]",
    "SELECT '{{\"a\",\"b\"}}'::text[]",
    "SELECT '{#}' || '{{}}'",
    "SELECT '{%}'",
    "SELECT '{{ 1 }}'",
]


@pytest.mark.parametrize("text", PLAIN)
def test_sql_literals_are_not_templates(text: str) -> None:
    assert not templating.is_template(text)
    assert templating.render_template(text, VARS) == text


def test_int_array_literal_validates_and_runs_unchanged(repo: Path, pg_dsn: str) -> None:
    literal = "'{{1,2},{3,4}}'::int[]"
    _inject(repo, f"CREATE TABLE arrays AS SELECT {literal} AS a, '{{{{ env }}}}'::text AS e;")
    assert run(repo, "validate").exit_code == 0
    result = run(repo, "migrate", "up", "001", "--env", "dev", "--yes", env={"HONUA_PG_DSN": pg_dsn})
    assert result.exit_code == 0, result.output
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT a, e FROM arrays").fetchone() == ([[1, 2], [3, 4]], "dev")


def test_template_variables_in_paths_still_work(repo: Path) -> None:
    # migration 003 edits environments/{{env}}/layers/bike-lanes.yaml: a wrong {{env}} would not exist
    edit(repo / "migrations/003_optimize_bike_lanes.yaml", "environments/{{env}}/layers", "environments/{{ environment }}/layers")
    result = run(repo, "validate")
    assert result.exit_code == 0, result.output
    assert os.environ.get("HONUA_TEST_API_KEY") is None
