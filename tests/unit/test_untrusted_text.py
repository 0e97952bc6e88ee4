"""Untrusted text is data wherever it is printed (issue 25, reproduction 11).

A migration's description and step names come from a pull request nobody has reviewed
yet. In the pull-request comment (the plan's Markdown, ``honua ci plan``'s report) they
must not close the renderer's ``<details>``, forge a section marker, mention a team, show
an image or start a heading of their own ("# Approved by security team ✅"); on a terminal
they must not set the window title or clear the screen.
"""

from __future__ import annotations

import io
import re

import pytest

from honua_plan.console import Console
from honua_plan.plan.model import (
    CheckRecord,
    DriftRecord,
    FindingRecord,
    Operation,
    Plan,
    PolicyCheck,
)
from honua_plan.plan.render import render_markdown, render_text
from honua_plan.textsafe import md_code, md_fence, md_text, one_line, terminal_text
from honua_plan.workflows.ci import blocked_note, error_section, marker, report_markdown
from tests.unit.plan_fixtures import drift_plan, mixed_plan, sample_plan

ESC = "\x1b]0;pwned\x07\x1b[2J\x1b[5;35m\x9b2J"
EVIL = (f"Add index </details> <!-- honua-plan:production --> @city/gis-team "
        f"![x](http://127.0.0.1/x.png)\n# Approved by security team ✅\n{ESC}- [x] done")


def hostile(plan: Plan, text: str = EVIL) -> Plan:
    """``plan`` with ``text`` in every field a config (or a database, a model) fills."""
    actions = []
    for a in plan.actions:
        ops = [op.model_copy(update={"name": f"{op.name} {text}", "path": op.path and f"{op.path}`{text}"})
               for op in a.operations]
        rollback = [op.model_copy(update={"name": f"{op.name} {text}"}) for op in a.rollback]
        checks = [c.model_copy(update={"name": f"{c.name} {text}", "expected": text}) for c in a.checks]
        findings = [f.model_copy(update={"message": text, "suggestion": text}) for f in a.findings]
        actions.append(a.model_copy(update={
            "reason": text, "operations": ops, "rollback": rollback, "checks": checks, "findings": findings,
            "preconditions": [text], "deferred": [text], "source": f"{a.source}``{text}" if a.source else None,
        }))
    return plan.model_copy(update={
        "actions": actions,
        "warnings": [text],
        "policy": [PolicyCheck(name=text, status="fail", message=text)],
        "drift": [DriftRecord(address="layer.x", kind="layer", change="modified", summary=text, details=[text])],
        "approvers": [text],
    })


def baseline(plan: Plan) -> Plan:
    return hostile(plan, "plain words")


PLANS = [sample_plan, mixed_plan]


CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)")


def data_markup(md: str) -> list[str]:
    """What the data would have added as markup, if it were not escaped (a code span's
    content is literal text: it is left out, once the span is checked to be closed)."""
    found = []
    md = CODE_SPAN.sub("<code>", md)
    for line in md.splitlines():
        if re.match(r"\s*#+\s*Approved", line) or re.match(r"\s*(?:[-*+]|\d+\.)\s*\[x\] done", line):
            found.append(f"a line of the data's own: {line!r}")
    for needle in ("![", "<!-- honua-plan:production -->", "\x1b", "\x9b", "\x07"):
        if needle in md:
            found.append(needle)
    if re.search(r"(?<![0-9A-Za-z])@city/gis-team", md):  # a mention (alice@city.gov is not one)
        found.append("@city/gis-team")
    return found


def blocks(md: str) -> tuple[int, int, str | None]:
    """(``<details>`` opened, closed, the fence still open) over the lines outside fences:
    the renderer's own blocks (data inside a fence or a code span is literal text)."""
    opened = closed = 0
    fence: str | None = None
    for line in md.splitlines():
        m = re.match(r" {0,3}(`{3,})", line)
        if fence is not None:
            if m and line.strip() == m.group(1) and len(m.group(1)) >= len(fence):
                fence = None
            continue
        if m:
            fence = m.group(1)
            continue
        opened += line.startswith("<details>")
        closed += line == "</details>"
    return opened, closed, fence


