"""``honua plan`` on a pull request's migration whose description and step names are
hostile (issue 25, reproduction 11): the Markdown shows them as text, the terminal view
carries none of their escape sequences, and an error naming a hostile path is inert too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import edit, run
from tests.integration.test_remote_state import NewDb, example
from tests.integration.test_remote_state import new_db as new_db
from tests.unit.test_untrusted_text import CODE_SPAN, blocks, data_markup

pytestmark = pytest.mark.integration

# YAML double-quoted escapes: \e is ESC, \a is BEL, \n a newline
EVIL_YAML = ('</details> <!-- honua-plan:production --> @city/gis-team ![x](http://127.0.0.1/x.png)'
             '\\n# Approved by security team ✅\\n\\e]0;pwned\\a\\e[2J- [x] done')


def hostile_repo(tmp_path: Path, new_db: NewDb) -> tuple[Path, dict[str, str]]:
    dsn = new_db()
    repo = example(tmp_path / "repo", dsn)
    path = repo / "migrations/003_optimize_bike_lanes.yaml"
    edit(path, 'description: "Add spatial index to bike lanes and optimize geometry"',
         f'description: "Add spatial index {EVIL_YAML}"')
    edit(path, "    - name: Create spatial index", f'    - name: "Create spatial index {EVIL_YAML}"')
    edit(path, "    - name: Drop spatial index", f'    - name: "Drop spatial index {EVIL_YAML}"')
    return repo, {"HONUA_PG_DSN_DEV": dsn, "HONUA_PG_DSN": dsn, "CI": ""}


def test_plan_markdown_and_text_show_hostile_migration_text_as_data(tmp_path: Path, new_db: NewDb) -> None:
    repo, env = hostile_repo(tmp_path, new_db)

    md = run(repo, "plan", "--env", "dev", "--format", "markdown", "--no-simulate", env=env)
    assert md.exit_code == 0, md.output
    assert "Add spatial index" in md.output  # the hostile migration is in the plan
    assert data_markup(md.output) == [], md.output
    assert "&lt;/details&gt;" in md.output and "@&#8203;city/gis-team" in md.output
    opened, closed, fence = blocks(md.output)
    assert opened == closed and fence is None
    assert CODE_SPAN.sub("", md.output).count("</details>") == closed
    heads = [line for line in md.output.splitlines() if line.lstrip().startswith("#")]
    assert all(re.match(r"#{2,4} (honua plan|Summary|Risk|Graph|Policy|Approvals|Changes|Warnings|\d+\.)", h)
               for h in heads), heads

    text = run(repo, "plan", "--env", "dev", "--no-simulate", env=env)
    assert text.exit_code == 0, text.output
    assert "Add spatial index" in text.output
    assert "\x1b" not in text.output and "\x07" not in text.output
    assert not any(line.startswith("# Approved") for line in text.output.splitlines())


def test_an_error_naming_a_hostile_path_is_printed_inert(tmp_path: Path) -> None:
    where = tmp_path / "repo\x1b]0;pwned\x07\x1b[2Jx"
    where.mkdir()
    result = run(where, "validate")
    assert result.exit_code == 1
    assert "Error:" in result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "repo" in result.output
