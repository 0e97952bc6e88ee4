"""The seed's YAML loads verbatim; the expected mini-language and durations parse at load time."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from honua_plan.config import expected as exp
from honua_plan.config.models import Layer, Migration
from honua_plan.config.yamlload import load_documents
from honua_plan.workflows.schemas import stale

SEED = Path(__file__).resolve().parents[1] / "data" / "seed-gitops-examples.md"
REPO = Path(__file__).resolve().parents[2]


def seed_block(kind: str) -> str:
    blocks = re.findall(r"```yaml\n(.*?)```", SEED.read_text(), re.S)
    return next(b for b in blocks if f"kind: {kind}" in b)


def load(text: str) -> dict:
    problems: list = []
    docs = load_documents(text, "seed.yaml", problems)
    assert not problems
    return docs[0].data


def test_seed_layer_verbatim() -> None:
    layer = Layer.model_validate(load(seed_block("Layer")))
    assert layer.collection_id == "transportation::bike-lanes"
    assert layer.spec.storage.srid == 4326
    assert [f.name for f in layer.spec.fields] == ["id", "name", "lane_type", "width_ft", "last_updated"]
    checks = layer.spec.validation.healthChecks
    assert checks[0].expectation.kind == "compare" and checks[0].expectation.op == ">"
    assert checks[1].expectation.kind == "all"


def test_seed_migration_verbatim() -> None:
    m = Migration.model_validate(load(seed_block("Migration")))
    assert m.metadata.id == "003"
    assert m.spec.rollback.timeout == 300.0
    assert m.spec.rollback.automatic is True
    assert [c.expectation.kind for c in m.spec.validation.post_up] == ["rows", "index"]
    assert m.spec.validation.post_up[1].expectation.target == "idx_bike_lanes_geom"
    assert m.spec.validation.post_down[0].expectation.number == 0
    assert m.spec.up[2].changes == {"spec.storage.indexes": [{"name": "idx_bike_lanes_geom", "type": "gist",
                                                              "column": "geom"}]}


def test_example_migration_003_is_the_seed_text() -> None:
    ours = (REPO / "migrations" / "003_optimize_bike_lanes.yaml").read_text()
    assert seed_block("Migration") in ours


@pytest.mark.parametrize("text,check,kind,op,number,target", [
    ("> 0", "query", "compare", ">", 0, ""),
    (">= 10", "query", "compare", ">=", 10, ""),
    ("= 3", "query", "compare", "==", 3, ""),
    ("1 row", "query", "rows", "==", 1, ""),
    ("0 rows", "query", "rows", "==", 0, ""),
    ("12 rows", "query", "rows", "==", 12, ""),
    ("all true", "geometry", "all", "", 0, "true"),
    ("Index Scan using idx_bike_lanes_geom", "performance", "index", "", 0, "idx_bike_lanes_geom"),
    ("Bitmap Index Scan on idx_x", "performance", "index", "", 0, "idx_x"),
    ("< 100ms", "performance", "time", "<", 100, ""),
    ("<= 2s", "performance", "time", "<=", 2000, ""),
    ("Seq Scan", "performance", "contains", "", 0, "Seq Scan"),
])
def test_expected_forms(text: str, check: str, kind: str, op: str, number: float, target: str) -> None:
    e = exp.parse(text, check)
    assert (e.kind, e.op, e.number, e.target) == (kind, op, number, target)
    assert str(e) == text


@pytest.mark.parametrize("text,check", [("> zero", "query"), ("1 rowz", "query"), ("", "query"),
                                        ("maybe", "query"), ("> fast", "performance")])
def test_expected_typos(text: str, check: str) -> None:
    with pytest.raises(exp.ExpectationSyntaxError):
        exp.parse(text, check)


@pytest.mark.parametrize("text,seconds", [("5m", 300), ("30s", 30), ("1h30m", 5400), ("250ms", 0.25),
                                          ("48h", 172800), ("30d", 2592000)])
def test_durations(text: str | int, seconds: float) -> None:
    assert exp.parse_duration(text) == seconds


def test_duration_typo() -> None:
    with pytest.raises(ValueError, match="cannot parse duration"):
        exp.parse_duration("5 minutes")


def test_unknown_keys_are_refused() -> None:
    data = load(seed_block("Layer"))
    data["spec"]["colour"] = "red"
    with pytest.raises(ValidationError, match="colour"):
        Layer.model_validate(data)


def test_committed_schemas_are_fresh() -> None:
    assert stale(REPO / "schemas") == [], "run `honua schema export` and commit schemas/"


@pytest.mark.parametrize(("value", "seconds", "error"), [
    (None, 300.0, None),
    ("10m", 600.0, None),
    ("90s", 90.0, None),
    ("0s", None, "greater than 0|more than zero"),
    ("soon", None, "soon"),
])
def test_policy_backup_timeout(value: str | None, seconds: float | None, error: str | None) -> None:
    from pydantic import ValidationError

    from honua_plan.config.models import PolicySpec

    data = {} if value is None else {"backupTimeout": value}
    if error is None:
        assert PolicySpec.model_validate(data).backupTimeout == seconds
    else:
        with pytest.raises(ValidationError, match=error):
            PolicySpec.model_validate(data)
