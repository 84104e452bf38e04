"""Qwen1.5 / Qwen2 / Qwen2.5 (``Qwen2ForCausalLM``): separate q/k/v with bias, GQA, no other biases.

config.json: ``num_key_value_heads``, ``rope_theta`` (``rope_parameters`` in transformers 5),
``rms_norm_eps``, ``tie_word_embeddings`` (the small sizes tie), optional ``head_dim``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from specialize.model.families.base import ModelFamily, refuse_rope_scaling, refuse_sliding_window, require, rope_theta
from specialize.model.families.tables import ConversionTable, Mapping
from specialize.model.families.transforms import FusedQKV, GatedMLP, PaddedVocab


def attention_rows(*, bias: bool) -> tuple[Mapping, ...]:
    """The fused-QKV rows of the HF (Llama-style) attention layout Qwen2 and Qwen3 share."""
    names = ("model.layers.*.self_attn.q_proj", "model.layers.*.self_attn.k_proj", "model.layers.*.self_attn.v_proj")
    rows = [Mapping("decoder.layers.*.self_attention.linear_qkv.weight", tuple(f"{n}.weight" for n in names), FusedQKV())]
    if bias:
        rows.append(Mapping("decoder.layers.*.self_attention.linear_qkv.bias", tuple(f"{n}.bias" for n in names), FusedQKV()))
    return tuple(rows)


def llama_style_table(family: str, attention: tuple[Mapping, ...]) -> ConversionTable:
    """The HF layout Qwen2 and Qwen3 share, around a family's own attention rows."""
    return ConversionTable(
        family=family,
        tied_output="model.embed_tokens.weight",
        mappings=(
            Mapping("embedding.word_embeddings.weight", ("model.embed_tokens.weight",), PaddedVocab()),
            Mapping("decoder.layers.*.input_layernorm.weight", ("model.layers.*.input_layernorm.weight",)),
            *attention,
            Mapping("decoder.layers.*.self_attention.linear_proj.weight", ("model.layers.*.self_attn.o_proj.weight",)),
            Mapping("decoder.layers.*.pre_mlp_layernorm.weight", ("model.layers.*.post_attention_layernorm.weight",)),
            Mapping(
                "decoder.layers.*.mlp.linear_fc1.weight",
                ("model.layers.*.mlp.gate_proj.weight", "model.layers.*.mlp.up_proj.weight"),
                GatedMLP(),
            ),
            Mapping("decoder.layers.*.mlp.linear_fc2.weight", ("model.layers.*.mlp.down_proj.weight",)),
            Mapping("decoder.final_layernorm.weight", ("model.norm.weight",)),
            Mapping("output_layer.weight", ("lm_head.weight",), PaddedVocab()),
        ),
    )


TABLE = llama_style_table("qwen2", attention_rows(bias=True))


def read_llama_style_config(config: dict[str, Any], source: str, *, default_head_dim: int | None = None) -> dict[str, Any]:
    """Preset fields from a Qwen2/Qwen3-style config.json (the keys both generations use)."""
    refuse_sliding_window(config, source)
    refuse_rope_scaling(config, source)
    heads = int(require(config, ("num_attention_heads",), source))
    hidden = int(require(config, ("hidden_size",), source))
    head_dim = config.get("head_dim") or default_head_dim
    return dict(
        hidden_size=hidden,
        num_layers=int(require(config, ("num_hidden_layers",), source)),
        num_attention_heads=heads,
        num_query_groups=int(config.get("num_key_value_heads") or heads),
        ffn_hidden_size=int(require(config, ("intermediate_size",), source)),
        vocab_size=int(require(config, ("vocab_size",), source)),
        max_position_embeddings=int(require(config, ("max_position_embeddings",), source)),
        rotary_base=rope_theta(config, 10000.0),
        norm_epsilon=float(config.get("rms_norm_eps", 1e-6)),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        kv_channels=int(head_dim) if head_dim and int(head_dim) != hidden // heads else None,
    )


def write_llama_style_config(preset: ModelPreset, *, architecture: str, model_type: str) -> dict[str, Any]:
    """The architecture part of a Qwen2/Qwen3 config.json for ``preset``."""
    config = {
        "architectures": [architecture],
        "model_type": model_type,
        "hidden_size": preset.hidden_size,
        "intermediate_size": preset.ffn_hidden_size,
        "num_hidden_layers": preset.num_layers,
        "num_attention_heads": preset.num_attention_heads,
        "num_key_value_heads": preset.num_query_groups,
        "hidden_act": "silu",
        "max_position_embeddings": preset.max_position_embeddings,
        "rms_norm_eps": preset.norm_epsilon,
        "rope_theta": preset.rotary_base,  # transformers 4.x key
        "rope_parameters": {"rope_type": "default", "rope_theta": preset.rotary_base},  # transformers 5
        "tie_word_embeddings": preset.tie_word_embeddings,
        "vocab_size": preset.vocab_size,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "use_cache": True,
        "use_sliding_window": False,
        "sliding_window": None,
        "max_window_layers": preset.num_layers,
    }
    if preset.kv_channels and preset.kv_channels != preset.hidden_size // preset.num_attention_heads:
        config["head_dim"] = preset.kv_channels
    return config


FAMILY = ModelFamily(
    name="qwen2",
    title="Qwen1.5/2/2.5 (Qwen2ForCausalLM)",
    architectures=frozenset({"Qwen2ForCausalLM"}),
    model_types=frozenset({"qwen2"}),
    table=TABLE,
    qkv_bias=True,
    qk_layernorm=False,
    read_config=read_llama_style_config,
    export_as="qwen2",
    write_config=lambda preset: write_llama_style_config(preset, architecture="Qwen2ForCausalLM", model_type="qwen2"),
)

if TYPE_CHECKING:  # type hints only: architecture imports the families at run time
    from specialize.model.architecture import ModelPreset
