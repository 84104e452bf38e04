"""The demo, stage by stage: each stage is the real CLI command a user would type, in its own process.

Running the commands (rather than calling functions in one process) keeps the demo honest, it
exercises exactly what the README documents, and isolates megatron's global parallel state between
stages. Everything lands under one directory; the report is written last from what the stages wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from specialize.demo.report import Evaluation, write_report


@dataclass
class DemoSettings:
    output: Path = Path("checkpoints/demo")
    cpt_steps: int = 150
    sft_steps: int = 60
    seq_length: int = 128
    eval_samples: int = 48
    math_problems: int = 20000
    bench_problems: int = 12  # HumanEval and held-out generated math problems per model in the benchmark stage
    bench_max_new_tokens: int = 64
    threads: int | None = None
    extra_cpt: list[str] = field(default_factory=list)  # more --set for the CPT run
    extra_sft: list[str] = field(default_factory=list)


class StageFailed(RuntimeError):
    pass


def _say(message: str) -> None:
    print(f"\n\033[1m==> {message}\033[0m", flush=True)


def run_cli(args: list[str], log: Path) -> None:
    """Run ``specialize ARGS`` in a child process; stream its output to the terminal and to ``log``."""
    command = [sys.executable, "-m", "specialize.cli", *args]
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    with open(log, "w", encoding="utf-8") as handle:
        handle.write("$ specialize " + " ".join(args) + "\n")
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1)
        assert process.stdout is not None
        for line in process.stdout:
            handle.write(line)
            if _worth_showing(line):
                print("    " + line.rstrip(), flush=True)
        code = process.wait()
    if code != 0:
        raise StageFailed(f"`specialize {' '.join(args)}` failed with exit code {code}; full output in {log}")


def _worth_showing(line: str) -> bool:
    noisy = ("Warning", "warnings.warn", "warn(", "INFO:", "WARNING:", "return func(", "if hasattr(param", "Loading weights")
    return bool(line.strip()) and not any(n in line for n in noisy)


def _evaluate(source: str, corpora: dict[str, Path], label: str, settings: DemoSettings, logs: Path) -> list[Evaluation]:
    result_file = logs / f"eval-{label.replace(' ', '-')}.json"
    args = ["evaluate", "--from", source, "--seq-length", str(settings.seq_length), "--samples", str(settings.eval_samples),
            "--json", str(result_file)]
    for path in corpora.values():
        args += ["--data", str(path)]
    run_cli(args, logs / f"eval-{label.replace(' ', '-')}.log")
    results = json.loads(result_file.read_text())
    names = {str(path): domain for domain, path in corpora.items()}
    return [Evaluation(label, f"{names[r['corpus']]} (held out)", r["loss"], r["tokens"]) for r in results]


def _benchmark(models: dict[str, tuple[str, str]], settings: DemoSettings, out: Path, logs: Path) -> dict[str, dict]:
    """``specialize eval`` per model (label -> (source, mode)), then ``eval compare``; the results documents."""
    from specialize.demo.benchmarks import trained_math_questions, write_heldout_math_task

    math_task = write_heldout_math_task(out / "bench" / "demo-math.jsonl", settings.bench_problems,
                                        exclude=trained_math_questions())
    documents = {}
    for label, (source, mode) in models.items():
        directory = out / "bench" / label
        run_cli(["eval", "--from", source, "--mode", mode, "--task", "humaneval", "--limit", str(settings.bench_problems),
                 "--task", f"demo-math={math_task}", "--max-new-tokens", str(settings.bench_max_new_tokens),
                 "--output", str(directory)], logs / f"bench-{label}.log")
        documents[label] = json.loads((directory / "results.json").read_text())
    run_cli(["eval", "compare", *[str(out / "bench" / label) for label in models]], logs / "bench-compare.log")
    return documents


def run_demo(settings: DemoSettings) -> Path:
    out = settings.output
    logs = out / "logs"
    corpora = {"code": out / "corpus" / "code", "math": out / "corpus" / "math"}
    cpt_dir, sft_dir, hf_dir = out / "cpt", out / "sft", out / "hf"
    timings: dict[str, float] = {}
    evaluations: list[Evaluation] = []
    threads = ["--set", f"train.threads={settings.threads}"] if settings.threads else []
    started = time.perf_counter()

    def stage(name: str, fn) -> None:
        _say(f"[{len(timings) + 1}/8] {name}")
        begin = time.perf_counter()
        fn()
        timings[name] = time.perf_counter() - begin
        print(f"    ({timings[name]:.0f} s)", flush=True)

    stage("corpus build: code (Python standard library) and math (generated problems)", lambda: (
        run_cli(["corpus", "build", "--domain", "code", "--output", str(corpora["code"]),
                 "--seq-length", str(settings.seq_length)], logs / "corpus-code.log"),
        run_cli(["corpus", "build", "--domain", "math", "--output", str(corpora["math"]),
                 "--seq-length", str(settings.seq_length)], logs / "corpus-math.log"),
    ))
    stage("held-out loss of qwen-tiny before specialisation",
          lambda: evaluations.extend(_evaluate("qwen-tiny", corpora, "qwen-tiny at initialisation", settings, logs)))
    stage(f"continual pretraining of qwen-tiny on code + math ({settings.cpt_steps} steps)", lambda: run_cli(
        ["train", "--from", "qwen-tiny", "--data", f"{corpora['code']}:1", "--data", f"{corpora['math']}:1",
         "--output", str(cpt_dir), "--set", f"train.steps={settings.cpt_steps}",
         "--set", f"train.seq_length={settings.seq_length}", "--set", f"log.eval_every={max(settings.cpt_steps // 6, 1)}",
         "--set", "log.progress=plain", "--set", f"checkpoint.save_every={settings.cpt_steps}", *threads, *settings.extra_cpt],
        logs / "cpt.log"))
    cpt_checkpoint = _latest_checkpoint(cpt_dir)
    stage("held-out loss after continual pretraining",
          lambda: evaluations.extend(_evaluate(str(cpt_checkpoint), corpora, "after continual pretraining", settings, logs)))
    stage(f"SFT (ChatML, loss on assistant turns) on the embedded code + math chat sets ({settings.sft_steps} steps), "
          "then export to Hugging Face", lambda: run_cli(
        ["sft", "--from", str(cpt_checkpoint), "--output", str(sft_dir), "--export", str(hf_dir),
         "--set", f"train.steps={settings.sft_steps}", "--set", "log.progress=plain", *threads, *settings.extra_sft],
        logs / "sft.log"))
    stage("held-out loss after SFT",
          lambda: evaluations.extend(_evaluate(str(hf_dir), corpora, "after SFT (exported HF model)", settings, logs)))
    benchmarks: dict[str, dict] = {}
    stage(f"benchmarks (specialize eval): {settings.bench_problems} HumanEval and {settings.bench_problems} held-out "
          "math problems, before CPT, after CPT and after SFT", lambda: benchmarks.update(_benchmark({
              "qwen-tiny init": ("qwen-tiny", "base"), "after CPT": (str(cpt_checkpoint), "base"), "after SFT": (str(hf_dir), "chat"),
          }, settings, out, logs)))
    sample: list[str] = []
    stage("report", lambda: sample.append(_chat_sample(hf_dir, logs)))
    timings["total"] = time.perf_counter() - started
    report = write_report(out / "report", corpora=corpora, runs={"continual pretraining": cpt_dir, "SFT": sft_dir},
                          evaluations=evaluations, export_dir=hf_dir, timings=timings, sample_generation=sample[0] if sample else None,
                          benchmarks=benchmarks)
    _say(f"done in {timings['total']:.0f} s: report {report}")
    return report


def _latest_checkpoint(run_dir: Path) -> Path:
    from specialize.train.checkpointing import latest_checkpoint

    found = latest_checkpoint(run_dir)
    if found is None:
        raise StageFailed(f"{run_dir}: the training run left no checkpoint")
    return Path(found)


def _chat_sample(hf_dir: Path, logs: Path) -> str:
    prompt = "Solve for $x$: $4x + 7 = 31$."  # the shape of the embedded math chat set; its numbers are not in it
    log = logs / "chat.log"
    run_cli(["chat", str(hf_dir), "--prompt", prompt, "--max-new-tokens", "48"], log)
    reply = [line for line in log.read_text().splitlines()[1:] if _worth_showing(line)]
    return f"user: {prompt}\nassistant: " + "\n".join(reply[:12])
