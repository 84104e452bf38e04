"""The one mechanism every corpus stage shares: route kept documents on, dropped ones aside.

A stage is a ``PTransform`` from ``PCollection[Document]`` to ``(kept, rejected)``: ``kept`` is a
``PCollection[Document]``, ``rejected`` a ``PCollection[Rejection]``. Stage logic is a plain function in
``specialize/`` (testable without Beam); this module only wires it. All rejections of a build meet in
``ReportRejections``, which counts documents and bytes per (stage, reason) and keeps a few samples per
reason for ``specialize corpus inspect``. Counting from the data rather than from Beam metrics keeps
the figures exact on every runner (metrics of retried bundles are approximate on some).
"""

from __future__ import annotations

import json
from typing import Callable, Iterable

import apache_beam as beam

from specialize.corpus.document import Document, Rejection
from specialize.corpus.outputs import write_atomic

REJECTED = "rejected"
KEPT = "kept"
SAMPLE_CHARS = 2000


class _Route(beam.DoFn):
    """Calls ``fn`` and sends each result to the main or the ``rejected`` output by its type."""

    def __init__(self, fn: Callable[[object], Iterable[Document | Rejection] | Document | Rejection | None]):
        self._fn = fn

    def process(self, element):
        result = self._fn(element)
        if result is None:
            return
        for item in (result,) if isinstance(result, (Document, Rejection)) else result:
            if isinstance(item, Rejection):
                yield beam.pvalue.TaggedOutput(REJECTED, item)
            else:
                yield item


class DocumentStage(beam.PTransform):
    """Apply ``fn(element) -> Document | Rejection | iterable of them | None`` to every element."""

    def __init__(self, fn: Callable, label: str | None = None):
        super().__init__(label)
        self._fn = fn

    def expand(self, pcoll):
        outputs = pcoll | beam.ParDo(_Route(self._fn)).with_outputs(REJECTED, main=KEPT)
        return outputs[KEPT], outputs[REJECTED]


def reject(stage: str, reason: str, document: Document, detail: str = "") -> Rejection:
    """A Rejection of ``document`` carrying the start of its text, so removals can be inspected."""
    return Rejection(stage, reason, document.source, document.num_bytes, detail, document.text[:SAMPLE_CHARS])


class FilterStage(DocumentStage):
    """Keep a document unless ``predicate(doc)`` returns ``(reason, detail)``: filters write only that."""

    def __init__(self, stage: str, predicate: Callable[[Document], tuple[str, str] | None], label: str | None = None):
        def apply(document: Document) -> Document | Rejection:
            verdict = predicate(document)
            return document if verdict is None else reject(stage, verdict[0], document, verdict[1])

        super().__init__(apply, label or f"Filter[{stage}]")


def _count_pair(rejection: Rejection):
    return (rejection.stage, rejection.reason), (1, rejection.num_bytes)


def _sum_pairs(values):
    documents = total_bytes = 0
    for count, size in values:
        documents += count
        total_bytes += size
    return documents, total_bytes


class ReportRejections(beam.PTransform):
    """Write ``_stats/rejections.json`` (counts, bytes) and ``_stats/rejected-samples.jsonl``."""

    def __init__(self, stats_dir: str, samples_per_reason: int = 20):
        super().__init__()
        self._stats_dir = stats_dir
        self._samples = samples_per_reason

    def expand(self, rejections):
        stats_dir = self._stats_dir
        counts = (
            rejections
            | "CountKey" >> beam.Map(_count_pair)
            | "SumPerReason" >> beam.CombinePerKey(_sum_pairs)
            | "AllCounts" >> beam.combiners.ToList()
            | "WriteCounts" >> beam.Map(_write_counts, stats_dir)
        )
        samples = (
            rejections
            | "SampleKey" >> beam.Map(lambda r: ((r.stage, r.reason), r))
            | "FirstBySource" >> beam.combiners.Top.SmallestPerKey(self._samples, key=lambda r: r.source)
            | "AllSamples" >> beam.combiners.ToList()
            | "WriteSamples" >> beam.Map(_write_samples, stats_dir)
        )
        return counts, samples


def _write_counts(pairs, stats_dir: str) -> None:
    table: dict[str, dict[str, dict[str, int]]] = {}
    for (stage, reason), (documents, size) in sorted(pairs):
        table.setdefault(stage, {})[reason] = {"documents": documents, "bytes": size}
    write_atomic(f"{stats_dir}/rejections.json", json.dumps(table, indent=1).encode())


def _write_samples(groups, stats_dir: str) -> None:
    lines = []
    for (stage, reason), rejections in sorted(groups, key=lambda g: g[0]):
        for r in rejections:
            lines.append(json.dumps({"stage": stage, "reason": reason, "source": r.source, "bytes": r.num_bytes,
                                     "detail": r.detail, "text": r.text_sample}, ensure_ascii=False))
    write_atomic(f"{stats_dir}/rejected-samples.jsonl", ("\n".join(lines) + "\n" if lines else "").encode())
