"""Task files: built-in sets, a user's sets in the four formats, and errors that name file and record."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from specialize.eval.scoring import Sample, score_samples, summarise
from specialize.eval.tasks import Task, load_task, parse_task_spec, split_task_list


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_humaneval_is_built_in_with_its_164_problems():
    task = load_task("humaneval")
    assert task.kind == "code" and len(task.problems) == 164
    first = task.problems[0]
    assert first.task_id == "HumanEval/0" and first.entry_point == "has_close_elements" and "def check" in first.tests
    assert task.format.base_prompt(first) == first.statement  # zero-shot: the problem's own prompt
    assert "markdown code block" in task.format.chat_message(first) and first.statement.strip() in task.format.chat_message(first)


def test_gsm8k_oracle_scores_everything_and_a_shuffled_control_almost_nothing(gsm8k_dir):
    task = load_task(f"gsm8k={gsm8k_dir / 'test.jsonl'}")
    assert task.format.name == "gsm8k" and len(task.problems) == 1319
    rows = [json.loads(line) for line in (gsm8k_dir / "test.jsonl").read_text().splitlines()]
    # The reference solutions as completions: the final answer is read from "#### N" -> "The answer is" style text.
    oracle = [Sample(p.task_id, row["answer"].replace("####", "The answer is")) for p, row in zip(task.problems, rows)]
    score_samples(task, oracle)
    result = summarise(task, oracle, "scored")
    assert result.pass_at_k["pass@1"] == 1.0 and result.statuses == {"passed": 1319}
    shuffled_answers = [p.reference for p in task.problems]
    random.Random(0).shuffle(shuffled_answers)
    control = [Sample(p.task_id, "", answer=a) for p, a in zip(task.problems, shuffled_answers)]
    score_samples(task, control)
    assert summarise(task, control, "scored").accuracy < 0.05


def test_base_prompts_are_few_shot(gsm8k_dir):
    gsm8k = load_task(f"gsm8k={gsm8k_dir / 'test.jsonl'}", limit=2)
    prompt = gsm8k.format.base_prompt(gsm8k.problems[0])
    assert prompt.count("Question:") == 9 and prompt.endswith(f"Question: {gsm8k.problems[0].statement}\nLet's think step by step\n")
    assert len(gsm8k.problems) == 2


def test_user_sets_in_each_format_are_recognised_by_their_fields(tmp_path):
    mbpp = _jsonl(tmp_path / "mine-mbpp.jsonl", [{"task_id": 7, "text": "Add one.", "code": "def f(x):\n    return x + 1",
                                                   "test_list": ["assert f(1) == 2", "assert f(-1) == 0"], "test_setup_code": ""}])
    task = load_task(f"mine={mbpp}")
    assert task.format.name == "mbpp" and task.problems[0].task_id == "7"
    prompt = task.format.base_prompt(task.problems[0])
    assert prompt.count("[BEGIN]") == 4 and prompt.count("[DONE]") == 3 and prompt.endswith("assert f(-1) == 0\n[BEGIN]\n")
    math = _jsonl(tmp_path / "m.jsonl", [{"problem": "What is $1/2$?", "solution": "It is $\\boxed{\\frac{1}{2}}$."}])
    task = load_task(f"halves={math}")
    assert task.format.name == "math" and task.problems[0].reference == "\\frac{1}{2}"
    assert task.format.base_prompt(task.problems[0]).count("Problem:") == 5
    named = load_task(f"halves:math={math}")
    assert named.format.name == "math"


def test_mbpp_reference_code_passes_as_the_oracle(tmp_path):
    mbpp = _jsonl(tmp_path / "mbpp.jsonl", [
        {"task_id": 1, "text": "Add one.", "code": "def f(x):\r\n    return x + 1", "test_list": ["assert f(1) == 2"]},
        {"task_id": 2, "text": "Square root.", "code": "def g(x):\n    return math.sqrt(x)", "test_setup_code": "import math",
         "test_list": ["assert g(4) == 2"]},
    ])
    task = load_task(f"mbpp={mbpp}")
    samples = [Sample(p.task_id, p.reference) for p in task.problems]
    score_samples(task, samples, timeout_s=10)
    assert [s.status for s in samples] == ["passed", "passed"], [s.error for s in samples]


@pytest.mark.parametrize("rows, message", [
    ([{"question": "q?"}], "cannot tell the task format"),
    ([{"question": "q?", "answer": None}], "record 0 has no answer field"),
    ([{"problem": "p", "solution": "no box"}], "record 0: solution has no \\\\boxed"),
    ([{"text": "t", "test_list": []}], "record 0 has an empty test_list"),
    ([{"question": "a", "answer": "#### 1", "id": 1}, {"question": "b", "answer": "#### 2", "id": 1}], "task_id '1' appears twice"),
])
def test_bad_user_sets_name_the_file_and_record(tmp_path, rows, message):
    path = _jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(ValueError, match=message) as err:
        load_task(f"bad={path}")
    assert "bad" in str(err.value)


def test_task_specs():
    assert parse_task_spec("GSM8K") == ("gsm8k", None, None)
    assert parse_task_spec("mine:math=/x/y.jsonl") == ("mine", "math", "/x/y.jsonl")
    assert split_task_list(["humaneval,gsm8k", "a=/p,q.jsonl"]) == ["humaneval", "gsm8k", "a=/p,q.jsonl"]
    with pytest.raises(ValueError, match="not a built-in task"):
        parse_task_spec("hellaswag")
    with pytest.raises(ValueError, match="unknown format"):
        parse_task_spec("x:arc=/p")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_task("x=/nonexistent/file.jsonl")


def test_offline_download_error_names_the_file_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECIALIZE_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from specialize.decontam.benchmarks import BenchmarkUnavailable

    with pytest.raises(BenchmarkUnavailable, match=r"pass --task mbpp=PATH.*full/test-00000-of-00001\.parquet"):
        load_task("mbpp")


def test_a_cached_download_is_read_offline(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.setenv("SPECIALIZE_CACHE", str(tmp_path))
    target = tmp_path / "benchmarks" / "gsm8k" / "main"
    target.mkdir(parents=True)
    pq.write_table(pa.table({"question": ["1+1?"], "answer": ["#### 2"]}), target / "test-00000-of-00001.parquet")
    task = load_task("gsm8k")
    assert isinstance(task, Task) and task.problems[0].reference == "2" and task.format.name == "gsm8k"


def test_pass_at_k_with_different_sample_counts_per_problem(tmp_path):
    path = _jsonl(tmp_path / "m.jsonl", [{"task_id": "a", "problem": "1+1?", "answer": "2"},
                                         {"task_id": "b", "problem": "2+2?", "answer": "4"}])
    task = load_task(f"m={path}")
    samples = [Sample("a", "", answer=x) for x in ("2", "3")] + [Sample("b", "", answer=x) for x in ("4", "4", "5")]
    score_samples(task, samples)
    result = summarise(task, samples, "scored")
    assert result.samples_per_problem == 2 and set(result.pass_at_k) == {"pass@1", "pass@2"}
    assert result.pass_at_k["pass@1"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert result.pass_at_k["pass@2"] == pytest.approx((1.0 + 1.0) / 2)
    assert result.accuracy == pytest.approx(3 / 5)
