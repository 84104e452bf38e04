"""The embedded SFT samples: chat data generated offline, each answer checked, so ``specialize sft`` runs
with no downloaded data.

- math: problems from ``specialize.data.math_problems`` (answers computed, solutions re-checked there);
  here we also check that each worked solution states the computed answer.
- code: two real, offline sources.
  (1) Small programming tasks with random parameters whose reference solutions are *run* here against an
      independent Python expression on random inputs; a task whose code disagrees is never emitted.
  (2) Docstring -> function pairs from the running Python's standard library (as the embedded code
      corpus reads it): the user asks for the documented function, the assistant answers with its source.

Deterministic for a seed (and, for (2), a Python version).
"""

from __future__ import annotations

import ast
import json
import os
import random
import sysconfig
from pathlib import Path
from typing import Callable

from specialize.data.math_problems import generate_problems

DOMAINS = ("code", "math")
DEFAULT_COUNTS = {"code": 1200, "math": 2000}
TASK_SHARE = 0.4  # of the code sample: verified tasks; the rest stdlib functions


def _chat(user: str, assistant: str, **meta) -> dict:
    row = {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}
    if meta:
        row["meta"] = meta
    return row


# -- math -------------------------------------------------------------------------------------------
def math_rows(count: int, seed: int = 0) -> list[dict]:
    rows = []
    for problem in generate_problems(count, seed=seed):
        final = problem.solution.rsplit("The answer is", 1)
        if len(final) != 2 or not all(part.strip() in final[1] for part in problem.answer.split(",")):
            raise AssertionError(f"{problem.id}: solution does not state the computed answer {problem.answer!r}")
        rows.append(_chat(problem.question, problem.solution, id=problem.id, kind=problem.kind, answer=problem.answer))
    return rows


# -- code (1): verified tasks -------------------------------------------------------------------------
# Each template returns (function name, request, solution source, reference, random-arguments maker).
Task = tuple[str, str, str, Callable, Callable[[random.Random], tuple]]


def _ints(rng: random.Random, low=-20, high=50, most=12) -> list[int]:
    return [rng.randint(low, high) for _ in range(rng.randint(0, most))]


def _words(rng: random.Random, most=8) -> list[str]:
    pool = ["apple", "Bob", "level", "kayak", "tree", "sky", "Anna", "river", "code", "data", "noon", "x"]
    return [rng.choice(pool) for _ in range(rng.randint(0, most))]


def _task_sum_multiples(rng):
    k = rng.randint(2, 9)
    source = (f"def sum_multiples_of_{k}(limit):\n    total = 0\n    for n in range(limit):\n"
              f"        if n % {k} == 0:\n            total += n\n    return total\n")
    return (f"sum_multiples_of_{k}", f"Write a Python function `sum_multiples_of_{k}(limit)` that returns the sum of "
            f"all non-negative multiples of {k} below `limit`.", source,
            lambda limit: sum(range(0, max(limit, 0), k)), lambda r: (r.randint(-5, 300),))


def _task_count_above(rng):
    t = rng.randint(-5, 30)
    source = f"def count_above(values):\n    return sum(1 for v in values if v > {t})\n"
    return ("count_above", f"Write a Python function `count_above(values)` that counts how many numbers in the list "
            f"`values` are greater than {t}.", source, lambda values: len([v for v in values if v > t]),
            lambda r: (_ints(r),))


def _task_dedupe(rng):
    source = ("def dedupe(items):\n    seen = set()\n    result = []\n    for item in items:\n"
              "        if item not in seen:\n            seen.add(item)\n            result.append(item)\n    return result\n")
    return ("dedupe", "Write a Python function `dedupe(items)` that removes duplicates from a list while keeping "
            "the first occurrence of each item in its original order.", source,
            lambda items: list(dict.fromkeys(items)), lambda r: (_ints(r, 0, 6),))


def _task_palindromes(rng):
    source = ("def palindromes(words):\n    return [w for w in words if w.lower() == w.lower()[::-1]]\n")
    return ("palindromes", "Write a Python function `palindromes(words)` that returns the words of the list that read "
            "the same backwards, ignoring case, in their original order.", source,
            lambda words: [w for w in words if all(a.lower() == b.lower() for a, b in zip(w, reversed(w)))],
            lambda r: (_words(r),))


