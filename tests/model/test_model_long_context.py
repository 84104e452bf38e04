"""Inference beyond the trained context: YaRN in the export equals YaRN in our megatron model, and Qwen 1.0's
dynamic NTK + LogN in ``chat`` equals its published formulas applied to transformers' Qwen2 model."""

from __future__ import annotations

import json

import pytest
import torch
from model_testing import sample_tokens

from specialize.convert import hf_to_megatron, megatron_to_hf
from specialize.model.rope_scaling import RopeScaling, logn_factors, ntk_alpha, parse_rope_scaling

transformers = pytest.importorskip("transformers")
VOCAB = 8500
TRAINED = 32  # pretend the tiny model was trained at 32 tokens; the prompt has 96
LONG = sample_tokens(batch=1, length=96)


def _megatron_logits(checkpoint, rope_scaling: str | None, *, ntk_length: int | None = None) -> torch.Tensor:
    from specialize.sft.chat import MegatronChat

    chat = MegatronChat(checkpoint, rope_scaling=rope_scaling)
    try:
        if ntk_length is not None:
            chat.ntk.set_length(ntk_length)
        positions = torch.arange(LONG.shape[1]).unsqueeze(0)
        with torch.no_grad():
            return chat.model(LONG, positions, None)[..., :VOCAB]
    finally:
        chat.close()


@pytest.mark.parametrize("fixture", ["hf_untied", "hf_qwen3_tied"])
def test_yarn_export_equals_megatron_yarn_on_a_long_prompt(fixture, request, tmp_path):
    hf_dir, _ = request.getfixturevalue(fixture)
    hf_to_megatron(hf_dir, tmp_path / "megatron")
    exported = megatron_to_hf(tmp_path / "megatron", tmp_path / "hf", rope_scaling=f"yarn:4:{TRAINED}")
    config = json.loads((exported / "config.json").read_text())
    assert config["rope_scaling"] == {"rope_type": "yarn", "type": "yarn", "factor": 4.0, "original_max_position_embeddings": TRAINED}
    assert config["rope_parameters"]["rope_type"] == "yarn" and config["max_position_embeddings"] == 4 * TRAINED
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(exported).eval()
    assert reloaded.config.rope_parameters["rope_type"] == "yarn"
    with torch.no_grad():
        expected = reloaded(LONG).logits
    scaled = _megatron_logits(tmp_path / "megatron", f"yarn:4:{TRAINED}")
    assert (scaled - expected).abs().max().item() <= 1e-4
    plain = _megatron_logits(tmp_path / "megatron", None)
    assert (plain - expected).abs().max().item() > 1e-2  # YaRN changed the function: the comparison means something


def test_qwen_dynamic_ntk_and_logn_follow_qwens_formulas(hf_untied, tmp_path, monkeypatch):
    hf_dir, hf_model = hf_untied
    hf_to_megatron(hf_dir, tmp_path / "megatron")
    length = LONG.shape[1]
    alpha = ntk_alpha(length, TRAINED)
    assert (alpha, ntk_alpha(TRAINED, TRAINED), ntk_alpha(2 * TRAINED, TRAINED)) == (7, 1, 3)  # Qwen: 1, 3, 7, 15...
    # The reference: transformers' Qwen2 with the NTK base, and LogN applied to q after RoPE as modeling_qwen.py does.
    head_dim = hf_model.config.hidden_size // hf_model.config.num_attention_heads
    theta = hf_model.config.rope_parameters["rope_theta"] * alpha ** (head_dim / (head_dim - 2))
    config = transformers.Qwen2Config(**{**hf_model.config.to_dict(), "rope_parameters": {"rope_type": "default", "rope_theta": theta}})
    reference = transformers.Qwen2ForCausalLM(config).eval()
    reference.load_state_dict(hf_model.state_dict())
    from transformers.models.qwen2 import modeling_qwen2

    rotate = modeling_qwen2.apply_rotary_pos_emb
    logn = logn_factors(length, TRAINED).view(1, 1, -1, 1)

    def with_logn(q, k, *args, **kwargs):
        q, k = rotate(q, k, *args, **kwargs)
        return q * logn, k

    monkeypatch.setattr(modeling_qwen2, "apply_rotary_pos_emb", with_logn)
    with torch.no_grad():
        expected = reference(LONG).logits
    scaled = _megatron_logits(tmp_path / "megatron", f"qwen-ntk-logn:{TRAINED}", ntk_length=length)
    assert (scaled - expected).abs().max().item() <= 1e-4
    assert logn_factors(4, 2).tolist() == pytest.approx([1.0, 1.0, 1.5849625, 2.0])  # log_2(3), log_2(4)


def test_rope_scaling_options_are_checked(hf_tied, tmp_path):
    assert parse_rope_scaling("yarn:4", trained_length=32768) == RopeScaling("yarn", 4.0, 32768)
    assert parse_rope_scaling("none", trained_length=8) is None
    assert parse_rope_scaling("qwen-ntk-logn:2048", trained_length=8192).trained_length == 2048
    for bad, message in [("yarn", "expected yarn:FACTOR"), ("yarn:x", "expected yarn:FACTOR"), ("yarn:0.5", "must be > 1"),
                         ("linear:2", "expected yarn:FACTOR")]:
        with pytest.raises(ValueError, match=message):
            parse_rope_scaling(bad, trained_length=32)
    hf_to_megatron(hf_tied[0], tmp_path / "megatron")
    with pytest.raises(ValueError, match="dynamic NTK \\+ LogN cannot be exported"):
        megatron_to_hf(tmp_path / "megatron", tmp_path / "hf", rope_scaling="qwen-ntk-logn")
