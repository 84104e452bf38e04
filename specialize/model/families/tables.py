"""Qwen <-> megatron-core weight names: the machinery of the declarative per-family tables.

Each row maps a megatron parameter (``*`` = global layer index) to the Hugging Face tensors it is
made of and the transform between them. The tables themselves live in their family's module
(``specialize/model/families/qwen1.py``, ``qwen2.py``, ``qwen3.py``); a new format is a new table over
the same transforms, not new code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from specialize.model.families.transforms import Direct, Transform

#: A per-layer megatron name, "decoder.layers.<i>.<rest>" -> (prefix, i, rest).
LAYER_PATTERN = re.compile(r"^(decoder\.layers\.)(\d+)(\..+)$")
#: The LM head: absent from HF checkpoints with tied embeddings.
TIED_OUTPUT = "output_layer.weight"


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

    def rows(self, preset) -> list[Mapping]:
        """The rows a checkpoint of ``preset`` has: with tied embeddings the output layer is the
        embedding (HF stores no ``lm_head`` of its own), the ONE place that rule lives."""
        return [m for m in self.mappings if not (m.megatron == TIED_OUTPUT and preset.tie_word_embeddings)]

    def hf_sources(self, megatron_name: str, preset) -> tuple[Mapping, list[str]]:
        """The row of a (global) megatron parameter and the HF tensors it is read from
        (the last pipeline stage's copy of a tied embedding reads the embedding)."""
        mapping, layer = self.lookup(megatron_name)
        if megatron_name == TIED_OUTPUT and preset.tie_word_embeddings:
            return mapping, [self.tied_output]
        return mapping, mapping.hf_names(layer)

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
        for mapping in self.rows(preset):
            full = megatron_shape(mapping.megatron, preset, tp)
            for layer in range(preset.num_layers) if "*" in mapping.megatron else [None]:
                shapes.update(zip(mapping.hf_names(layer), mapping.transform.hf_shapes(full, preset)))
        return shapes

    def is_ignored(self, hf_name: str) -> bool:
        return any(re.search(pattern, hf_name) for pattern in self.ignored)

    def expected_hf_names(self, preset) -> list[str]:
        """Every HF tensor a complete checkpoint of this format has, in HF's order."""
        names: list[str] = []
        for mapping in self.rows(preset):
            layers = range(preset.num_layers) if "*" in mapping.megatron else [None]
            for layer in layers:
                names.extend(mapping.hf_names(layer))
        return names


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
        "self_attention.q_layernorm.weight": (d,),  # Qwen3: RMSNorm over each head's dim
        "self_attention.k_layernorm.weight": (d,),
        "mlp.linear_fc1.weight": (2 * preset.ffn_hidden_size, h),
        "mlp.linear_fc2.weight": (h, preset.ffn_hidden_size),
    }
    return shapes[suffix]


def global_layer_name(local_name: str, layer_numbers: list[int]) -> str:
    """``decoder.layers.0.x`` on a later pipeline stage -> ``decoder.layers.<global index>.x``.

    ``layer_numbers`` are megatron's 1-based global ``layer_number`` of this stage's layers.
    """
    match = LAYER_PATTERN.match(local_name)
    if not match:
        return local_name
    return f"{match[1]}{layer_numbers[int(match[2])] - 1}{match[3]}"
