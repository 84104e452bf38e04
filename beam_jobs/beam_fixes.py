"""One fix to Apache Beam's S3 filesystem (2.60-2.77), applied when ``beam_jobs`` pipelines load.

Beam's ``S3FileSystem`` builds a new ``S3IO`` for every call (``open``, ``exists``, ``size``, each
match), and each ``S3IO`` builds a new boto3 client: about 0.15 s of CPU each (botocore loads and
validates its service model every time). A corpus of 10^6 source files on S3 is 10^6 opens on the
workers, so that is days of CPU spent making clients; measured here, 75 clients took 12.7 s of a 16 s
test build. boto3's low-level clients are thread-safe, and the client depends only on the S3 options,
so one client per distinct set of options serves every call of a process. Beam's own per-call state
(its download position) stays per call: only the boto3 client is shared.

``apply()`` is idempotent and does nothing when Beam's AWS support is not installed.
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


def apply() -> None:
    if _APPLIED:
        return
    try:
        from apache_beam.io.aws.clients.s3 import boto3_client
    except ImportError:  # Beam without its aws extra: no S3 filesystem to fix
        return
    if getattr(boto3_client, "boto3", None) is None:
        return
    boto3_client.boto3 = _Boto3
    _APPLIED.append("apache_beam S3 client: one boto3 client per set of S3 options")