def _task_chunks(rng):
    k = rng.randint(2, 5)
    source = f"def chunks(items):\n    return [items[i:i + {k}] for i in range(0, len(items), {k})]\n"

    def reference(items):
        out, current = [], []
        for item in items:
            current.append(item)
            if len(current) == k:
                out.append(current)
                current = []
        return out + ([current] if current else [])
    return ("chunks", f"Write a Python function `chunks(items)` that splits a list into consecutive pieces of {k} "
            f"items (the last piece may be shorter).", source, reference, lambda r: (_ints(r, most=14),))


def _task_caesar(rng):
    shift = rng.randint(1, 25)
    source = (f"def caesar(text):\n    result = []\n    for ch in text:\n        if 'a' <= ch <= 'z':\n"
              f"            result.append(chr((ord(ch) - ord('a') + {shift}) % 26 + ord('a')))\n"
              f"        elif 'A' <= ch <= 'Z':\n            result.append(chr((ord(ch) - ord('A') + {shift}) % 26 + ord('A')))\n"
              f"        else:\n            result.append(ch)\n    return ''.join(result)\n")
    lower = "abcdefghijklmnopqrstuvwxyz"
    table = str.maketrans(lower + lower.upper(), lower[shift:] + lower[:shift] + (lower[shift:] + lower[:shift]).upper())
    return ("caesar", f"Write a Python function `caesar(text)` that shifts every ASCII letter of `text` {shift} places "
            f"forward in the alphabet (wrapping around, keeping case) and leaves other characters unchanged.", source,
            lambda text: text.translate(table), lambda r: (" ".join(_words(r)) + r.choice(["", "!", " 42."]),))


def _task_running_max(rng):
    source = ("def running_max(values):\n    result = []\n    best = None\n    for v in values:\n"
              "        best = v if best is None or v > best else best\n        result.append(best)\n    return result\n")

    def reference(values):
        return [max(values[: i + 1]) for i in range(len(values))]
    return ("running_max", "Write a Python function `running_max(values)` that returns, for each position of the list, "
            "the largest value seen so far.", source, reference, lambda r: (_ints(r),))


def _task_fizzbuzz(rng):
    a, b = rng.sample([2, 3, 4, 5, 7], 2)
    wa, wb = rng.choice([("Fizz", "Buzz"), ("Foo", "Bar"), ("Ping", "Pong")])
    source = (f"def fizzbuzz(n):\n    out = []\n    for i in range(1, n + 1):\n        word = ''\n"
              f"        if i % {a} == 0:\n            word += '{wa}'\n        if i % {b} == 0:\n            word += '{wb}'\n"
              f"        out.append(word or str(i))\n    return out\n")

    def reference(n):
        return [(wa if i % a == 0 else "") + (wb if i % b == 0 else "") or str(i) for i in range(1, n + 1)]
    return ("fizzbuzz", f"Write a Python function `fizzbuzz(n)` that returns a list for 1..n where multiples of {a} "
            f"become '{wa}', multiples of {b} become '{wb}', multiples of both '{wa}{wb}', and other numbers their "
            f"decimal string.", source, reference, lambda r: (r.randint(0, 40),))


def _task_word_lengths(rng):
    source = "def word_lengths(sentence):\n    return {word: len(word) for word in sentence.split()}\n"
    return ("word_lengths", "Write a Python function `word_lengths(sentence)` that maps each whitespace-separated "
            "word of `sentence` to its length.", source,
            lambda sentence: dict((w, len(w)) for w in sentence.split()), lambda r: ("  ".join(_words(r)),))


def _task_digit_sum(rng):
    source = ("def digit_sum(n):\n    n = abs(n)\n    total = 0\n    while n:\n        total += n % 10\n"
              "        n //= 10\n    return total\n")
    return ("digit_sum", "Write a Python function `digit_sum(n)` that returns the sum of the decimal digits of the "
            "integer `n` (ignoring its sign).", source, lambda n: sum(int(d) for d in str(abs(n))),
            lambda r: (r.randint(-10**9, 10**9),))


