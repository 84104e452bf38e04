"""Typed tensor transforms between Hugging Face layouts and megatron-core's, in both directions.

A transform turns the HF tensors of one mapping into the *full* (TP-unsplit) megatron tensor and
back, knows the HF shapes it expects (to name a wrong-shaped tensor before touching it), and
knows how the full megatron tensor is split across TP ranks. Conversion tables (``tables.py``)
are lists of (megatron name, HF names, transform); these are all the transforms Qwen needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch

if TYPE_CHECKING:  # type hints only: architecture imports the families at run time
    from specialize.model.architecture import ModelPreset


Shape = tuple[int, ...]


class Transform:
    """One HF tensor <-> one megatron tensor, unchanged (norms, projections)."""

    arity = 1

    def hf_shapes(self, megatron_shape: Shape, preset: ModelPreset) -> list[Shape]:
        return [tuple(megatron_shape)]

    def to_megatron(self, hf: Sequence[torch.Tensor], preset: ModelPreset, shape: Shape) -> torch.Tensor:
        """The full megatron tensor of ``shape`` from the HF tensors (already shape-checked)."""
        return hf[0]

    def to_hf(self, tensor: torch.Tensor, preset: ModelPreset) -> list[torch.Tensor]:
        return [tensor]

    def tp_shard(self, full: torch.Tensor, rank: int, tp: int, partition_dim: int | None) -> torch.Tensor:
        """This TP rank's slice of the full tensor (``partition_dim`` from megatron's param attributes)."""
        if partition_dim is None or tp == 1:
            return full
        return torch.chunk(full, tp, dim=partition_dim)[rank]


@dataclass(frozen=True)
class Direct(Transform):
    """Same tensor on both sides."""


@dataclass(frozen=True)
class PaddedVocab(Transform):
    """Embedding / LM head rows: megatron pads the vocabulary with zero rows, HF keeps the true size."""

    def hf_shapes(self, megatron_shape: Shape, preset: ModelPreset) -> list[Shape]:
        return [(preset.vocab_size, *megatron_shape[1:])]

    def to_megatron(self, hf, preset, shape):
        return pad_rows(hf[0], shape[0])

    def to_hf(self, tensor, preset):
        return [tensor[: preset.vocab_size]]


def pad_rows(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    """Append zero rows up to ``rows`` (megatron's padded vocabulary)."""
    if tensor.shape[0] == rows:
        return tensor
    if tensor.shape[0] > rows:
        raise ValueError(f"cannot pad {tensor.shape[0]} rows down to {rows}")
    padding = torch.zeros((rows - tensor.shape[0], *tensor.shape[1:]), dtype=tensor.dtype)
    return torch.cat([tensor, padding], dim=0)


def _qkv_sizes(preset: ModelPreset) -> tuple[int, int, int]:
    """(groups, query rows per group, key/value rows per group)."""
    d = preset.head_dim
    groups = preset.num_query_groups
    return groups, preset.num_attention_heads // groups * d, d


@dataclass(frozen=True)
class FusedQKV(Transform):
    """Separate q, k, v (Qwen2) <-> megatron's fused QKV, interleaved per query group:
    ``[q_g0 (heads/groups x d rows); k_g0 (d); v_g0 (d); q_g1; k_g1; v_g1; ...]``.
    Works for weights ``[rows, hidden]`` and biases ``[rows]`` alike; a TP split of dim 0 then
    hands each rank whole groups."""

    arity = 3

    def hf_shapes(self, megatron_shape, preset):
        groups, q_rows, kv_rows = _qkv_sizes(preset)
        rest = tuple(megatron_shape[1:])
        return [(groups * q_rows, *rest), (groups * kv_rows, *rest), (groups * kv_rows, *rest)]

    def to_megatron(self, hf, preset, shape):
        q, k, v = hf
        groups, q_rows, kv_rows = _qkv_sizes(preset)
        rest = q.shape[1:]
        fused = torch.cat(
            [q.reshape(groups, q_rows, *rest), k.reshape(groups, kv_rows, *rest), v.reshape(groups, kv_rows, *rest)],
            dim=1,
        )
        return fused.reshape(groups * (q_rows + 2 * kv_rows), *rest)

    def to_hf(self, tensor, preset):
        groups, q_rows, kv_rows = _qkv_sizes(preset)
        rest = tensor.shape[1:]
        q, k, v = tensor.reshape(groups, q_rows + 2 * kv_rows, *rest).split([q_rows, kv_rows, kv_rows], dim=1)
        return [part.reshape(groups * rows, *rest).contiguous() for part, rows in ((q, q_rows), (k, kv_rows), (v, kv_rows))]


@dataclass(frozen=True)
class ContiguousQKV(Transform):
    """Qwen 1.0's ``c_attn``: one tensor ``[Q; K; V]`` (contiguous blocks) <-> megatron's fused QKV."""

    def hf_shapes(self, megatron_shape, preset):
        return [tuple(megatron_shape)]

    def to_megatron(self, hf, preset, shape):
        groups, q_rows, kv_rows = _qkv_sizes(preset)
        q, k, v = hf[0].split([groups * q_rows, groups * kv_rows, groups * kv_rows], dim=0)
        return FusedQKV().to_megatron([q, k, v], preset, shape)

    def to_hf(self, tensor, preset):
        return [torch.cat(FusedQKV().to_hf(tensor, preset), dim=0)]


@dataclass(frozen=True)
class GatedMLP(Transform):
    """SwiGLU gate and up projections <-> megatron's ``linear_fc1`` = ``[gate; up]``.

    Under TP each rank holds ``[gate_r; up_r]``, so the split is per half, not of the whole."""

    arity = 2

    def hf_shapes(self, megatron_shape, preset):
        half = (megatron_shape[0] // 2, *megatron_shape[1:])
        return [half, half]

    def to_megatron(self, hf, preset, shape):
        gate, up = hf
        return torch.cat([gate, up], dim=0)

    def to_hf(self, tensor, preset):
        gate, up = tensor.chunk(2, dim=0)
        return [gate.contiguous(), up.contiguous()]

    def tp_shard(self, full, rank, tp, partition_dim):
        if tp == 1:
            return full
        gate, up = full.chunk(2, dim=0)
        return torch.cat([gate.chunk(tp, dim=0)[rank], up.chunk(tp, dim=0)[rank]], dim=0)
