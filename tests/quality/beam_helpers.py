"""Run one stage on in-memory documents with FnApiRunner (never the default runner) and collect both outputs."""

from __future__ import annotations

import itertools

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

_RESULTS: dict[str, list] = {}  # in_memory FnApiRunner runs in this process, so a module dict collects
_COUNTER = itertools.count()


def _store(items, key: str) -> None:
    """Top-level so it pickles by reference (a closure would carry a copy of ``_RESULTS``)."""
    _RESULTS[key] = list(items)


def run_stage(stage: beam.PTransform, documents: list) -> tuple[list, list]:
    """``(kept, rejections)`` of ``documents | stage``; both sorted by source."""
    run = next(_COUNTER)
    kept_key, rejected_key = f"kept-{run}", f"rejected-{run}"
    _RESULTS[kept_key], _RESULTS[rejected_key] = [], []
    options = PipelineOptions(flags=[], direct_num_workers=1, direct_running_mode="in_memory")
    with beam.Pipeline(runner=FnApiRunner(), options=options) as pipeline:
        kept, rejected = pipeline | beam.Create(documents, reshuffle=False) | stage
        kept | "AllKept" >> beam.combiners.ToList() | "StoreKept" >> beam.Map(_store, kept_key)
        rejected | "AllRejected" >> beam.combiners.ToList() | "StoreRejected" >> beam.Map(_store, rejected_key)
    return (sorted(_RESULTS.pop(kept_key), key=lambda d: d.source),
            sorted(_RESULTS.pop(rejected_key), key=lambda r: r.source))
