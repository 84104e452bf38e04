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
import psutil
from apache_beam.options.pipeline_options import PipelineOptions

from specialize.corpus import outputs

LOCAL_RUNNERS = ("direct", "fnapi")
RUNNING_MODES = ("auto", "in_memory", "multi_threading", "multi_processing")


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


#: Input per local SDK worker process when the build chooses how many to start. A second process costs
#: about 2 s (it imports Beam and the stages; every stage's data then crosses gRPC) and saves half of
#: the per-document work. Measured on 2 cores, default code build: 6 MB 3.0 s -> 5.0 s with two workers,
#: 17 MB 5.7 s -> 7.1 s, 32 MB 9.9 s -> 9.1 s, 127 MB 27.5 s -> 18.8 s. So small builds (the tests,
#: the demo) stay in one process. A build without per-document stages (``--no-quality``) stays in one
#: too: its work is tokenization, whose threads already use every core (134 MB: 11.9 s in one process,
#: 13.5 s in two).
LOCAL_BYTES_PER_WORKER = 32 << 20


#: Peak RSS per byte of input of a build in several local worker processes, kept conservative: the
#: process tree grew 0.3 MB per MB of text with two workers against 0.1 MB per MB in one (gRPC data
#: channels and per-process copies; ``benchmarks/corpus_scale.py --workers 2``: 0.69 -> 0.72 GB for
#: 32 -> 128 MB; 1.5 MB per MB before Beam's finished output streams were released, the shard plan
#: spilled and one malloc arena used, 5.1 before dedup signals were packed). Each process holds its own copies, so a machine that
#: starts 8 of them grows faster than two did.
MULTI_PROCESS_RSS_PER_BYTE = 2


def auto_local_workers(input_bytes: int | None, cores: int | None = None, memory_bytes: int | None = None) -> int:
    """How many local worker processes a build of ``input_bytes`` starts: one per 32 MiB of input, at
    most one per core, while the several-process build is expected to fit in half of this machine's
    memory; beyond that one process, whose memory grows about 3x slower, so a larger build still fits.
    ``None`` (object-store inputs: listed only once the pipeline runs, so their size is unknown here):
    one; ``--workers`` sets more."""
    cores = cores or default_workers()
    if input_bytes is None:
        return 1
    memory_bytes = memory_bytes or machine_memory_bytes()
    if input_bytes * MULTI_PROCESS_RSS_PER_BYTE > memory_bytes // 2:
        return 1
    return max(1, min(cores, input_bytes // LOCAL_BYTES_PER_WORKER))


def machine_memory_bytes() -> int:
    """This machine's memory, or the container's limit when lower (psutil reports the host's)."""
    total = psutil.virtual_memory().total
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(limit_file) as handle:
                text = handle.read().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def local_running_mode(workers: int, mode: str = "auto") -> str:
    """FnApiRunner's ``direct_running_mode`` for ``workers`` (``auto``: processes when more than one)."""
    if mode not in RUNNING_MODES:
        raise ValueError(f"runner mode {mode!r}: expected one of {', '.join(RUNNING_MODES)}")
    if mode == "auto":
        return "multi_processing" if workers > 1 else "in_memory"
    return mode


def pipeline_options(runner: str = "direct", workers: int = 1, settings: dict | None = None,
                     mode: str = "auto") -> PipelineOptions:
    """The run's options: the local runner's (plus object-store settings) or a remote runner's."""
    runner = runner.lower()
    if runner in LOCAL_RUNNERS:
        from beam_jobs.runners import storage_flags

        running_mode = local_running_mode(workers, mode)
        return PipelineOptions(
            flags=storage_flags(settings or {}), direct_num_workers=1 if running_mode == "in_memory" else workers,
            direct_running_mode=running_mode, default_sdk_harness_log_level="WARNING",
        )
    from beam_jobs.runners import remote_runner_options

    options = remote_runner_options(runner, dict(settings or {}))
    return options if isinstance(options, PipelineOptions) else PipelineOptions(flags=options)


def use_options_for_filesystems(options: PipelineOptions) -> None:
    """Make Beam's filesystems in this process (the launcher) build their clients from ``options``.

    Beam hands options to its filesystems only in ``Pipeline.__init__``; the launcher lists inputs,
    loads the tokenizer and prepares the output before that, so without this an s3:// client has no
    endpoint or credentials ("Must provide one of client or options").
    """
    from apache_beam.io.filesystems import FileSystems

    FileSystems.set_options(options)


#: The package extra that brings each object store's client (Beam's own extras underneath).
STORE_EXTRAS = {"gs": "gcp", "s3": "aws", "azfs": "azure", "hdfs": "hadoop"}


class MissingStoreSupport(RuntimeError):
    """A path's object store has no client installed here (the message names the pip extra)."""


def check_filesystems(paths: dict[str, str]) -> None:
    """Fail before any work when a ``gs://``/``s3://``... path has no Beam filesystem in this install.

    ``paths``: what the user gave (``--input``, ``--output``...) -> the path. Beam's own error names
    ``apache-beam[gcp]``; the extra that installs it with a matching Beam for specialize is ``specialize[gcp]``.
    """
    from apache_beam.io.filesystems import FileSystems

    for name, path in paths.items():
        if not outputs.is_remote(str(path)):
            continue
        try:
            FileSystems.get_filesystem(str(path))
        except Exception as err:  # noqa: BLE001 - Beam raises ValueError, or BeamIOError wrapping an ImportError
            scheme = str(path).split("://", 1)[0]
            extra = STORE_EXTRAS.get(scheme)
            hint = (f"pip install 'specialize[{extra}]' (Beam's {scheme}:// client)" if extra
                    else f"Beam has no filesystem for {scheme}:// (known: {', '.join(s + '://' for s in STORE_EXTRAS)})")
            where = name if str(path) in name else f"{name} {path}"
            raise MissingStoreSupport(f"{where}: cannot open {scheme}:// paths in this install: {hint}") from err


def create_pipeline(runner: str = "direct", workers: int = 1, remote_settings: dict | None = None,
                    mode: str = "auto", options: PipelineOptions | None = None) -> beam.Pipeline:
    runner = runner.lower()
    options = options or pipeline_options(runner, workers, remote_settings, mode)
    if runner in LOCAL_RUNNERS:
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return beam.Pipeline(runner=FnApiRunner(), options=options)
    return beam.Pipeline(options=options)
