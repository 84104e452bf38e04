"""Presets: the padding rule, named presets, and config.json in all three Qwen key schemes."""

from __future__ import annotations

import json

import pytest

from specialize.model.presets import get_preset, known_presets, padded_vocab_size, preset_from_hf_config
from specialize.model.source import model_preset


def test_padding_rule_is_multiple_of_128_times_tp():
    assert padded_vocab_size(8400, 1) == 8448
    assert padded_vocab_size(8400, 2) == 8448
    assert padded_vocab_size(151936, 1) == 151936
    assert padded_vocab_size(151936, 2) == 152064
    assert padded_vocab_size(152064, 8) == 152576
    with pytest.raises(ValueError):
        padded_vocab_size(0, 1)


def test_qwen_tiny_is_a_few_million_parameters_on_the_embedded_tokenizer():
    preset = get_preset("qwen-tiny")
    assert preset.tokenizer is None and preset.hf_repo is None
    assert preset.vocab_size == preset.load_tokenizer().vocab_size == 8400
    assert preset.padded_vocab_size(1) == 8448
    assert 2_000_000 < preset.num_parameters() < 10_000_000


@pytest.mark.parametrize(
    "name, family, hidden, layers, groups, ffn, vocab, tied",
    [
        ("qwen-1.8b", "qwen", 2048, 24, 16, 5504, 151936, False),
        ("qwen-7b", "qwen", 4096, 32, 32, 11008, 151936, False),
        ("Qwen/Qwen-14B", "qwen", 5120, 40, 40, 13696, 152064, False),
        ("qwen-72b", "qwen", 8192, 80, 64, 24576, 152064, False),
        ("qwen2.5-7b", "qwen2", 3584, 28, 4, 18944, 152064, False),
        ("Qwen/Qwen2.5-1.5B", "qwen2", 1536, 28, 2, 8960, 151936, True),
        ("qwen1.5-0.5b", "qwen2", 1024, 24, 16, 2816, 151936, True),
        ("qwen3-0.6b", "qwen3", 1024, 28, 8, 3072, 151936, True),
        ("Qwen/Qwen3-8B-Base", "qwen3", 4096, 36, 8, 12288, 151936, False),
        ("qwen3-32b", "qwen3", 5120, 64, 8, 25600, 151936, False),
        ("qwen2.5-coder-7b", "qwen2", 3584, 28, 4, 18944, 152064, False),
        ("Qwen/Qwen2.5-Coder-32B", "qwen2", 5120, 64, 8, 27648, 152064, False),
    ],
)
def test_named_presets(name, family, hidden, layers, groups, ffn, vocab, tied):
    preset = get_preset(name)
    assert (preset.family, preset.hidden_size, preset.num_layers, preset.num_query_groups) == (
        family, hidden, layers, groups)
    assert (preset.ffn_hidden_size, preset.vocab_size, preset.tie_word_embeddings) == (ffn, vocab, tied)
    preset.validate_parallel(preset.default_tp, preset.default_pp)


def test_known_sizes_have_published_parameter_counts():
    # Published sizes (HF model cards): Qwen2.5-7B 7.61B, Qwen2.5-1.5B 1.54B, Qwen-7B 7.72B.
    assert get_preset("qwen2.5-7b").num_parameters() == pytest.approx(7.61e9, rel=0.01)
    assert get_preset("qwen2.5-1.5b").num_parameters() == pytest.approx(1.54e9, rel=0.01)
    assert get_preset("qwen-7b").num_parameters() == pytest.approx(7.72e9, rel=0.01)
    # Qwen3 model cards: 0.6B, 1.7B, 4.0B, 8.2B, 14.8B, 32.8B (q/k norms, head dim 128, small sizes tied).
    for name, billions in [("qwen3-0.6b", 0.6), ("qwen3-1.7b", 1.7), ("qwen3-4b", 4.0), ("qwen3-8b", 8.2),
                           ("qwen3-14b", 14.8), ("qwen3-32b", 32.8), ("qwen2.5-coder-1.5b", 1.54),
                           ("qwen2.5-coder-7b", 7.61), ("qwen2.5-coder-14b", 14.7), ("qwen2.5-coder-32b", 32.5)]:
        assert get_preset(name).num_parameters() == pytest.approx(billions * 1e9, rel=0.02), name


