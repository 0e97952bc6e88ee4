"""Plan renderers: text, Markdown and JSON, compared byte for byte with golden files.

The golden files live in ``tests/golden/`` and are the renders of the hand-built plans
in ``plan_fixtures.py``. After an intended change of the output, rewrite them with::

    HONUA_UPDATE_GOLDEN=1 python -m pytest tests/unit/test_render.py tests/unit/test_store.py

and review the diff of ``tests/golden/`` like any other change.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import click
import pytest

from honua_plan import secrets
from honua_plan.errors import UsageError
from honua_plan.plan.model import Action, Operation, Plan, plan_json_schema
from honua_plan.plan.render import (
    FORMATS,
    content_digest,
    format_estimate,
    render,
    render_json,
    render_markdown,
    render_text,
    summary_line,
)
from tests.unit.plan_fixtures import drift_plan, empty_plan, mixed_plan, sample_plan

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
UPDATE = os.environ.get("HONUA_UPDATE_GOLDEN") == "1"

DSN = "postgresql://etl:s3cret@db.internal/gis"


def check_golden(name: str, actual: str) -> None:
    """Compare ``actual`` with ``tests/golden/<name>`` byte for byte (or rewrite it)."""
    path = GOLDEN / name
    data = actual.encode("utf-8")
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return
    if not path.exists():
        pytest.fail(f"golden file {path} is missing; create it with HONUA_UPDATE_GOLDEN=1")
    expected = path.read_bytes()
    if data != expected:
        # assert on text so pytest shows a readable diff
        assert actual == expected.decode("utf-8"), f"{name} differs (HONUA_UPDATE_GOLDEN=1 rewrites it)"


# ------------------------------------------------------------------ golden


@pytest.mark.parametrize(
    ("name", "build"),
    [
        ("plan_dev.txt", lambda: render_text(sample_plan())),
        ("plan_dev.md", lambda: render_markdown(sample_plan())),
        ("plan_dev.json", lambda: render_json(sample_plan()) + "\n"),
        ("plan_empty.txt", lambda: render_text(empty_plan())),
        ("plan_empty.md", lambda: render_markdown(empty_plan())),
        ("plan_mixed.txt", lambda: render_text(mixed_plan())),
        ("plan_mixed.md", lambda: render_markdown(mixed_plan())),
        ("plan_drift.txt", lambda: render_text(drift_plan())),
        ("plan_drift.md", lambda: render_markdown(drift_plan())),
    ],
)
def test_golden(name: str, build: Callable[[], str]) -> None:
    check_golden(name, build())


def test_golden_update_is_off_in_ci() -> None:
    """A forgotten HONUA_UPDATE_GOLDEN=1 in CI would make the golden tests vacuous."""
    if os.environ.get("CI"):
        assert not UPDATE


# -------------------------------------------------------------------- text


def test_text_uses_the_seed_vocabulary() -> None:
    text = render_text(sample_plan())
    assert text.startswith("Plan for dev (3 to apply, 2 to create, 0 to update, 0 to delete, 1 to reload; 1 unchanged)\n")
    for phrase in (
        "Deployment Plan:",
        "Environment: dev",
        "Step 1: Create spatial index (estimated: 2s)",
        "Step 3: Update metadata (estimated: <1s)",
        "Rollback Plan:\n        - Drop spatial index\n        - Revert metadata",
        "⚠ PG101 CREATE INDEX without CONCURRENTLY on bike_lanes (42,000 rows) blocks writes",
        "→ Consider creating index with CONCURRENTLY option",
        "Risk Level: HIGH",
        "Estimated Duration: 11s",
        "Automatic Rollback: YES",
        "Approval Required: YES (1 of gis-ops)",
        "✓ Within deployment window",
    ):
        assert phrase in text, phrase
    assert "\x1b[" not in text
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert all(line == line.rstrip() for line in text.splitlines())


def test_text_symbols_and_changed_paths() -> None:
    text = render_text(mixed_plan())
    lines = text.splitlines()
    heads = {line.split()[1]: line.split()[0] for line in lines if re.match(r"^  \S+\s+\S+\.\S+", line)}
    assert heads["layer.transportation::bike-lanes"] == "~"
    assert heads["layer.transportation::trails"] == "-/+"
    assert heads["migration.004"] == "+"
    assert heads["service.legacy"] == "-"
    assert heads["validation.dev"] == "✓"
    assert '~ title: "Bike Lanes" → "Bicycle Lanes"' in text
    assert "~ ogc.itemLimit: 1000 → 500" in text
    assert '+ keywords: ["cycling"]' in text
    assert "Rollback Plan: none, irreversible (restore from backup of old_lanes)" in text
    assert "Irreversible:\n    - migration.004: DROP TABLE old_lanes destroys 1,200 rows" in text
    assert "[no transaction]" in text
    assert "Automatic Rollback: PARTIAL (1 of 2 actions)" in text
    assert "Approved by: john@city.gov (1 of 2, pending)" in text
    assert "✗ Outside deployment window" in text
    assert "Targeted: layer.transportation::bike-lanes, migration.004" in text


def test_reload_symbol() -> None:
    assert "  ↻ server.pygeoapi" in render_text(sample_plan())


def test_text_columns_are_aligned() -> None:
    lines = [line for line in render_text(sample_plan()).splitlines() if "(est. " in line]
    assert len(lines) == 6
    assert len({line.index("(est. ") for line in lines}) == 1


def test_record_operations_are_not_listed_as_steps() -> None:
    text = render_text(sample_plan())
    assert "Record migration" not in text
    assert "Step 4:" not in text


def test_colour_only_when_asked() -> None:
    plain = render_text(sample_plan())
    coloured = render_text(sample_plan(), colour=True)
    assert "\x1b[" in coloured
    assert click.unstyle(coloured) == plain
    assert click.unstyle(render_text(empty_plan(), colour=True)) == render_text(empty_plan())


def test_render_is_deterministic() -> None:
    for fmt in ("text", "markdown", "json"):
        assert render(sample_plan(), fmt) == render(sample_plan(), fmt)


def test_empty_plan() -> None:
    assert render_text(empty_plan()) == "No changes. The dev environment matches the configuration.\n"


def test_empty_plan_shows_drift() -> None:
    plan = drift_plan().model_copy(update={"refresh_only": False})
    text = render_text(plan)
    assert text.startswith("No changes. The dev environment matches the configuration.\n\nDrift in dev: 2 resources")
    assert "+ table.bike_lanes_backup" in text


def test_refresh_only_renders_only_drift() -> None:
    text = render_text(drift_plan())
    assert text.startswith("Drift in dev: 2 resources changed outside honua\n")
    assert "~ layer.transportation::bike-lanes" in text
    assert "Deployment Plan" not in text and "Risk Level" not in text
    clean = drift_plan().model_copy(update={"drift": []})
    assert render_text(clean) == "No drift. The dev environment matches the recorded state.\n"


def test_detailed_text_shows_sql_and_diffs() -> None:
    text = render_text(sample_plan(), detailed=True)
    assert "          CREATE INDEX idx_bike_lanes_geom" in text
    assert "          +    indexes:" in text
    assert "DROP INDEX IF EXISTS idx_bike_lanes_geom;" in text


def test_approval_not_required() -> None:
    plan = sample_plan().model_copy(update={"approvals_required": 0, "approvers": []})
    assert "Approval Required: NO" in render_text(plan)


def test_automatic_rollback_no() -> None:
    plan = sample_plan()
    actions = [a.model_copy(update={"automatic_rollback": False}) for a in plan.actions]
    assert "Automatic Rollback: NO" in render_text(plan.model_copy(update={"actions": actions}))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "<1s"), (0.4, "<1s"), (1, "1s"), (1.5, "2s"), (59.4, "59s"), (60, "1m"), (65, "1m 5s"), (3600, "1h"), (4210, "1h 10m")],
)
def test_format_estimate(seconds: float, text: str) -> None:
    assert format_estimate(seconds) == text


def test_summary_line() -> None:
    assert summary_line(empty_plan()) == "0 to apply, 0 to create, 0 to update, 0 to delete; 2 unchanged"


# ---------------------------------------------------------------- markdown


def test_markdown_sections() -> None:
    md = render_markdown(sample_plan())
    assert md.startswith("## honua plan: `dev`\n")
    assert "| Action | Count |" in md
    assert "| 4 | `migration.003` | + apply | 🟠 HIGH | PG101 | 5s |" in md
    assert "- [x] Within deployment window" in md
    assert "Required: 1 from gis-ops · received: 0 · ⏳ pending" in md
    assert md.count("<details><summary>SQL</summary>") == 3  # the three migrations
    assert "```sql\nCREATE INDEX idx_bike_lanes_geom\nON bike_lanes\nUSING GIST (geom);\n```" in md
    assert "```diff\n--- a/environments/dev/layers/bike-lanes.yaml" in md
    assert "**Rollback Plan:** (automatic on failure)\n\n- Drop spatial index\n- Revert metadata" in md
    assert "### Warnings" in md


def test_markdown_mermaid_graph() -> None:
    md = render_markdown(sample_plan())
    block = md.split("```mermaid\n", 1)[1].split("```", 1)[0]
    lines = block.splitlines()
    assert lines[0] == "graph TD"
    nodes = dict(re.findall(r'^  (\S+)\["(.*)"\]$', block, re.M))
    assert list(nodes) == [f"n{i}" for i in range(6)]
    assert all(re.fullmatch(r"[A-Za-z0-9_]+", node) for node in nodes)
    assert nodes["n3"] == "+ migration.003<br/>apply · HIGH"
    edges = re.findall(r"^  (n\d+) --> (n\d+)$", block, re.M)
    # every depends_on edge inside the plan, dependency first
    plan = sample_plan()
    index = {a.address: f"n{i}" for i, a in enumerate(plan.actions)}
    expected = {(index[d], index[a.address]) for a in plan.actions for d in a.depends_on if d in index}
    assert set(edges) == expected
    assert "class n3 high" in block


def test_markdown_escapes() -> None:
    md = render_markdown(mixed_plan())
    assert "- [ ] Outside deployment window (Tue 10:00-12:00) **(failed)**" in md
    assert "- [ ] Backup requirement _(skipped)_" in md
    assert "ok \\| ship it" in md
    assert "**Irreversible:** `migration.004`" in md
    assert "### Drift" in md


def test_markdown_fence_longer_than_content() -> None:
    op = Operation(kind="sql", name="odd", sql="SELECT '```' AS fence;")
    action = sample_plan().actions[0].model_copy(update={"operations": [op]})
    md = render_markdown(sample_plan().model_copy(update={"actions": [action]}))
    assert "````sql\nSELECT '```' AS fence;\n````" in md


def test_markdown_empty_and_refresh_only() -> None:
    assert "No changes. The dev environment matches the configuration." in render_markdown(empty_plan())
    md = render_markdown(drift_plan())
    assert md.startswith("## honua drift: `dev`")
    assert "| `table.bike_lanes_backup` | unmanaged |" in md


# -------------------------------------------------------------------- json


def test_json_is_the_model_dump() -> None:
    plan = sample_plan()
    out = render_json(plan)
    stamped = plan.model_copy(update={"digest": content_digest(plan)})  # JSON carries its content digest
    assert out == stamped.model_dump_json(indent=2)
    assert Plan.model_validate_json(out) == stamped
    assert json.loads(out)["format_version"] == 2
    # a stale digest on the model is never written: the JSON says what its content hashes to
    assert render_json(plan.model_copy(update={"digest": "sha256:stale"})) == out


def test_show_views_carry_the_exact_sql_of_every_step_and_check() -> None:
    """What a reviewer reads is what runs: every step's and check's SQL, in full."""
    plan = sample_plan()
    detailed = render_text(plan, detailed=True)
    md = render_markdown(plan)
    for a in plan.actions:
        for op in [*a.operations, *a.rollback]:
            for body in (op.sql, op.text_diff):
                if body:
                    for line in body.strip().splitlines():
                        assert line.rstrip() in detailed
                        assert line in md
        for c in [*a.checks, *a.rollback_checks]:
            if c.query:
                assert c.query.strip() in md
    assert md.count("<details><summary>SQL</summary>") == sum(1 for a in plan.actions if any(o.sql for o in a.operations))


@pytest.mark.parametrize("build", [sample_plan, empty_plan, mixed_plan, drift_plan])
def test_json_validates_against_the_published_schema(build: Callable[[], Plan]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(json.loads(render_json(build())), plan_json_schema())


def test_dispatcher() -> None:
    plan = sample_plan()
    assert render(plan, "text") == render_text(plan)
    assert render(plan, "text", colour=True) == render_text(plan, colour=True)
    assert render(plan, "markdown") == render(plan, "md") == render_markdown(plan)
    assert render(plan, "JSON") == render_json(plan) + "\n"
    assert all(render(plan, fmt).endswith("}\n" if fmt == "json" else "\n") for fmt in FORMATS)
    with pytest.raises(UsageError, match="unknown plan format 'yaml'"):
        render(plan, "yaml")


# --------------------------------------------------------------- redaction


def _plan_with_secrets() -> Plan:
    plan = sample_plan()
    op = Operation(
        kind="sql",
        name="Link the ETL database",
        sql=f"SELECT dblink_connect('etl', '{DSN}');\nSELECT 'hunter2-registered';",
    )
    first: Action = plan.actions[0]
    action = first.model_copy(update={"operations": [*first.operations, op], "reason": f"copy from {DSN}"})
    return plan.model_copy(
        update={"actions": [action, *plan.actions[1:]], "warnings": [*plan.warnings, f"source {DSN}"]}
    )


def test_secrets_are_redacted_in_every_render(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "_known", set())
    secrets.register("hunter2-registered")
    plan = _plan_with_secrets()
    outputs = {
        "text": render_text(plan),
        "text-detailed": render_text(plan, detailed=True),
        "text-colour": render_text(plan, colour=True),
        "markdown": render_markdown(plan),
        "json": render_json(plan),
    }
    for fmt, out in outputs.items():
        assert "s3cret" not in out, fmt
        assert "hunter2-registered" not in out, fmt
        assert "postgresql://etl:***@db.internal/gis" in out, fmt
    assert "'***'" in outputs["markdown"]
    # redaction keeps the JSON a valid plan
    loaded = Plan.model_validate_json(outputs["json"])
    assert "postgresql://etl:***@db.internal/gis" in (loaded.actions[0].operations[-1].sql or "")


def test_mixed_fixture_dsn_is_redacted() -> None:
    for out in (render_text(mixed_plan(), detailed=True), render_markdown(mixed_plan()), render_json(mixed_plan())):
        assert "s3cret" not in out


@pytest.mark.parametrize("make, expected", [
    (sample_plan, "YES"),
    (mixed_plan, "PARTIAL (1 of 2 actions)"),
    (lambda: sample_plan().model_copy(update={"actions": [
        a.model_copy(update={"automatic_rollback": False}) for a in sample_plan().actions]}), "NO"),
])
def test_one_rollback_summary_for_every_view(make: Callable[[], Plan], expected: str) -> None:
    """Text and Markdown say what Plan.rollback_summary says; the assistant and promote print
    that property too (three definitions used to give three answers for the same plan)."""
    plan = make()
    assert plan.rollback_summary == expected
    assert f"Automatic Rollback: {expected}" in render_text(plan)
    assert f"**Automatic Rollback:** {expected}" in render_markdown(plan)


def test_long_text_is_cut_at_a_word_not_inside_one() -> None:
    from honua_plan.plan.render import _fit

    assert _fit("SELECT count(*) FROM bike_lanes WHERE geom IS NULL", 30) == "SELECT count(*) FROM…"
    assert _fit("short", 30) == "short"
    assert _fit("x" * 40, 10) == "x" * 9 + "…"  # no space to cut at: cut where it must
