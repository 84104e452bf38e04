"""Final-answer extraction, math equivalence, code extraction and pass@k, against hand-worked cases."""

from __future__ import annotations

import math

import pytest

from specialize.eval.answers import equivalent, extract_answer, gsm8k_reference, last_boxed
from specialize.eval.code import extract_code, humaneval_program, mbpp_program, truncate_at_stops
from specialize.eval.passk import pass_at_k, reported_ks


@pytest.mark.parametrize("text, expected", [
    ("so $x = \\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
    ("first \\boxed{3} then \\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
    ("nested \\boxed{\\sqrt{\\frac{a}{b}}} end", "\\sqrt{\\frac{a}{b}}"),
    ("cut off \\boxed{\\frac{1}{", None),
    ("\\fbox{42}", "42"),
    ("no box", None),
])
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


@pytest.mark.parametrize("completion, gsm8k, expected", [
    ("3 + 2 = 5. The answer is 5.\n\nQuestion: next", True, "5"),
    ("She pays $1,250 in total. The answer is $1,250.", True, "1250"),
    ("Final Answer: The final answer is $[2,5)$. I hope it is correct.", False, "[2,5)"),
    ("We get 12 apples and then 7 more", True, "7"),
    ("We get 12 apples and then 7 more", False, None),
    ("so the result is \\boxed{18}. The answer is 17.", True, "18"),  # the box wins, as in Qwen2.5-Math's parser
    ("", True, None),
])
def test_extract_answer(completion, gsm8k, expected):
    assert extract_answer(completion, allow_last_number=gsm8k) == expected


@pytest.mark.parametrize("predicted, reference, same", [
    ("0.5", "\\frac{1}{2}", True),
    ("\\sqrt{4}", "2", True),
    ("1,234", "1234", True),
    ("18.0", "18", True),
    ("[2,5)", "[2,5)", True),
    ("(2,5)", "[2,5)", False),
    ("\\{2, 1\\}", "\\{1, 2\\}", True),
    ("-\\frac{2}{3}", "-\\frac{2}{3}", True),
    ("\\frac{2}{3}", "-\\frac{2}{3}", False),
    ("17", "18", False),
    (None, "18", False),
    ("", "18", False),
])
def test_equivalent(predicted, reference, same):
    assert equivalent(predicted, reference) is same


def test_gsm8k_reference():
    assert gsm8k_reference("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs.\n#### 1,018") == "1018"
    with pytest.raises(ValueError, match="####"):
        gsm8k_reference("no final line")


def test_chat_code_block_defining_the_entry_point_is_a_whole_program():
    prompt = "from typing import List\n\n\ndef add(xs: List[int]) -> int:\n    \"\"\"Sum.\"\"\"\n"
    answer = "Here you go:\n```python\ndef add(xs):\n    return sum(xs)\n```\nDone."
    program = humaneval_program(prompt, answer, "def check(f):\n    assert f([1, 2]) == 3\n", "add")
    assert program.startswith("from typing import List\n")
    assert "def add(xs):\n    return sum(xs)" in program and '"""Sum."""' not in program
    assert program.rstrip().endswith("check(add)")


def test_base_continuation_and_body_only_block_continue_the_prompt():
    prompt = "def add(xs):\n"
    assert humaneval_program(prompt, "    return sum(xs)\n", "T", "add").startswith("def add(xs):\n    return sum(xs)\n")
    body_block = "```python\n    return sum(xs)\n```"
    assert humaneval_program(prompt, body_block, "T", "add").startswith("def add(xs):\n    return sum(xs)\n")


def test_code_extraction_prefers_python_fences_and_takes_a_cut_off_fence():
    text = "```text\nnot code\n```\n```python\nx = 1\n```"
    assert extract_code(text) == "x = 1\n"
    assert extract_code("```python\ndef f():\n    return 1") == "def f():\n    return 1"
    assert extract_code("plain words") is None


def test_mbpp_program_from_base_and_chat_completions():
    tests = ("assert f(1) == 2",)
    assert mbpp_program("def f(x):\n    return x + 1\n", tests, "import math") == "import math\ndef f(x):\n    return x + 1\n\n\nassert f(1) == 2\n"
    assert "def f(x)" in mbpp_program("Sure:\n```python\ndef f(x):\n    return x + 1\n```", tests)


def test_truncate_at_first_stop():
    assert truncate_at_stops("    return 1\ndef other():\n#x", ("\n#", "\ndef")) == "    return 1"
    assert truncate_at_stops("no stop", ("\ndef",)) == "no stop"


def test_pass_at_k_matches_the_combinatorial_definition():
    for n, c, k in [(10, 3, 1), (10, 3, 5), (20, 0, 10), (20, 20, 1), (7, 2, 7), (100, 13, 10)]:
        expected = 1.0 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        pass_at_k(5, 6, 1)
    assert reported_ks(1) == [1] and reported_ks(10) == [1, 5, 10] and reported_ks(7) == [1, 5, 7]
