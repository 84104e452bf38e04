"""The Beam corpus build end to end on a planted tree (FnApiRunner, in process unless stated)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from beam_jobs.corpus_build import BuildSettings, run_build
from beam_jobs.quality import QualityConfig
from beam_jobs.shard_writing import stable_hash
from specialize.corpus.manifest import read_manifest, verify_shards
from specialize.corpus.shards import open_shard, shard_token_chunks
from specialize.corpus.sources import StrictModeError
from specialize.tokenization import load_tokenizer


def build(planted: Path, out: Path, profile: Path | None, **overrides) -> dict:
    overrides.setdefault("quality", QualityConfig.off())  # these tests specify reading; quality: tests/quality/
    settings = BuildSettings(domain="code", inputs=[str(planted / "repo"), str(planted / "records")],
                             output=str(out), profile=str(profile) if profile else None, seq_length=64, **overrides)
    return run_build(settings)


def shard_rows(out: Path, manifest: dict) -> list[dict]:
    rows = []
    for shard in manifest["shards"]:
        rows += open_shard(out / shard["path"]).to_pylist()
    return rows


def test_build_writes_shards_and_a_complete_manifest(planted, small_profile, tmp_path):
    out = tmp_path / "out"
    manifest = build(planted, out, small_profile, num_shards=3)
    tokenizer = load_tokenizer(None)
    rows = shard_rows(out, manifest)
    sources = {Path(r["source"].split("#")[0]).name + ("#" + r["source"].split("#")[1] if "#" in r["source"] else "") for r in rows}
    assert sources == {"add.py", "crlf.py", "poison.py", "main.c", "dump.jsonl#1", "dump.jsonl#6", "dump.jsonl.gz#1",
                       "rows.parquet#0", "rows.parquet#1"} | {s for s in sources if s.startswith("truncated.jsonl.gz#")}
    specials = set(tokenizer.special_tokens.values())
    for row in rows:
        tokens = row["tokens"]
        assert tokens[-1] == tokenizer.eod_id and not set(tokens[:-1]) & specials
        assert row["num_bytes"] == len(tokenizer.decode(tokens[:-1]).encode())
        assert row["domain"] == "code"
    poison = next(r for r in rows if r["source"].endswith("poison.py"))
    assert tokenizer.decode(poison["tokens"][:-1]) == "s = '<|endoftext|><|im_start|>system'\n"

    removed = manifest["removed"]
    assert removed["read"]["binary"]["documents"] == 2
    assert removed["read"]["non_utf8"]["documents"] == 1
    assert removed["read"]["empty"]["documents"] == 2
    assert removed["read"]["too_large"]["documents"] == 1
    assert removed["read"]["malformed_jsonl"]["documents"] == 1
    assert removed["read"]["missing_text_field"]["documents"] == 2
    assert removed["read"]["unknown_extension"]["documents"] == 1
    assert removed["discover"]["vcs_or_vendored_dir"]["documents"] == 3
    assert removed["read"]["non_utf8"]["examples"][0]["source"].endswith("latin1.py")

    totals = manifest["totals"]
    assert totals["documents"] == len(rows)
    assert totals["tokens"] == sum(len(r["tokens"]) for r in rows) == sum(s["tokens"] for s in manifest["shards"])
    assert totals["training_samples"] == totals["tokens"] // 65
    assert manifest["tokenizer"]["fingerprint"] == tokenizer.fingerprint
    assert set(manifest["languages"]) >= {"python", "c", "rust", "ruby", "sql"}
    assert manifest["languages"]["python"]["bytes_per_token"] > 1
    # deterministic shard assignment: a source file on the shard of its path's stable hash, a record
    # file's pieces on that shard and the next ones; rows in file order, then record order
    for shard in manifest["shards"]:
        table = open_shard(out / shard["path"])
        index = int(shard["path"].split("-")[1])
        places = [(n.split("#")[0], int(n.split("#")[1]) if "#" in n else 0) for n in table.column("source").to_pylist()]
        assert places == sorted(places)
        assert all(stable_hash(path) % 3 == index for path, record in places if record == 0)
    assert verify_shards(str(out)) == []
    assert not [n for n in os.listdir(out) if ".tmp-" in n]


def test_same_input_gives_the_same_shards(planted, small_profile, tmp_path):
    first = build(planted, tmp_path / "a", small_profile, num_shards=2)
    second = build(planted, tmp_path / "b", small_profile, num_shards=2)
    assert [s["sha256"] for s in first["shards"]] == [s["sha256"] for s in second["shards"]]


def test_rebuilding_into_the_same_directory_replaces_the_old_build(planted, small_profile, tmp_path):
    out = tmp_path / "out"
    build(planted, out, small_profile, num_shards=4)
    manifest = build(planted, out, small_profile, num_shards=1)
    assert sorted(n for n in os.listdir(out) if n.endswith(".arrow")) == [s["path"] for s in manifest["shards"]]
    assert os.listdir(out / "_stats") == [manifest["build_id"]]  # no statistics of the 4-shard build left
    assert verify_shards(str(out)) == []


def test_a_failed_rebuild_leaves_the_previous_build_readable(planted, small_profile, tmp_path, monkeypatch):
    """The previous build is never deleted before the new one has a manifest: a build that fails after
    its pipeline wrote shards leaves the old manifest and shards intact (training reads them; verify
    reports the failed build's files as strays), and the next successful build removes those."""
    import beam_jobs.corpus_build as corpus_build

    out = tmp_path / "out"
    before = build(planted, out, small_profile, num_shards=2)

    def cancelled(*args, **kwargs):
        raise RuntimeError("job cancelled")

    monkeypatch.setattr(corpus_build, "assemble_manifest", cancelled)
    with pytest.raises(RuntimeError, match="cancelled"):
        build(planted, out, small_profile, num_shards=3)
    monkeypatch.undo()
    assert read_manifest(str(out)) == before
    assert verify_shards(str(out), strays=False) == []
    strays = [p.shard for p in verify_shards(str(out))]
    assert strays and all(before["build_id"] not in name for name in strays)
    after = build(planted, out, small_profile, num_shards=1)
    assert sorted(n for n in os.listdir(out) if n.endswith(".arrow")) == [s["path"] for s in after["shards"]]
    assert os.listdir(out / "_stats") == [after["build_id"]]
    assert verify_shards(str(out)) == [] and after["totals"] == before["totals"]


def test_shards_are_memory_mapped_token_streams(planted, small_profile, tmp_path):
    out = tmp_path / "out"
    manifest = build(planted, out, small_profile, num_shards=1)
    table = open_shard(out / manifest["shards"][0]["path"])
    chunks = shard_token_chunks(table)
    assert sum(len(tokens) for tokens, _ in chunks) == manifest["totals"]["tokens"]
    assert sum(len(offsets) - 1 for _, offsets in chunks) == table.num_rows
    for tokens, offsets in chunks:
        assert tokens.dtype == np.uint32 and np.all(tokens[offsets[1:] - 1] == load_tokenizer(None).eod_id)


def test_strict_mode_fails_on_the_first_bad_input(planted, small_profile, tmp_path):
    with pytest.raises(StrictModeError, match="unknown_extension|binary"):
        build(planted, tmp_path / "out", small_profile, strict=True)
    clean = tmp_path / "clean"
    (clean / "repo").mkdir(parents=True)
    (clean / "records").mkdir()
    (clean / "repo" / "a.py").write_text("x = 1\n")
    (clean / "repo" / "bad.py").write_bytes(b"\xff\xfe")
    with pytest.raises(Exception, match="bad.py: non_utf8"):
        build(clean, tmp_path / "out2", None, strict=True)


def test_verify_detects_corruption_and_strays(planted, small_profile, tmp_path):
    out = tmp_path / "out"
    manifest = build(planted, out, small_profile, num_shards=2)
    shard = out / manifest["shards"][0]["path"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    (out / "shard-00009-of-00009.arrow").write_bytes(b"stray")
    problems = {p.shard: p.problem for p in verify_shards(str(out))}
    assert "sha256" in problems[manifest["shards"][0]["path"]]
    assert "not listed" in problems["shard-00009-of-00009.arrow"]
    assert verify_shards(str(out), tokenizer_fingerprint="sha256:other")[0].shard == "manifest.json"


def test_manifest_is_plain_json_with_a_format_tag(planted, small_profile, tmp_path):
    out = tmp_path / "out"
    build(planted, out, small_profile)
    raw = json.loads((out / "manifest.json").read_text())
    assert raw["format"] == "specialize-corpus-v1" and read_manifest(str(out))["domain"] == "code"


@pytest.mark.slow
def test_multi_process_build_matches_single_process(planted, small_profile, tmp_path):
    single = build(planted, tmp_path / "one", small_profile, num_shards=2, workers=1)
    multi = build(planted, tmp_path / "two", small_profile, num_shards=2, workers=2)
    assert [s["sha256"] for s in single["shards"]] == [s["sha256"] for s in multi["shards"]]
    assert single["removed"] == multi["removed"]


def test_multi_threaded_bundles_give_the_single_threaded_build(planted, tmp_path):
    """Beam's multi_threading mode runs bundles on 4 threads of one process, as a Dataflow worker does.
    With every stage on (near dedup's hasher included) and documents large enough to grow the hasher's
    shared tables while other bundles read them, the shards are those of the one-thread build."""
    big = planted / "big"
    big.mkdir()
    for i in range(12):
        rng = np.random.default_rng(i)
        body = "\n".join(f"def {name}_{j}(value):\n    return value * {j} + {int(rng.integers(1 << 30))}"
                         for j, name in enumerate(rng.choice(["scale", "shift", "project", "blend", "clip"], 1200 + 300 * i)))
        (big / f"module_{i}.py").write_text(body)
    quality = QualityConfig(decontaminate=[])
    settings = dict(num_shards=2, quality=quality)
    inputs = [str(planted / "repo"), str(planted / "records"), str(big)]

    def run(out: Path, **mode) -> dict:
        return run_build(BuildSettings(domain="code", inputs=inputs, output=str(out), seq_length=64, **settings, **mode))

    single = run(tmp_path / "one")
    threaded = run(tmp_path / "threads", workers=4, runner_mode="multi_threading")
    assert [s["sha256"] for s in single["shards"]] == [s["sha256"] for s in threaded["shards"]]
    assert single["removed"] == threaded["removed"]
    assert single["totals"]["documents"] > 12, single["removed"]
    assert single["stages"]["near_dedup"]["converged"]


@pytest.mark.parametrize("suffix", [".gz", ".zst"])
def test_shard_count_follows_the_text_not_the_compressed_size(tmp_path, suffix):
    """A compressed dump is cut into as many shards as the same dump uncompressed (sized by the bytes
    read, 3-6x the file), not by its size on disk."""
    import gzip
    import json as json_module

    import zstandard

    compress = gzip.compress if suffix == ".gz" else zstandard.ZstdCompressor().compress
    records = "".join(json_module.dumps({"content": f"def f_{i}(x):\n    return x + {i}\n" * 3}) + "\n" for i in range(3000))
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "dump.jsonl").write_text(records)
    (tmp_path / "packed").mkdir()
    (tmp_path / "packed" / f"dump.jsonl{suffix}").write_bytes(compress(records.encode()))
    assert (tmp_path / "packed" / f"dump.jsonl{suffix}").stat().st_size * 4 < len(records)

    def build_of(name: str) -> dict:
        return run_build(BuildSettings(domain="code", inputs=[str(tmp_path / name)], output=str(tmp_path / f"out-{name}"),
                                       seq_length=64, shard_text_bytes=40_000, quality=QualityConfig.off()))

    plain, packed = build_of("plain"), build_of("packed")
    expected = -(-len(records.encode()) // 40_000)
    assert plain["stages"]["sharding"]["num_shards"] == packed["stages"]["sharding"]["num_shards"] == expected
    assert packed["stages"]["sharding"]["bytes_read"] == len(records.encode())
    assert plain["totals"] == packed["totals"]
    assert {s["path"].split("-of-")[1][:5] for s in packed["shards"]} == {f"{expected:05d}"}
    # one dump, cut into pieces of consecutive records, one piece per shard: every shard is used, each
    # holds about a shard's text, and read in shard order the records come back in file order
    assert len(packed["shards"]) == expected
    assert max(s["text_bytes"] for s in packed["shards"]) <= 40_000
    out = tmp_path / "out-packed"
    per_shard = [[int(source.split("#")[1]) for source in open_shard(out / s["path"]).column("source").to_pylist()]
                 for s in packed["shards"]]
    assert [line for records in sorted(per_shard) for line in records] == list(range(1, 3001))


def test_no_document_crosses_a_shuffle(tmp_path, monkeypatch):
    """The bound on a build's memory: with every stage on (instructions too), documents are never
    moved through a shuffle or between fused stages (FnApiRunner holds those whole in memory); keys,
    signals and rejections are. Moving a PCollection serialises every element of it, so every
    document would be serialised; Beam's size sampling for metrics serialises only a sample of each
    PCollection (the first 10, then ever more sparsely), which is what this build may show."""
    from specialize.corpus.document import Document

    (tmp_path / "in").mkdir()
    count = 2000
    (tmp_path / "in" / "dump.jsonl").write_text("".join(
        json.dumps({"content": f"def scale_{i}(value):\n    return value * {i} + {i * 7919 % 1000}\n" * 3}) + "\n"
        for i in range(count)))
    chat = tmp_path / "chat.jsonl"
    chat.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"What is {i}+2?"},
                                                     {"role": "assistant", "content": f"{i}+2 is {i + 2}."}]}) + "\n"
                            for i in range(20)))
    serialised: set[str] = set()
    original = Document.__reduce_ex__

    def recording(self, protocol):
        serialised.add(self.source)
        return original(self, protocol)

    monkeypatch.setattr(Document, "__reduce_ex__", recording)
    __import__("pickle").dumps(Document("x", "guard", "code", "python"))
    assert serialised == {"guard"}  # the probe sees serialisation
    serialised.clear()
    manifest = run_build(BuildSettings(domain="code", inputs=[str(tmp_path / "in")], output=str(tmp_path / "out"),
                                       seq_length=64, num_shards=2, instructions=[str(chat)],
                                       quality=QualityConfig(decontaminate=["humaneval"])))
    assert manifest["totals"]["documents"] > count // 2
    assert manifest["discovery"]["instructions"]["documents"] == 20
    assert len(serialised) < count // 4, f"{len(serialised)} of {count} documents were serialised"


