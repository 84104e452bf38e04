"""Final answers of math completions and their comparison with the reference.

Extraction follows Qwen2.5-Math's evaluation and lm-evaluation-harness: the last ``\\boxed{...}`` (or
``\\fbox``), else Minerva's "Final Answer: The final answer is X", else the GSM8K few-shot style
"The answer is X", else (GSM8K only) the last number in the text. Comparison is ``math-verify``
(equivalent forms: ``\\frac{1}{2}`` = ``0.5``, ``\\sqrt{4}`` = ``2``, intervals, sets), after a plain
numeric check that settles GSM8K answers without parsing LaTeX.
"""

from __future__ import annotations

import logging
import re
import threading

_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_FINAL_ANSWER = re.compile(r"final answer is\s*\$?(.+?)\$?(?:\.\s*I hope it is correct|\.?\s*$)", re.IGNORECASE | re.DOTALL)
_THE_ANSWER_IS = re.compile(r"the answer is[:\s]*(.+?)(?:\.\s|\.$|\n|$)", re.IGNORECASE)


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` with balanced braces (``\\boxed 5`` too)."""
    best = None
    for command in ("\\boxed", "\\fbox"):
        start = text.rfind(command)
        if start >= 0 and (best is None or start > best[0]):
            best = (start, command)
    if best is None:
        return None
    position = best[0] + len(best[1])
    rest = text[position:]
    if rest.startswith(" ") and not rest.lstrip().startswith("{"):
        return rest.strip().split("$")[0].split()[0] if rest.strip() else None
    if not rest.startswith("{"):
        return None
    depth = 0
    for index, char in enumerate(rest):
        depth += char == "{"
        depth -= char == "}"
        if depth == 0:
            return rest[1:index].strip()
    return None  # unbalanced: the completion was cut off inside the box


def _clean_number(text: str) -> str:
    return text.replace(",", "").replace("$", "").rstrip(".")


def last_number(text: str) -> str | None:
    found = _NUMBER.findall(text)
    return _clean_number(found[-1]) if found else None


def extract_answer(completion: str, *, allow_last_number: bool) -> str | None:
    """The model's final answer in a completion, or None when it gave none."""
    boxed = last_boxed(completion)
    if boxed:
        return boxed
    final = _FINAL_ANSWER.findall(completion)
    if final:
        return final[-1].strip().strip("$").strip()
    stated = _THE_ANSWER_IS.findall(completion)
    if stated:
        answer = stated[-1].strip().strip("$").strip()
        number = last_number(answer) if allow_last_number else None
        return number or answer
    return last_number(completion) if allow_last_number else None


def gsm8k_reference(answer_field: str) -> str:
    """GSM8K's gold answer: the number after ``####``."""
    if "####" not in answer_field:
        raise ValueError("GSM8K answer has no '#### N' final line")
    return _clean_number(answer_field.rsplit("####", 1)[1].strip())


def _as_float(text: str) -> float | None:
    try:
        return float(_clean_number(text.strip()))
    except ValueError:
        return None


def equivalent(predicted: str | None, reference: str) -> bool:
    """Whether two final answers are mathematically the same (math-verify; numbers compared directly)."""
    if predicted is None or not predicted.strip():
        return False
    a, b = _as_float(predicted), _as_float(reference)
    if a is not None and b is not None:
        return abs(a - b) <= 1e-6 * max(1.0, abs(b))
    try:
        from math_verify import parse, verify
    except ImportError:  # a dependency; kept importable so `eval score` errors clearly instead
        raise RuntimeError("math answers are compared with math-verify: pip install math-verify") from None
    # math-verify's time limit is a SIGALRM, which only the main thread may set; sympy can hang on
    # pathological input, so scoring runs there (elsewhere it runs without the limit).
    limit = 5 if threading.current_thread() is threading.main_thread() else None
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    try:
        gold = parse(f"${reference}$", parsing_timeout=limit)
        guess = parse(f"${predicted}$", parsing_timeout=limit)
        if not gold or not guess:
            return predicted.strip() == reference.strip()
        return bool(verify(gold, guess, timeout_seconds=limit))
    except Exception:  # math-verify raises on pathological LaTeX; a wrong answer, not a crashed run
        return predicted.strip() == reference.strip()
