"""The corpus build against a GCS emulator on 127.0.0.1 (``gcp-storage-emulator``) through Beam's own
``gs://`` filesystem and the google-cloud-storage client, pointed at it by ``STORAGE_EMULATOR_HOST``
(the client's documented switch; it then connects anonymously)."""

from __future__ import annotations

import json
import socket

import pytest

from beam_jobs.corpus_build import BuildSettings, run_build
from specialize.corpus.manifest import read_manifest, verify_shards
from specialize.tokenization.qwen import TINY_VOCAB_PATH

emulator = pytest.importorskip("gcp_storage_emulator.server", reason="gcp-storage-emulator is in the test extra")
pytest.importorskip("apache_beam.io.gcp.gcsfilesystem", reason="Beam's gs:// filesystem comes with specialize[gcp]")
pytest.importorskip("google.cloud.storage", reason="the GCS client comes with specialize[gcp]")

BUCKET = "corpus"


@pytest.fixture(scope="module")
def gcs():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    server = emulator.create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(autouse=True)
def pointed_at_the_emulator(gcs, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test")


def _upload(local, prefix: str) -> None:
    from apache_beam.io.filesystems import FileSystems

    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        with FileSystems.create(f"gs://{BUCKET}/{prefix}/{path.relative_to(local).as_posix()}") as handle:
            handle.write(path.read_bytes())


def _names(prefix: str) -> list[str]:
    from apache_beam.io.filesystems import FileSystems

    base = f"gs://{BUCKET}/{prefix}/"
    return sorted(m.path[len(base):] for m in FileSystems.match([base + "**"])[0].metadata_list)


def test_build_rebuild_and_cancelled_rebuild_on_gcs(planted, tmp_path, monkeypatch):
    import beam_jobs.corpus_build as corpus_build
    from beam_jobs.runner import pipeline_options, use_options_for_filesystems

    use_options_for_filesystems(pipeline_options(settings={"no_auth": True}))
    _upload(planted, "in")
    _upload(TINY_VOCAB_PATH.parent, "tok")
    out = f"gs://{BUCKET}/out"

    def build(num_shards: int) -> dict:
        return run_build(BuildSettings(domain="code", inputs=[f"gs://{BUCKET}/in/repo", f"gs://{BUCKET}/in/records"],
                                       output=out, tokenizer=f"gs://{BUCKET}/tok/{TINY_VOCAB_PATH.name}",
                                       num_shards=num_shards, remote_settings={"no_auth": True}))

    first = build(3)
    local = run_build(BuildSettings(domain="code", inputs=[str(planted / "repo"), str(planted / "records")],
                                    output=str(tmp_path / "local"), num_shards=3))
    assert first["totals"] == local["totals"] and first["totals"]["documents"] > 0
    assert [s["sha256"] for s in first["shards"]] != [] and verify_shards(out) == []
    second = build(1)
    names = _names("out")
    assert [n for n in names if n.startswith("shard-")] == [s["path"] for s in second["shards"]]
    assert {n.split("/")[1] for n in names if n.startswith("_stats/")} == {second["build_id"]}
    real_assemble = corpus_build.assemble_manifest
    monkeypatch.setattr(corpus_build, "assemble_manifest", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("cancelled")))
    with pytest.raises(RuntimeError, match="cancelled"):
        build(2)
    monkeypatch.setattr(corpus_build, "assemble_manifest", real_assemble)
    assert json.dumps(read_manifest(out), sort_keys=True) == json.dumps(second, sort_keys=True)
    assert verify_shards(out, strays=False) == []
    assert len([p for p in verify_shards(out) if "not listed" in p.problem]) == 2
