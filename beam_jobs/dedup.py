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

That is the path of distributed runners, whose shuffles spill. On a local runner (``in_one_place``)
every shuffle is held in memory and decoded into Python objects, so the signals are packed instead
(``specialize/dedup/packed.py``): a blob per ``PACKED_BATCH_DOCUMENTS`` documents, written to the
build's spill directory, and one worker finds the same duplicates with numpy sorts; the duplicates
reach the keys as a side input. A test checks both paths remove the same documents.

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
import numpy as np

from beam_jobs.corpus_wide import CorpusWideStage, keyed_rejection
from beam_jobs.stage_stats import WriteStageStats
from beam_jobs.stages import KEPT, REJECTED
from specialize.corpus.document import Document
from specialize.dedup.components import large_star, orient, small_star, star_violation
from specialize.dedup.exact import exact_key
from specialize.dedup.minhash import MinHashConfig, MinHasher, bottom_k_sketch, sketch_jaccard
from specialize.dedup.packed import band_hashes, exact_duplicates, near_duplicates, pack, ragged, spill

EXACT_STAGE = "exact_dedup"
NEAR_STAGE = "near_dedup"


# ---------------------------------------------------------------------------------------------
# Packed signals (local runners)


#: Documents per packed signal blob, about 1.2 MB with sketches. Packing holds a batch three times over
#: (the rows, the packed arrays, the pickled blob): 4,096 documents made that a 16 MB transient in the
#: middle of the first read, the largest part of what was left of a local build's memory growth.
PACKED_BATCH_DOCUMENTS = 1024


class _PackingFn(beam.DoFn):
    """Documents -> blobs of their signals (``specialize/dedup/packed.py``), one per
    ``PACKED_BATCH_DOCUMENTS`` and at the end of each bundle. A local runner then holds a few large
    byte strings where it held several Python objects per document.

    With ``spill_dir`` (a local directory every worker of a local runner sees) a blob is written there
    and only its path travels: the runner then holds no copy of the signals at all, where a blob in the
    pipeline is copied about six times on its way to the search (accumulated, encoded, grouped,
    re-encoded, decoded, unpacked). The search reads them back one at a time."""

    def __init__(self, spill_dir: str | None = None):
        self._spill_dir = spill_dir

    def start_bundle(self):
        self._sources, self._rows = [], []

    def signal(self, document: Document):
        """The document's signal row, or None when it has none (never a duplicate)."""
        raise NotImplementedError

    def pack(self, sources: list[str], rows: list) -> bytes:
        raise NotImplementedError

    def process(self, document: Document):
        row = self.signal(document)
        if row is None:
            return
        self._sources.append(document.source)
        self._rows.append(row)
        if len(self._sources) >= PACKED_BATCH_DOCUMENTS:
            yield self._flush()

    def finish_bundle(self):
        if self._sources:
            yield beam.transforms.window.GlobalWindows.windowed_value(self._flush())

    def _flush(self) -> bytes | str:
        blob = self.pack(self._sources, self._rows)
        self._sources, self._rows = [], []
        return blob if self._spill_dir is None else spill(blob, self._spill_dir)


class _ExactPackingFn(_PackingFn):
    def signal(self, document: Document):
        return exact_key(document.text)

    def pack(self, sources, rows):
        return pack(sources, hash=np.frombuffer(b"".join(rows), dtype="<u8").reshape(-1, 2).astype(np.uint64))


class _NearPackingFn(_PackingFn):
    def __init__(self, config: MinHashConfig, with_sketches: bool, spill_dir: str | None = None):
        super().__init__(spill_dir)
        self._config, self._with_sketches = config, with_sketches
        self._hasher = None

    def setup(self):
        self._hasher = MinHasher(self._config)

    def signal(self, document: Document):
        return _signature_and_sketch(self._hasher, document.text, self._with_sketches)

    def pack(self, sources, rows):
        signatures = np.stack([signature for signature, _ in rows])
        arrays = {"bands": band_hashes(signatures, self._config.bands, self._config.rows)}
        if self._with_sketches:
            arrays["sketch"], arrays["sketch_ends"] = ragged([sketch for _, sketch in rows], np.uint32)
        return pack(sources, **arrays)


def _signature_and_sketch(hasher: MinHasher, text: str, with_sketch: bool):
    """(signature, bottom-k sketch or None) of a text; None when it has no words (never a near-duplicate)."""
    shingles = hasher.shingles(text)
    signature = hasher.signature_of_shingles(shingles)
    if signature is None:
        return None
    return signature, bottom_k_sketch(shingles) if with_sketch else None


