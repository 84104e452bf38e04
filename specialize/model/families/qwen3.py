"""Qwen3 dense (``Qwen3ForCausalLM``): Qwen2's layout without the QKV bias, plus a per-head RMSNorm
on q and k (``self_attn.q_norm`` / ``k_norm``, over ``head_dim``, applied before RoPE; megatron's
``qk_layernorm``). ``head_dim`` is its own setting (128 in every released size) and need not equal
``hidden_size / num_attention_heads`` (Qwen3-0.6B: 1024 / 16 = 64, head_dim 128). The small sizes
(0.6B, 1.7B, 4B) tie the input and output embeddings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from specialize.model.families.base import ModelFamily
from specialize.model.families.qwen2 import attention_rows, llama_style_table, read_llama_style_config, write_llama_style_config
from specialize.model.families.tables import Mapping

#: transformers' Qwen3Config default, used when a config.json omits head_dim.
DEFAULT_HEAD_DIM = 128

TABLE = llama_style_table("qwen3", (
    *attention_rows(bias=False),
    Mapping("decoder.layers.*.self_attention.q_layernorm.weight", ("model.layers.*.self_attn.q_norm.weight",)),
    Mapping("decoder.layers.*.self_attention.k_layernorm.weight", ("model.layers.*.self_attn.k_norm.weight",)),
))


def read_config(config: dict[str, Any], source: str) -> dict[str, Any]:
    if config.get("attention_bias"):
        raise ValueError(f"{source}: attention_bias=true is not a Qwen3 dense checkpoint (Qwen3 has no QKV bias)")
    return read_llama_style_config(config, source, default_head_dim=DEFAULT_HEAD_DIM)


def write_config(preset: ModelPreset) -> dict[str, Any]:
    config = write_llama_style_config(preset, architecture="Qwen3ForCausalLM", model_type="qwen3")
    config["head_dim"] = preset.head_dim  # always written: transformers defaults it to 128, not hidden/heads
    config["attention_bias"] = False
    return config


FAMILY = ModelFamily(
    name="qwen3",
    title="Qwen3 dense (Qwen3ForCausalLM)",
    architectures=frozenset({"Qwen3ForCausalLM"}),
    model_types=frozenset({"qwen3"}),
    table=TABLE,
    qkv_bias=False,
    qk_layernorm=True,
    read_config=read_config,
    export_as="qwen3",
    write_config=write_config,
)

if TYPE_CHECKING:  # type hints only: architecture imports the families at run time
    from specialize.model.architecture import ModelPreset
