"""Qwen on megatron-core: presets, CPU execution, model construction, checkpoints.

Submodules import torch/megatron lazily where they can; import what you need directly, e.g.
``from specialize.model.build import build_gpt_model``.
"""
