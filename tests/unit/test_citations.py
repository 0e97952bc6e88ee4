"""Code cites only files in the repository: a cited ``*.md`` path must exist here."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CITED = re.compile(r"(?<![\w/.-])((?:docs/|reference/)[\w./-]*\.md)\b")


def test_every_cited_document_is_in_the_repository() -> None:
    missing = []
    for path in [*(ROOT / "honua_plan").rglob("*.py"), *(ROOT / "tests").glob("*.py")]:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for cited in CITED.findall(line):
                if not (ROOT / cited).is_file():
                    missing.append(f"{path.relative_to(ROOT)}:{n}: {cited}")
    assert missing == [], missing
