"""Laws, checked with hypothesis: a self-diff is all no-ops; plan order is topological."""

from __future__ import annotations

import networkx as nx
from hypothesis import given, settings
from hypothesis import strategies as st

from honua_plan.plan import graph
from honua_plan.plan.diff import diff_resources
from honua_plan.state.model import ResourceRecord, StateDocument

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.text(max_size=8))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(min_size=1, max_size=6), inner, max_size=4)),
    max_leaves=12)
addresses = st.text(alphabet="abcdefgh-", min_size=1, max_size=8).map(lambda s: f"layer.svc::{s}")
resources = st.dictionaries(addresses, st.dictionaries(st.text(min_size=1, max_size=6), json_value, max_size=5),
                            max_size=8)


@settings(max_examples=150, deadline=None)
@given(resources)
def test_diffing_a_desired_state_against_itself_yields_only_no_ops(res: dict) -> None:
    desired = {a: ("layer", attrs) for a, attrs in res.items()}
    doc = StateDocument.new("dev").model_copy(update={"resources": {
        a: ResourceRecord.create(a, "layer", attrs, serial=1) for a, attrs in res.items()}})
    changes = diff_resources(desired, doc)
    assert len(changes) == len(res)
    assert all(c.action == "no-op" and c.reason for c in changes)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 25).flatmap(lambda n: st.tuples(
    st.just(n), st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=60))))
def test_plan_order_is_a_topological_order(case: tuple[int, list[tuple[int, int]]]) -> None:
    n, pairs = case
    edges = [(f"n{a}", f"n{b}") for a, b in pairs if a < b]  # forward edges only: a DAG
    g = graph.build([f"n{i}" for i in range(n)], edges)
    order = graph.order(g)
    pos = {node: i for i, node in enumerate(order)}
    assert sorted(order) == sorted(g.nodes)
    assert all(pos[a] < pos[b] for a, b in g.edges)
    levels = graph.levels(g)
    level_of = {node: i for i, gen in enumerate(levels) for node in gen}
    assert all(level_of[a] < level_of[b] for a, b in g.edges)


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 10))
def test_cycles_are_named(n: int) -> None:
    import pytest

    from honua_plan.errors import CycleError

    nodes = [f"n{i}" for i in range(n)]
    g = graph.build(nodes, [(nodes[i], nodes[(i + 1) % n]) for i in range(n)])
    assert not nx.is_directed_acyclic_graph(g)
    with pytest.raises(CycleError, match="dependency cycle: n"):
        graph.levels(g)
