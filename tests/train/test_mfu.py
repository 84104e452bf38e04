"""MFU's FLOP count against a hand computation: causal attention counted as half, packed documents by
their own lengths, and the peak of the GPU model actually present (SXM vs PCIe/NVL)."""

from __future__ import annotations

import pytest
import torch

from specialize.model.presets import get_preset
from specialize.train.batches import attended_pairs
from specialize.train.metrics import attention_flops, dense_flops_per_token, peak_tflops_for, step_flops


def test_dense_flops_of_qwen_tiny_by_hand():
    # qwen-tiny: hidden 256, 4 layers, 4 heads of 64, 2 KV groups, SwiGLU 704, vocab 8400, untied embeddings.
    per_layer = (256 * 256 + 256) + 2 * (256 * 128 + 128) + 256 * 256 + 3 * 256 * 704 + 2 * 256  # qkv(+bias), o, mlp, norms
    dense = 4 * per_layer + 256 + 8400 * 256  # + final norm + LM head; the input embedding is a lookup, not a matmul
    assert dense_flops_per_token(get_preset("qwen-tiny")) == 6 * dense == 30_623_232


def test_causal_attention_counts_half_and_packed_documents_by_their_lengths():
    preset = get_preset("qwen-tiny")
    unpacked = torch.zeros(2, 8, dtype=torch.int32)  # two rows, no boundaries: 8^2/2 pairs each
    assert attended_pairs(unpacked) == 2 * 32
    packed = torch.tensor([[1, 1, 1, 2, 2, 2, 2, 2], [1, 2, 3, 3, 3, 3, 3, 3]], dtype=torch.int32)
    assert attended_pairs(packed) == (9 + 25) / 2 + (1 + 1 + 36) / 2
    per_pair = 12 * 4 * 4 * 64  # QK^T and AV: 2 x 2 x head_dim per pair and head, x3 with backward, x layers
    assert attention_flops(preset, 32) == per_pair * 32
    # Per token of an unpacked sequence of s tokens: 6 x layers x heads x head_dim x s (half of the 12 x ... x s
    # that counts the full square), as Megatron-LM's num_floating_point_operations does with its causal mask.
    s = 4096
    full = step_flops(preset, s, s * s / 2)
    assert full / s == pytest.approx(dense_flops_per_token(preset) + 6 * 4 * 4 * 64 * s)


def test_peak_by_gpu_model():
    assert peak_tflops_for("NVIDIA H100 80GB HBM3") == 989.0  # SXM
    assert peak_tflops_for("NVIDIA H100 PCIe") == 756.0
    assert peak_tflops_for("NVIDIA H100 NVL") == 835.0
    assert peak_tflops_for("NVIDIA H200") == 989.0 and peak_tflops_for("NVIDIA H200 NVL") == 835.0
    assert peak_tflops_for("NVIDIA A100-SXM4-80GB") == 312.0 and peak_tflops_for("NVIDIA A10") == 125.0
    assert peak_tflops_for("Some Future GPU") is None


@pytest.mark.parametrize("segments", [False, True])
def test_the_run_logs_mfu_from_these_flops(tmp_path, segments):
    """With a configured peak (CPU has none to look up), each logged MFU is step FLOPs / (time x peak x devices)."""
    import json

    from specialize.train import runtime
    from tests.train.test_train_runtime import PatternProvider, _config

    runtime.run_training(_config(tmp_path, 3, "log.eval_every=0", "log.peak_tflops=0.001"), PatternProvider(segments=segments))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    preset, tokens, seq = get_preset("qwen-tiny"), 4 * 32, 32  # global batch 4 x seq 32 (the test config)
    for record in records:
        counted = record["mfu"] * record["step_time_s"] * 1e9  # x peak (1e9 FLOP/s) x 1 device
        # PatternProvider(segments=True) packs two documents of 16 tokens per row: 2 x 16^2/2 pairs, not 32^2/2.
        pairs = 4 * (2 * 16 * 16 / 2 if segments else seq * seq / 2)
        assert counted == pytest.approx(step_flops(preset, tokens, pairs), rel=1e-9)