@pytest.mark.parametrize("build", PLANS, ids=lambda f: f.__name__)
def test_markdown_render_shows_the_data_as_text(build: object) -> None:
    plan = build()  # type: ignore[operator]
    md, plain = render_markdown(hostile(plan)), render_markdown(baseline(plan))
    assert data_markup(md) == []
    # the renderer's own blocks only: as many <details> and </details> as with plain words
    assert blocks(md) == blocks(plain)
    assert CODE_SPAN.sub("", md).count("</details>") == plain.count("</details>")
    # and it is all still there, readable
    assert "&lt;/details&gt;" in md
    assert "@&#8203;city/gis-team" in md and "\\!\\[x\\](http://127.0.0.1/x.png)" in md
    assert "\\# Approved by security team ✅" in md


@pytest.mark.parametrize("build", PLANS, ids=lambda f: f.__name__)
def test_markdown_headings_are_the_renderers_own(build: object) -> None:
    plan = build()  # type: ignore[operator]
    md, plain = render_markdown(hostile(plan)), render_markdown(baseline(plan))
    heads = [re.sub(r"\s.*", "", line) for line in md.splitlines() if line.lstrip().startswith("#")]
    plain_heads = [re.sub(r"\s.*", "", line) for line in plain.splitlines() if line.lstrip().startswith("#")]
    assert heads == plain_heads  # the same "##", "###", "####" lines, none added by the data
    assert not any(re.match(r" {0,3}#+ +Approved", line) for line in md.splitlines())


def test_refresh_only_markdown_and_text() -> None:
    plan = hostile(drift_plan())
    assert data_markup(render_markdown(plan)) == []
    text = render_text(plan)
    assert "\x1b" not in text and "\x07" not in text
    assert not any(line.startswith("# Approved") for line in text.splitlines())


