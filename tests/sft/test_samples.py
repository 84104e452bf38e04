"""The embedded SFT samples: math answers stated, code tasks verified by running them, stdlib pairs."""

from __future__ import annotations

import json
import random

import pytest

from specialize.sft.conversations import read_conversations
from specialize.sft.samples import TASKS, math_rows, stdlib_rows, task_rows, verify_task, write_embedded


def test_math_rows_state_the_computed_answer():
    rows = math_rows(40, seed=1)
    assert len(rows) == 40 and len({r["meta"]["kind"] for r in rows}) == 8
    for row in rows:
        user, assistant = row["messages"]
        assert user["role"] == "user" and assistant["role"] == "assistant"
        assert "The answer is" in assistant["content"]
        for part in row["meta"]["answer"].split(","):
            assert part.strip() in assistant["content"].rsplit("The answer is", 1)[1]
    assert math_rows(40, seed=1) == rows and math_rows(40, seed=2) != rows


def test_every_task_template_is_verified_by_running_it():
    rows = task_rows(2 * len(TASKS), seed=5)
    assert {r["meta"]["kind"] for r in rows} == {t.__name__[6:] for t in TASKS}
    for row in rows:
        answer = row["messages"][1]["content"]
        assert answer.startswith("```python\ndef ") and answer.endswith("```")


def test_a_wrong_solution_is_caught():
    name, _, source, reference, make_args = TASKS[0](random.Random(0))  # sum_multiples_of_k
    verify_task(name, source, reference, make_args, random.Random(1))
    broken = source.replace("range(limit)", "range(limit + 1)")
    with pytest.raises(AssertionError, match=f"task {name}"):
        verify_task(name, broken, reference, make_args, random.Random(1), trials=200)


def test_stdlib_pairs_from_a_planted_tree(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "shapes.py").write_text(
        'def area(width, height=1):\n    """Return the area of a width x height rectangle, in square units."""\n'
        '    product = width * height\n    return product\n\n'
        'def _private(x):\n    """A private helper that should never be offered as a task, ever."""\n    return x\n    pass\n\n'
        'def short(x):\n    """Too short."""\n    y = x\n    return y\n')
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "t.py").write_text(
        'def test_x(a):\n    """Tests are skipped: they are not library functions at all."""\n    b = a\n    return b\n')
    rows = stdlib_rows(10, root=str(tmp_path))
    assert len(rows) == 1
    user, assistant = rows[0]["messages"]
    assert user["content"].startswith("Write the Python function `area(width, height=1)` of the `pkg.shapes` module:")
    assert "Return the area" in user["content"]
    assert assistant["content"].startswith("```python\ndef area(width, height=1):") and "return product" in assistant["content"]


def test_written_sample_reads_back(tmp_path):
    path = write_embedded("math", tmp_path / "m.jsonl", count=12, seed=3)
    conversations, report = read_conversations([path])
    assert len(conversations) == 12 and not report.skipped
    assert json.loads(path.read_text().splitlines()[0])["meta"]["id"] == "gen-3-000000"
    with pytest.raises(ValueError, match="--domain 'poetry'"):
        write_embedded("poetry", tmp_path / "p.jsonl")
