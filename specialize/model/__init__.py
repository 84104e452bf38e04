"""Qwen on megatron-core: presets, CPU execution, model construction, checkpoints.

Submodules import torch/megatron lazily where they can; import what you need directly, e.g.
``from specialize.model.build import build_gpt_model``.
"""

#: One line for every command's ``--from`` help (the forms ``specialize.model.source.resolve`` accepts);
#: here, not in ``source``, so the CLI can show it without importing torch.
FROM_HELP = ("Run directory (its newest checkpoint), training step, specialize checkpoint, Hugging Face "
             "checkpoint directory, preset name (qwen-tiny, qwen2.5-7b, qwen3-8b) or Hub id (Qwen/Qwen3-8B-Base).")
