"""Corpus-wide stages (dedup, decontamination, up-sampling): measured on the text, decided on keys.

A per-document filter looks at one text; a corpus-wide stage compares documents with each other or
with benchmarks, which takes shuffles. A shuffle of texts costs a local runner the whole corpus in
memory (FnApiRunner holds every shuffle whole), so these stages never shuffle text. Each is split:

- ``measure(documents) -> signals``: per document, on the text (an exact hash, MinHash band keys and a
  bounded shingle sketch, a benchmark match). It runs fused with reading and the per-document filters,
  so a text lives only while its bundle is processed;
- ``decide(keys, signals) -> (kept keys, rejected (key, Rejection) pairs)``: on ``DocumentKey``s (no
  text, ~200 bytes each) and the signals only.

The build then reads the kept texts again to write them (``beam_jobs/shard_writing.py``), as datatrove
filters its inputs in a second read with the ids its dedup computed. A rejection's text sample is
filled in that second read (``restore``).

Applied to ``Document``s directly (``docs | ExactDedup()``: tests, benchmarks), a stage measures,
decides and joins its kept documents back by source (that join is a text shuffle: small inputs only).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable

import apache_beam as beam

from beam_jobs.stages import KEPT, REJECTED, SAMPLE_CHARS
from specialize.corpus.document import Document, DocumentKey, Rejection


class CorpusWideStage(beam.PTransform):
    """``keys | stage -> (kept keys, rejected (key, Rejection))`` once ``Measure(stage)`` ran on the texts."""

    corpus_wide = True

    def __init__(self, label: str | None = None):
        super().__init__(label)
        self._signals, self._bound = None, False

    def measure(self, documents):
        """Signals of the documents' texts (a PCollection or a dict of them); None: the stage needs none."""
        return None

    def decide(self, keys, signals):
        raise NotImplementedError

    def expand(self, pcoll):
        if self._bound:  # in a build: pcoll holds keys
            return self.decide(pcoll, self._signals)
        return pcoll | "OnDocuments" >> _OnDocuments(self)

    def bind(self, signals) -> None:
        self._signals, self._bound = signals, True


class Measure(beam.PTransform):
    """Run ``stage.measure`` on each PCollection of documents (a tuple of them: the corpus, the
    instruction documents) and bind the flattened signals to the stage.

    Signals are flattened, never the documents: a runner materialises a Flatten's inputs, so a
    Flatten of documents would serialise every text."""

    def __init__(self, stage: CorpusWideStage):
        super().__init__()
        self._stage = stage

    def expand(self, branches):
        branches = tuple(branches) if isinstance(branches, (tuple, list)) else (branches,)
        if type(self._stage).measure is CorpusWideStage.measure:  # decided on keys alone (up-sampling)
            self._stage.bind(None)
            return branches[0].pipeline | beam.Create([])
        measured = [branch | f"Branch{index}" >> _MeasureBranch(self._stage) for index, branch in enumerate(branches)]
        names = list(measured[0])
        flat = {name: tuple(m[name] for m in measured) | f"Flatten{index}" >> beam.Flatten() if len(measured) > 1
                else measured[0][name] for index, name in enumerate(names)}
        self._stage.bind(flat[_SINGLE] if _SINGLE in flat else flat)  # a dict of signals lacks those measured as None
        return flat[names[0]]


_SINGLE = "signals"


class _MeasureBranch(beam.PTransform):
    """One branch's signals as a dict of PCollections (what a PTransform may return)."""

    def __init__(self, stage: CorpusWideStage):
        super().__init__()
        self._stage = stage

    def expand(self, documents):
        signals = self._stage.measure(documents)
        if isinstance(signals, dict):
            return {name: value for name, value in signals.items() if value is not None}
        return {_SINGLE: signals}


def keyed_rejection(key: DocumentKey, stage: str, reason: str, detail: str = "") -> beam.pvalue.TaggedOutput:
    """The rejected output of a decision: the key (to find its text again) and the rejection, sample to come."""
    return beam.pvalue.TaggedOutput(REJECTED, (key, Rejection(stage, reason, key.source, key.num_bytes, detail)))


def restore(document: Document, planned: Iterable[tuple[DocumentKey, Rejection | None]]) -> Iterable[Document | Rejection]:
    """A document read again -> what the decisions made of it: a kept document per kept key (an
    up-sampled copy has a source of its own; annotations come from the key), a rejection with its
    text sample per rejected key."""
    for key, rejection in planned:
        if rejection is not None:
            yield replace(rejection, text_sample=document.text[:SAMPLE_CHARS])
        else:
            yield replace(document, source=key.source, language=key.language, meta=key.meta)


def _join_back(item):
    _, grouped = item
    documents = list(grouped["document"])
    if not documents:
        return
    planned = [(key, None) for key in grouped["kept"]] + list(grouped["rejected"])
    for result in restore(documents[0], sorted(planned, key=lambda entry: entry[0].source)):
        yield beam.pvalue.TaggedOutput(REJECTED, result) if isinstance(result, Rejection) else result


class _OnDocuments(beam.PTransform):
    def __init__(self, stage: CorpusWideStage):
        super().__init__()
        self._stage = stage

    def expand(self, documents):
        signals = self._stage.measure(documents)
        kept, rejected = self._stage.decide(documents | "Keys" >> beam.Map(Document.key), signals)
        outputs = (
            {"document": documents | "BySource" >> beam.Map(lambda d: (d.source, d)),
             "kept": kept | "KeptByOrigin" >> beam.Map(lambda k: (k.origin, k)),
             "rejected": rejected | "RejectedByOrigin" >> beam.Map(lambda pair: (pair[0].origin, pair))}
            | "JoinBack" >> beam.CoGroupByKey()
            | "Restore" >> beam.FlatMap(_join_back).with_outputs(REJECTED, main=KEPT)
        )
        return outputs[KEPT], outputs[REJECTED]
