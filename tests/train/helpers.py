"""Shared by the training tests: a learnable tiny corpus for qwen-tiny and a way to run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.train.corpus_fixture import write_corpus

REPO = Path(__file__).resolve().parents[2]


def pattern_corpus(directory: Path, documents: int = 120, seed: int = 0, tokenizer_source=None) -> Path:
    """Documents that repeat a short random pattern: a model can learn them in a few dozen steps."""
    from specialize.tokenization import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_source)
    if (directory / "manifest.json").is_file():
        return directory
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(documents):
        pattern = rng.integers(0, 64, size=int(rng.integers(3, 7)))
        docs.append(np.tile(pattern, int(rng.integers(10, 40))))
    return write_corpus(directory, docs, fingerprint=tokenizer.fingerprint, eod_id=tokenizer.eod_id)


def tiny_overrides(output: Path, corpus: Path, steps: int, **extra) -> list[str]:
    settings = {
        "output": str(output), "data.paths": f"[{corpus}]", "train.steps": steps, "train.seq_length": 64,
        "train.micro_batch_size": 2, "train.global_batch_size": 4, "train.threads": 1,
        "log.eval_every": 0, "log.progress": "plain", "log.tensorboard": "false", "checkpoint.save_every": 3,
        "optimizer.lr": 1e-3, "optimizer.warmup_steps": 2,
    }
    settings.update(extra)
    return [f"{key}={value}" for key, value in settings.items()]


def cli_command(overrides: list[str], nproc: int = 1) -> list[str]:
    args = ["--from", "qwen-tiny"]
    for item in overrides:
        args += ["--set", item]
    if nproc == 1:
        return [sys.executable, "-m", "specialize.train", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
            "-m", "specialize.train", *args]


def environment() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONWARNINGS"] = "ignore"
    return env


def run_cli(overrides: list[str], nproc: int = 1, timeout: int = 240) -> subprocess.CompletedProcess:
    result = subprocess.run(cli_command(overrides, nproc), cwd=REPO, env=environment(), capture_output=True,
                            text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"train failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result
