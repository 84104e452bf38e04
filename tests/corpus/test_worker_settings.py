"""Decisions made for the workers rather than the launcher: tokenizer threads, cache file names."""

from __future__ import annotations

import threading
from dataclasses import replace

import psutil
import pytest
from typer.testing import CliRunner

from beam_jobs.quality import QualityConfig
from beam_jobs.runner import auto_local_workers, default_workers, machine_memory_bytes
from beam_jobs.shard_writing import ShardLayout, _WriteShardFn, tokenizer_threads
from specialize.cli import app
from specialize.tokenization import TokenizerSpec


@pytest.mark.parametrize("runner", ["direct", "dataflow"])
def test_tokenizer_threads_are_decided_where_the_shard_is_written(monkeypatch, tmp_path, runner):
    """The launcher leaves the thread count to the shard task: a remote worker counts its own cores."""
    seen = {}

    def fake_run_build(settings):
        seen["settings"] = settings
        raise SystemExit(0)

    monkeypatch.setattr("beam_jobs.corpus_build.run_build", fake_run_build)
    CliRunner().invoke(app, ["corpus", "build", "--domain", "code", "--runner", runner, "--output", str(tmp_path / "o")])
    assert seen["settings"].tokenizer_threads is None and seen["settings"].workers is None
    from specialize.corpus.profile import load_profile

    fn = _WriteShardFn(load_profile("code"), "code", TokenizerSpec(None), str(tmp_path / "o"), None, None, None)
    fn.setup()
    assert fn.threads_for(ShardLayout(3, 1 << 20)) == default_workers()


def test_local_shard_tasks_share_the_cores_they_run_beside():
    """Two local workers writing two shards at once get half the cores each; writing one shard, the
    single task gets them all; a given count is kept."""
    assert tokenizer_threads(8, 2, 5) == 4
    assert tokenizer_threads(8, 2, 1) == 8
    assert tokenizer_threads(8, 1, 5) == 8
    assert tokenizer_threads(2, 4, 4) == 1
    assert tokenizer_threads(16, None, 4) == 16  # remote: one task per core, each on all of them
    assert _WriteShardFn(None, "code", TokenizerSpec(None), "o", None, 3, None, local_workers=2).threads_for(ShardLayout(1, 1)) == 3


def test_local_workers_follow_the_input_size():
    """One process for a small build (no second interpreter to start); one per 32 MiB up to the cores,
    while several processes fit in half the memory."""
    big = 1 << 40
    assert auto_local_workers(1 << 20, cores=8, memory_bytes=big) == 1
    assert auto_local_workers(40 << 20, cores=8, memory_bytes=big) == 1
    assert auto_local_workers(70 << 20, cores=8, memory_bytes=big) == 2
    assert auto_local_workers(10 << 30, cores=8, memory_bytes=big) == 8
    # Several processes grow ~3x faster with the input: a build they would not fit in half the
    # machine's memory runs in one process.
    assert auto_local_workers(1 << 30, cores=8, memory_bytes=24 << 30) == 8
    assert auto_local_workers(7 << 30, cores=8, memory_bytes=24 << 30) == 1
    assert 0 < machine_memory_bytes() <= psutil.virtual_memory().total
    assert auto_local_workers(None, cores=4) == 1  # object-store inputs: size unknown at launch
    assert QualityConfig().judges_text() and QualityConfig(decontaminate=None).judges_text()
    assert not QualityConfig.off().judges_text()  # tokenization only: its threads use the cores
    assert not replace(QualityConfig.off(), exact_dedup=True).judges_text()


def test_compressed_inputs_count_as_the_text_they_hold():
    from beam_jobs.corpus_build import estimated_text_bytes
    from specialize.corpus.sources import InputFile

    files = [InputFile("a.py", 1000, "source", "i"), InputFile("b.jsonl.gz", 1000, "jsonl", "i", compression="gzip"),
             InputFile("c.parquet", 1000, "parquet", "i")]
    assert estimated_text_bytes(files) == 1000 + 5000 + 5000


def test_a_build_records_the_workers_it_chose(tmp_path):
    """An auto build of a small tree runs in one process and says so in its manifest."""
    from beam_jobs.corpus_build import BuildSettings, run_build
    from beam_jobs.quality import QualityConfig

    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(3):
        (tree / f"m{i}.py").write_text(f"def f{i}(x):\n    return x * {i} + {i * 7}\n" * 20)
    manifest = run_build(BuildSettings(domain="code", inputs=[str(tree)], output=str(tmp_path / "out"), quality=QualityConfig.off()))
    assert manifest["settings"]["workers"] == 1 and manifest["totals"]["documents"] == 3


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
