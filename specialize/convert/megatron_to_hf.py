"""specialize megatron checkpoint -> Hugging Face checkpoint in its family's format.

The format people serve and evaluate with: safetensors shards + index, ``config.json``,
``generation_config.json`` and the tokenizer files, loadable by ``transformers`` without remote
code. Qwen2 models export as ``Qwen2ForCausalLM``, Qwen3 as ``Qwen3ForCausalLM``; Qwen 1.0 models
export as Qwen2 (same block: MHA is GQA with groups = heads; see ``ModelFamily.export_as``).

No model is built: each HF tensor is produced from its megatron tensor read alone from the
distributed checkpoint (``checkpoint_reader``), written and dropped, so memory is about one tensor
plus the shard being written, on CPU, whatever the model size and wherever the export runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from specialize.convert.hf_io import TensorGroup, write_sharded_safetensors
from specialize.model.architecture import ModelPreset
from specialize.model.families import FAMILIES, ModelFamily

DEFAULT_MAX_SHARD_BYTES = 4 * 1024**3


def export_family(preset: ModelPreset) -> ModelFamily:
    """The family whose HF format ``preset`` is exported in (Qwen 1.0 as Qwen2; the others as themselves)."""
    return FAMILIES[preset.spec.export_as]


def hf_config(preset: ModelPreset, dtype: torch.dtype, *, bos_id: int, eos_id: int) -> dict:
    """``config.json`` of the exported model: the family's architecture keys, then dtype and token ids."""
    dtype_name = str(dtype).removeprefix("torch.")
    config = export_family(preset).write_config(preset)
    config.update(bos_token_id=bos_id, eos_token_id=eos_id, torch_dtype=dtype_name, dtype=dtype_name)
    return config


def export_groups(tensors, preset: ModelPreset, dtype: torch.dtype) -> list[TensorGroup]:
    """HF tensor groups in HF's order, each produced lazily from its megatron tensor (``tensors.get(name)``)."""
    groups = []
    for mapping in export_family(preset).table.rows(preset):
        layers = range(preset.num_layers) if "*" in mapping.megatron else [None]
        for layer in layers:
            name = mapping.megatron.replace("*", str(layer)) if layer is not None else mapping.megatron
            groups.append(TensorGroup(
                names=mapping.hf_names(layer),
                shapes=mapping.transform.hf_shapes(tensors.shape(name), preset),
                dtype=dtype,
                produce=lambda name=name, transform=mapping.transform: [
                    t.to(dtype) for t in transform.to_hf(tensors.get(name), preset)],
            ))
    return groups


def megatron_to_hf(
    src: str | Path,
    dst: str | Path,
    *,
    chat_template: str | None = None,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    rope_scaling: str | None = None,
) -> Path:
    """Export the megatron checkpoint ``src`` (or a training step, or a run's newest checkpoint)
    as a Hugging Face checkpoint in ``dst``.

    ``chat_template`` (a Jinja ChatML template) goes into ``tokenizer_config.json`` and makes
    ``<|im_end|>`` the end-of-sequence token, for SFT models. ``rope_scaling`` (``yarn:4``,
    ``yarn:4:32768``; see ``specialize.model.rope_scaling``) writes YaRN context extension into config.json.
    """
    from specialize.convert.checkpoint_reader import CheckpointTensors
    from specialize.model.checkpoint import cast_dtype, read_checkpoint_meta
    from specialize.model.rope_scaling import parse_rope_scaling
    from specialize.model.source import megatron_checkpoint
    from specialize.tokenization import load_tokenizer

    resolved, destination = megatron_checkpoint(src), Path(dst)
    source, preset = resolved.checkpoint, resolved.preset
    meta = read_checkpoint_meta(source)
    scaling = parse_rope_scaling(rope_scaling, trained_length=preset.max_position_embeddings)
    scaling_entries = scaling.hf_config_entries(preset.rotary_base) if scaling else {}  # refuses what HF cannot run
    dtype = cast_dtype(meta["saved_with"]["params_dtype"])
    tokenizer = load_tokenizer(resolved.tokenizer)
    tensors = CheckpointTensors(source)
    destination.mkdir(parents=True, exist_ok=True)
    write_sharded_safetensors(destination, export_groups(tensors, preset, dtype), max_shard_bytes)
    eos_id = tokenizer.im_end_id if chat_template else tokenizer.eod_id
    config_json = {**hf_config(preset, dtype, bos_id=tokenizer.eod_id, eos_id=eos_id), **scaling_entries}
    (destination / "config.json").write_text(json.dumps(config_json, indent=2) + "\n", encoding="utf-8")
    generation = {
        "bos_token_id": tokenizer.eod_id,
        "eos_token_id": [tokenizer.im_end_id, tokenizer.eod_id] if chat_template else tokenizer.eod_id,
        "pad_token_id": tokenizer.eod_id,
        "do_sample": False,
        "max_new_tokens": 2048,
    }
    (destination / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n", encoding="utf-8")
    tokenizer.save_hf(destination, chat_template=chat_template, model_max_length=config_json["max_position_embeddings"])
    return destination
