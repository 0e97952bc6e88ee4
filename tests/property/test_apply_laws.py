"""Laws of apply, checked with hypothesis against a real PostGIS (DESIGN.md "Tests").

* apply(plan) then plan is empty, for any sequence of layer edits;
* an apply whose health check fails is rolled back, and the rollback restores the
  recorded state and the published layers exactly: with the edit reverted, the plan is
  empty again.

One database and one repository copy per test function (a fresh PostGIS per example is
too slow); every example starts from the converged environment the previous one left.
The GIS server is a ``command`` server (reload: ``true``), so the published document
(``state/dev/published.json``) is real and can be compared, without running a server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import copy_example, edit

LAYER = "environments/dev/layers/bike-lanes.yaml"
COPY = "environments/dev/layers/bike-lanes-copy.yaml"
FIELDS = ("id", "name", "lane_type", "width_ft", "last_updated")
SERVER = """apiVersion: honua.io/v1
kind: Server
metadata:
  name: gis-server
spec:
  type: command
  command:
    reload: ["true"]
"""
SETTINGS = settings(max_examples=15, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

words = st.text(alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyzÅéø BCDLMR0123456789-&:#'\"/"),
                min_size=1, max_size=24).map(str.strip).filter(bool)
edits = st.one_of(
    st.tuples(st.just("title"), words),
    st.tuples(st.just("description"), words),
    st.tuples(st.just("itemLimit"), st.integers(1, 100_000)),
    st.tuples(st.just("displayField"), st.sampled_from(FIELDS)),
    st.tuples(st.just("copy"), st.booleans()),
)
edit_lists = st.lists(edits, min_size=1, max_size=4)


def _replace_line(text: str, prefix: str, value: str, *, after: str | None = None) -> str:
    """Replace the value of the first line starting with ``prefix`` (after line ``after``)."""
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(after)) + 1 if after else 0
    i = next(i for i in range(start, len(lines)) if lines[i].startswith(prefix))
    lines[i] = prefix + value
    return "\n".join(lines)


def apply_edits(repo: Path, ops: list[tuple[str, object]]) -> None:
    layer = repo / LAYER
    for kind, value in ops:
        text = layer.read_text()
        if kind == "title":
            text = _replace_line(text, "  title: ", json.dumps(value))
        elif kind == "description":  # the spec's description, not the metadata's
            text = _replace_line(text, "  description: ", json.dumps(value), after="  title: ")
        elif kind == "itemLimit":
            text = _replace_line(text, "    itemLimit: ", str(value))
        elif kind == "displayField":
            text = _replace_line(text, "  displayField: ", str(value))
        elif kind == "copy":
            copy = repo / COPY
            if value:  # a second layer on the same table, made from the layer as it is now
                copy.write_text(text.replace("\n  name: bike-lanes\n", "\n  name: bike-lanes-copy\n", 1))
            else:
                copy.unlink(missing_ok=True)
        layer.write_text(text)


@dataclass
class Env:
    repo: Path

    def context(self):  # type: ignore[no-untyped-def]
        from honua_plan.console import Console
        from honua_plan.context import Context

        return Context(self.repo, console=Console(quiet=True))

    def apply(self):  # type: ignore[no-untyped-def]
        return self.context().apply("dev", yes=True, show=False)

    def plan(self):  # type: ignore[no-untyped-def]
        return self.context().plan("dev")

    def state(self) -> dict:
        return json.loads((self.repo / "state/dev.json").read_text())

    def published(self) -> dict:
        return json.loads((self.repo / "state/dev/published.json").read_text())

    def config(self) -> dict[str, bytes | None]:
        return {rel: (self.repo / rel).read_bytes() if (self.repo / rel).exists() else None
                for rel in (LAYER, COPY)}

    def restore(self, files: dict[str, bytes | None]) -> None:
        for rel, data in files.items():
            if data is None:
                (self.repo / rel).unlink(missing_ok=True)
            else:
                (self.repo / rel).write_bytes(data)


@pytest.fixture
def world(tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Env:
    repo = copy_example(tmp_path / "repo")
    (repo / "providers/gis-server.yaml").write_text(SERVER)
    # migration 003 is Example 2's: its performance check needs a large table (tested elsewhere)
    (repo / "migrations/003_optimize_bike_lanes.yaml").unlink()
    from honua_plan.workflows.sample import seed_bike_lanes

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        seed_bike_lanes(conn, 42)
    monkeypatch.setenv("HONUA_PG_DSN", pg_dsn)
    monkeypatch.setenv("HONUA_ALLOWED_RELOAD_COMMANDS", "true")  # the operator allows SERVER's reload
    w = Env(repo)
    w.apply()
    assert w.plan().has_changes is False
    return w


def test_apply_then_plan_is_empty(world: Env) -> None:
    @SETTINGS
    @given(edit_lists)
    def law(ops: list[tuple[str, object]]) -> None:
        apply_edits(world.repo, ops)
        before = world.state()["serial"]
        plan = world.plan()
        if plan.has_changes:
            result = world.apply()
            assert result.ok, result.outcomes
        after = world.state()
        assert after["pending"] is None
        assert after["serial"] >= before
        again = world.plan()
        assert again.has_changes is False, [(a.address, a.action, a.reason) for a in again.actions
                                            if a.action != "no-op"]
        # the recorded layers are the files as they are now
        published = world.published()["collections"]
        assert ("transportation::bike-lanes-copy" in published) == (world.repo / COPY).exists()
        layer = after["resources"]["layer.transportation::bike-lanes"]["attributes"]["spec"]
        assert published["transportation::bike-lanes"]["title"] == layer["title"]

    law()


def test_a_rolled_back_apply_restores_recorded_and_published_state_exactly(world: Env) -> None:
    from honua_plan.errors import ValidationFailed

    @settings(SETTINGS, max_examples=8)
    @given(edit_lists)
    def law(ops: list[tuple[str, object]]) -> None:
        converged = world.config()
        state_before = world.state()
        published_before = world.published()
        apply_edits(world.repo, ops)
        # … and a health check that cannot pass: the apply must roll back
        edit(world.repo / LAYER, '        expected: "> 0"', '        expected: "> 1000000"')
        with pytest.raises(ValidationFailed, match="rolled back"):
            world.apply()
        state_after = world.state()
        assert state_after["pending"] is None
        assert state_after["resources"] == state_before["resources"]
        assert state_after["migrations"] == state_before["migrations"]
        assert state_after["serial"] > state_before["serial"]  # the attempt itself is recorded
        assert world.published() == published_before
        # with the edit reverted there is nothing to do: recorded and live state are as before
        world.restore(converged)
        plan = world.plan()
        assert plan.has_changes is False, [(a.address, a.action, a.reason) for a in plan.actions
                                           if a.action != "no-op"]

    law()
