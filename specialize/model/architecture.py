"""``ModelPreset``: the numbers that fix a Qwen model's function, and the vocabulary padding rule.

Plain data with no knowledge of where a preset comes from (YAML presets: ``presets.py``; checkpoints
and run directories: ``source.py``) or of a family's weight names (``families/``), so every module can
import it without import cycles.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

#: Megatron pads the vocabulary so that each TP rank holds a multiple of this many rows.
VOCAB_PAD_MULTIPLE = 128


def padded_vocab_size(vocab_size: int, tp: int = 1) -> int:
    """The ONE vocabulary padding rule: round up to a multiple of ``128 * tp``.

    Megatron's VocabParallelEmbedding splits rows evenly across TP ranks, and 128 keeps each rank's
    slice aligned for the GEMMs. The true size is kept in the preset and restored on export.
    """
    if vocab_size <= 0 or tp <= 0:
        raise ValueError(f"vocab_size and tp must be positive, got vocab_size={vocab_size}, tp={tp}")
    multiple = VOCAB_PAD_MULTIPLE * tp
    return int(math.ceil(vocab_size / multiple) * multiple)


@dataclass
class ModelPreset:
    """Everything that fixes a Qwen model's function (and its default parallel layout)."""

    name: str
    family: str  # a key of specialize.model.families.FAMILIES: "qwen" (1.0), "qwen2" (1.5/2/2.5), "qwen3"
    hidden_size: int
    num_layers: int
    num_attention_heads: int
    num_query_groups: int
    ffn_hidden_size: int  # SwiGLU width (one of gate/up)
    vocab_size: int  # true number of embedding rows (HF checkpoint rows, or tokenizer size)
    max_position_embeddings: int
    rotary_base: float
    norm_epsilon: float
    tie_word_embeddings: bool
    hf_repo: str | None = None
    #: Where the tokenizer comes from: None = the embedded tiny vocabulary for ``qwen-tiny``; a
    #: checkpoint directory for presets read from one. Named HF presets have none until downloaded.
    tokenizer: str | None = None
    kv_channels: int | None = None  # head dim; None means hidden_size // num_attention_heads
    default_tp: int = 1
    default_pp: int = 1
    source: str = ""  # the YAML or config.json this preset came from (for error messages)

    def __post_init__(self) -> None:
        from specialize.model.families import FAMILIES

        where = self.source or self.name
        if self.family not in FAMILIES:
            raise ValueError(f"{where}: family must be one of {', '.join(FAMILIES)}, got {self.family!r}")
        for key in ("hidden_size", "num_layers", "num_attention_heads", "num_query_groups",
                    "ffn_hidden_size", "vocab_size", "max_position_embeddings"):
            if int(getattr(self, key)) <= 0:
                raise ValueError(f"{where}: {key} must be positive, got {getattr(self, key)}")
        if self.rotary_base <= 0:
            raise ValueError(f"{where}: rotary_base must be positive, got {self.rotary_base}")
        if self.num_attention_heads % self.num_query_groups:
            raise ValueError(
                f"{where}: num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_query_groups={self.num_query_groups}"
            )
        if self.kv_channels is None and self.hidden_size % self.num_attention_heads:
            raise ValueError(f"{where}: hidden_size is not a multiple of num_attention_heads; set kv_channels")

    @property
    def spec(self):
        """This preset's ``ModelFamily`` (weight names, megatron flags, export format)."""
        from specialize.model.families import FAMILIES

        return FAMILIES[self.family]

    @property
    def head_dim(self) -> int:
        return self.kv_channels or self.hidden_size // self.num_attention_heads

    def padded_vocab_size(self, tp: int = 1) -> int:
        return padded_vocab_size(self.vocab_size, tp)

    def num_parameters(self, *, padded_tp: int | None = None) -> int:
        """Exact parameter count of the megatron model (vocab padded for ``padded_tp`` if given)."""
        vocab = self.padded_vocab_size(padded_tp) if padded_tp else self.vocab_size
        h, d = self.hidden_size, self.head_dim
        q, kv = self.num_attention_heads * d, self.num_query_groups * d
        attention = h * (q + 2 * kv) + q * h  # QKV and output projections
        if self.spec.qkv_bias:
            attention += q + 2 * kv
        if self.spec.qk_layernorm:
            attention += 2 * d  # one RMSNorm weight over the head dim for q, one for k
        mlp = 3 * h * self.ffn_hidden_size
        per_layer = attention + mlp + 2 * h  # + two RMSNorm weights
        embeddings = vocab * h * (1 if self.tie_word_embeddings else 2)
        return self.num_layers * per_layer + embeddings + h

    def validate_parallel(self, tp: int, pp: int) -> None:
        """Raise a clear error if this model cannot be split ``tp`` x ``pp`` ways."""
        problems = []
        if self.num_attention_heads % tp:
            problems.append(f"num_attention_heads={self.num_attention_heads} not divisible by tp={tp}")
        if self.num_query_groups % tp:
            problems.append(f"num_query_groups={self.num_query_groups} not divisible by tp={tp}")
        if self.ffn_hidden_size % tp:
            problems.append(f"ffn_hidden_size={self.ffn_hidden_size} not divisible by tp={tp}")
        if self.num_layers % pp:
            problems.append(f"num_layers={self.num_layers} not divisible by pp={pp}")
        if problems:
            raise ValueError(f"{self.name}: cannot use tp={tp}, pp={pp}: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelPreset":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{data.get('source') or data.get('name')}: unknown preset keys {unknown}")
        return cls(**data)

    def load_tokenizer(self):
        """The tokenizer this model was trained with (raises if it must come from a checkpoint)."""
        from specialize.tokenization import load_tokenizer

        if self.tokenizer is None and self.hf_repo is not None:
            raise ValueError(
                f"{self.name}: its tokenizer ships with the checkpoint {self.hf_repo}; convert or point at "
                f"the checkpoint directory (specialize convert hf-to-megatron --from {self.name} ...)"
            )
        return load_tokenizer(self.tokenizer)
