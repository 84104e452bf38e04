"""Choosing where a pipeline runs. Local runs use FnApiRunner explicitly.

Beam's default runner (and ``DirectRunner``) first try to download the Prism runner binary, which
fails offline; FnApiRunner never does. ``workers > 1`` runs the SDK harness in that many processes
(``multi_processing``) so tokenization uses every core, or, with ``mode="multi_threading"``, runs that
many bundles at once on threads of one process: what a Dataflow/Flink/Spark SDK worker does (Dataflow
runs up to hundreds of bundle threads per Python process), so the local build can show a DoFn or module
state that is not thread-safe. Remote runners (Dataflow, Flink, Spark) get their options from
``beam_jobs.runners.remote_runner_options``.
"""

from __future__ import annotations

import os

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

LOCAL_RUNNERS = ("direct", "fnapi")
RUNNING_MODES = ("auto", "in_memory", "multi_threading", "multi_processing")


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def local_running_mode(workers: int, mode: str = "auto") -> str:
    """FnApiRunner's ``direct_running_mode`` for ``workers`` (``auto``: processes when more than one)."""
    if mode not in RUNNING_MODES:
        raise ValueError(f"runner mode {mode!r}: expected one of {', '.join(RUNNING_MODES)}")
    if mode == "auto":
        return "multi_processing" if workers > 1 else "in_memory"
    return mode


def create_pipeline(runner: str = "direct", workers: int = 1, remote_settings: dict | None = None,
                    mode: str = "auto") -> beam.Pipeline:
    runner = runner.lower()
    if runner in LOCAL_RUNNERS:
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        running_mode = local_running_mode(workers, mode)
        options = PipelineOptions(
            flags=[], direct_num_workers=1 if running_mode == "in_memory" else workers,
            direct_running_mode=running_mode, default_sdk_harness_log_level="WARNING",
        )
        return beam.Pipeline(runner=FnApiRunner(), options=options)
    from beam_jobs.runners import remote_runner_options

    options = remote_runner_options(runner, dict(remote_settings or {}))
    if not isinstance(options, PipelineOptions):
        options = PipelineOptions(flags=options)
    return beam.Pipeline(options=options)
