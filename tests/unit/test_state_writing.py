"""Writing a state document fast must not change what is written, nor let a secret through."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from honua_plan import secrets
from honua_plan.state.local import state_json_text
from honua_plan.state.model import ResourceRecord, StateDocument, _jsonable


def _doc(n: int = 3) -> StateDocument:
    doc = StateDocument.new("dev").record_event("apply", "first")
    for i in range(n):
        doc = doc.with_resource(ResourceRecord.create(
            f"layer.s::l{i}", "layer", {"spec": {"title": f"Layer {i} – ü", "n": [i, 1.5, None, True]}},
            serial=1, applied_at=datetime(2026, 11, 26, 12, 0, i, tzinfo=UTC)))
    return doc


def test_to_json_data_is_the_generic_conversion() -> None:
    doc = _doc()
    assert doc.to_json_data() == _jsonable(doc)


def test_state_text_is_json_with_one_line_per_resource() -> None:
    data = _doc(3).to_json_data()
    text = state_json_text(data)
    assert json.loads(text) == data
    lines = text.splitlines()
    assert sum(1 for line in lines if line.startswith('    "layer.s::l')) == 3
    assert text.endswith("}\n")
    assert state_json_text({"a": {}, "b": []}) == '{\n  "a": {},\n  "b": []\n}\n'


_TEXT = st.lists(st.sampled_from([*"ab:/@ =\"\\\t\n'pé", "://", "password", "PassWord", "postgres"]),
                 max_size=12).map("".join)


@settings(max_examples=400, deadline=None)
@given(value=_TEXT, secret=st.text(alphabet=st.sampled_from(list("xy\"\\\n:@é")),
                                   min_size=secrets.MIN_SECRET_LENGTH, max_size=12))
def test_might_change_never_misses_what_redact_would_change(value: str, secret: str) -> None:
    """The one-pass test over the JSON text is a superset of redacting value by value."""
    saved = set(secrets._known)
    secrets.register(secret)
    try:
        text = json.dumps({"k": [value, {"x": value}]}, ensure_ascii=False)
        if secrets.redact(value) != value:
            assert secrets.might_change(text)
        assert secrets.might_change(json.dumps({"k": f"a {secret} b"}, ensure_ascii=False))
    finally:
        secrets._known.clear()
        secrets._known.update(saved)


def test_a_state_write_never_rewrites_the_document() -> None:
    """Names equal to registered secrets (short or long) survive a write unchanged (issue 14)."""
    from honua_plan.state.base import prepare_write

    saved = set(secrets._known)
    secrets.register_dsn("postgresql://u:public@h/db")
    secrets.register("bike_lanes_2024")
    try:
        doc = _doc(1).with_resource(ResourceRecord.create(
            "table.public.bike_lanes_2024", "table", {"schema": "public", "name": "bike_lanes_2024"}, serial=1))
        stored = prepare_write("dev", None, doc, 0)
        assert stored.resources == doc.resources
        assert "***" not in json.dumps(stored.to_json_data())
    finally:
        secrets._known.clear()
        secrets._known.update(saved)
