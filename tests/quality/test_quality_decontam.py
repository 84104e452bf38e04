"""Benchmark loading and the n-gram index: built-in HumanEval, user files, offline downloads."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from specialize.decontam import benchmarks
from specialize.decontam.benchmarks import BenchmarkItem, BenchmarkUnavailable, load_benchmark, parse_spec
from specialize.decontam.index import NgramIndex
from tests.quality.planted import humaneval_item


def test_humaneval_builtin_matches_prompt_and_solution_anywhere():
    index = NgramIndex(load_benchmark("humaneval"), n=10)
    assert index.summary() == {"humaneval": {"items": 164, "too_short": 0}}
    text = "# utilities\nimport os\n\n" + humaneval_item("HumanEval/3") + "\nprint('done')\n"
    assert index.check(text).matches == {"humaneval": ["HumanEval/3"]}
    assert index.check("def add(a, b):\n    return a + b\n" * 5) is None


def test_gsm8k_file_with_calculator_annotations(gsm8k_dir):
    index = NgramIndex(load_benchmark(f"gsm8k={gsm8k_dir / 'test.jsonl'}"))
    record = json.loads((gsm8k_dir / "test.jsonl").read_text().splitlines()[0])
    plain_answer = record["answer"].split("<<")[0]  # the first reasoning step without the <<...>> markup
    assert index.check("Worked example. " + record["question"]).matches == {"gsm8k": ["gsm8k/0"]}
    assert index.check(record["question"][:40]) is None  # shorter than 10 tokens
    assert index.check(record["question"].upper() + " " + plain_answer) is not None  # case-insensitive


def test_user_files_jsonl_and_parquet(tmp_path):
    rows = [{"task_id": 7, "text": "Write a function to reverse the words of a sentence given as a string.",
             "code": "def reverse_words(s):\n    return ' '.join(reversed(s.split()))"}]
    (tmp_path / "mbpp.jsonl").write_text(json.dumps(rows[0]) + "\n")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "mbpp.parquet")
    for name in ("mbpp.jsonl", "mbpp.parquet"):
        items = load_benchmark(f"MBPP={tmp_path / name}")
        assert items == [BenchmarkItem("mbpp", "7", rows[0]["text"] + "\n" + rows[0]["code"])]
    (tmp_path / "bad.jsonl").write_text('{"foo": 1}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl: record 0 has none of the text fields"):
        load_benchmark(f"x={tmp_path / 'bad.jsonl'}")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_benchmark(f"x={tmp_path / 'missing.jsonl'}")
    with pytest.raises(ValueError, match="pass unknownset=PATH"):
        load_benchmark("unknownset")
    assert parse_spec("GSM8K") == ("gsm8k", None)


def test_download_offline_error_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECIALIZE_CACHE", str(tmp_path))

    def offline(**kwargs):
        raise OSError("network is unreachable")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(BenchmarkUnavailable, match=r"mbpp: could not download .*Offline\? .*--decontaminate mbpp=PATH"):
        load_benchmark("mbpp")
    cached = tmp_path / "benchmarks" / "mbpp" / benchmarks.DOWNLOADS["mbpp"][1][0]
    cached.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{"task_id": 11, "text": "t " * 12, "code": "c"}]), cached)
    assert [i.item_id for i in load_benchmark("mbpp")] == ["11"]  # the cached copy, no network


def test_min_shared_ngrams_ignores_one_off_enumerations():
    items = load_benchmark("humaneval")
    generic = "# values: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, in order\n" * 3  # one 10-gram of HumanEval/78
    assert NgramIndex(items, min_shared=1).check(generic).matches == {"humaneval": ["HumanEval/78"]}
    strict = NgramIndex(items, min_shared=3)
    assert strict.check(generic) is None
    assert strict.check("x = 1\n" + humaneval_item("HumanEval/78")).matches == {"humaneval": ["HumanEval/78"]}


def test_index_pickles_without_its_presence_table_and_still_matches():
    import pickle

    item = load_benchmark("humaneval")[0]
    index = NgramIndex([item])
    assert index.check(item.text) is not None  # builds the table
    shipped = pickle.loads(pickle.dumps(index))
    assert shipped._presence is None and len(pickle.dumps(index)) < index.hashes.nbytes + index.owners.nbytes + 4096
    assert shipped.check("prefix text " + item.text).matches == index.check(item.text).matches
    assert shipped.check("an unrelated sentence with more than ten words in it, none of them from the item") is None