@pytest.mark.parametrize("build", PLANS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("colour", [False, True])
@pytest.mark.parametrize("detailed", [False, True])
def test_text_render_carries_no_escape_sequence_from_the_data(build: object, colour: bool, detailed: bool) -> None:
    text = render_text(hostile(build()), colour=colour, detailed=detailed)  # type: ignore[operator]
    for bad in ("\x1b]", "\x1b[2J", "\x07", "\x9b", "\x1b[5;35m"):
        assert bad not in text
    if not colour:
        assert "\x1b" not in text
    else:
        assert "\x1b[" in text  # the renderer's own colours are kept
    # a newline in a field does not start a line of its own
    assert not any(line.lstrip().startswith("# Approved") for line in text.splitlines())


def test_ci_report_escapes_error_and_blocked_sections() -> None:
    plan = hostile(sample_plan())
    sections = [
        ("dev", blocked_note([EVIL]) + render_markdown(plan)),
        ("staging", error_section("honua plan", "staging", f"migrations/004.yaml:1:1: {EVIL}")),
    ]
    report = report_markdown("honua plan", sections)
    assert data_markup(report) == []
    assert CODE_SPAN.sub("", report).count("<!-- honua-plan:") == 2  # one per section (code spans are literal)
    plain = report_markdown("honua plan", [("dev", blocked_note(["x"]) + render_markdown(baseline(sample_plan()))),
                                           ("staging", error_section("honua plan", "staging", "x"))])
    assert blocks(report) == blocks(plain)
    assert CODE_SPAN.sub("", report).count("</details>") == plain.count("</details>")


def test_ci_report_cut_closes_the_block_it_was_cut_in() -> None:
    plan = hostile(sample_plan(), "``````` " + EVIL)
    md = render_markdown(plan)
    report = report_markdown("honua plan", [("dev", md)], limit=len(md) // 2)
    assert "Truncated" in report
    opened, closed, fence = blocks(report)
    assert fence is None and opened == closed, report[-400:]


def test_marker_keeps_only_a_names_characters() -> None:
    assert marker("dev") == "<!-- honua-plan:dev -->"
    assert marker("x --><img src=x>") == "<!-- honua-plan:x--imgsrcx -->"


def test_console_prints_data_without_escape_sequences() -> None:
    out, err = io.StringIO(), io.StringIO()
    con = Console(out, err)
    con.print(f"AI (the model's words): {EVIL}")
    con.ok(f"Created {EVIL}")
    con.fail(EVIL)
    con.warn(EVIL)
    con.heading(EVIL)
    con.error(EVIL)
    with con.step(1, 1, EVIL):
        pass
    for text in (out.getvalue(), err.getvalue()):
        assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
        assert "Add index </details>" in text  # the words stay (a terminal shows no markup)


def test_console_keeps_its_own_colour_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = io.StringIO()
    con = Console(out, io.StringIO())
    con.ok(EVIL)
    text = out.getvalue()
    assert "\x1b[32m" in text  # the ✓ in green
    assert "\x1b]" not in text and "\x1b[2J" not in text and "\x1b[5;35m" not in text


# ------------------------------------------------------------------ the functions


def test_terminal_text_removes_controls_and_sequences() -> None:
    assert terminal_text("a\x1b]0;title\x07b") == "ab"
    assert terminal_text("a\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\") == "alink"
    assert terminal_text("a\x1b[2Jb\x1b[1;31mc\x1bPdcs\x1b\\d") == "abcd"
    assert terminal_text("a\x9b2Jb\x9d0;t\x9cc\x00\x08\x7f\x85d") == "abcd"
    assert terminal_text("one\r\ntwo\rthree\tfour") == "one\ntwo\nthree\tfour"
    assert terminal_text("x\u202egnp.exe") == "xgnp.exe"
    assert terminal_text("\x1b]unterminated title") == "unterminated title"  # text stays visible
    assert terminal_text("\x1b[32mok\x1b[0m \x1b[2J", keep_colour=True) == "\x1b[32mok\x1b[0m "
    assert one_line("a\nb\r\nc\td\x1b[2J") == "a b c d"
    assert one_line("plain ✓ text") == "plain ✓ text"


def test_md_text() -> None:
    assert md_text("</details>") == "&lt;/details&gt;"
    assert md_text("a & b") == "a &amp; b"
    assert md_text("@team and x@y.org") == "@&#8203;team and x@y.org"
    assert md_text("(@city/gis-team)") == "(@&#8203;city/gis-team)"
    assert md_text("![x](http://h/x.png)") == "\\!\\[x\\](http://h/x.png)"
    assert md_text("line\n# Heading") == "line \\# Heading"
    assert md_text("# h") == "\\# h" and md_text("- item") == "\\- item" and md_text("1. item") == "1\\. item"
    assert md_text("---") == "\\---" and md_text("+ x") == "\\+ x"
    assert md_text("bike-lanes 0.1.0") == "bike-lanes 0.1.0"
    assert md_text("*a* _b_ `c` ~d~ |e| \\") == "\\*a\\* \\_b\\_ \\`c\\` \\~d\\~ \\|e\\| \\\\"
    assert md_text("x\x1b[2J y") == "x y"


def test_md_code_and_fence_cannot_be_closed_by_the_data() -> None:
    assert md_code("a") == "`a`"
    assert md_code("a`b") == "``a`b``"
    assert md_code("``x") == "``` ``x ```"
    assert md_code("a|b", table=True) == "`a\\|b`"
    assert md_code("a\n# b") == "`a # b`"
    assert md_fence("x\n````\ny", "sql") == ["`````sql", "x\n````\ny", "`````"]
    assert md_fence("a\x1b[2Jb") == ["```", "ab", "```"]


def test_finding_and_check_models_still_validate() -> None:
    """The hostile fixture is made of valid model values (the tests above are not vacuous)."""
    plan = hostile(sample_plan())
    Plan.model_validate(plan.model_dump())
    assert any(isinstance(f, FindingRecord) for a in plan.actions for f in a.findings)
    assert any(isinstance(c, CheckRecord) for a in plan.actions for c in a.checks)
    assert any(isinstance(o, Operation) and EVIL in o.name for a in plan.actions for o in a.operations)