def _drop_listed(key, marked: dict, stage: str, reason: str, detail: str):
    """A key kept unless ``marked`` (a side input: duplicates only) names the survivor it duplicates."""
    survivor = marked.get(key.source)
    if survivor is None:
        yield key
    else:
        yield keyed_rejection(key, stage, reason, detail + survivor)


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
    ``in_one_place`` (local runners): the hashes travel packed and the losers are found by one sort on
    one worker; the keys then meet the losers (duplicates only) as a side input, not in a shuffle.
    """

    def __init__(self, in_one_place: bool = False, spill_dir: str | None = None):
        super().__init__()
        self._in_one_place, self._spill_dir = in_one_place, spill_dir

    def measure(self, documents):
        if self._in_one_place:
            return documents | "PackedHashes" >> beam.ParDo(_ExactPackingFn(self._spill_dir))
        return documents | "ExactHashes" >> beam.Map(lambda d: (exact_key(d.text), d.source))

    def decide(self, keys, hashes):
        if self._in_one_place:
            losers = (hashes
                      | "AllHashes" >> beam.combiners.ToList()
                      | "SortHashes" >> beam.FlatMap(exact_duplicates))
            outputs = keys | "DropDuplicates" >> beam.FlatMap(
                _drop_listed, beam.pvalue.AsDict(losers), EXACT_STAGE, "exact_duplicate",
                "same normalised text as ").with_outputs(REJECTED, main=KEPT)
            return outputs[KEPT], outputs[REJECTED]
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
        """Whether the search runs on packed signals in one place (``NearDedup``'s ``in_one_place``)."""
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
        measured = _signature_and_sketch(self._hasher, document.text, self._emit_sketches)
        if measured is None:
            return
        signature, sketch = measured
        for key in self._hasher.band_keys(signature):
            yield key, document.source
        if self._emit_sketches:
            yield beam.pvalue.TaggedOutput(self.SKETCHES, (document.source, sketch))


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


def _search_in_one_place(batches: list[bytes], verify_threshold: float | None):
    """Every packed signal blob -> leaf edges (member, its component's smallest source) and the stats."""
    found = near_duplicates(batches, verify_threshold)
    yield from found.leaves
    yield beam.pvalue.TaggedOutput("stats", {
        "candidate_pairs": found.candidate_pairs, "candidate_pairs_rejected_by_jaccard": found.rejected_by_jaccard,
        "clusters": found.clusters, "clustered_documents": found.clustered_documents})


class NearDedup(CorpusWideStage):
    """Keys -> (one key per near-duplicate cluster, rejections ``near_dedup/near_duplicate``).

    ``in_one_place`` (local runners): the band hashes and sketches travel packed
    (``specialize/dedup/packed.py``) and one worker finds candidates, verifies them and joins them by
    union-find; the clustered documents reach the keys as a side input. Otherwise (distributed runners,
    where no worker may hold every signature) the shuffles below and Large-Star / Small-Star rounds."""

    def __init__(self, settings: NearDedupSettings = NearDedupSettings(), stats_dir: str | None = None,
                 in_one_place: bool = False, spill_dir: str | None = None):
        super().__init__()
        self._settings, self._stats_dir, self._in_one_place = settings, stats_dir, in_one_place
        self._spill_dir = spill_dir  # in_one_place: where the packed signals wait for the search (local runners)

    def measure(self, documents):
        verify = self._settings.verify_threshold is not None
        if self._in_one_place:
            return documents | "PackedSignatures" >> beam.ParDo(_NearPackingFn(self._settings.minhash, verify, self._spill_dir))
        signed = documents | "Signatures" >> beam.ParDo(_SignatureFn(self._settings.minhash, verify)).with_outputs(
            _SignatureFn.SKETCHES, main="bands")
        return {"bands": signed["bands"], "sketches": signed[_SignatureFn.SKETCHES] if verify else None}

    def decide(self, keys, signals):
        settings = self._settings
        if self._in_one_place:
            found = (signals
                     | "AllSignatures" >> beam.combiners.ToList()
                     | "SearchInOnePlace" >> beam.FlatMap(_search_in_one_place, settings.verify_threshold).with_outputs(
                         "stats", main="leaves"))
            outputs = keys | "KeepCentres" >> beam.FlatMap(
                _drop_listed, beam.pvalue.AsDict(found["leaves"]), NEAR_STAGE, "near_duplicate",
                "cluster survivor: ").with_outputs(REJECTED, main=KEPT)
            self._write_stats([found["stats"]])
            return outputs[KEPT], outputs[REJECTED]
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
        leaves, cc_stats = edges | "Components" >> ConnectedComponents(settings.rounds)
        stats.append(cc_stats)
        outputs = (
            {"key": keys | "KeyBySource" >> beam.Map(lambda k: (k.source, k)), "centre": leaves}
            | "JoinKeys" >> beam.CoGroupByKey()
            | "KeepCentres" >> beam.FlatMap(_drop_marked, "centre", NEAR_STAGE, "near_duplicate",
                                            "cluster survivor: ").with_outputs(REJECTED, main=KEPT)
        )
        self._write_stats(stats)
        return outputs[KEPT], outputs[REJECTED]

    def _write_stats(self, stats: list) -> None:
        settings = self._settings
        if self._stats_dir is not None:
            base = {
                "ngram": settings.minhash.ngram, "bands": settings.minhash.bands, "rows": settings.minhash.rows,
                "seed": settings.minhash.seed, "lsh_threshold": round(settings.minhash.threshold(), 4),
                "verify_threshold": settings.verify_threshold, "rounds": settings.rounds,
                "components": "packed signals, union-find on one worker" if self._in_one_place else f"large-star/small-star, {settings.rounds} rounds",
                "candidate_pairs": 0, "unconverged_nodes": 0, "clusters": 0, "clustered_documents": 0,
            }
            stats | "FlattenStats" >> beam.Flatten() | "Stats" >> WriteStageStats(
                self._stats_dir, NEAR_STAGE, base, finalize=_mark_converged)
