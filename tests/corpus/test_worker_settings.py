"""Decisions made for the workers rather than the launcher: tokenizer threads, cache file names."""

from __future__ import annotations

import threading

import pytest
from typer.testing import CliRunner

from beam_jobs.runner import default_workers
from beam_jobs.shard_writing import _WriteShardFn
from specialize.cli import app
from specialize.tokenization import TokenizerSpec


@pytest.mark.parametrize("runner,expected", [("direct", max(1, default_workers() // 2)), ("dataflow", None)])
def test_tokenizer_threads_come_from_the_machine_that_tokenizes(monkeypatch, tmp_path, runner, expected):
    """Locally the launcher's cores are the workers'; remotely each worker counts its own at setup."""
    seen = {}

    def fake_run_build(settings):
        seen["threads"] = settings.tokenizer_threads
        raise SystemExit(0)

    monkeypatch.setattr("beam_jobs.corpus_build.run_build", fake_run_build)
    CliRunner().invoke(app, ["corpus", "build", "--domain", "code", "--runner", runner, "--workers", "2",
                             "--output", str(tmp_path / "o")])
    assert seen["threads"] == expected
    from specialize.corpus.profile import load_profile

    fn = _WriteShardFn(load_profile("code"), "code", TokenizerSpec(None), str(tmp_path / "o"), None, seen["threads"], None)
    fn.setup()
    assert fn._threads == (expected or default_workers())


def test_concurrent_tokenizer_fetches_do_not_share_a_temporary_file(monkeypatch, tmp_path):
    """Several bundle threads of one worker fetching the same remote tokenizer at once."""
    from apache_beam.io.filesystems import FileSystems

    from specialize.tokenization import qwen
    from specialize.tokenization.qwen import TINY_VOCAB_PATH

    monkeypatch.setattr("tempfile.gettempdir", lambda: str(tmp_path))
    data = TINY_VOCAB_PATH.read_bytes()
    monkeypatch.setattr(FileSystems, "exists", staticmethod(lambda url: url == "mem://t/qwen.tiktoken"))

    class Handle:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            barrier.wait()  # every thread holds its download before any writes
            return data

    monkeypatch.setattr(FileSystems, "open", staticmethod(lambda *a, **k: Handle()))
    barrier = threading.Barrier(6)
    errors, paths = [], []

    def fetch():
        try:
            paths.append(qwen._fetch_remote_tokenizer("mem://t/qwen.tiktoken"))
        except Exception as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=fetch) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(set(paths)) == 1 and paths[0].read_bytes() == data
    assert not [p for p in paths[0].parent.iterdir() if ".tmp" in p.name]
