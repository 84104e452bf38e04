"""Preemption end to end on CPU: SIGTERM to the launcher (what kubelet sends to a pod's PID 1) makes
`specialize train` under torchrun write a checkpoint, and the relaunched command resumes from it.

torchrun's own shutdown timeout is set to 0 here (``TORCH_ELASTIC_SHUTDOWN_TIMEOUT``): had the signal
gone through torchrun, it would SIGKILL the workers at once (30 s by default, too soon for a large
model's checkpoint); the launcher hands it to the workers, so the checkpoint does not depend on it.

This is the path a JobSet restart takes; only the pods and the shared volume are missing here.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    for name in ("JOB_COMPLETION_INDEX", "SLURM_NODEID", "RANK", "WORLD_SIZE"):
        env.pop(name, None)
    env["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"] = "0"
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "specialize.launch.worker", *args]


def _train(corpus: Path, run: Path, steps: int) -> list[str]:
    return _cli("launch", "torchrun", "--standalone", "--nproc-per-node", "2", "--",
                "train", "--from", "qwen-tiny", "--data", str(corpus), "--output", str(run),
                "--set", f"train.steps={steps}", "--set", "train.micro_batch_size=2",
                "--set", "train.global_batch_size=4", "--set", "checkpoint.save_every=100000",
                "--set", "log.eval_every=0", "--set", "log.progress=plain")


def _steps_logged(run: Path) -> int:
    metrics = run / "metrics.jsonl"
    if not metrics.exists():
        return 0
    steps = [json.loads(line).get("step", 0) for line in metrics.read_text().splitlines() if line.strip()]
    return max(steps, default=0)


@pytest.mark.slow
def test_sigterm_checkpoints_and_relaunch_resumes(tmp_path):
    corpus, run = tmp_path / "corpus", tmp_path / "run"
    build = subprocess.run(_cli("corpus", "build", "--domain", "code", "--input", str(REPO / "specialize"),
                                "--output", str(corpus), "--workers", "1", "--num-shards", "2"),
                           cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300, check=False)
    assert build.returncode == 0, build.stderr[-3000:]

    first = subprocess.Popen(_train(corpus, run, steps=100000), cwd=tmp_path, env=_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while _steps_logged(run) < 3:
            assert first.poll() is None, first.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "training did not reach step 3 in time"
            time.sleep(1)
        first.send_signal(signal.SIGTERM)  # the launcher passes it to the workers, not to torchrun
        log, _ = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    saved = sorted(int(m.group(1)) for p in (run / "checkpoints").iterdir()
                   if (m := re.fullmatch(r"step-(\d+)", p.name)))
    assert saved, f"no checkpoint written on SIGTERM:\n{log[-3000:]}"
    assert first.returncode == 0, log[-3000:]  # workers saved and exited 0: torchrun and the launcher finish cleanly
    assert "SIGTERM passed to 2 worker(s)" in log
    last = saved[-1]
    assert last >= 3

    second = subprocess.run(_train(corpus, run, steps=last + 1), cwd=tmp_path, env=_env(),
                            capture_output=True, text=True, timeout=300, check=False)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
    assert f"at step {last}" in second.stdout + second.stderr  # "resumed from .../step-0000NN at step NN"
    assert (run / "checkpoints" / f"step-{last + 1:06d}").is_dir()
