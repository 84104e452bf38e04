"""Hugging Face Qwen checkpoints <-> specialize megatron checkpoints.

``hf_to_megatron(src, dst, tp, pp)`` and ``megatron_to_hf(src, dst)``; what ``--from`` names is resolved
by ``specialize.model.source``; each family's weight-name table is in its module under
``specialize/model/families`` (with the table machinery and the tensor transforms beside them).
"""

from specialize.convert.hf_to_megatron import hf_to_megatron
from specialize.convert.megatron_to_hf import megatron_to_hf

__all__ = ["hf_to_megatron", "megatron_to_hf"]
