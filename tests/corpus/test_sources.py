"""Reading inputs without Beam: every bad-input reason, normalisation, records and formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specialize.corpus.document import Document, Rejection
from specialize.corpus.normalize import NormalizationError, decode_and_normalize
from specialize.corpus.profile import load_profile
from specialize.corpus.sources import InputFile, discover_inputs, read_input_file


def read_all(root: Path, profile):
    files, rejected, pruned = discover_inputs([str(root)], profile)
    documents: list[Document] = []
    rejected = list(rejected)
    for item in files:
        for result in read_input_file(item, profile, "code"):
            (rejected if isinstance(result, Rejection) else documents).append(result)
    return documents, rejected, pruned


def reasons(rejected):
    table = {}
    for r in rejected:
        table.setdefault(r.reason, set()).add(Path(r.source.split("#")[0]).name + ("#" + r.source.split("#")[1] if "#" in r.source else ""))
    return table


def test_every_bad_input_is_counted_under_its_reason(planted, small_profile):
    documents, rejected, pruned = read_all(planted, load_profile("code", small_profile))
    table = reasons(rejected)
    assert table["binary"] == {"image.png", "blob.py"}
    assert table["non_utf8"] == {"latin1.py"}
    assert table["empty"] == {"empty.py", "blank.py"}
    assert table["too_large"] == {"big.py"}
    assert table["unknown_extension"] == {"notes.unknownext"}
    assert table["malformed_jsonl"] == {"dump.jsonl#2"}
    assert table["missing_text_field"] == {"dump.jsonl#3", "nocolumn.parquet"}
    assert table["malformed_record"] == {"dump.jsonl#4"}
    assert table["unreadable"] == {"corrupt.parquet", next(iter(table["unreadable"] - {"corrupt.parquet"}))}
    assert any(s.startswith("truncated.jsonl.gz#") for s in table["unreadable"])
    assert sorted(Path(d).name for d in pruned["vcs_or_vendored_dir"]) == [".git", "__pycache__", "node_modules"]
    assert all("hidden" not in d.source for d in documents)
    for r in rejected:
        assert r.detail, r


def test_good_documents_and_their_languages(planted, small_profile):
    documents, _, _ = read_all(planted, load_profile("code", small_profile))
    by_name = {Path(d.source.split("#")[0]).name + ("#" + d.source.split("#")[1] if "#" in d.source else ""): d for d in documents}
    assert by_name["add.py"].language == "python"
    assert by_name["main.c"].language == "c"
    assert by_name["dump.jsonl#1"].language == "python"  # from the lang field
    assert by_name["dump.jsonl#6"].language == "rust"  # from the path field's extension
    assert by_name["dump.jsonl.gz#1"].language == "ruby"
    assert by_name["rows.parquet#0"].text == "SELECT 1;\n" and by_name["rows.parquet#1"].language == "sql"
    assert by_name["crlf.py"].text == "x = 1\ny = 2\n"  # BOM dropped, CRLF -> LF
    truncated = [d for d in documents if "truncated" in d.source]
    assert truncated, "records before the break of a truncated gzip are kept"


def test_unreadable_file_is_a_rejection_not_a_crash(tmp_path):
    profile = load_profile("code")
    missing = InputFile(str(tmp_path / "gone.py"), 10, "source", str(tmp_path), "python")
    (result,) = list(read_input_file(missing, profile, "code"))
    assert isinstance(result, Rejection) and result.reason == "unreadable"
    assert "gone.py" in result.source


def test_missing_input_path_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover_inputs([str(tmp_path / "typo")], load_profile("code"))


def test_math_profile_builds_text_from_question_answer_records(tmp_path, gsm8k_dir):
    profile = load_profile("math")
    item = InputFile(str(gsm8k_dir / "test.jsonl"), (gsm8k_dir / "test.jsonl").stat().st_size, "jsonl", "gsm8k")
    documents = [d for d in read_input_file(item, profile, "math") if isinstance(d, Document)]
    assert len(documents) == 1319
    assert documents[0].text.startswith("Problem: ") and "####" in documents[0].text
    assert documents[0].language == "math"


def test_normalisation_is_strict_utf8():
    assert decode_and_normalize("a\r\nb\rc\n".encode()) == "a\nb\nc\n"
    with pytest.raises(NormalizationError, match="offset 1"):
        decode_and_normalize(b"a\xffb")


def test_unknown_domain_and_bad_profile(tmp_path):
    with pytest.raises(ValueError, match="unknown domain"):
        load_profile("poetry")
    bad = tmp_path / "p.yaml"
    bad.write_text("extensions: [1, 2\n")
    with pytest.raises(ValueError, match="p.yaml"):
        load_profile("code", bad)


def _compressors():
    import bz2
    import gzip
    import lzma

    import zstandard

    return {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress, ".zst": zstandard.ZstdCompressor().compress}


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz", ".zst"])
def test_compressed_record_and_source_files_are_read(tmp_path, suffix):
    """JSONL dumps and source files in every compression Beam detects (zstd dumps are common on the
    Hub): the same documents as the plain files, with the name as source; a cut stream keeps the records
    before the cut and reports the rest as lost."""
    compress = _compressors()[suffix]
    records = "".join(json.dumps({"content": f"x_{i} = {i}\n", "path": f"m{i}.py"}) + "\n" for i in range(300))
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "dump.jsonl").write_text(records)
    (tmp_path / "plain" / "tool.py").write_text("def tool():\n    return 1\n")
    (tmp_path / "packed").mkdir()
    (tmp_path / "packed" / f"dump.jsonl{suffix}").write_bytes(compress(records.encode()))
    (tmp_path / "packed" / f"tool.py{suffix}").write_bytes(compress(b"def tool():\n    return 1\n"))
    whole = compress(records.encode())
    (tmp_path / "packed" / f"cut.jsonl{suffix}").write_bytes(whole[: len(whole) * 2 // 3])
    profile = load_profile("code")
    plain, plain_rejected, _ = read_all(tmp_path / "plain", profile)
    packed, packed_rejected, _ = read_all(tmp_path / "packed", profile)
    assert not plain_rejected
    texts = sorted(d.text for d in packed if "cut" not in d.source)
    assert texts == sorted(d.text for d in plain) and len(texts) == 301
    assert next(d for d in packed if "tool.py" in d.source).language == "python"
    cut = [d for d in packed if "cut" in d.source]
    assert [r.reason for r in packed_rejected] == ["unreadable"]
    assert f"records after line {len(cut)} lost" in packed_rejected[0].detail
    assert [d.text for d in cut] == [f"x_{i} = {i}\n" for i in range(len(cut))]  # every record before the cut


def test_concatenated_gzip_members_are_read_through(tmp_path):
    import gzip

    (tmp_path / "two.jsonl.gz").write_bytes(gzip.compress(b'{"content": "a = 1\\n"}\n') + gzip.compress(b'{"content": "b = 2\\n"}\n'))
    documents, rejected, _ = read_all(tmp_path, load_profile("code"))
    assert [d.text for d in documents] == ["a = 1\n", "b = 2\n"] and not rejected


def test_a_record_file_is_streamed_not_read_whole(tmp_path, monkeypatch):
    """Memory per file is one read chunk and one record: the reader never asks for the whole file."""
    from specialize.corpus import streams

    (tmp_path / "big.jsonl").write_text("".join(json.dumps({"content": f"v = {i}\n"}) + "\n" for i in range(20_000)))
    reads: list[int] = []
    real_open = streams.open_binary

    def counting_open(path):
        handle = real_open(path)
        original = handle.read

        def read(size=-1):
            reads.append(size)
            return original(size)

        handle.read = read
        return handle

    monkeypatch.setattr(streams, "open_binary", counting_open)
    monkeypatch.setattr("specialize.corpus.sources.open_binary", counting_open)
    monkeypatch.setattr(streams, "CHUNK_BYTES", 4096)
    monkeypatch.setattr(streams.decompressed_chunks, "__defaults__", (4096,))
    documents, rejected, _ = read_all(tmp_path, load_profile("code"))
    assert len(documents) == 20_000 and not rejected
    assert reads and all(0 < size <= 4096 for size in reads) and len(reads) > 50
