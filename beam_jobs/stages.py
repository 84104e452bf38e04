"""The one mechanism every corpus stage shares: route kept documents on, dropped ones aside.

A stage is a ``PTransform`` from ``PCollection[Document]`` to ``(kept, rejected)``: ``kept`` is a
``PCollection[Document]``, ``rejected`` a ``PCollection[Rejection]``. Stage logic is a plain function in
``specialize/`` (testable without Beam); this module only wires it. All rejections of a build meet in
``ReportRejections``, which counts documents and bytes per (stage, reason) and keeps a few samples per
reason for ``specialize corpus inspect``. Counting from the data rather than from Beam metrics keeps
the figures exact on every runner (metrics of retried bundles are approximate on some).
"""

from __future__ import annotations

import bisect
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


class _PartialReport(beam.DoFn):
    """Rejections -> per (stage, reason) of this bundle: (documents, bytes, the ``samples`` smallest
    sources' rejections), emitted when the bundle ends. Fused into the stage that rejects, so what
    reaches the report is a few elements per reason and bundle: a Flatten of every rejection with its
    text sample (2,000 characters) used to be held whole by a local runner until the last stage
    finished, 10 MB for the 4x stdlib build's near duplicates alone."""

    def __init__(self, samples: int):
        self._samples = samples

    def start_bundle(self):
        self._partial: dict[tuple[str, str], list] = {}

    def process(self, rejection: Rejection):
        entry = self._partial.setdefault((rejection.stage, rejection.reason), [0, 0, []])
        entry[0] += 1
        entry[1] += rejection.num_bytes
        _keep_smallest(entry[2], [rejection], self._samples)

    def finish_bundle(self):
        for key, (documents, size, samples) in self._partial.items():
            yield beam.transforms.window.GlobalWindows.windowed_value((key, (documents, size, samples)))


def _sample_order(rejection: Rejection) -> tuple[str, str]:
    return rejection.source, rejection.detail


def _keep_smallest(kept: list, more: list, limit: int) -> None:
    """``kept`` (sorted by source) plus ``more``, cut to the ``limit`` smallest sources, in place."""
    for rejection in more:
        if len(kept) < limit or _sample_order(rejection) < _sample_order(kept[-1]):
            bisect.insort(kept, rejection, key=_sample_order)
            del kept[limit:]


def _merge_partials(partials, limit: int):
    documents = total_bytes = 0
    samples: list = []
    for count, size, some in partials:
        documents += count
        total_bytes += size
        _keep_smallest(samples, some, limit)
    return documents, total_bytes, samples


class ReportRejections(beam.PTransform):
    """Rejection PCollections (one per stage that rejects, or one) -> ``_stats/rejections.json``
    (documents and bytes per stage and reason) and ``_stats/rejected-samples.jsonl`` (the rejections
    with the ``samples_per_reason`` smallest sources per reason, with their text samples).

    Each branch is summed where it is produced (``_PartialReport``); only the partial sums meet."""

    def __init__(self, stats_dir: str, samples_per_reason: int = 20):
        super().__init__()
        self._stats_dir = stats_dir
        self._samples = samples_per_reason

    def expand(self, rejections):
        branches = tuple(rejections) if isinstance(rejections, (list, tuple)) else (rejections,)
        samples, stats_dir = self._samples, self._stats_dir
        partials = [branch | f"Partial{index}" >> beam.ParDo(_PartialReport(samples)) for index, branch in enumerate(branches)]
        return (
            partials
            | "AllPartials" >> beam.Flatten()
            | "PerReason" >> beam.CombinePerKey(_merge_partials, samples)
            | "AllReasons" >> beam.combiners.ToList()
            | "Write" >> beam.Map(_write_report, stats_dir)
        )


def _write_report(reasons, stats_dir: str) -> None:
    _write_counts([(key, (documents, size)) for key, (documents, size, _) in reasons], stats_dir)
    _write_samples([(key, samples) for key, (_, _, samples) in reasons], stats_dir)


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
