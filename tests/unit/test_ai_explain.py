"""``explain``: the offline explanation is deterministic and needs no model."""

from __future__ import annotations

import sys

import pytest

from honua_plan.ai.explain import explain, explain_offline
from tests.unit.plan_fixtures import empty_plan, sample_plan


def test_offline_explanation_of_the_seed_plan() -> None:
    text = explain_offline(sample_plan())
    assert text == explain_offline(sample_plan())
    assert "HIGH PG101 (migration 003)" in text
    assert "Suggestion: Consider creating index with CONCURRENTLY option" in text
    assert "migration 003: automatic if a step, validation or health check fails: Drop spatial index, Revert metadata" in text
    assert "Needs 1 approval(s) from gis-ops; given: none yet" in text
    assert "A backup of bike_lanes is taken first" in text
    assert "Index exists: expected 1 row" in text
    assert "`honua drift --env dev`" in text
    assert "It changes nothing" in explain_offline(empty_plan())


def test_mode_line_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HONUA_AI_MODEL", raising=False)
    result = explain(sample_plan())
    assert result.mode.startswith("Mode: offline")
    assert result.text == explain_offline(sample_plan())
    monkeypatch.setenv("HONUA_AI_MODEL", "gpt-4o-mini")
    from honua_plan.ai import llm

    if not llm.litellm_installed():
        assert "litellm is not installed" in explain(sample_plan()).mode
    assert "litellm" not in sys.modules


def test_model_mode_with_a_stand_in_litellm(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model path, with a stand-in module: the prompt is the redacted text render."""
    import importlib.machinery
    import types

    from honua_plan import secrets

    secret = "s3cr3t-pass-for-explain"
    secrets.register(secret)
    plan = sample_plan().model_copy(update={"warnings": [f"dsn has password={secret}"]})
    sent: list[list[dict[str, str]]] = []

    def completion(*, model: str, messages: list[dict[str, str]], **kw: object) -> object:
        sent.append(messages)
        if model == "broken":
            raise RuntimeError("rate limited")
        msg = types.SimpleNamespace(content="It adds a spatial index.")
        return types.SimpleNamespace(choices=[types.SimpleNamespace(message=msg)])

    fake = types.ModuleType("litellm")
    fake.__spec__ = importlib.machinery.ModuleSpec("litellm", None)
    fake.completion = completion  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "litellm", fake)
    monkeypatch.setenv("HONUA_AI_MODEL", "stand-in")
    result = explain(plan)
    assert result.mode == "Mode: model stand-in (litellm)"
    # the engine's own explanation first, the model's words after it, marked as such (issue 18)
    own, _, model_part = result.text.partition("In the words of the model stand-in (not checked by the engine):\n")
    assert "HIGH PG101" in own and model_part == "It adds a spatial index.\n"
    prompt = sent[0][1]["content"]
    assert "PG101" in prompt and secret not in prompt
    # a model that fails is a failure (one retry), never a quiet "offline"
    from honua_plan.errors import AIModelFailed

    monkeypatch.setenv("HONUA_AI_MODEL", "broken")
    sent.clear()
    with pytest.raises(AIModelFailed, match="the model broken failed: RuntimeError: rate limited"):
        explain(plan)
    assert len(sent) == 2
