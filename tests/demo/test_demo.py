"""The newcomer's main command, `specialize demo`, end to end with few steps: every stage runs for real."""

from __future__ import annotations

import json

import pytest

from specialize.demo.pipeline import DemoSettings, run_demo


@pytest.mark.slow
def test_demo_runs_every_stage_and_reports(tmp_path):
    report = run_demo(DemoSettings(output=tmp_path / "demo", cpt_steps=6, sft_steps=2, eval_samples=4, threads=1,
                                   bench_problems=3, bench_max_new_tokens=8))

    text = report.read_text()
    for png in ("corpus_funnel.png", "document_histograms.png", "loss_curves.png", "heldout_loss.png"):
        assert (report.parent / png).stat().st_size > 1000, png
        assert f"({png})" in text
    losses = {}
    for path in (tmp_path / "demo" / "logs").glob("eval-*.json"):
        for row in json.loads(path.read_text()):
            losses[(path.stem, row["corpus"].rsplit("/", 1)[-1])] = row["loss"]
    assert len(losses) == 6, losses  # three models x two held-out corpora
    # Six steps of continual pretraining at a pretraining LR already move the random model on math.
    assert losses[("eval-after-continual-pretraining", "math")] < losses[("eval-qwen-tiny-at-initialisation", "math")] - 0.5
    assert (tmp_path / "demo" / "hf" / "config.json").is_file()
    assert "user: Solve for" in text and "assistant:" in text
    # The benchmark stage: `specialize eval` on the three models, compared in the report.
    modes = {}
    for label in ("qwen-tiny init", "after CPT", "after SFT"):
        document = json.loads((tmp_path / "demo" / "bench" / label / "results.json").read_text())
        assert document["tasks"]["humaneval"]["problems"] == 3 and document["tasks"]["demo-math"]["problems"] == 3
        modes[label] = document["mode"]
    assert modes == {"qwen-tiny init": "base", "after CPT": "base", "after SFT": "chat"}
    assert "## Benchmarks (`specialize eval`)" in text and "| humaneval |" in text and "| demo-math |" in text