def test_only_exact_hub_ids_name_presets():
    from specialize.model.presets import preset_for_name

    assert preset_for_name("Qwen/Qwen3-8B-Base").name == "qwen3-8b"
    assert preset_for_name("Qwen/Qwen3-8B") is None  # the post-trained model: its own Hub repo, not the base preset
    assert preset_for_name("checkpoints/qwen-tiny") is None  # a path whose last part is a preset name
    assert preset_for_name("QWEN-1_8B").name == "qwen-1.8b"


def test_every_yaml_preset_loads():
    names = known_presets()
    assert {"qwen-tiny", "qwen-1.8b", "qwen-7b", "qwen-14b", "qwen-72b", "qwen2.5-7b"} <= set(names)
    for name in names:
        assert get_preset(name).name == name


QWEN1_NEW_KEYS = {
    "architectures": ["QWenLMHeadModel"], "model_type": "qwen", "hidden_size": 64, "num_attention_heads": 4,
    "num_hidden_layers": 2, "intermediate_size": 352, "kv_channels": 16, "rotary_emb_base": 10000,
    "layer_norm_epsilon": 1e-6, "vocab_size": 8448, "max_position_embeddings": 512, "seq_length": 512,
}
QWEN1_OLD_KEYS = {
    "architectures": ["QWenLMHeadModel"], "model_type": "qwen", "n_embd": 64, "n_head": 4, "n_layer": 2,
    "ffn_hidden_size": 352, "kv_channels": 16, "rotary_emb_base": 10000, "layer_norm_epsilon": 1e-6,
    "padded_vocab_size": 8448, "vocab_size": 8448, "seq_length": 512,
}


@pytest.mark.parametrize("config", [QWEN1_NEW_KEYS, QWEN1_OLD_KEYS], ids=["new-keys", "old-keys"])
def test_qwen1_configs_halve_intermediate_size(config):
    preset = preset_from_hf_config(config, name="q1", source="config.json", tokenizer=None)
    assert preset.family == "qwen"
    assert (preset.hidden_size, preset.num_attention_heads, preset.num_query_groups) == (64, 4, 4)
    assert preset.ffn_hidden_size == 176 and preset.vocab_size == 8448 and preset.num_layers == 2
    assert preset.max_position_embeddings == 512 and preset.tie_word_embeddings is False


def test_qwen2_config_from_directory(tmp_path):
    config = {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 64,
        "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2, "intermediate_size": 176,
        "rms_norm_eps": 1e-5, "rope_theta": 1000000.0, "tie_word_embeddings": True, "vocab_size": 8448,
        "max_position_embeddings": 1024,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    preset = model_preset(tmp_path)
    assert preset.family == "qwen2" and preset.num_query_groups == 2 and preset.tie_word_embeddings
    assert preset.rotary_base == 1e6 and preset.norm_epsilon == 1e-5 and preset.ffn_hidden_size == 176
    assert preset.tokenizer is None  # no tokenizer files in the directory


def test_unknown_architecture_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    with pytest.raises(ValueError, match=r"config.json: unsupported architecture \['LlamaForCausalLM'\]"):
        model_preset(tmp_path)


def test_unknown_name_lists_known_presets():
    with pytest.raises(ValueError, match="unknown model 'qwen-9000b'.*qwen-tiny"):
        get_preset("qwen-9000b")


def test_parallel_layout_checked():
    with pytest.raises(ValueError, match="num_query_groups=2 not divisible by tp=4"):
        get_preset("qwen-tiny").validate_parallel(4, 1)


def test_qwen3_config_from_directory_defaults_head_dim_like_transformers(tmp_path):
    config = {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 64, "num_attention_heads": 4,
        "num_key_value_heads": 2, "num_hidden_layers": 2, "intermediate_size": 176, "vocab_size": 8448,
        "max_position_embeddings": 1024, "rope_theta": 1e6, "tie_word_embeddings": True,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    preset = model_preset(tmp_path)
    assert preset.family == "qwen3" and preset.head_dim == 128 and preset.kv_channels == 128
    assert preset.spec.qk_layernorm and not preset.spec.qkv_bias
    (tmp_path / "config.json").write_text(json.dumps({**config, "attention_bias": True}))
    with pytest.raises(ValueError, match="attention_bias=true"):
        model_preset(tmp_path)