def test_an_input_that_changes_between_the_two_reads_is_an_error(tmp_path):
    from beam_jobs.shard_writing import ShardLayout, _pieces, _WriteShardFn
    from specialize.corpus.profile import load_profile
    from specialize.corpus.sources import discover_inputs, read_input_file
    from specialize.tokenization import TokenizerSpec

    root = tmp_path / "in"
    root.mkdir()
    dump = root / "dump.jsonl"
    dump.write_text("".join(json.dumps({"content": f"x = {i}\n"}) + "\n" for i in range(4)))
    profile = load_profile("code")
    (item,), _, _ = discover_inputs([str(root)], profile)
    entries = [(d.key(), None) for d in read_input_file(item, profile, "code")]
    dump.write_text("".join(json.dumps({"content": f"x = {i}\n"}) + "\n" for i in range(2)))  # truncated meanwhile
    layout = ShardLayout(1, 1 << 20)
    pieces = [piece for _, piece in _pieces((item.path, {"file": [item], "entries": entries}), layout, None)]
    fn = _WriteShardFn(profile, "code", TokenizerSpec(None), str(tmp_path / "out"), None, 1, None)
    fn.setup()
    with pytest.raises(RuntimeError, match="dump.jsonl: changed while the build ran: 2 document"):
        list(fn.process((0, pieces), layout))
    assert not list((tmp_path / "out").glob("*.arrow"))  # nothing half-written is left
