"""Choosing where a pipeline runs. Local runs use FnApiRunner explicitly.

Beam's default runner (and ``DirectRunner``) first try to download the Prism runner binary, which
fails offline; FnApiRunner never does. ``workers > 1`` runs the SDK harness in that many processes
(``multi_processing``) so tokenization uses every core. Remote runners (Dataflow, Flink, Spark) get
their options from ``beam_jobs.runners.remote_runner_options``.
"""

from __future__ import annotations

import os

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

LOCAL_RUNNERS = ("direct", "fnapi")


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def create_pipeline(runner: str = "direct", workers: int = 1, remote_settings: dict | None = None) -> beam.Pipeline:
    runner = runner.lower()
    if runner in LOCAL_RUNNERS:
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        if workers > 1:
            options = PipelineOptions(
                flags=[], direct_num_workers=workers, direct_running_mode="multi_processing",
                default_sdk_harness_log_level="WARNING",
            )
        else:
            options = PipelineOptions(flags=[], direct_num_workers=1, direct_running_mode="in_memory")
        return beam.Pipeline(runner=FnApiRunner(), options=options)
    from beam_jobs.runners import remote_runner_options

    options = remote_runner_options(runner, dict(remote_settings or {}))
    if not isinstance(options, PipelineOptions):
        options = PipelineOptions(flags=options)
    return beam.Pipeline(options=options)
