"""The shared runtime in-process on a planted provider: loss falls, NaN steps are skipped then stop the
run, document-boundary masks, metrics and plot."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from specialize.train import runtime
from specialize.train.batches import block_causal_mask, microbatch_indices
from specialize.train.config import load_config
from specialize.train.data_api import DataRequest, DataSplits
from specialize.train.plot import plot_run


class PatternDataset:
    """Sample i: a short pattern repeated; optionally two documents per sample (segments)."""

    def __init__(self, count: int, seq: int, seed: int, segments: bool):
        self.count, self.seq, self.seed, self.segments = count, seq, seed, segments

    def __len__(self):
        return self.count

    def __getitem__(self, i):
        rng = np.random.default_rng(self.seed * 100_003 + i)
        pattern = rng.integers(0, 32, size=4)
        window = np.tile(pattern, self.seq // 4 + 1)[: self.seq + 1].astype(np.int64)
        segment = np.zeros(self.seq, dtype=np.int32)
        positions = np.arange(self.seq, dtype=np.int64)
        if self.segments:
            segment[self.seq // 2:] = 1
            positions[self.seq // 2:] -= self.seq // 2
        return {"tokens": window[:-1], "labels": window[1:], "loss_mask": np.ones(self.seq, np.float32),
                "position_ids": positions, "segment_ids": segment}


class PatternProvider:
    def __init__(self, segments: bool = False):
        self.segments = segments
        self.request = None

    def build(self, request: DataRequest) -> DataSplits:
        self.request = request
        return DataSplits(PatternDataset(request.train_samples, request.seq_length, 1, self.segments),
                          PatternDataset(max(request.valid_samples, 1), request.seq_length, 2, self.segments),
                          {"planted": True})


def _config(tmp_path, steps, *extra):
    return load_config(None, [f"output={tmp_path / 'run'}", f"train.steps={steps}", "train.seq_length=32",
                              "train.micro_batch_size=2", "train.global_batch_size=4", "optimizer.lr=3e-3",
                              "optimizer.warmup_steps=2", "log.eval_every=10", "log.eval_iters=1",
                              "log.progress=none", "checkpoint.save_every=1000", "train.threads=1", *extra])


def test_loss_falls_and_everything_is_logged(tmp_path):
    provider = PatternProvider()
    result = runtime.run_training(_config(tmp_path, 20), provider)
    assert provider.request.train_samples == 20 * 4 and provider.request.seq_length == 32
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    valid = [r for r in records if r["kind"] == "valid"]
    assert [r["step"] for r in train] == list(range(1, 21)) and [r["step"] for r in valid] == [0, 10, 20]
    assert train[-1]["loss"] < train[0]["loss"] - 2.0  # ln(8400) ~ 9.0 at the start
    assert valid[-1]["loss"] < valid[0]["loss"]
    assert train[0]["lr"] == pytest.approx(1.5e-3) and train[1]["lr"] == pytest.approx(3e-3)  # warmup
    assert train[-1]["lr"] == pytest.approx(3e-4)  # cosine to 10% of peak
    assert all(r["grad_norm"] > 0 and r["tokens_per_s"] > 0 and r["memory_gb"] > 0 for r in train)
    assert result.checkpoint.name == "step-000020" and not result.interrupted
    assert any((tmp_path / "run" / "tensorboard").iterdir())
    png = plot_run(tmp_path / "run")
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_nan_losses_are_skipped_then_stop_the_run(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = runtime._loss_func

    def poisoned(loss_mask, output):  # micro-batches 3-4 (step 2) and from 9 on (steps 5+) give NaN
        calls["n"] += 1
        total, count, report = real(loss_mask, output)
        if calls["n"] in (3, 4) or calls["n"] >= 9:
            total = total * float("nan")
            report = {"lm loss": report["lm loss"] * torch.tensor([float("nan"), 1.0])}
        return total, count, report

    monkeypatch.setattr(runtime, "_loss_func", poisoned)
    with pytest.raises(runtime.BadLossError, match="3 non-finite losses in a row at step 7"):
        runtime.run_training(_config(tmp_path, 10, "train.max_bad_steps=3", "log.eval_every=0"), PatternProvider())
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped"] for r in records] == [0, 1, 1, 1, 2, 3]
    assert records[1]["grad_norm"] is None and records[2]["grad_norm"] is not None


def test_packed_samples_with_document_boundaries_train(tmp_path):
    result = runtime.run_training(_config(tmp_path, 3, "log.eval_every=0"), PatternProvider(segments=True))
    assert result.steps_done == 3 and np.isfinite(result.last_loss)


def test_block_causal_mask():
    mask = block_causal_mask(torch.tensor([[0, 0, 1, 1, 1]]))
    allowed = ~mask[0, 0]
    expected = torch.tensor([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 1, 1, 1]]).bool()
    assert torch.equal(allowed, expected)


def test_microbatches_of_a_step_are_the_same_samples_for_any_dp():
    one = microbatch_indices(3, global_batch=8, micro_batch=2, dp_rank=0, dp_size=1, num_microbatches=4, dataset_len=100)
    two = [microbatch_indices(3, global_batch=8, micro_batch=2, dp_rank=r, dp_size=2, num_microbatches=2, dataset_len=100)
           for r in (0, 1)]
    flat = lambda batches: sorted(i for b in batches for i in b)
    assert flat(one) == flat(two[0] + two[1]) == list(range(24, 32))


def _losses(run_dir):
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_recompute_modes_train_the_same_function(tmp_path):
    """Selective (core attention) and full (whole layer) recomputation trade compute for memory only:
    the losses are bitwise those of no recomputation (fp32 on CPU)."""
    for mode in ("none", "selective", "full"):
        runtime.run_training(_config(tmp_path / mode, 3, f"model.recompute={mode}", "log.eval_every=0"), PatternProvider())
    assert _losses(tmp_path / "none" / "run") == _losses(tmp_path / "selective" / "run") == _losses(tmp_path / "full" / "run")


def test_a_new_rope_base_and_longer_context_are_trained_recorded_and_exported(tmp_path, capsys):
    """``model.rotary_base`` changes the RoPE base at the start of CPT; a seq_length beyond the model's
    max_position_embeddings raises it; both are in the checkpoint and in the export's config.json."""
    import dataclasses

    from specialize.convert import megatron_to_hf
    from specialize.model.presets import get_preset

    short = dataclasses.replace(get_preset("qwen-tiny"), max_position_embeddings=16)
    config = _config(tmp_path, 3, "model.rotary_base=1000000", "log.eval_every=0")
    result = runtime.run_training(config, PatternProvider(), preset=short)
    saved = json.loads((result.checkpoint / "model" / "specialize.json").read_text())["preset"]
    assert (saved["rotary_base"], saved["max_position_embeddings"]) == (1e6, 32)
    exported = json.loads((megatron_to_hf(result.checkpoint, tmp_path / "hf") / "config.json").read_text())
    assert exported["rope_theta"] == 1e6 and exported["max_position_embeddings"] == 32
    printed = capsys.readouterr().out
    assert "RoPE base 10000 -> 1e+06 (model.rotary_base)" in printed and "max_position_embeddings 16 -> 32" in printed
    runtime.run_training(_config(tmp_path / "base", 3, "log.eval_every=0"), PatternProvider(), preset=short)
    assert _losses(tmp_path / "run") != _losses(tmp_path / "base" / "run")  # another base is another function


def test_context_parallel_is_refused_on_cpu(tmp_path):
    with pytest.raises(ValueError, match=r"model.cp=2 \(context parallelism\) needs GPUs with Transformer Engine"):
        runtime.run_training(_config(tmp_path, 3, "model.cp=2"), PatternProvider())
