"""Connected components of the near-duplicate graph, as per-node steps a shuffle can drive.

We use the Large-Star / Small-Star alternation of Kiveris et al., "Connected Components in MapReduce
and Beyond" (SoCC 2014): each step is a group-by-node over the edge list, a node only ever sees its
own neighbours (never all signatures or all ids), and the graph contracts to one star per component,
centred on its smallest node, in O(log^2 n) rounds (a handful in practice). Node ids are document
``source`` strings, so "smallest" is the deterministic survivor rule: same input, same survivor.

The functions here are the reducers; ``beam_jobs/dedup.py`` runs them after ``GroupByKey``. They are
plain so tests can check them against a union-find on random graphs.
"""

from __future__ import annotations

from typing import Iterable, Iterator

Edge = tuple[str, str]


def large_star(node: str, neighbours: Iterable[str]) -> Iterator[Edge]:
    """Connect every larger neighbour of ``node`` to the smallest of its neighbourhood (incl. itself).

    Input: all neighbours of ``node`` (edges seen from both ends). Output edges are ``(larger, smaller)``.
    """
    unique = set(neighbours)
    smallest = min(unique | {node})
    for other in unique:
        if other > node:
            yield other, smallest


def small_star(node: str, smaller_neighbours: Iterable[str]) -> Iterator[Edge]:
    """Connect ``node`` and its smaller neighbours to the smallest of them.

    Input: the neighbours smaller than ``node`` (each edge is keyed by its larger end).
    """
    unique = set(smaller_neighbours)
    if not unique:
        return
    smallest = min(unique)
    yield node, smallest
    for other in unique:
        if other != smallest:
            yield other, smallest


def orient(edge: Edge) -> Edge:
    """``(larger, smaller)``: the key a small-star step groups on."""
    a, b = edge
    return (a, b) if a > b else (b, a)


def star_violation(node: str, neighbours: Iterable[str]) -> bool:
    """True when ``node`` breaks the "stars centred on their minimum" shape (not yet converged).

    Converged means: a node either has only larger neighbours (a centre) or exactly one neighbour,
    which is smaller (a leaf). Anything else (a node in the middle of a path, or a leaf of two
    centres) needs more rounds.
    """
    unique = set(neighbours)
    smaller = sum(1 for other in unique if other < node)
    return smaller > 1 or (smaller == 1 and len(unique) > 1)


def components_union_find(edges: Iterable[Edge]) -> dict[str, str]:
    """Reference: node -> smallest node of its component (in-memory; tests and small inputs only)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            if ra < rb:
                parent[rb] = ra
            else:
                parent[ra] = rb
    return {node: find(node) for node in list(parent)}
