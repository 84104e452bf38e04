"""The second read of a large record file: each shard's piece reads its own records, not the file
from its start (cut into k pieces, a dump used to be read about k/2 times over)."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from beam_jobs.corpus_build import BuildSettings, run_build
from beam_jobs.quality import QualityConfig
from specialize.corpus import sources
from specialize.corpus.document import Document
from specialize.corpus.profile import load_profile
from specialize.corpus.sources import InputFile, read_input_file
from specialize.corpus.streams import split_compression


def _jsonl(count: int) -> str:
    # lines of different lengths, an empty line and a CRLF line: offsets must count every byte
    rows = [json.dumps({"content": f"def f_{i}(x):\n    return x + {i}\n" * (1 + i % 4)}) for i in range(count)]
    rows[10] = ""
    rows[20] = rows[20] + "\r"
    return "\n".join(rows) + "\n"


def _item(path, kind="jsonl") -> InputFile:
    return InputFile(str(path), path.stat().st_size, kind, str(path.parent), compression=split_compression(str(path))[1])


class _CountingReads:
    """Wraps ``open_binary`` to count the bytes read from each handle."""

    def __init__(self, monkeypatch):
        self.bytes_read = 0
        original = sources.open_binary

        def counting(path):
            handle = original(path)
            read = handle.read

            def counted(*args):
                data = read(*args)
                self.bytes_read += len(data)
                return data

            handle.read = counted
            return handle

        monkeypatch.setattr(sources, "open_binary", counting)


def test_a_piece_of_a_plain_jsonl_file_starts_at_its_first_record(tmp_path, monkeypatch):
    path = tmp_path / "dump.jsonl"
    path.write_text(_jsonl(3000), newline="")
    profile = load_profile("code")
    everything = [d for d in read_input_file(_item(path), profile, "code") if isinstance(d, Document)]
    assert all(d.offset is not None for d in everything)
    with open(path, "rb") as handle:  # each offset is where its line starts
        data = handle.read()
    assert all(data[d.offset:].startswith(json.dumps({"content": d.text})[:20].encode()) for d in everything[:50])

    first, last = everything[2500], everything[2600]
    counter = _CountingReads(monkeypatch)
    piece = [d for d in read_input_file(_item(path), profile, "code", records=(first.record, last.record), offset=first.offset)
             if isinstance(d, Document)]
    assert [(d.source, d.text, d.offset) for d in piece] == [(d.source, d.text, d.offset) for d in everything[2500:2601]]
    assert counter.bytes_read < len(data) / 4, "the piece read the file from its start"


def test_a_compressed_jsonl_piece_reads_from_the_start_and_gets_the_same_records(tmp_path):
    plain, packed = tmp_path / "plain.jsonl", tmp_path / "packed.jsonl.gz"
    text = _jsonl(500)
    plain.write_text(text, newline="")
    packed.write_bytes(gzip.compress(text.encode()))
    profile = load_profile("code")
    packed_docs = [d for d in read_input_file(_item(packed), profile, "code") if isinstance(d, Document)]
    assert all(d.offset is None for d in packed_docs)  # a compressed stream cannot seek
    plain_docs = [d for d in read_input_file(_item(plain), profile, "code") if isinstance(d, Document)]
    piece = [d for d in read_input_file(_item(packed), profile, "code", records=(300, 400), offset=12345)
             if isinstance(d, Document)]
    assert [d.text for d in piece] == [d.text for d in plain_docs if 300 <= d.record <= 400]


def test_a_parquet_piece_reads_only_its_row_groups(tmp_path, monkeypatch):
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"content": [f"SELECT {i} FROM t;\n" for i in range(100)]}), path, row_group_size=10)
    asked = []
    original = pq.ParquetFile.iter_batches

    def recording(self, *args, **kwargs):
        asked.append(list(kwargs.get("row_groups") or []))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", recording)
    piece = [d for d in read_input_file(_item(path, "parquet"), load_profile("code"), "code", records=(55, 72))
             if isinstance(d, Document)]
    assert [d.record for d in piece] == list(range(55, 73))
    assert [d.text for d in piece] == [f"SELECT {i} FROM t;\n" for i in range(55, 73)]
    assert asked == [[5, 6, 7]]


@pytest.mark.parametrize("shards", [6])
def test_a_dump_cut_into_pieces_is_read_about_once_by_the_second_read(tmp_path, monkeypatch, shards):
    """End to end: one plain JSONL over several shards; both reads together read it about twice (a
    piece reads at most one chunk past its last record: 8 KiB here, 1 MiB in a build)."""
    from specialize.corpus import streams

    monkeypatch.setattr(streams, "CHUNK_BYTES", 8192)
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "dump.jsonl"
    path.write_text(_jsonl(3000), newline="")
    size = path.stat().st_size
    counter = _CountingReads(monkeypatch)
    manifest = run_build(BuildSettings(domain="code", inputs=[str(tmp_path / "in")], output=str(tmp_path / "out"),
                                       num_shards=shards, quality=QualityConfig.off(), workers=1))
    assert len(manifest["shards"]) == shards
    assert manifest["totals"]["documents"] == 2999  # one empty line
    assert counter.bytes_read < 2.5 * size, f"{counter.bytes_read} bytes read for a {size}-byte file"


def test_a_large_plain_jsonl_file_splits_into_runs_of_whole_lines(tmp_path):
    from specialize.corpus.sources import ReadPart, split_into_parts

    path = tmp_path / "dump.jsonl"
    path.write_text(_jsonl(3000), newline="")
    data = path.read_bytes()
    profile = load_profile("code")
    whole = [(d.source, d.text) for d in read_input_file(_item(path), profile, "code") if isinstance(d, Document)]
    for part_bytes in (1, 997, 40_000, len(data) // 2):
        parts = split_into_parts(_item(path), part_bytes)
        assert all(isinstance(p, ReadPart) for p in parts) and len(parts) > 1
        assert parts[0].first == 1 and parts[0].offset == 0 and parts[-1].last is None
        assert sum(p.size for p in parts) == len(data)
        for before, after in zip(parts, parts[1:]):
            assert after.first == before.last + 1 and after.offset == before.offset + before.size
            assert data[after.offset - 1 : after.offset] == b"\n"  # every part starts on a line
        assert max(p.size for p in parts) < part_bytes + 2000  # a part ends at the first line end past its size
        read = [(d.source, d.text) for p in parts
                for d in read_input_file(p.file, profile, "code", records=p.records, offset=p.offset) if isinstance(d, Document)]
        assert read == whole
    assert split_into_parts(_item(path), len(data)) == [_item(path)]  # small enough: whole
    assert split_into_parts(_item(path), len(data) - 1) == [_item(path)]  # the only cut is at the end
    (tmp_path / "d.jsonl.gz").write_bytes(gzip.compress(data))
    assert split_into_parts(_item(tmp_path / "d.jsonl.gz"), 1000) == [_item(tmp_path / "d.jsonl.gz")]


def test_a_large_parquet_file_splits_at_row_groups(tmp_path):
    from specialize.corpus.sources import ReadPart, split_into_parts

    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"content": [f"def p_{i}(x):\n    return x * {i}\n" * 3 for i in range(600)]}), path,
                   row_group_size=20, compression="none")
    profile = load_profile("code")
    parts = split_into_parts(_item(path, "parquet"), 30_000)
    assert len(parts) >= 3 and all(isinstance(p, ReadPart) and p.size is None for p in parts)
    assert parts[0].first == 0 and parts[-1].last == 599
    assert all(after.first == before.last + 1 and after.first % 20 == 0 for before, after in zip(parts, parts[1:]))
    read = [d.record for p in parts for d in read_input_file(p.file, profile, "code", records=p.records) if isinstance(d, Document)]
    assert read == list(range(600))
    assert split_into_parts(_item(path, "parquet"), 10 << 20) == [_item(path, "parquet")]


def test_parts_are_as_fine_as_the_workers_need():
    from beam_jobs.corpus_build import FIRST_READ_PART_BYTES, first_read_part_bytes

    one_dump = [InputFile("d.jsonl", 4 << 30, "jsonl", "i")]
    many = [InputFile(f"d{i}.jsonl", 1 << 30, "jsonl", "i") for i in range(100)]
    assert first_read_part_bytes(one_dump, 2) == (4 << 30) // 8  # eight parts: four per worker
    assert first_read_part_bytes(many, 2) > 1 << 30  # files already spread the work: none is split
    assert first_read_part_bytes([InputFile("s.jsonl", 1 << 20, "jsonl", "i")], 2) == FIRST_READ_PART_BYTES


def test_a_build_reading_a_dump_in_parts_writes_the_same_shards(tmp_path, monkeypatch):
    """Several local workers read one dump in parts (multi-threaded bundles here, so the test sees
    every call): the manifest, shards and removals equal the single-worker build's."""
    import beam_jobs.corpus_build as corpus_build
    from specialize.corpus.sources import ReadPart

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "dump.jsonl").write_text(_jsonl(3000) + _jsonl(50), newline="")  # 50 exact copies
    (tmp_path / "in" / "small.py").write_text("def g(y):\n    return y - 1\n" * 5)
    pq.write_table(pa.table({"content": [f"SELECT {i}, {i * 7} FROM t_{i % 13};\n" * 4 for i in range(900)]}),
                   tmp_path / "in" / "rows.parquet", row_group_size=50, compression="none")

    def build(name: str, **mode) -> dict:
        return run_build(BuildSettings(domain="code", inputs=[str(tmp_path / "in")], output=str(tmp_path / name),
                                       num_shards=3, **mode))

    single = build("single", workers=1)
    monkeypatch.setattr(corpus_build, "FIRST_READ_PART_BYTES", 30_000)
    read_parts = []
    original = corpus_build._ReadFn.process

    def recording(self, item):
        read_parts.append(item)
        return original(self, item)

    monkeypatch.setattr(corpus_build._ReadFn, "process", recording)
    parted = build("parted", workers=2, runner_mode="multi_threading")
    assert sum(isinstance(p, ReadPart) and p.file.kind == "jsonl" for p in read_parts) >= 5
    assert sum(isinstance(p, ReadPart) and p.file.kind == "parquet" for p in read_parts) >= 2
    assert [s["sha256"] for s in parted["shards"]] == [s["sha256"] for s in single["shards"]]
    assert parted["removed"] == single["removed"] and parted["totals"] == single["totals"]
    assert parted["stages"]["sharding"] == single["stages"]["sharding"]


def test_a_broken_dump_is_reported_once_though_read_twice(tmp_path, caplog):
    """A truncated .jsonl.gz keeps its records before the break; the second read (which writes them)
    meets the break again and stays quiet: one warning, one rejection."""
    (tmp_path / "in").mkdir()
    packed = gzip.compress(_jsonl(400).encode())
    (tmp_path / "in" / "cut.jsonl.gz").write_bytes(packed[: len(packed) * 2 // 3])
    with caplog.at_level("WARNING"):
        manifest = run_build(BuildSettings(domain="code", inputs=[str(tmp_path / "in")], output=str(tmp_path / "out"),
                                           quality=QualityConfig.off(), workers=1))
    assert manifest["totals"]["documents"] > 100
    assert manifest["removed"]["read"]["unreadable"]["documents"] == 1
    assert len([r for r in caplog.records if "is unreadable" in r.getMessage()]) == 1
