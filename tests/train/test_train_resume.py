"""Fault tolerance: kill -9 mid-run then resume reproduces the uninterrupted loss log bit for bit (CPU);
SIGTERM saves and stops; a half-written checkpoint is never 'latest'."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from specialize.train.checkpointing import _prune, latest_checkpoint
from tests.train.helpers import REPO, cli_command, environment, pattern_corpus, run_cli, tiny_overrides


def _train_records(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: r[k] for k in ("step", "loss", "lr", "grad_norm")} for r in map(json.loads, lines) if r["kind"] == "train"]


def _wait_for_step(run: Path, step: int, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"run ended before step {step}: {process.stderr.read()[-3000:]}")
        path = run / "metrics.jsonl"
        if path.is_file() and any(json.loads(line)["step"] >= step for line in path.read_text().splitlines() if line.endswith("}")):
            return
        time.sleep(0.02)
    raise AssertionError(f"step {step} not reached in {timeout}s")


@pytest.mark.slow
def test_kill_9_then_resume_equals_uninterrupted_run(tmp_path):
    corpus = pattern_corpus(tmp_path / "corpus")
    steps = 8
    run_cli(tiny_overrides(tmp_path / "straight", corpus, steps))
    reference = _train_records(tmp_path / "straight")
    assert [r["step"] for r in reference] == list(range(1, steps + 1))

    broken = tmp_path / "broken"
    process = subprocess.Popen(cli_command(tiny_overrides(broken, corpus, steps)), cwd=REPO, env=environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    _wait_for_step(broken, 5, process)
    # SIGKILL to the whole process group, as when a node is lost: no handler, no final save, and no
    # helper process of the run (megatron/torch spawn some) is left behind as an orphan.
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert latest_checkpoint(broken).name == "step-000003"
    run_cli(tiny_overrides(broken, corpus, steps))  # resumes from step 3 automatically
    assert _train_records(broken) == reference  # same floats, bit for bit


@pytest.mark.slow
def test_background_saves_publish_complete_checkpoints_that_resume_bit_for_bit(tmp_path):
    """checkpoint.async_save (megatron's forked writer; on by default on GPU) on CPU: the periodic saves are
    written while training goes on and published when every writer has finished; the last one is synchronous."""
    corpus = pattern_corpus(tmp_path / "corpus")
    steps = 8
    run_cli(tiny_overrides(tmp_path / "straight", corpus, steps))
    reference = _train_records(tmp_path / "straight")
    run = tmp_path / "async"
    run_cli(tiny_overrides(run, corpus, steps, **{"checkpoint.async_save": "true", "checkpoint.keep_last": 3}))
    assert _train_records(run) == reference
    root = run / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-000003", "step-000006", "step-000008"]
    for saved in ("step-000003", "step-000006"):
        assert json.loads((root / saved / "state.json").read_text())["step"] == int(saved[-6:])
        assert (root / saved / "optimizer" / ".metadata").is_file() and (root / saved / "model" / ".metadata").is_file()
    (root / "latest").write_text("step-000006\n")  # as if stopped after the background save of step 6
    shutil.rmtree(root / "step-000008")
    run_cli(tiny_overrides(run, corpus, steps))
    assert _train_records(run) == reference


@pytest.mark.slow
def test_sigterm_saves_and_stops(tmp_path):
    corpus = pattern_corpus(tmp_path / "corpus")
    run = tmp_path / "run"
    process = subprocess.Popen(cli_command(tiny_overrides(run, corpus, 400, **{"checkpoint.save_every": 1000})),
                               cwd=REPO, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_step(run, 2, process)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-3000:]
    assert "stopped by signal" in out
    saved = latest_checkpoint(run)
    state = json.loads((saved / "state.json").read_text())
    assert 2 <= state["step"] < 400 and saved.name == f"step-{state['step']:06d}"
    assert (saved / "model" / "specialize.json").is_file() and (saved / "config.yaml").is_file()


def test_partial_save_is_never_latest(tmp_path):
    root = tmp_path / "checkpoints"
    for name in ("step-000002", "step-000004", "step-000006"):
        (root / name).mkdir(parents=True)
        (root / name / "state.json").write_text("{}")
    (root / "latest").write_text("step-000004\n")
    (root / "step-000006.partial").mkdir()  # a save killed half-way
    assert latest_checkpoint(tmp_path).name == "step-000004"
    _prune(root, keep_last=2, keep="step-000004")
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-000004", "step-000006"]
    (root / "latest").write_text("step-000009\n")
    with pytest.raises(FileNotFoundError, match="step-000009"):
        latest_checkpoint(tmp_path)