TASKS: tuple[Callable[[random.Random], Task], ...] = (
    _task_sum_multiples, _task_count_above, _task_dedupe, _task_palindromes, _task_chunks, _task_caesar,
    _task_running_max, _task_fizzbuzz, _task_word_lengths, _task_digit_sum)


def verify_task(name: str, source: str, reference: Callable, make_args: Callable, rng: random.Random, trials: int = 25) -> None:
    """Run ``source`` and compare ``name(*args)`` with ``reference(*args)`` on random arguments."""
    namespace: dict = {}
    exec(compile(source, f"<task {name}>", "exec"), namespace)  # our own generated code, nothing external
    for _ in range(trials):
        args = make_args(rng)
        got, want = namespace[name](*args), reference(*args)
        if got != want:
            raise AssertionError(f"task {name}: {args!r} gives {got!r}, expected {want!r}\n{source}")


def task_rows(count: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        template = TASKS[index % len(TASKS)]
        name, request, source, reference, make_args = template(rng)
        verify_task(name, source, reference, make_args, random.Random(rng.random()))
        answer = f"```python\n{source}```"
        rows.append(_chat(request, answer, id=f"task-{seed}-{index:05d}", kind=template.__name__[6:]))
    return rows


# -- code (2): standard-library docstring -> function pairs --------------------------------------------
SKIP_PARTS = {"test", "tests", "idlelib", "tkinter", "turtledemo", "lib2to3", "site-packages", "ensurepip",
              "__pycache__", "pydoc_data", "dist-packages"}


def stdlib_rows(count: int, seed: int = 0, root: str | None = None) -> list[dict]:
    """Documented public module-level functions (4-40 lines) of the standard library as chat pairs."""
    root = root or sysconfig.get_paths()["stdlib"]
    candidates = []
    for directory, folders, files in os.walk(root):
        folders[:] = sorted(f for f in folders if f not in SKIP_PARTS)
        for file_name in sorted(files):
            if not file_name.endswith(".py"):
                continue
            path = Path(directory, file_name)
            try:
                source = path.read_text(encoding="utf-8")
                tree = ast.parse(source)
            except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
                continue
            module = os.path.relpath(path, root)[:-3].replace(os.sep, ".").removesuffix(".__init__")
            for node in tree.body:
                if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
                    continue
                doc = ast.get_docstring(node)
                lines = node.end_lineno - node.lineno + 1
                if not doc or len(doc) < 40 or not 4 <= lines <= 40 or node.decorator_list:
                    continue
                text = ast.get_source_segment(source, node)
                if text:
                    candidates.append((module, node.name, ast.unparse(node.args), doc, text))
    rng = random.Random(seed)
    chosen = rng.sample(candidates, min(count, len(candidates)))
    return [
        _chat(f"Write the Python function `{name}({args})` of the `{module}` module:\n\n{doc}",
              f"```python\n{text}\n```", id=f"stdlib:{module}.{name}", kind="stdlib")
        for module, name, args, doc, text in chosen
    ]


def code_rows(count: int, seed: int = 0) -> list[dict]:
    tasks = int(round(count * TASK_SHARE))
    rows = task_rows(tasks, seed) + stdlib_rows(count - tasks, seed)
    random.Random(seed).shuffle(rows)
    return rows


def embedded_rows(domain: str, count: int | None = None, seed: int = 0) -> list[dict]:
    if domain not in DOMAINS:
        raise ValueError(f"--domain {domain!r}: expected one of {', '.join(DOMAINS)}")
    count = DEFAULT_COUNTS[domain] if count is None else count
    return math_rows(count, seed) if domain == "math" else code_rows(count, seed)


def write_embedded(domain: str, path: str | Path, count: int | None = None, seed: int = 0) -> Path:
    """Write the embedded sample of ``domain`` as OpenAI-format JSONL (atomically) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + f".tmp{os.getpid()}")
    with temporary.open("w", encoding="utf-8") as handle:
        for row in embedded_rows(domain, count, seed):
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    temporary.replace(path)
    return path
