"""The corpus build against a real S3 API server on 127.0.0.1 (moto in server mode), through Beam's own
``s3://`` filesystem and boto3, configured only by the run's options (``--runner-option s3_*``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from beam_jobs.corpus_build import BuildSettings, run_build
from beam_jobs.quality import QualityConfig
from beam_jobs.runner import MissingStoreSupport, pipeline_options, use_options_for_filesystems
from beam_jobs.runners import RunnerSettingsError
from specialize.corpus.manifest import read_manifest, verify_shards
from specialize.quality.model import VECTORIZER, QualityModel
from specialize.tokenization.qwen import TINY_VOCAB_PATH

moto_server = pytest.importorskip("moto.server", reason="moto[server] is in the test extra")
boto3 = pytest.importorskip("boto3", reason="boto3 comes with specialize[aws]")

BUCKET = "corpus"
CREDENTIALS = {"s3_access_key_id": "testing", "s3_secret_access_key": "testing", "s3_region_name": "us-east-1"}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                          region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    yield endpoint, client
    server.stop()


@pytest.fixture(autouse=True)
def no_ambient_credentials(monkeypatch):
    """Only the run's options may configure the client (no environment, no instance metadata lookups)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")


def _upload(client, local: Path, prefix: str) -> None:
    for directory, _, names in os.walk(local):
        for name in names:
            path = Path(directory) / name
            client.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(local).as_posix()}")


def _keys(client, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"][len(prefix):] for page in pages for item in page.get("Contents", []))


def test_build_from_and_to_s3_with_options_only(planted, s3, tmp_path):
    """Inputs, tokenizer, quality model and a decontamination set on the store; the shards and manifest
    written there. Nothing but the run's options tells Beam's S3 client where and who."""
    endpoint, client = s3
    _upload(client, planted, "in")
    client.upload_file(str(TINY_VOCAB_PATH), BUCKET, "tok/tiny.tiktoken")
    model = tmp_path / "quality.npz"
    QualityModel(np.zeros(VECTORIZER["n_features"], dtype=np.float32), 0.0).save(model)
    client.upload_file(str(model), BUCKET, "models/quality.npz")
    (tmp_path / "heldout.jsonl").write_text(json.dumps({"task_id": "t/0", "text": "def held_out(): return 42"}) + "\n")
    client.upload_file(str(tmp_path / "heldout.jsonl"), BUCKET, "bench/heldout.jsonl")
    settings = {"s3_endpoint_url": endpoint, **CREDENTIALS}
    quality = QualityConfig(quality_model=f"s3://{BUCKET}/models/quality.npz",
                            decontaminate=[f"heldout=s3://{BUCKET}/bench/heldout.jsonl"])
    remote = run_build(BuildSettings(
        domain="code", inputs=[f"s3://{BUCKET}/in/repo", f"s3://{BUCKET}/in/records"], output=f"s3://{BUCKET}/out",
        tokenizer=f"s3://{BUCKET}/tok/tiny.tiktoken", num_shards=2, remote_settings=settings, quality=quality))
    local = run_build(BuildSettings(domain="code", inputs=[str(planted / "repo"), str(planted / "records")],
                                    output=str(tmp_path / "local"), num_shards=2,
                                    quality=QualityConfig(quality_model=str(model), decontaminate=[f"heldout={tmp_path / 'heldout.jsonl'}"])))
    assert remote["totals"] == local["totals"] and remote["totals"]["documents"] > 0
    assert remote["stages"]["decontaminate"]["benchmarks"]["heldout"]["items"] == 1
    assert remote["removed"]["read"]["non_utf8"]["documents"] == 1
    use_options_for_filesystems(pipeline_options(settings=settings))  # the local build replaced them
    written = _keys(client, "out/")
    assert "manifest.json" in written and not [k for k in written if ".tmp-" in k]
    assert read_manifest(f"s3://{BUCKET}/out")["totals"] == remote["totals"]
    assert verify_shards(f"s3://{BUCKET}/out") == []


def test_one_boto3_client_serves_every_s3_call(planted, s3, tmp_path, monkeypatch):
    """Beam makes an S3IO per filesystem call and, unpatched, a boto3 client each (~0.15 s of CPU):
    beam_jobs.beam_fixes keeps one per set of options."""
    from beam_jobs.beam_fixes import _CachingSession

    endpoint, client = s3
    _upload(client, planted, "clients")
    made = []
    real_client = boto3.session.Session.client

    def counting(self, *args, **kwargs):
        made.append(kwargs.get("endpoint_url"))
        return real_client(self, *args, **kwargs)

    monkeypatch.setattr(_CachingSession, "_clients", {})
    monkeypatch.setattr(boto3.session.Session, "client", counting)
    manifest = run_build(BuildSettings(domain="code", inputs=[f"s3://{BUCKET}/clients/repo"], output=f"s3://{BUCKET}/clients-out",
                                       num_shards=2, remote_settings={"s3_endpoint_url": endpoint, **CREDENTIALS}))
    assert manifest["totals"]["documents"] > 0
    assert made == [endpoint]  # one client for the launcher and the (in-process) workers' every call


def test_a_local_run_refuses_settings_only_remote_runners_read(planted, tmp_path):
    with pytest.raises(RunnerSettingsError, match="max_num_workers apply to remote runners.*s3_endpoint_url"):
        run_build(BuildSettings(domain="code", inputs=[str(planted / "repo")], output=str(tmp_path / "o"),
                                remote_settings={"max_num_workers": 4}))


def test_a_store_without_its_client_names_the_extra(planted, tmp_path):
    """hdfs:// has no client here (Beam's hadoop extra is not a dependency): the error names the pip
    extra before any work. gs:// and s3:// work the same way without specialize[gcp] / [aws]."""
    try:
        import hdfs  # noqa: F401
        pytest.skip("the hadoop client is installed here")
    except ImportError:
        pass
    with pytest.raises(MissingStoreSupport, match=r"--input hdfs://nn/in: .*pip install 'specialize\[hadoop\]'"):
        run_build(BuildSettings(domain="code", inputs=["hdfs://nn/in"], output=str(tmp_path / "o")))


def test_rebuilds_on_s3_switch_only_when_complete(planted, s3, monkeypatch):
    """A store without directories: a rebuild with fewer shards leaves exactly its own files (no stale
    _stats/), and a cancelled rebuild leaves the previous build readable."""
    import beam_jobs.corpus_build as corpus_build

    endpoint, client = s3
    _upload(client, planted, "again")
    settings = {"s3_endpoint_url": endpoint, **CREDENTIALS}
    out = f"s3://{BUCKET}/rebuilt"

    def build(num_shards: int) -> dict:
        return run_build(BuildSettings(domain="code", inputs=[f"s3://{BUCKET}/again/repo"], output=out,
                                       num_shards=num_shards, remote_settings=settings))

    first = build(3)
    second = build(1)
    keys = _keys(client, "rebuilt/")
    assert [k for k in keys if k.startswith("shard-")] == [s["path"] for s in second["shards"]]
    assert {k.split("/")[1] for k in keys if k.startswith("_stats/")} == {second["build_id"]}
    assert second["totals"] == first["totals"]

    monkeypatch.setattr(corpus_build, "assemble_manifest", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("cancelled")))
    with pytest.raises(RuntimeError, match="cancelled"):
        build(2)
    monkeypatch.undo()
    assert read_manifest(out) == second
    assert verify_shards(out, strays=False) == []
    assert len([p for p in verify_shards(out) if "not listed" in p.problem]) == 2


