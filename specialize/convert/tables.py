"""Qwen <-> megatron-core weight names: one declarative table per checkpoint format.

Each row maps a megatron parameter (``*`` = global layer index) to the Hugging Face tensors it is
made of and the transform between them. Qwen 1.0 and Qwen2 (1.5/2/2.5) are two tables over the
same transforms; a new format (Qwen3: add q/k norms) is a new table, not new code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from specialize.convert.transforms import ContiguousQKV, Direct, FusedQKV, GatedMLP, PaddedVocab, Transform

#: A per-layer megatron name, "decoder.layers.<i>.<rest>" -> (prefix, i, rest).
LAYER_PATTERN = re.compile(r"^(decoder\.layers\.)(\d+)(\..+)$")


@dataclass(frozen=True)
class Mapping:
    megatron: str
    hf: tuple[str, ...]
    transform: Transform = field(default_factory=Direct)

    def hf_names(self, layer: int | None) -> list[str]:
        return [name.replace("*", str(layer)) if layer is not None else name for name in self.hf]


@dataclass(frozen=True)
class ConversionTable:
    family: str
    mappings: tuple[Mapping, ...]
    #: HF tensor the output layer is read from / omitted as, when input and output embeddings are tied.
    tied_output: str
    #: HF tensors that carry no learned weights (recomputed buffers) and are skipped on import.
    ignored: tuple[str, ...] = (r"rotary_emb\.inv_freq$",)

    def lookup(self, megatron_name: str) -> tuple[Mapping, int | None]:
        """The row for a (global) megatron parameter name, and its layer index."""
        match = LAYER_PATTERN.match(megatron_name)
        pattern, layer = (f"{match[1]}*{match[3]}", int(match[2])) if match else (megatron_name, None)
        for mapping in self.mappings:
            if mapping.megatron == pattern:
                return mapping, layer
        raise KeyError(f"no {self.family} mapping for megatron parameter {megatron_name}")

    def hf_shapes(self, preset, tp: int = 1) -> dict[str, tuple[int, ...]]:
        """Expected shape of every HF tensor of a complete checkpoint (checked before converting)."""
        shapes: dict[str, tuple[int, ...]] = {}
        for mapping in self.mappings:
            if mapping.megatron == "output_layer.weight" and preset.tie_word_embeddings:
                continue
            full = megatron_shape(mapping.megatron, preset, tp)
            for layer in range(preset.num_layers) if "*" in mapping.megatron else [None]:
                shapes.update(zip(mapping.hf_names(layer), mapping.transform.hf_shapes(full, preset)))
        return shapes

    def is_ignored(self, hf_name: str) -> bool:
        return any(re.search(pattern, hf_name) for pattern in self.ignored)

    def expected_hf_names(self, num_layers: int, tied: bool) -> list[str]:
        """Every HF tensor a complete checkpoint of this format has, in HF's order."""
        names: list[str] = []
        for mapping in self.mappings:
            if mapping.megatron == "output_layer.weight" and tied:
                continue
            layers = range(num_layers) if "*" in mapping.megatron else [None]
            for layer in layers:
                names.extend(mapping.hf_names(layer))
        return names


QWEN2 = ConversionTable(
    family="qwen2",
    tied_output="model.embed_tokens.weight",
    mappings=(
        Mapping("embedding.word_embeddings.weight", ("model.embed_tokens.weight",), PaddedVocab()),
        Mapping("decoder.layers.*.input_layernorm.weight", ("model.layers.*.input_layernorm.weight",)),
        Mapping(
            "decoder.layers.*.self_attention.linear_qkv.weight",
            ("model.layers.*.self_attn.q_proj.weight", "model.layers.*.self_attn.k_proj.weight",
             "model.layers.*.self_attn.v_proj.weight"),
            FusedQKV(),
        ),
        Mapping(
            "decoder.layers.*.self_attention.linear_qkv.bias",
            ("model.layers.*.self_attn.q_proj.bias", "model.layers.*.self_attn.k_proj.bias",
             "model.layers.*.self_attn.v_proj.bias"),
            FusedQKV(),
        ),
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

# Qwen 1.0 (QWenLMHeadModel). In Qwen's MLP, forward is c_proj(w1(x) * silu(w2(x))):
# w2 is the SiLU gate and w1 the up projection. c_attn holds [Q; K; V] as contiguous blocks.
QWEN1 = ConversionTable(
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

def megatron_shape(pattern: str, preset, tp: int = 1) -> tuple[int, ...]:
    """Full (TP-unsplit) shape of a megatron-core GPTModel parameter for this preset."""
    h, d = preset.hidden_size, preset.head_dim
    qkv_rows = (preset.num_attention_heads + 2 * preset.num_query_groups) * d
    vocab = preset.padded_vocab_size(tp)
    suffix = pattern.split("*.")[-1]
    shapes = {
        "embedding.word_embeddings.weight": (vocab, h),
        "output_layer.weight": (vocab, h),
        "decoder.final_layernorm.weight": (h,),
        "input_layernorm.weight": (h,),
        "pre_mlp_layernorm.weight": (h,),
        "self_attention.linear_qkv.weight": (qkv_rows, h),
        "self_attention.linear_qkv.bias": (qkv_rows,),
        "self_attention.linear_proj.weight": (h, preset.num_attention_heads * d),
        "mlp.linear_fc1.weight": (2 * preset.ffn_hidden_size, h),
        "mlp.linear_fc2.weight": (h, preset.ffn_hidden_size),
    }
    return shapes[suffix]


TABLES = {table.family: table for table in (QWEN1, QWEN2)}


def table_for(family: str) -> ConversionTable:
    try:
        return TABLES[family]
    except KeyError:
        raise ValueError(f"no conversion table for model family {family!r} (known: {sorted(TABLES)})") from None


def global_layer_name(local_name: str, layer_numbers: list[int]) -> str:
    """``decoder.layers.0.x`` on a later pipeline stage -> ``decoder.layers.<global index>.x``.

    ``layer_numbers`` are megatron's 1-based global ``layer_number`` of this stage's layers.
    """
    match = LAYER_PATTERN.match(local_name)
    if not match:
        return local_name
    return f"{match[1]}{layer_numbers[int(match[2])] - 1}{match[3]}"
