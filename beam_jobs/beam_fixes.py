"""Two fixes to Apache Beam (2.60-2.77), applied when ``beam_jobs`` pipelines load.

**S3 clients.** Beam's ``S3FileSystem`` builds a new ``S3IO`` for every call (``open``, ``exists``, ``size``, each
match), and each ``S3IO`` builds a new boto3 client: about 0.15 s of CPU each (botocore loads and
validates its service model every time). A corpus of 10^6 source files on S3 is 10^6 opens on the
workers, so that is days of CPU spent making clients; measured here, 75 clients took 12.7 s of a 16 s
test build. boto3's low-level clients are thread-safe, and the client depends only on the S3 options,
so one client per distinct set of options serves every call of a process. Beam's own per-call state
(its download position) stays per call: only the boto3 client is shared.

**Finished output streams.** An SDK worker keeps the ``BundleProcessor`` of every stage it has run
(for reuse by the stage's next bundle, until 60 s idle), and each processor's ``DataOutputOperation``
keeps its last bundle's output stream, whose buffer is as large as the bundle's encoded output (up to
the 10 MB flush threshold, capacity rounded up to a power of two). That memory is malloc'd by Beam's
Cython stream, so Python's tracemalloc does not see it. A local build runs each stage as one bundle,
so every per-document PCollection (keys, plan entries, the pieces) left a buffer of a few bytes per
document behind until the pipeline ended: 23 MB of the 46 MB by which a 4x build's peak RSS exceeded
the 1x build's. The stream is closed and its data handed on by ``finish``; the fix drops the stream
there. The next bundle gets a new stream from ``process_bundle`` as before.

``apply()`` is idempotent; the S3 fix is skipped when Beam's AWS support is not installed.
"""

from __future__ import annotations

import threading

_APPLIED = []


class _CachingSession:
    """Stands in for ``boto3.session.Session()`` in Beam's S3 client: ``client(**settings)`` returns the
    process's client for those settings, made once."""

    _clients: dict = {}
    _lock = threading.Lock()

    def client(self, **settings):
        key = tuple(sorted((name, repr(value)) for name, value in settings.items()))
        client = self._clients.get(key)
        if client is None:
            with self._lock:
                client = self._clients.get(key)
                if client is None:
                    import boto3

                    client = boto3.session.Session().client(**settings)
                    self._clients[key] = client
        return client


class _Boto3:
    """The part of the ``boto3`` module Beam's S3 client uses: ``boto3.session.Session``."""

    class session:  # noqa: N801 - mirrors the module attribute Beam reads
        Session = _CachingSession


def _release_finished_output_streams() -> None:
    from apache_beam.runners.worker import bundle_processor

    operation = bundle_processor.DataOutputOperation
    finish = operation.finish

    def finish_and_release(self) -> None:
        finish(self)
        self.output_stream = None  # its data went to the runner in close(); the buffer is freed here

    finish_and_release.__wrapped__ = finish
    operation.finish = finish_and_release
    _APPLIED.append("apache_beam DataOutputOperation: a finished bundle's output stream is released")


def _share_s3_clients() -> None:
    try:
        from apache_beam.io.aws.clients.s3 import boto3_client
    except ImportError:  # Beam without its aws extra: no S3 filesystem to fix
        return
    if getattr(boto3_client, "boto3", None) is None:
        return
    boto3_client.boto3 = _Boto3
    _APPLIED.append("apache_beam S3 client: one boto3 client per set of S3 options")


def apply() -> None:
    if _APPLIED:
        return
    _release_finished_output_streams()
    _share_s3_clients()