def test_pieces_of_a_dump_on_s3_seek_to_their_records(s3, tmp_path, monkeypatch):
    """One JSONL dump on the store cut into pieces over 4 shards: each piece seeks Beam's S3 reader to
    its first record's byte offset, and the shards equal those built from the same file on disk."""
    from specialize.corpus import sources, streams

    endpoint, client = s3
    monkeypatch.setattr(streams, "CHUNK_BYTES", 4096)
    read_from_store = []
    opened = sources.open_binary

    def counting(path):
        handle = opened(path)
        if path.startswith("s3://"):
            read = handle.read
            handle.read = lambda *args: read_from_store.append(len(data := read(*args))) or data
        return handle

    monkeypatch.setattr(sources, "open_binary", counting)
    (tmp_path / "dump").mkdir()
    lines = [json.dumps({"content": f"def f_{i}(x):\n    return x * {i}\n" * (1 + i % 3)}) for i in range(1200)]
    (tmp_path / "dump" / "part.jsonl").write_text("\n".join(lines) + "\n")
    _upload(client, tmp_path / "dump", "dump")
    common = {"num_shards": 4, "quality": QualityConfig.off()}
    remote = run_build(BuildSettings(domain="code", inputs=[f"s3://{BUCKET}/dump"], output=str(tmp_path / "from-s3"),
                                     remote_settings={"s3_endpoint_url": endpoint, **CREDENTIALS}, **common))
    local = run_build(BuildSettings(domain="code", inputs=[str(tmp_path / "dump")], output=str(tmp_path / "from-disk"), **common))
    assert len(remote["shards"]) == 4 and remote["totals"] == local["totals"]
    size = (tmp_path / "dump" / "part.jsonl").stat().st_size
    assert sum(read_from_store) < 2.5 * size, "pieces read the object from its start"  # both reads: ~2x
    # the same pieces; which shard takes the first one follows a hash of the file's path, which differs
    assert sorted(s["rows"] for s in remote["shards"]) == sorted(s["rows"] for s in local["shards"])
    assert sorted(s["tokens"] for s in remote["shards"]) == sorted(s["tokens"] for s in local["shards"])
