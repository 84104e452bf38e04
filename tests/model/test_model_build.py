"""qwen-tiny as a real megatron-core GPTModel on CPU: builds, runs forward and backward, is causal."""

from __future__ import annotations

import torch

from specialize.model import cpu_compat
from specialize.model.build import build_gpt_model, transformer_config
from specialize.model.presets import get_preset


def test_config_is_qwen_shaped():
    preset = get_preset("qwen-tiny")
    config = transformer_config(preset)
    assert config.normalization == "RMSNorm" and config.gated_linear_unit and config.add_qkv_bias
    assert not config.add_bias_linear
    assert config.hidden_dropout == 0.0 and config.attention_dropout == 0.0
    assert config.num_query_groups == 2 and config.kv_channels == 64 and config.layernorm_epsilon == 1e-6


def test_qwen_tiny_forward_backward_on_cpu(megatron_single):
    preset = get_preset("qwen-tiny")
    model = build_gpt_model(preset, transformer_config(preset))
    assert sum(p.numel() for p in model.parameters()) == preset.num_parameters(padded_tp=1)
    if cpu_compat.cpu_mode():
        assert "megatron RNG tracker -> CPU generator" in cpu_compat.applied_patches()

    tokens = torch.randint(0, preset.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    positions = torch.arange(12).unsqueeze(0).expand(2, -1)
    logits = model(tokens, positions, None)
    assert logits.shape == (2, 12, 8448) and torch.isfinite(logits).all()

    # Causal: changing the last token leaves every earlier position's logits unchanged.
    changed = tokens.clone()
    changed[:, -1] = (changed[:, -1] + 1) % preset.vocab_size
    again = model(changed, positions, None)
    torch.testing.assert_close(again[:, :-1], logits[:, :-1], rtol=0, atol=0)
    assert not torch.equal(again[:, -1], logits[:, -1])

    loss = model(tokens, positions, None, labels=tokens)
    assert loss.shape == (2, 12)
    loss.mean().backward()
    grads = [p.grad if p.grad is not None else getattr(p, "main_grad", None) for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_checkpoint_keys_do_not_depend_on_the_layer_spec():
    """Transformer Engine fuses the norms into linear_qkv/linear_fc1; checkpoints use one key set."""
    from specialize.model.checkpoint import canonical_key

    assert canonical_key("decoder.layers.self_attention.linear_qkv.layer_norm_weight") == "decoder.layers.input_layernorm.weight"
    assert canonical_key("decoder.layers.mlp.linear_fc1.layer_norm_weight") == "decoder.layers.pre_mlp_layernorm.weight"
    assert canonical_key("decoder.layers.self_attention.linear_qkv.weight") == "decoder.layers.self_attention.linear_qkv.weight"
    assert canonical_key("decoder.final_layernorm.weight") == "decoder.final_layernorm.weight"
