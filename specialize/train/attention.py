"""Which attention runs, and how document boundaries reach it: decided once, before the first step.

Packed samples (SFT conversations, CPT with ``data.reset_attention_mask``) must not attend across
documents. Megatron offers two ways, and each layer spec honours only one:

- megatron's local layer spec (pure PyTorch ``DotProductAttention``) takes an arbitrary
  ``attention_mask``: we pass the block-diagonal causal mask (CPU, and GPUs without Transformer Engine).
- the Transformer Engine spec is built with ``AttnMaskType.causal`` and ignores a mask; boundaries go in
  as ``PackedSeqParams`` (THD layout, ``cu_seqlens``), which TE's fused (cuDNN) and flash kernels both
  read, and RoPE then restarts at every document. A micro-batch of several rows is flattened into one
  THD row, as Megatron-LM's ``get_batch`` does for packed data; a row's end is a boundary too.

| choice | CPU | GPU with TE | GPU without TE |
|---|---|---|---|
| ``auto`` | local, mask | TE, THD, ``AttnBackend.auto`` (cuDNN fused or flash, TE decides) | local, mask |
| ``flash`` | error | TE, THD, ``AttnBackend.flash`` | error (megatron's flash needs TE) |
| ``local`` | local, mask | local, mask | local, mask |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch


class AttentionUnavailable(ValueError):
    pass


@dataclass(frozen=True)
class AttentionPlan:
    spec: Literal["local", "transformer_engine"]
    boundaries: Literal["mask", "thd"]
    backend: str | None  # megatron AttnBackend member name for the config (None: the spec's default)

    def config_overrides(self) -> dict:
        if self.backend is None:
            return {}
        from megatron.core.transformer.enums import AttnBackend

        return {"attention_backend": getattr(AttnBackend, self.backend)}


def plan_attention(choice: str, *, on_gpu: bool, have_te: bool) -> AttentionPlan:
    if choice not in ("auto", "flash", "local"):
        raise AttentionUnavailable(f"model.attention {choice!r}: expected auto, flash or local")
    if not on_gpu:
        if choice == "flash":
            raise AttentionUnavailable("model.attention=flash needs a GPU with Transformer Engine; on CPU use auto or local")
        return AttentionPlan("local", "mask", None)
    if choice == "local" or (choice == "auto" and not have_te):
        return AttentionPlan("local", "mask", "local")
    if not have_te:
        raise AttentionUnavailable("model.attention=flash needs Transformer Engine (pip install 'specialize[gpu]', or the "
                                   "NGC PyTorch image): megatron's flash path is TE's, its local attention has no flash kernel")
    return AttentionPlan("transformer_engine", "thd", "flash" if choice == "flash" else "auto")


def cu_seqlens(segment_ids: torch.Tensor) -> torch.Tensor:
    """int32 document starts (and the total) of the rows of ``segment_ids`` laid end to end.

    A document is a run of equal ids within a row; every row starts a new one.
    """
    b, s = segment_ids.shape
    change = torch.zeros(b, s, dtype=torch.bool, device=segment_ids.device)
    change[:, 0] = True
    change[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]
    starts = torch.nonzero(change.reshape(-1)).flatten()
    total = torch.tensor([b * s], device=segment_ids.device)
    return torch.cat([starts, total]).to(torch.int32)


def thd_batch(tokens, labels, loss_mask, position_ids, segment_ids):
    """The micro-batch as one row of b x s tokens plus its ``PackedSeqParams`` (THD)."""
    from megatron.core.packed_seq_params import PackedSeqParams

    bounds = cu_seqlens(segment_ids)
    longest = int(torch.diff(bounds).max())
    packed = PackedSeqParams(qkv_format="thd", cu_seqlens_q=bounds, cu_seqlens_kv=bounds,
                             max_seqlen_q=longest, max_seqlen_kv=longest)
    row = lambda t: t.reshape(1, -1)
    return row(tokens), row(labels), row(loss_mask), row(position_ids), packed
