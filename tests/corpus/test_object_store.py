"""The remote-filesystem code path (gs://, s3://) end to end, on a fake object store scheme.

``fakestore://`` is a Beam ``FileSystem`` registered by this module (Beam finds filesystems by
subclass) that keeps objects under a temporary folder and has no real directories, like GCS. The
corpus build must read its inputs, tokenizer and write shards, stats and manifest through Beam's
filesystems only, and give the same shards as a local build.
"""

from __future__ import annotations

import os
import shutil

import pytest
from apache_beam.io.filesystem import FileMetadata
from apache_beam.io.localfilesystem import LocalFileSystem

from beam_jobs.corpus_build import BuildSettings, run_build
from specialize.corpus.manifest import verify_shards
from specialize.tokenization.qwen import TINY_VOCAB_PATH, TokenizerSpec

PREFIX = "fakestore://"


class FakeObjectStore(LocalFileSystem):
    root: str | None = None

    @classmethod
    def scheme(cls):
        return "fakestore"

    def _local(self, url: str) -> str:
        assert FakeObjectStore.root, "fake object store not set up"
        return os.path.join(FakeObjectStore.root, url[len(PREFIX):])

    def _url(self, local: str) -> str:
        return PREFIX + os.path.relpath(local, FakeObjectStore.root)

    def join(self, basepath, *paths):
        return "/".join([basepath.rstrip("/"), *paths])

    def split(self, path):
        head, _, tail = path.rpartition("/")
        return head, tail

    def _url_dirname(self, url_or_path):
        return url_or_path.rpartition("/")[0]

    def has_dirs(self):
        return False

    def mkdirs(self, path):
        pass

    def create(self, path, *args, **kwargs):
        os.makedirs(os.path.dirname(self._local(path)), exist_ok=True)
        return super().create(self._local(path), *args, **kwargs)

    def open(self, path, *args, **kwargs):
        return super().open(self._local(path), *args, **kwargs)

    def exists(self, path):
        return os.path.isfile(self._local(path)) or os.path.isdir(self._local(path))

    def size(self, path):
        return super().size(self._local(path))

    def delete(self, paths):
        super().delete([self._local(p) for p in paths])

    def rename(self, source_file_names, destination_file_names):
        for destination in destination_file_names:
            os.makedirs(os.path.dirname(self._local(destination)), exist_ok=True)
        super().rename([self._local(p) for p in source_file_names], [self._local(p) for p in destination_file_names])

    def _list(self, dir_or_prefix):
        local = self._local(dir_or_prefix)
        base = local if os.path.isdir(local) else os.path.dirname(local)
        for directory, _, names in os.walk(base):
            for name in names:
                path = os.path.join(directory, name)
                if path.startswith(local):
                    yield FileMetadata(self._url(path), os.path.getsize(path), os.path.getmtime(path))


@pytest.fixture()
def store(tmp_path):
    FakeObjectStore.root = str(tmp_path / "store")
    os.makedirs(FakeObjectStore.root)
    yield tmp_path / "store"
    FakeObjectStore.root = None


def test_build_reads_and_writes_through_beam_filesystems(planted, store, tmp_path):
    shutil.copytree(planted, store / "bucket" / "in")
    os.makedirs(store / "bucket" / "tok")
    shutil.copy(TINY_VOCAB_PATH, store / "bucket" / "tok" / "tiny.tiktoken")
    remote = run_build(BuildSettings(domain="code", inputs=[PREFIX + "bucket/in/repo", PREFIX + "bucket/in/records"],
                                     output=PREFIX + "bucket/out", tokenizer=PREFIX + "bucket/tok/tiny.tiktoken",
                                     num_shards=2))
    local = run_build(BuildSettings(domain="code", inputs=[str(planted / "repo"), str(planted / "records")],
                                    output=str(tmp_path / "local"), num_shards=2))
    # Same documents, same tokens (shard bytes differ only through the source paths they record).
    assert remote["totals"] == local["totals"]
    assert remote["tokenizer"]["fingerprint"] == local["tokenizer"]["fingerprint"]
    assert sum(s["rows"] for s in remote["shards"]) == sum(s["rows"] for s in local["shards"]) > 0
    assert remote["removed"]["read"]["non_utf8"]["documents"] == 1
    assert verify_shards(PREFIX + "bucket/out") == []
    written = sorted(os.listdir(store / "bucket" / "out"))
    assert "manifest.json" in written and not [n for n in written if ".tmp-" in n]


def test_remote_tokenizer_is_fetched_once_into_a_local_cache(store):
    os.makedirs(store / "t")
    shutil.copy(TINY_VOCAB_PATH, store / "t" / "qwen.tiktoken")
    by_file = TokenizerSpec(PREFIX + "t/qwen.tiktoken").load()
    by_dir = TokenizerSpec(PREFIX + "t/").load()
    assert by_file.fingerprint == by_dir.fingerprint == TokenizerSpec(None).load().fingerprint
    with pytest.raises(FileNotFoundError, match="no tokenizer file"):
        TokenizerSpec(PREFIX + "empty/").load()


def test_object_store_inputs_are_listed_by_the_pipeline_not_the_launcher(planted, store, tmp_path, monkeypatch):
    """At 10^8 objects a launcher-side listing takes hours before submission: the launcher only asks
    for the first match of each input (a typo still fails at once); fileio.MatchAll lists the rest."""
    from apache_beam.io.filesystems import FileSystems

    import beam_jobs.corpus_build as corpus_build

    shutil.copytree(planted, store / "bucket" / "in")
    calls, started = [], []
    real_match, real_create = FileSystems.match, corpus_build.create_pipeline

    def match(patterns, limits=None):
        calls.append((bool(started), list(patterns), limits))
        return real_match(patterns, limits)

    def create(*args, **kwargs):
        started.append(True)
        return real_create(*args, **kwargs)

    monkeypatch.setattr(FileSystems, "match", staticmethod(match))
    monkeypatch.setattr(corpus_build, "create_pipeline", create)
    manifest = run_build(BuildSettings(domain="code", inputs=[PREFIX + "bucket/in/repo", PREFIX + "bucket/in/records"],
                                       output=str(tmp_path / "out"), num_shards=1))
    on_inputs = [(in_pipeline, limits) for in_pipeline, patterns, limits in calls if any("bucket/in" in p for p in patterns)]
    assert on_inputs and all(limits == [1] for in_pipeline, limits in on_inputs if not in_pipeline)
    assert any(in_pipeline and limits is None for in_pipeline, limits in on_inputs)  # MatchAll's listing
    assert [entry["files"] > 0 for entry in manifest["inputs"]] == [True, True]
    assert manifest["discovery"]["files"] == sum(entry["files"] for entry in manifest["inputs"])
    with pytest.raises(FileNotFoundError, match="bucket/in/nothing: no files match"):
        run_build(BuildSettings(domain="code", inputs=[PREFIX + "bucket/in/nothing"], output=str(tmp_path / "o2")))
