"""Exact and near-duplicate removal, as corpus-wide stages (``beam_jobs/corpus_wide.py``): each measures
its documents' texts once, then decides on keys; no shuffle carries a text.

Exact: measure (hash of the whitespace-normalised text, source); group by hash; the smallest ``source``
of a group stays, and the keys are joined with the losers by source (a text copied 10^5 times is 10^5
ids on its hash).

Near (MinHash + LSH + connected components), with no step that needs every signature in one place:

    texts --measure--> (band key, source) and (source, bottom-k shingle sketch)
    (band key, source) --GroupByKey--> candidate edges (bucket min, member)
      [--Verify: the centre's sketch sent to each member, Jaccard there (exact for short documents)--> verified edges]
      --(Large-Star, Small-Star) x rounds--> one star per component, centred on its smallest source
      --ConvergenceCheck--> _stats/stage-near_dedup.json
      --join with keys by source--> kept (component centres and singletons) + rejections

Both stages keep the document with the smallest ``source`` of its duplicate set, so the survivor does
not depend on input order, bundle boundaries or the runner. Both measure every document that passed
the per-document filters; near dedup therefore also sees the exact copies that exact dedup removes.
That changes no decision: an exact copy has its original's shingles, so it joins the original's
component, whose centre (the smallest source) is never an exact loser. The near-dedup statistics
(candidates, clusters) count those copies too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import apache_beam as beam

from beam_jobs.corpus_wide import CorpusWideStage, keyed_rejection
from beam_jobs.stage_stats import WriteStageStats
from beam_jobs.stages import KEPT, REJECTED
from specialize.corpus.document import Document
from specialize.dedup.components import components_union_find, large_star, orient, small_star, star_violation
from specialize.dedup.exact import exact_key
from specialize.dedup.minhash import MinHashConfig, MinHasher, bottom_k_sketch, sketch_jaccard

EXACT_STAGE = "exact_dedup"
NEAR_STAGE = "near_dedup"


# ---------------------------------------------------------------------------------------------
# Exact


def _exact_losers(keyed):
    """A group of sources with one normalised-text hash -> (source, survivor) for every other member.

    Only ids travel through this shuffle: a hash shared by 10^5 copies (a licence file, a generated
    stub) costs 10^5 short strings on one key, not 10^5 documents.
    """
    _, sources = keyed
    members = sorted(set(sources))
    for duplicate in members[1:]:
        yield duplicate, members[0]


def _drop_marked(keyed, mark: str, stage: str, reason: str, detail: str):
    """A source's key joined with the survivors it duplicates (``mark``): kept when there are none,
    else rejected naming the smallest survivor. Shared by exact and near dedup."""
    _, grouped = keyed
    survivors = list(grouped[mark])
    for key in grouped["key"]:
        if survivors:
            yield keyed_rejection(key, stage, reason, detail + min(survivors))
        else:
            yield key


class ExactDedup(CorpusWideStage):
    """Keys -> (one key per normalised text, rejections ``exact_dedup/exact_duplicate``).

    Groups (hash, source id) pairs to find the losers, then joins the keys with them by source.
    """

    def measure(self, documents):
        return documents | "ExactHashes" >> beam.Map(lambda d: (exact_key(d.text), d.source))

    def decide(self, keys, hashes):
        losers = (
            hashes
            | "GroupByHash" >> beam.GroupByKey()
            | "Losers" >> beam.FlatMap(_exact_losers)
        )
        outputs = (
            {"key": keys | "KeyBySource" >> beam.Map(lambda k: (k.source, k)), "survivor": losers}
            | "JoinKeys" >> beam.CoGroupByKey()
            | "DropDuplicates" >> beam.FlatMap(_drop_marked, "survivor", EXACT_STAGE, "exact_duplicate",
                                               "same normalised text as ").with_outputs(REJECTED, main=KEPT)
        )
        return outputs[KEPT], outputs[REJECTED]


# ---------------------------------------------------------------------------------------------
# Near


@dataclass(frozen=True)
class NearDedupSettings:
    """MinHash/LSH parameters and the component search budget (all exposed on the CLI and profile)."""

    minhash: MinHashConfig = field(default_factory=MinHashConfig)
    verify_threshold: float | None = 0.7  # Jaccard (sketch) a candidate pair must reach; None: trust LSH
    rounds: int = 8  # Large-Star + Small-Star pairs; convergence is checked and reported
    components: str = "auto"  # auto (union-find on local runners, star rounds on distributed ones) | union_find | star

    @classmethod
    def from_dict(cls, raw: dict) -> "NearDedupSettings":
        known = {"ngram", "bands", "rows", "seed", "verify_threshold", "rounds", "components"}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown near_dedup setting(s) {sorted(unknown)}; known: {sorted(known)}")
        components = str(raw.get("components", "auto"))
        if components not in COMPONENT_METHODS:
            raise ValueError(f"near_dedup components {components!r}: expected one of {', '.join(COMPONENT_METHODS)}")
        minhash = MinHashConfig(**{k: int(raw[k]) for k in ("ngram", "bands", "rows", "seed") if k in raw})
        threshold = raw.get("verify_threshold", 0.7)
        return cls(minhash, None if threshold is None else float(threshold), int(raw.get("rounds", 8)), components)

    def in_one_place(self, local_runner: bool) -> bool:
        """Whether connected components run as one union-find (``ComponentsInOnePlace``)."""
        return self.components == "union_find" or (self.components == "auto" and local_runner)


COMPONENT_METHODS = ("auto", "union_find", "star")


class _SignatureFn(beam.DoFn):
    SKETCHES = "sketches"

    def __init__(self, config: MinHashConfig, emit_sketches: bool):
        self._config, self._emit_sketches = config, emit_sketches
        self._hasher = None

    def setup(self):
        self._hasher = MinHasher(self._config)

    def process(self, document: Document):
        shingles = self._hasher.shingles(document.text)
        signature = self._hasher.signature_of_shingles(shingles)
        if signature is None:  # no words at all: nothing to compare, never a near-duplicate
            return
        for key in self._hasher.band_keys(signature):
            yield key, document.source
        if self._emit_sketches:
            yield beam.pvalue.TaggedOutput(self.SKETCHES, (document.source, bottom_k_sketch(shingles)))


def _bucket_edges(keyed):
    """A bucket of >1 documents -> star edges to its smallest member (connectivity is all we need)."""
    _, sources = keyed
    members = sorted(set(sources))
    for other in members[1:]:
        yield other, members[0]


def _send_centre_sketch(keyed):
    """Keyed by a bucket's smallest member: send its sketch to each member it has an edge to. The
    centre's key holds member ids and one sketch, whatever the cluster size; each member's key then
    receives one sketch per centre it hangs on (one, almost always)."""
    centre, grouped = keyed
    sketches = list(grouped["sketch"])
    if not sketches:
        return
    for member in grouped["members"]:
        yield member, (centre, sketches[0])


def _verify_pairs(keyed, threshold: float):
    source, grouped = keyed
    sketches = list(grouped["sketch"])
    if not sketches:
        return
    for other, other_sketch in grouped["pairs"]:
        similarity = sketch_jaccard(sketches[0], other_sketch)
        if similarity >= threshold:
            yield orient((source, other))
        else:
            yield beam.pvalue.TaggedOutput("stats", {"candidate_pairs_rejected_by_jaccard": 1})


def _both_ways(edge):
    a, b = edge
    yield a, b
    yield b, a


def _check_node(keyed):
    node, neighbours = keyed
    neighbours = set(neighbours)
    smaller = sorted(n for n in neighbours if n < node)
    if smaller:  # a leaf: a near-duplicate of the (smallest) centre it hangs on
        yield node, smaller[0]
    if star_violation(node, neighbours):
        yield beam.pvalue.TaggedOutput("stats", {"unconverged_nodes": 1})
    if not smaller:
        yield beam.pvalue.TaggedOutput("stats", {"clusters": 1, "clustered_documents": 1 + len(neighbours)})


def _mark_converged(stats: dict) -> dict:
    return {**stats, "converged": stats.get("unconverged_nodes", 0) == 0}


class ConnectedComponents(beam.PTransform):
    """Edges ``(a, b)`` between source ids -> edges ``(member, smallest member of its component)``.

    Alternates Large-Star and Small-Star ``rounds`` times (each a GroupByKey over edges: memory per key
    is one node's neighbourhood). Returns ``(leaf_edges, stats)``; ``stats`` says how many nodes still
    break the star shape (0 = converged = exact components). When it is not 0, some components keep
    more than one survivor (never fewer): raise ``rounds``.
    """

    def __init__(self, rounds: int):
        super().__init__()
        if rounds < 1:
            raise ValueError(f"connected-components rounds must be >= 1, got {rounds}")
        self._rounds = rounds

    def expand(self, edges):
        for r in range(self._rounds):
            edges = (
                edges
                | f"LargeStar{r}/BothWays" >> beam.FlatMap(_both_ways)
                | f"LargeStar{r}/Group" >> beam.GroupByKey()
                | f"LargeStar{r}/Step" >> beam.FlatMapTuple(large_star)
                | f"SmallStar{r}/Orient" >> beam.Map(orient)
                | f"SmallStar{r}/Group" >> beam.GroupByKey()
                | f"SmallStar{r}/Step" >> beam.FlatMapTuple(small_star)
            )
        checked = (
            edges
            | "Final/BothWays" >> beam.FlatMap(_both_ways)
            | "Final/Group" >> beam.GroupByKey()
            | "Final/Check" >> beam.FlatMap(_check_node).with_outputs("stats", main="leaves")
        )
        return checked["leaves"], checked["stats"]


def _components_of_all(edges: list):
    """Every verified edge in one place -> (member, smallest member of its component) and the stats."""
    roots = components_union_find(edges)
    members: dict[str, int] = {}
    for node, root in roots.items():
        members[root] = members.get(root, 0) + 1
        if node != root:
            yield node, root
    yield beam.pvalue.TaggedOutput("stats", {"clusters": len(members), "clustered_documents": sum(members.values())})


class ComponentsInOnePlace(beam.PTransform):
    """Edges -> (leaf edges, stats) by union-find over all edges on one worker: a local runner holds
    every shuffle in memory anyway, and this is one step instead of ``2 x rounds`` grouping stages
    (about a second of runner set-up on a small build). Edges are verified near-duplicate pairs only,
    not documents. Distributed runners use ``ConnectedComponents``."""

    def expand(self, edges):
        found = (
            edges
            | "AllEdges" >> beam.combiners.ToList()
            | "UnionFind" >> beam.FlatMap(_components_of_all).with_outputs("stats", main="leaves")
        )
        return found["leaves"], found["stats"]


class NearDedup(CorpusWideStage):
    """Keys -> (one key per near-duplicate cluster, rejections ``near_dedup/near_duplicate``).

    ``in_one_place``: connected components by union-find on one worker (local runners) instead of the
    Large-Star / Small-Star rounds (distributed runners, where no worker may hold every edge)."""

    def __init__(self, settings: NearDedupSettings = NearDedupSettings(), stats_dir: str | None = None,
                 in_one_place: bool = False):
        super().__init__()
        self._settings, self._stats_dir, self._in_one_place = settings, stats_dir, in_one_place

    def measure(self, documents):
        verify = self._settings.verify_threshold is not None
        signed = documents | "Signatures" >> beam.ParDo(_SignatureFn(self._settings.minhash, verify)).with_outputs(
            _SignatureFn.SKETCHES, main="bands")
        return {"bands": signed["bands"], "sketches": signed[_SignatureFn.SKETCHES] if verify else None}

    def decide(self, keys, signals):
        settings = self._settings
        candidates = (
            signals["bands"]
            | "GroupByBand" >> beam.GroupByKey()
            | "BucketEdges" >> beam.FlatMap(_bucket_edges)
            | "DistinctEdges" >> beam.Distinct()
        )
        stats = [candidates | "CountCandidates" >> beam.Map(lambda _: {"candidate_pairs": 1})]
        edges = candidates
        if signals.get("sketches") is not None:
            sketches = signals["sketches"]
            by_centre = candidates | "KeyByCentre" >> beam.Map(lambda edge: (edge[1], edge[0]))
            with_first = (
                {"members": by_centre, "sketch": sketches}
                | "JoinFirst" >> beam.CoGroupByKey()
                | "AttachFirst" >> beam.FlatMap(_send_centre_sketch)
            )
            verified = (
                {"pairs": with_first, "sketch": sketches}
                | "JoinSecond" >> beam.CoGroupByKey()
                | "Jaccard" >> beam.FlatMap(_verify_pairs, settings.verify_threshold).with_outputs("stats", main="edges")
            )
            edges = verified["edges"]
            stats.append(verified["stats"])
        leaves, cc_stats = edges | "Components" >> (ComponentsInOnePlace() if self._in_one_place else ConnectedComponents(settings.rounds))
        stats.append(cc_stats)
        outputs = (
            {"key": keys | "KeyBySource" >> beam.Map(lambda k: (k.source, k)), "centre": leaves}
            | "JoinKeys" >> beam.CoGroupByKey()
            | "KeepCentres" >> beam.FlatMap(_drop_marked, "centre", NEAR_STAGE, "near_duplicate",
                                            "cluster survivor: ").with_outputs(REJECTED, main=KEPT)
        )
        if self._stats_dir is not None:
            base = {
                "ngram": settings.minhash.ngram, "bands": settings.minhash.bands, "rows": settings.minhash.rows,
                "seed": settings.minhash.seed, "lsh_threshold": round(settings.minhash.threshold(), 4),
                "verify_threshold": settings.verify_threshold, "rounds": settings.rounds,
                "components": "union-find, one worker" if self._in_one_place else f"large-star/small-star, {settings.rounds} rounds",
                "candidate_pairs": 0, "unconverged_nodes": 0, "clusters": 0, "clustered_documents": 0,
            }
            stats | "FlattenStats" >> beam.Flatten() | "Stats" >> WriteStageStats(
                self._stats_dir, NEAR_STAGE, base, finalize=_mark_converged)
        return outputs[KEPT], outputs[REJECTED]
