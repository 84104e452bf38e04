"""Inference-time context extension: run a model beyond the length it was trained at.

Two methods, as the Qwen models document them:

- **YaRN** (Peng et al. 2023, arXiv 2309.00071), what Qwen2.5 and Qwen3 recommend for 128k: the RoPE
  frequencies are interpolated by ``factor`` outside a band of high frequencies (beta_fast 32, beta_slow 1,
  correction range rounded to integers) and the attention logits scaled by ``0.1 ln(factor) + 1``. It is a
  static change of the function: written to the export's ``config.json`` as ``rope_scaling`` (transformers
  4.x and vLLM) and ``rope_parameters`` (transformers 5), and built into megatron's model with its
  ``YarnRotaryEmbedding`` (``position_embedding_type="yarn"``) for ``chat``.
- **Qwen 1.0's dynamic NTK + LogN** (``use_dynamic_ntk``/``use_logn_attn`` of ``modeling_qwen.py``): for
  a sequence of n tokens past the trained length L, the RoPE base becomes ``base * a^(d/(d-2))`` with
  ``a = 2^ceil(log2(n/L) + 1) - 1``, fixed at the prompt's length; and the query at 1-based position i > L
  is multiplied by ``log_L(i)``. transformers has no such model without remote code (its ``dynamic`` rope
  type is another formula, without LogN), so this runs in our megatron ``chat`` only and the export refuses it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: YaRN's constants in transformers, vLLM and megatron alike.
YARN_BETA_FAST, YARN_BETA_SLOW = 32.0, 1.0
METHODS = ("yarn", "qwen-ntk-logn")


@dataclass(frozen=True)
class RopeScaling:
    method: str  # "yarn" | "qwen-ntk-logn"
    #: YaRN: context multiplier; qwen-ntk-logn: unused (the NTK alpha follows the prompt's length).
    factor: float
    #: The length the model was trained at (YaRN's original_max_position_embeddings; Qwen's seq_length).
    trained_length: int

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"rope scaling {self.method!r}: expected one of {', '.join(METHODS)}")
        if self.method == "yarn" and not self.factor > 1.0:
            raise ValueError(f"yarn factor {self.factor}: must be > 1 (it multiplies the trained context)")
        if self.trained_length < 2:
            raise ValueError(f"trained length {self.trained_length}: must be >= 2")

    @property
    def max_positions(self) -> int:
        # Qwen 1.0 precomputes LogN factors for 32,768 positions (``logn_list``)
        return int(self.trained_length * self.factor) if self.method == "yarn" else max(32768, self.trained_length)

    # -- Hugging Face config.json ----------------------------------------------------------------
    def hf_config_entries(self, rope_theta: float) -> dict[str, Any]:
        """The config.json keys transformers (4.x and 5) and vLLM read for this scaling."""
        if self.method != "yarn":
            raise ValueError("Qwen's dynamic NTK + LogN cannot be exported: transformers has no such rope type "
                             "without remote code (its 'dynamic' type is another formula, without LogN); use "
                             "--rope-scaling yarn:FACTOR for the export, or `specialize chat --rope-scaling qwen-ntk-logn`")
        scaling = {"rope_type": "yarn", "type": "yarn", "factor": self.factor,
                   "original_max_position_embeddings": self.trained_length}
        return {
            "rope_scaling": scaling,
            "rope_parameters": {"rope_type": "yarn", "rope_theta": rope_theta, "factor": self.factor,
                                "original_max_position_embeddings": self.trained_length},
            "max_position_embeddings": self.max_positions,
        }

    # -- megatron ----------------------------------------------------------------------------------
    def configure_megatron(self, config) -> str:
        """Set megatron's YaRN fields on a ``TransformerConfig``; returns the ``position_embedding_type``.

        Plain ``TransformerConfig`` has no YaRN fields (only MLA's config declares them) but megatron's
        ``GPTModel`` and attention read them with ``getattr``; the concentration factor
        (``yarn_mscale 1 / yarn_mscale_all_dim 0`` -> ``0.1 ln(factor) + 1``) is applied to q and k like
        transformers' ``attention_factor``.
        """
        if self.method != "yarn":
            return "rope"
        config.yarn_rotary_scaling_factor = self.factor
        config.yarn_original_max_position_embeddings = self.trained_length
        config.yarn_beta_fast, config.yarn_beta_slow = YARN_BETA_FAST, YARN_BETA_SLOW
        config.yarn_mscale, config.yarn_mscale_all_dim = 1.0, 0.0
        config.yarn_correction_range_round_to_int = True
        return "yarn"


def parse_rope_scaling(text: str | None, *, trained_length: int) -> RopeScaling | None:
    """``yarn:4``, ``yarn:4:32768`` (factor, trained length), ``qwen-ntk-logn`` or ``qwen-ntk-logn:2048``;
    None or ``none`` for no scaling. The trained length defaults to the model's ``max_position_embeddings``."""
    if text is None or text.strip().lower() in ("", "none"):
        return None
    usage = f"--rope-scaling {text!r}: expected yarn:FACTOR[:TRAINED_LENGTH] or qwen-ntk-logn[:TRAINED_LENGTH]"
    method, *numbers = text.strip().lower().split(":")
    try:
        values = [float(number) for number in numbers]
    except ValueError:
        raise ValueError(usage) from None
    if method == "yarn" and 1 <= len(values) <= 2:
        return RopeScaling("yarn", values[0], int(values[1]) if len(values) == 2 else trained_length)
    if method == "qwen-ntk-logn" and len(values) <= 1:
        return RopeScaling("qwen-ntk-logn", 1.0, int(values[0]) if values else trained_length)
    raise ValueError(usage)


# -- Qwen 1.0 dynamic NTK + LogN on a megatron GPTModel --------------------------------------------

def ntk_alpha(length: int, trained_length: int) -> float:
    """Qwen's ``get_ntk_alpha``: 1 within the trained length, then 3, 7, 15... per doubling."""
    context_value = math.log(length / trained_length, 2) + 1
    return max(2 ** math.ceil(context_value) - 1, 1)


def logn_factors(length: int, trained_length: int):
    """Per query position (0-based), Qwen's ``logn_list``: ``log_L(i)`` for 1-based i > L, else 1."""
    import torch

    positions = torch.arange(1, length + 1, dtype=torch.float32)
    return torch.where(positions > trained_length, positions.log() / math.log(trained_length), torch.ones_like(positions))


class QwenDynamicNTK:
    """Qwen 1.0's long-context inference on our megatron model: ``set_length(prompt length)`` before a
    generation fixes the RoPE base as Qwen's KV-cached generation does (alpha from the prompt); every
    forward scales the queries past the trained length by LogN (a pre-hook on core attention, after RoPE)."""

    def __init__(self, model, scaling: RopeScaling, *, rotary_base: float, head_dim: int) -> None:
        self.model, self.scaling, self.base, self.dim = model, scaling, rotary_base, head_dim
        self.alpha = 1.0
        for layer in model.decoder.layers:
            layer.self_attention.core_attention.register_forward_pre_hook(self._logn, with_kwargs=True)

    def set_length(self, length: int) -> None:
        import torch

        alpha = ntk_alpha(length, self.scaling.trained_length)
        if alpha == self.alpha:
            return
        self.alpha = alpha
        rotary = self.model.rotary_pos_emb
        base = self.base * alpha ** (self.dim / (self.dim - 2))
        rotary.inv_freq = 1.0 / (base ** (torch.arange(0, self.dim, 2, dtype=torch.float32, device=rotary.inv_freq.device) / self.dim))
        rotary.forward.cache_clear()  # megatron caches the embedding per length

    def _logn(self, module, args, kwargs):
        query = args[0]  # [sequence, batch, heads, head dim]
        factors = logn_factors(query.shape[0], self.scaling.trained_length).to(query.device, query.dtype)
        return (query * factors.view(-1, 1, 1, 1), *args[1:]), kwargs
