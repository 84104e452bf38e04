"""Qwen 1.0 (``QWenLMHeadModel``, remote code): fused ``c_attn`` with bias, MHA, SwiGLU as w1/w2.

Two config.json key schemes shipped: newer ``hidden_size/num_attention_heads/num_hidden_layers/
intermediate_size/kv_channels/rotary_emb_base/layer_norm_epsilon`` and older ``n_embd/n_head/
n_layer/ffn_hidden_size/padded_vocab_size``. ``intermediate_size`` (and ``ffn_hidden_size``) is the
width of w1 and w2 *together*: the SwiGLU width megatron calls ``ffn_hidden_size`` is half of it.
In Qwen's MLP, forward is ``c_proj(w1(x) * silu(w2(x)))``: w2 is the SiLU gate and w1 the up projection.

Exports are written as Qwen2 (``export_as``): the same block, MHA being GQA with groups = heads, and
``transformers`` loads it without remote code.
"""

from __future__ import annotations

from typing import Any

from specialize.model.families.base import ModelFamily, require
from specialize.model.families.tables import ConversionTable, Mapping
from specialize.model.families.transforms import ContiguousQKV, GatedMLP, PaddedVocab

TABLE = ConversionTable(
    family="qwen",
    tied_output="transformer.wte.weight",
    mappings=(
        Mapping("embedding.word_embeddings.weight", ("transformer.wte.weight",), PaddedVocab()),
        Mapping("decoder.layers.*.input_layernorm.weight", ("transformer.h.*.ln_1.weight",)),
        Mapping("decoder.layers.*.self_attention.linear_qkv.weight", ("transformer.h.*.attn.c_attn.weight",), ContiguousQKV()),
        Mapping("decoder.layers.*.self_attention.linear_qkv.bias", ("transformer.h.*.attn.c_attn.bias",), ContiguousQKV()),
        Mapping("decoder.layers.*.self_attention.linear_proj.weight", ("transformer.h.*.attn.c_proj.weight",)),
        Mapping("decoder.layers.*.pre_mlp_layernorm.weight", ("transformer.h.*.ln_2.weight",)),
        Mapping(
            "decoder.layers.*.mlp.linear_fc1.weight",
            ("transformer.h.*.mlp.w2.weight", "transformer.h.*.mlp.w1.weight"),
            GatedMLP(),
        ),
        Mapping("decoder.layers.*.mlp.linear_fc2.weight", ("transformer.h.*.mlp.c_proj.weight",)),
        Mapping("decoder.final_layernorm.weight", ("transformer.ln_f.weight",)),
        Mapping("output_layer.weight", ("lm_head.weight",), PaddedVocab()),
    ),
)


def read_config(config: dict[str, Any], source: str) -> dict[str, Any]:
    heads = int(require(config, ("num_attention_heads", "n_head"), source))
    two_ffn = int(require(config, ("intermediate_size", "ffn_hidden_size"), source))
    if two_ffn % 2:
        raise ValueError(f"{source}: Qwen 1.0 intermediate_size={two_ffn} must be even (it is 2 x the SwiGLU width)")
    return dict(
        hidden_size=int(require(config, ("hidden_size", "n_embd"), source)),
        num_layers=int(require(config, ("num_hidden_layers", "n_layer"), source)),
        num_attention_heads=heads,
        num_query_groups=heads,
        ffn_hidden_size=two_ffn // 2,
        vocab_size=int(require(config, ("padded_vocab_size", "vocab_size"), source)),
        max_position_embeddings=int(require(config, ("max_position_embeddings", "seq_length", "n_positions"), source)),
        rotary_base=float(config.get("rotary_emb_base", 10000.0)),
        norm_epsilon=float(config.get("layer_norm_epsilon", 1e-6)),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        kv_channels=int(config["kv_channels"]) if config.get("kv_channels") else None,
    )


FAMILY = ModelFamily(
    name="qwen",
    title="Qwen 1.0 (QWenLMHeadModel)",
    architectures=frozenset({"QWenLMHeadModel"}),
    model_types=frozenset({"qwen"}),
    table=TABLE,
    qkv_bias=True,
    qk_layernorm=False,
    read_config=read_config,
    export_as="qwen2",
)
