"""Hugging Face Qwen checkpoints <-> specialize megatron checkpoints.

``hf_to_megatron(src, dst, tp, pp)``, ``megatron_to_hf(src, dst)``, ``resolve_checkpoint(name_or_dir)``;
the weight-name tables are in ``tables.py``, the tensor transforms in ``transforms.py``.
"""

from specialize.convert.hf_to_megatron import hf_to_megatron
from specialize.convert.megatron_to_hf import megatron_to_hf
from specialize.convert.resolve import resolve_checkpoint

__all__ = ["hf_to_megatron", "megatron_to_hf", "resolve_checkpoint"]
