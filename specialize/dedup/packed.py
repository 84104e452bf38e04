"""Near-duplicate search with every signature in one place, packed: the local runners' way.

A local runner holds every shuffle in memory, as Python objects per element: 14 band keys per
document through a GroupByKey cost ~8 KB per document there. Packed, a document costs its
signature (``bands * rows`` uint32), its sketch (<= 256 uint32) and its source: ~1.5 KB. The
search itself (LSH buckets by sorting each band's rows, the Jaccard check on the sketches of each
candidate pair, union-find) then runs in numpy on one worker; its result is what the distributed
path (band GroupByKeys, Large-Star / Small-Star) finds: the same buckets, the same verified pairs
(member, bucket's smallest source), the same components.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from specialize.dedup.components import components_union_find
from specialize.dedup.minhash import sketch_jaccard


@dataclass
class PackedSignatures:
    """Sources, signatures and sketches of many documents; packed into arrays when pickled."""

    sources: list[str] = field(default_factory=list)
    signatures: list[np.ndarray] = field(default_factory=list)
    sketches: list[np.ndarray] = field(default_factory=list)

    def add(self, source: str, signature: np.ndarray, sketch: np.ndarray | None) -> None:
        self.sources.append(source)
        self.signatures.append(signature)
        self.sketches.append(sketch if sketch is not None else np.zeros(0, dtype=np.uint32))

    def merge(self, other: "PackedSignatures") -> None:
        self.sources += other.sources
        self.signatures += other.signatures
        self.sketches += other.sketches

    def __getstate__(self) -> dict:
        lengths = np.fromiter((s.size for s in self.sketches), dtype=np.int64, count=len(self.sketches))
        return {"sources": self.sources,
                "signatures": np.stack(self.signatures) if self.signatures else np.zeros((0, 0), dtype=np.uint32),
                "sketch_values": np.concatenate(self.sketches) if self.sketches else np.zeros(0, dtype=np.uint32),
                "sketch_lengths": lengths}

    def __setstate__(self, state: dict) -> None:
        self.sources = state["sources"]
        self.signatures = list(state["signatures"])
        ends = np.cumsum(state["sketch_lengths"])
        self.sketches = list(np.split(state["sketch_values"], ends[:-1])) if len(ends) else []


@dataclass
class SearchResult:
    leaves: list[tuple[str, str]]  # (member, smallest source of its component), members only
    candidate_pairs: int
    rejected_by_jaccard: int
    clusters: int
    clustered_documents: int


def near_duplicates(packed: PackedSignatures, bands: int, rows: int, threshold: float | None) -> SearchResult:
    """LSH buckets (documents equal on every row of a band), an edge from each member to its bucket's
    smallest source, the Jaccard check of each edge on the sketches, then connected components."""
    count = len(packed.sources)
    if count < 2:
        return SearchResult([], 0, 0, 0, 0)
    rank = np.empty(count, dtype=np.int64)
    rank[np.argsort(np.asarray(packed.sources, dtype=object))] = np.arange(count)
    signatures = np.stack(packed.signatures)
    edges: set[tuple[int, int]] = set()
    for band in range(bands):
        block = np.ascontiguousarray(signatures[:, band * rows : (band + 1) * rows])
        keys = block.view(np.dtype((np.void, block.itemsize * rows))).ravel()
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
        ends = np.append(starts[1:], count)
        for start, end in zip(starts[ends - starts > 1], ends[ends - starts > 1]):
            members = order[start:end]
            centre = members[np.argmin(rank[members])]
            edges.update((int(member), int(centre)) for member in members if member != centre)
    verified, rejected = [], 0
    for member, centre in sorted(edges):
        if threshold is None or sketch_jaccard(packed.sketches[member], packed.sketches[centre]) >= threshold:
            verified.append((packed.sources[member], packed.sources[centre]))
        else:
            rejected += 1
    roots = components_union_find(verified)
    sizes: dict[str, int] = {}
    for root in roots.values():
        sizes[root] = sizes.get(root, 0) + 1
    leaves = [(node, root) for node, root in roots.items() if node != root]
    return SearchResult(leaves, len(edges), rejected, len(sizes), sum(sizes.values()))
