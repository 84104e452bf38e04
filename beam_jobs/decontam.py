"""Decontamination as a Beam stage: drop documents that share an n-gram with a benchmark test item.

The n-gram index (a few MB even for HumanEval + MBPP + GSM8K + MATH) travels with the DoFn to every
worker; each document is checked with one vectorised lookup. Rejections are
``decontaminate/contaminated_<benchmark>`` (the first benchmark by name when several match) and
``_stats/stage-decontaminate.json`` lists, per benchmark, how many documents were removed and which
item ids matched, so a user can audit every removal.
"""

from __future__ import annotations

import apache_beam as beam

from beam_jobs.corpus_wide import CorpusWideStage, keyed_rejection
from beam_jobs.stage_stats import WriteStageStats
from beam_jobs.stages import KEPT, REJECTED
from specialize.corpus.document import Document, DocumentKey
from specialize.decontam.benchmarks import load_benchmark
from specialize.decontam.index import NgramIndex

STAGE = "decontaminate"


def build_index(specs: list[str], n: int = 10, min_shared: int = 1) -> NgramIndex:
    """The index of every benchmark in ``specs`` (``NAME`` or ``NAME=PATH``), loaded before Beam starts."""
    items = [item for spec in specs for item in load_benchmark(spec)]
    return NgramIndex(items, n, min_shared)


class _CheckFn(beam.DoFn):
    """A text -> (source, (first benchmark, detail, matches)) when it shares an n-gram with a test item."""

    def __init__(self, index: NgramIndex):
        self._index = index

    def process(self, document: Document):
        found = self._index.check(document.text)
        if found is None:
            return
        detail = "; ".join(f"{b}: {', '.join(ids[:20])}{' ...' if len(ids) > 20 else ''}" for b, ids in found.matches.items())
        yield document.source, (found.benchmarks[0], detail, found.matches)


def _drop_contaminated(key: DocumentKey, verdicts: dict):
    verdict = verdicts.get(key.source)
    if verdict is None:
        yield key
        return
    first, detail, matches = verdict
    yield keyed_rejection(key, STAGE, f"contaminated_{first}", detail)
    yield beam.pvalue.TaggedOutput("stats", {"benchmarks": {
        b: {"documents_removed": 1 if b == first else 0, "documents_matching": 1, "matched_items": ids}
        for b, ids in matches.items()}})


class Decontaminate(CorpusWideStage):
    """Keys -> (clean keys, rejections); per-benchmark audit in ``stage-decontaminate.json``.

    The check runs on every text (measure); the verdicts, one per contaminated document (few), reach
    the decision as a side input, so the keys cross no shuffle here. Only keys still alive after dedup
    are counted: a contaminated near-duplicate is reported as the duplicate it is, as before.
    """

    def __init__(self, index: NgramIndex, stats_dir: str | None = None):
        super().__init__()
        self._index, self._stats_dir = index, stats_dir

    def measure(self, documents):
        return documents | "CheckNgrams" >> beam.ParDo(_CheckFn(self._index))

    def decide(self, keys, verdicts):
        outputs = keys | "DropContaminated" >> beam.FlatMap(
            _drop_contaminated, verdicts=beam.pvalue.AsDict(verdicts)).with_outputs(REJECTED, "stats", main=KEPT)
        if self._stats_dir is not None:
            summary = self._index.summary()
            base = {"ngram": self._index.n, "min_shared_ngrams": self._index.min_shared, "benchmarks": {
                b: {**figures, "documents_removed": 0, "documents_matching": 0, "matched_items": []}
                for b, figures in summary.items()}}
            outputs["stats"] | WriteStageStats(self._stats_dir, STAGE, base)
        return outputs[KEPT], outputs[REJECTED]

