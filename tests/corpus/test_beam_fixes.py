"""beam_jobs.beam_fixes: a finished stage's output buffers do not outlive its bundle on the local runner."""

from __future__ import annotations

import gc

import apache_beam as beam
from apache_beam.runners.portability.fn_api_runner import fn_runner
from apache_beam.testing.util import assert_that

import beam_jobs  # noqa: F401 - importing the package applies the fixes
from beam_jobs.beam_fixes import _APPLIED

BIG_OUTPUT_BYTES = 8 << 20


def _held_output_bytes(_) -> int:
    """Bytes held by every output stream of the SDK worker in this process, finished or running."""
    from apache_beam.runners.worker.bundle_processor import DataOutputOperation

    held = 0
    for item in gc.get_objects():
        if isinstance(item, DataOutputOperation) and getattr(item, "output_stream", None) is not None:
            held += item.output_stream.size()
    return held


def test_output_streams_are_released_when_their_bundle_finishes():
    assert any("output stream" in fix for fix in _APPLIED)
    with beam.Pipeline(runner=fn_runner.FnApiRunner()) as pipeline:
        held = (
            pipeline
            | beam.Create(range(64))
            | "Big" >> beam.Map(lambda i: (i % 4, b"x" * (BIG_OUTPUT_BYTES // 64)))  # 8 MB through one output stream
            | beam.GroupByKey()
            | "Count" >> beam.Map(lambda kv: sum(map(len, kv[1])))
            | beam.combiners.ToList()
            | "Held" >> beam.Map(_held_output_bytes)
        )
        assert_that(held, _assert_small)


def _assert_small(values) -> None:
    (held,) = values
    assert held < BIG_OUTPUT_BYTES // 8, f"{held} bytes of finished stages' output still held"
