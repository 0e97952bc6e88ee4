"""What leaves for the model and what comes back from it (pure parts of ``ai/llm.py``)."""

from __future__ import annotations

import pytest

from honua_plan.ai.llm import DEFAULT_TIMEOUT_S, clean, outgoing, timeout_s
from honua_plan.errors import UsageError


@pytest.mark.parametrize("text", [
    "connect with postgresql://app:Hunter2-pw@db.example/gis please",
    "the dsn is host=db user=app password=Hunter2-pw dbname=gis",
    "API_KEY: Hunter2-pw",
    "token=Hunter2-pw",
])
def test_no_password_shaped_value_leaves(text: str) -> None:
    assert "Hunter2-pw" not in outgoing(text)


def test_ordinary_text_leaves_as_typed() -> None:
    assert outgoing("add a layer for the table public.parks") == "add a layer for the table public.parks"


def test_a_models_text_is_shown_without_escapes_or_bidi_controls() -> None:
    raw = "a \x1b[31mred\x1b[0m b\u202e \x1b]0;title\x07 c\x00\nd\te"
    assert clean(raw) == "a red b  c\nd\te"


def test_timeout_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HONUA_AI_TIMEOUT", raising=False)
    assert timeout_s() == DEFAULT_TIMEOUT_S == 30.0
    monkeypatch.setenv("HONUA_AI_TIMEOUT", "2.5")
    assert timeout_s() == 2.5
    for bad in ("0", "-1", "nan", "inf", "soon"):
        monkeypatch.setenv("HONUA_AI_TIMEOUT", bad)
        with pytest.raises(UsageError, match="HONUA_AI_TIMEOUT"):
            timeout_s()
