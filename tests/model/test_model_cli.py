"""`specialize model info` and `specialize convert` from the command line."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from specialize.cli import app
from specialize.model.memory import estimate_memory
from specialize.model.presets import get_preset

runner = CliRunner()


def test_memory_estimate_recipe():
    preset = get_preset("qwen2.5-7b")
    estimate = estimate_memory(preset, tp=2, pp=1, dp=4, seq_length=4096, micro_batch=1)
    per_gpu = -(-preset.num_parameters(padded_tp=2) // 2)
    assert estimate.parameters_per_gpu == per_gpu
    assert (estimate.weights_bytes, estimate.grads_bytes, estimate.optimizer_bytes) == (2 * per_gpu, 4 * per_gpu, 3 * per_gpu)
    # 28 layers x 34 s b h / tp, plus fp32 logits / tp
    assert estimate.activations_bytes == 28 * 34 * 4096 * 3584 // 2 + 4 * 4096 * 152064 // 2
    more_dp = estimate_memory(preset, tp=2, pp=1, dp=8, seq_length=4096, micro_batch=1)
    assert more_dp.optimizer_bytes == estimate.optimizer_bytes // 2


def test_model_info_prints_parameters_and_memory():
    result = runner.invoke(app, ["model", "info", "qwen2.5-7b", "--tp", "2", "--dp", "4"])
    assert result.exit_code == 0, result.output
    assert "7,615,616,512" in result.output and "TP=2 PP=1 CP=1 DP=4 (8 GPUs)" in result.output
    assert "total per GPU" in result.output


def test_long_context_memory_with_context_parallel_and_recompute():
    preset = get_preset("qwen2.5-7b")
    s, h, vocab = 32768, 3584, 152064
    selective = estimate_memory(preset, tp=4, cp=2, seq_length=s)
    assert selective.activations_bytes == 28 * 34 * (s // 2) * h // 4 + 4 * (s // 2) * vocab // 4
    full = estimate_memory(preset, tp=4, cp=2, seq_length=s, recompute="full")
    assert full.activations_bytes == 28 * 2 * (s // 2) * h // 4 + 4 * (s // 2) * vocab // 4
    no_flash = estimate_memory(preset, tp=4, cp=2, seq_length=s, recompute="none", flash_attention=False)
    assert no_flash.activations_bytes - selective.activations_bytes == 28 * 5 * 28 * (s // 2) * s // 4
    no_sp = estimate_memory(preset, tp=4, cp=2, seq_length=s, sequence_parallel=False)
    assert no_sp.activations_bytes == 28 * ((s // 2) * h * 10 + 24 * (s // 2) * h // 4) + 4 * (s // 2) * vocab // 4
    assert estimate_memory(preset, tp=4, cp=2, dp=2).optimizer_bytes == estimate_memory(preset, tp=4, dp=4).optimizer_bytes
    result = runner.invoke(app, ["model", "info", "qwen2.5-7b", "--tp", "4", "--cp", "2", "--seq-length", "32768",
                                 "--recompute", "full"])
    assert result.exit_code == 0, result.output
    assert "CP=2 DP=1 (8 GPUs), seq 32768" in result.output and "activations (full recompute, flash, seq. parallel)" in result.output
    beyond = runner.invoke(app, ["model", "info", "qwen-7b", "--seq-length", "32768"])
    assert "beyond the preset's 8192 positions" in beyond.output
    bad = runner.invoke(app, ["model", "info", "qwen-tiny", "--recompute", "some"])
    assert bad.exit_code != 0 and "expected none, selective or full" in bad.output


def test_model_info_rejects_impossible_layout():
    result = runner.invoke(app, ["model", "info", "qwen-tiny", "--tp", "4"])
    assert result.exit_code != 0 and "num_query_groups=2 not divisible by tp=4" in result.output


def test_convert_round_trip_from_the_command_line(hf_tied, tmp_path):
    hf_dir, _ = hf_tied
    result = runner.invoke(app, ["convert", "hf-to-megatron", "--from", str(hf_dir), "--to", str(tmp_path / "mg")])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "mg" / "specialize.json").read_text())
    assert meta["preset"]["tie_word_embeddings"] is True and meta["saved_with"]["params_dtype"] == "float32"
    result = runner.invoke(app, ["convert", "megatron-to-hf", "--from", str(tmp_path / "mg"), "--to", str(tmp_path / "hf")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "hf" / "model.safetensors.index.json").is_file()


def test_convert_bad_source_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["convert", "hf-to-megatron", "--from", str(tmp_path / "missing"), "--to", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "not a preset or Hugging Face repo id" in result.output
