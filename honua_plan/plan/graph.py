"""The dependency graph of a plan's actions (networkx). Pure.

Edges point from what must happen first to what depends on it:
datasource → migrations (spec.dependencies; a migration creating or altering a table
before the layers on it) → layers → services → server reload → validations.
Deletions run in reverse: a layer is unpublished before the migration that drops
its table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import networkx as nx

from honua_plan.errors import CycleError
from honua_plan.plan.model import Action, CheckRecord


def build(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> nx.DiGraph:
    """A graph over ``nodes``; edges to unknown nodes are dropped (they are not in the plan)."""
    g: nx.DiGraph = nx.DiGraph()
    g.add_nodes_from(nodes)
    for a, b in edges:
        if a in g and b in g and a != b:
            g.add_edge(a, b)
    return g


def levels(g: nx.DiGraph, order_key: Mapping[str, int] | None = None) -> list[list[str]]:
    """Topological generations: the actions of one level do not depend on each other.

    Raises CycleError naming the cycle.
    """
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        names = [a for a, _ in cycle] + [cycle[0][0]]
        raise CycleError(f"dependency cycle: {' -> '.join(names)}")
    key = order_key or {}
    return [sorted(gen, key=lambda n: (key.get(n, 0), n)) for gen in nx.topological_generations(g)]


def order(g: nx.DiGraph, order_key: Mapping[str, int] | None = None) -> list[str]:
    return [n for gen in levels(g, order_key) for n in gen]


def descendants_closure(g: nx.DiGraph, excluded: Iterable[str]) -> set[str]:
    """``excluded`` and everything that depends on them (for ``--exclude``)."""
    out: set[str] = set()
    for e in excluded:
        if e in g:
            out.add(e)
            out |= nx.descendants(g, e)
    return out


def ancestors_closure(g: nx.DiGraph, targets: Iterable[str]) -> set[str]:
    """``targets`` and everything they depend on (for ``--target``)."""
    keep: set[str] = set()
    for t in targets:
        if t in g:
            keep.add(t)
            keep |= nx.ancestors(g, t)
    return keep


def targeted_publish(actions: dict[str, Action], keep: set[str], soft_edges: list[tuple[str, str]],
                     health_checks: dict[str, list[CheckRecord]], *, excluded: frozenset[str] = frozenset()
                     ) -> set[str]:
    """What a ``--target`` or ``--exclude`` keeps of the publish: a kept layer's new or
    changed service, the server reload when a kept layer or service changes (their publish
    is that reload) or a kept migration alters a served table (schemas are cached per
    worker), and the health checks of the kept layers only (``actions``' validation is
    narrowed to them). Nothing named in ``excluded`` comes back; a kept layer whose new
    service is excluded is left out too (it could not be served without it).

    The reload publishes what the state records once the kept actions are recorded (see
    ``workflows.publish``), so a layer left out is neither recorded nor published."""
    keep = set(keep)
    for address in sorted(a for a in keep if actions[a].kind == "layer" and actions[a].action != "delete"):
        service = f"service.{address.removeprefix('layer.').split('::', 1)[0]}"
        if service not in actions or actions[service].action == "delete":
            continue
        if service not in excluded:
            keep.add(service)  # a collection is served under its service: it is published with it
        elif actions[service].action == "create":
            keep.discard(address)
    served = any(actions[a].kind in ("layer", "service") for a in keep)
    for reload in [a for a, act in actions.items() if act.action == "reload" and a not in excluded]:
        if served:
            keep.add(reload)
        elif any(before in keep and after == reload for before, after in soft_edges):
            keep.add(reload)
            if actions[reload].after is None:  # no layer of this plan is published: say why it reloads
                actions[reload] = actions[reload].model_copy(update={
                    "reason": "a migration altered a served table (schemas are cached per worker)"})
    for vaddr in [a for a, act in actions.items() if act.action == "validate"]:
        act = actions[vaddr]
        checks = [c for layer, cs in health_checks.items() if layer in keep for c in cs]
        if checks and vaddr not in excluded and any(d in keep for d in act.depends_on):
            keep.add(vaddr)
            actions[vaddr] = act.model_copy(update={"checks": checks, "estimated_s": 0.5 * len(checks)})
        else:
            keep.discard(vaddr)
    return keep
