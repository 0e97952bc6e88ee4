"""Durations (issue 14, item 7): positive finite values with a unit, nothing else.

``lockTimeout: "-1"`` became 0 (PostgreSQL's "no timeout"), ``nan`` and ``inf`` passed
validation and crashed the plan. Every duration field of every model refuses them."""

from __future__ import annotations

import math
from typing import Any

import pydantic
import pytest

from honua_plan.config import expected as exp
from honua_plan.config import models
from tests.cli.test_validate_untrusted import DURATION_FIELDS

# the smallest valid body of each model that holds a duration field
BODIES: dict[str, tuple[type[pydantic.BaseModel], dict[str, Any]]] = {
    "StateConfig": (models.StateConfig, {}),
    "DatasourceSpec": (models.DatasourceSpec, {}),
    "ServerSpec": (models.ServerSpec, {}),
    "Check": (models.Check, {"query": "SELECT 1", "expected": "1 row"}),
    "MigrationStep": (models.MigrationStep, {"name": "s", "type": "sql", "content": "SELECT 1"}),
    "RollbackPolicy": (models.RollbackPolicy, {}),
    "Cooldown": (models.Cooldown, {"sourceEnvironment": "staging", "minimum": "1h"}),
    "PolicySpec": (models.PolicySpec, {}),
}

BAD: list[Any] = [
    "-1", -1, -0.5, "-5m", "-0s", float("nan"), "nan", "NaN", float("inf"), "inf", "-inf", "infinity",
    30, 2.5, "30", "0", "1e3", "1e400s", "9" * 400 + "s", True, False, None, "", "  ", "5 minutes",
    "5mins", "m", "5x", "0s", "0ms", "0h0m", [], {},
]
GOOD: list[tuple[str, float]] = [("30s", 30), ("5m", 300), ("2h", 7200), ("1h30m", 5400), ("7d", 604800),
                                 ("250ms", 0.25), ("1.5s", 1.5), ("48h", 172800), ("30d", 2592000),
                                 ("1h 30m", 5400)]


def test_bodies_cover_every_duration_field() -> None:
    assert {model for model, _ in DURATION_FIELDS} == set(BODIES)


@pytest.mark.parametrize("value", BAD, ids=lambda v: repr(v)[:20])
@pytest.mark.parametrize("field", list(DURATION_FIELDS), ids=lambda f: ".".join(f))
def test_bad_duration_is_refused(field: tuple[str, str], value: Any) -> None:
    model, body = BODIES[field[0]]
    zero_ok = DURATION_FIELDS[field][2]
    if zero_ok and isinstance(value, str) and value.strip() in ("0s", "0ms", "0h0m"):
        assert model.model_validate({**body, field[1]: value}).model_dump()[field[1]] == 0
        return
    if value is None and field[1] in model.model_fields and not model.model_fields[field[1]].is_required() \
            and model.model_fields[field[1]].default is None:
        pytest.skip("None means 'not set' for an optional field")
    with pytest.raises(pydantic.ValidationError, match="duration"):
        model.model_validate({**body, field[1]: value})


@pytest.mark.parametrize("text,seconds", GOOD)
@pytest.mark.parametrize("field", list(DURATION_FIELDS), ids=lambda f: ".".join(f))
def test_good_duration(field: tuple[str, str], text: str, seconds: float) -> None:
    model, body = BODIES[field[0]]
    value = getattr(model.model_validate({**body, field[1]: text}), field[1])
    assert value == seconds and math.isfinite(value)


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "30", 30, "0s"])
def test_parse_duration_refuses(value: Any) -> None:
    with pytest.raises(ValueError, match="duration"):
        exp.parse_duration(value)
