"""Incident reports are Markdown built from config and database text: that text is data."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from honua_plan.apply.incident import write_incident_report
from honua_plan.plan.model import Action, Operation

HOSTILE = "x </details>\n# Approved by security team ✅ @city/gis-team ![x](http://127.0.0.1/x.png) \x1b]0;t\x07"


def test_incident_report_text_is_inert(tmp_path: Path) -> None:
    action = Action(address="migration.004", kind="migration", action="create", reason="r",
                    rollback=[Operation(kind="sql", name=HOSTILE)])
    plan = SimpleNamespace(environment="dev", id="p1", config_commit=None)
    desired = SimpleNamespace(migration=lambda _id: SimpleNamespace(stem=HOSTILE))
    path = write_incident_report(tmp_path, plan=plan, action=action, desired=desired,  # type: ignore[arg-type]
                                 reason=HOSTILE, detail="```\n" + HOSTILE, status="ROLLED BACK", seconds=1.0,
                                 irreversible=[HOSTILE], actor=HOSTILE, backups=[])
    text = path.read_text()
    assert "\x1b" not in text
    fenced = text.split("````")
    assert len(fenced) == 3  # one block, fenced longer than the data's ```: inside it, text is code
    outside = fenced[0] + fenced[2]
    assert "</details>" not in outside and "![" not in outside
    assert "@city" not in outside.replace("@&#8203;city", "")
    headings = [line for line in outside.splitlines() if line.startswith("#")]
    assert all(not h.startswith("# Approved") for h in headings), headings
