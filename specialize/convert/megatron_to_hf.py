"""specialize megatron checkpoint -> Hugging Face ``Qwen2ForCausalLM`` checkpoint.

The format people serve and evaluate with: safetensors shards + index, ``config.json``,
``generation_config.json`` and the tokenizer files, loadable by ``transformers`` without remote
code. Qwen 1.0 models export in this format too (same block: MHA is GQA with groups = heads).

No model is built: each HF tensor is produced from its megatron tensor read alone from the
distributed checkpoint (``checkpoint_reader``), written and dropped, so memory is about one tensor
plus the shard being written, on CPU, whatever the model size and wherever the export runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from specialize.convert.hf_io import TensorGroup, write_sharded_safetensors
from specialize.convert.tables import QWEN2
from specialize.model.presets import ModelPreset

DEFAULT_MAX_SHARD_BYTES = 4 * 1024**3


def hf_config(preset: ModelPreset, dtype: torch.dtype, *, bos_id: int, eos_id: int) -> dict:
    """``config.json`` of a Qwen2ForCausalLM with this preset's architecture."""
    dtype_name = str(dtype).removeprefix("torch.")
    config = {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": preset.hidden_size,
        "intermediate_size": preset.ffn_hidden_size,
        "num_hidden_layers": preset.num_layers,
        "num_attention_heads": preset.num_attention_heads,
        "num_key_value_heads": preset.num_query_groups,
        "hidden_act": "silu",
        "max_position_embeddings": preset.max_position_embeddings,
        "rms_norm_eps": preset.norm_epsilon,
        "rope_theta": preset.rotary_base,  # transformers 4.x key
        "rope_parameters": {"rope_type": "default", "rope_theta": preset.rotary_base},  # transformers 5
        "tie_word_embeddings": preset.tie_word_embeddings,
        "vocab_size": preset.vocab_size,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "use_cache": True,
        "use_sliding_window": False,
        "sliding_window": None,
        "max_window_layers": preset.num_layers,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "torch_dtype": dtype_name,
        "dtype": dtype_name,
    }
    if preset.kv_channels and preset.kv_channels != preset.hidden_size // preset.num_attention_heads:
        config["head_dim"] = preset.kv_channels
    return config


def export_groups(tensors, preset: ModelPreset, dtype: torch.dtype) -> list[TensorGroup]:
    """HF tensor groups in HF's order, each produced lazily from its megatron tensor (``tensors.get(name)``)."""
    groups = []
    for mapping in QWEN2.mappings:
        layers = range(preset.num_layers) if "*" in mapping.megatron else [None]
        for layer in layers:
            name = mapping.megatron.replace("*", str(layer)) if layer is not None else mapping.megatron
            if name == "output_layer.weight" and preset.tie_word_embeddings:
                continue  # HF ties lm_head to embed_tokens: no tensor of its own
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
) -> Path:
    """Export the megatron checkpoint ``src`` (or a training step directory holding ``model/``)
    as a HF Qwen2ForCausalLM checkpoint in ``dst``.

    ``chat_template`` (a Jinja ChatML template) goes into ``tokenizer_config.json`` and makes
    ``<|im_end|>`` the end-of-sequence token, for SFT models.
    """
    from specialize.convert.checkpoint_reader import CheckpointTensors
    from specialize.model.checkpoint import META_FILE, cast_dtype, checkpoint_tokenizer, read_checkpoint_meta

    source, destination = Path(src), Path(dst)
    if not (source / META_FILE).is_file() and (source / "model" / META_FILE).is_file():
        source = source / "model"  # a training checkpoint step: weights live in its model/ folder
    meta = read_checkpoint_meta(source)
    preset = ModelPreset.from_dict(meta["preset"])
    dtype = cast_dtype(meta["saved_with"]["params_dtype"])
    tokenizer = checkpoint_tokenizer(source)
    tensors = CheckpointTensors(source)
    destination.mkdir(parents=True, exist_ok=True)
    write_sharded_safetensors(destination, export_groups(tensors, preset, dtype), max_shard_bytes)
    eos_id = tokenizer.im_end_id if chat_template else tokenizer.eod_id
    config_json = hf_config(preset, dtype, bos_id=tokenizer.eod_id, eos_id=eos_id)
    (destination / "config.json").write_text(json.dumps(config_json, indent=2) + "\n", encoding="utf-8")
    generation = {
        "bos_token_id": tokenizer.eod_id,
        "eos_token_id": [tokenizer.im_end_id, tokenizer.eod_id] if chat_template else tokenizer.eod_id,
        "pad_token_id": tokenizer.eod_id,
        "do_sample": False,
        "max_new_tokens": 2048,
    }
    (destination / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n", encoding="utf-8")
    tokenizer.save_hf(destination, chat_template=chat_template, model_max_length=preset.max_position_embeddings)
    return destination
