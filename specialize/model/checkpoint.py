"""specialize's megatron checkpoints: a ``dist_checkpointing`` directory plus ``specialize.json``.

``megatron.core.dist_checkpointing`` stores every tensor with its global shape and each rank's
slice of it, so a checkpoint saved at one TP/PP layout loads at any other (the vocabulary rows,
padded per TP, are flagged ``allow_shape_mismatch`` by megatron itself). ``specialize.json`` carries
what the tensors do not: the preset (architecture, true vocabulary size), where the tokenizer comes
from, and the layout it was saved at.

Keys are written in one canonical form whichever layer spec built the model: Transformer Engine
fuses the pre-attention/pre-MLP norms into ``linear_qkv``/``linear_fc1`` (``layer_norm_weight``),
megatron's local spec keeps ``input_layernorm``/``pre_mlp_layernorm``; we always write the latter
and drop TE's ``_extra_state`` (FP8 metadata, empty in bf16), so a checkpoint made on a CPU with
the local spec loads into a GPU model built with TE and back.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from specialize.model.architecture import ModelPreset

META_FILE = "specialize.json"
TOKENIZER_DIR = "tokenizer"
#: Files that make up a Qwen tokenizer in any of its formats (see specialize.tokenization.qwen).
TOKENIZER_FILES = ("qwen.tiktoken", "tokenizer.tiktoken", "tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json")
FORMAT = "specialize-megatron"
FORMAT_VERSION = 1

#: Transformer Engine key fragment -> local-spec key fragment (see module docstring).
_CANONICAL_KEYS = {
    ".self_attention.linear_qkv.layer_norm_weight": ".input_layernorm.weight",
    ".self_attention.linear_qkv.layer_norm_bias": ".input_layernorm.bias",
    ".mlp.linear_fc1.layer_norm_weight": ".pre_mlp_layernorm.weight",
    ".mlp.linear_fc1.layer_norm_bias": ".pre_mlp_layernorm.bias",
}


def canonical_key(key: str) -> str:
    """The checkpoint key of a tensor, independent of the layer spec (TE or local)."""
    for fused, plain in _CANONICAL_KEYS.items():
        if key.endswith(fused):
            return key[: -len(fused)] + plain
    return key


def unwrap_model(model):
    """The GPTModel inside DDP / Float16Module wrappers (a one-element list is accepted too)."""
    if isinstance(model, (list, tuple)):
        if len(model) != 1:
            raise ValueError("virtual pipeline stages (a list of model chunks) are not supported here")
        model = model[0]
    while hasattr(model, "module") and not hasattr(model, "decoder"):
        model = model.module
    return model


def model_sharded_state_dict(model) -> dict[str, Any]:
    """The model's sharded state dict with canonical keys and without TE ``_extra_state``."""
    from megatron.core.dist_checkpointing.mapping import ShardedBase

    state = unwrap_model(model).sharded_state_dict()
    canonical: dict[str, Any] = {}
    for name, value in state.items():
        if name.endswith("_extra_state"):
            continue
        if isinstance(value, ShardedBase) and hasattr(value, "key"):
            value.key = canonical_key(value.key)
        canonical[name] = value
    return canonical


def _data_parallel_group():
    """The group whose ranks hold replicas of the same shards (DP x CP), or None outside megatron's groups."""
    from megatron.core import parallel_state

    if not parallel_state.model_parallel_is_initialized():
        return None
    return parallel_state.get_data_parallel_group(with_context_parallel=True)


def parallel_save_strategy():
    """torch_dist, with the writes of replicated shards spread over the data-parallel ranks.

    Without the wrapper, DP rank 0 writes every replicated tensor and the other DP ranks wait
    (Megatron-LM's ``--ckpt-fully-parallel-save``, its default, does the same as this).
    """
    from megatron.core.dist_checkpointing.serialization import get_default_save_sharded_strategy
    from megatron.core.dist_checkpointing.strategies.fully_parallel import FullyParallelSaveStrategyWrapper

    group = _data_parallel_group()
    strategy = get_default_save_sharded_strategy()
    return strategy if group is None else FullyParallelSaveStrategyWrapper(strategy, group)


def parallel_load_strategy(directory: str | Path):
    """Each DP rank reads a share of the replicated shards and they exchange them (``--ckpt-fully-parallel-load``)."""
    from megatron.core.dist_checkpointing.serialization import get_default_load_sharded_strategy
    from megatron.core.dist_checkpointing.strategies.fully_parallel import FullyParallelLoadStrategyWrapper

    group = _data_parallel_group()
    strategy = get_default_load_sharded_strategy(str(directory))
    return strategy if group is None else FullyParallelLoadStrategyWrapper(strategy, group)


def save_model_checkpoint(
    model, directory: str | Path, preset: ModelPreset, tokenizer_source: str | None, *, extra: dict | None = None
) -> Path:
    """Save this rank's part of ``model`` (collective: every rank calls it) and write ``specialize.json``."""
    request = _save_model(model, Path(directory), preset, tokenizer_source, extra, async_save=False)
    assert request is None
    return Path(directory)


def schedule_model_checkpoint(
    model, directory: str | Path, preset: ModelPreset, tokenizer_source: str | None, *, extra: dict | None = None,
    save_arguments: dict | None = None,
):
    """Like ``save_model_checkpoint``, but the tensors are written by megatron's asynchronous writer:
    returns its ``AsyncRequest`` (collective; ``specialize.json`` is written now, the tensor files
    when the request has run and been finalized). ``save_arguments``: the writer's extra
    ``dist_checkpointing.save`` arguments (``specialize.train.checkpointing.async_writer``)."""
    return _save_model(model, Path(directory), preset, tokenizer_source, extra, async_save=True,
                       save_arguments=save_arguments or {})


def _save_model(model, directory: Path, preset: ModelPreset, tokenizer_source: str | None, extra: dict | None,
                *, async_save: bool, save_arguments: dict | None = None):
    import torch.distributed as dist
    from megatron.core import dist_checkpointing, parallel_state

    if dist.get_rank() == 0:
        directory.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    request = dist_checkpointing.save(model_sharded_state_dict(model), str(directory), parallel_save_strategy(),
                                      async_sharded_save=async_save, **(save_arguments or {}))
    if dist.get_rank() == 0:
        tokenizer_source = _copy_tokenizer(tokenizer_source, directory)
        core = unwrap_model(model)
        tp = parallel_state.get_tensor_model_parallel_world_size()
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "preset": {**preset.to_dict(), "tokenizer": tokenizer_source},
            "tokenizer_source": tokenizer_source,
            "saved_with": {
                "tp": tp,
                "pp": parallel_state.get_pipeline_model_parallel_world_size(),
                "padded_vocab_size": preset.padded_vocab_size(tp),
                "params_dtype": str(core.config.params_dtype).removeprefix("torch."),
                "megatron_core": _megatron_version(),
            },
            **(extra or {}),
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    dist.barrier()
    return request


def _copy_tokenizer(source: str | None, directory: Path) -> str | None:
    """Copy the tokenizer files into ``directory/tokenizer`` so the checkpoint stands alone.

    Returns what ``specialize.json`` records: None for the embedded vocabulary, else the absolute
    path of the copy (readers fall back to ``<checkpoint>/tokenizer`` if the checkpoint was moved).
    """
    from specialize.tokenization.qwen import TINY_VOCAB_NAME

    if source is None or source == TINY_VOCAB_NAME:
        return None
    location = Path(source)
    if not location.is_absolute() and not location.exists():
        location = directory / location  # already relative to this checkpoint
    target = (directory / TOKENIZER_DIR).resolve()
    if location.resolve() == target:
        return str(target)
    files = [location] if location.is_file() else [location / name for name in TOKENIZER_FILES]
    files = [path for path in files if path.is_file()]
    if not files:
        raise FileNotFoundError(f"{location}: no tokenizer files to copy (looked for {', '.join(TOKENIZER_FILES)})")
    target.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copyfile(path, target / path.name)
    return str(target)


def checkpoint_tokenizer(directory: str | Path):
    """The QwenTokenizer a checkpoint was made with."""
    from specialize.tokenization import load_tokenizer

    return load_tokenizer(resolve_tokenizer_source(directory, read_checkpoint_meta(directory).get("tokenizer_source")))


def resolve_tokenizer_source(directory: str | Path, source: str | None) -> str | None:
    """Where a recorded tokenizer source is now: as recorded, else the checkpoint's own copy."""
    if source is None:
        return None
    location = Path(source)
    if not location.is_absolute():
        location = Path(directory) / location
    if not location.exists() and (Path(directory) / TOKENIZER_DIR).is_dir():
        location = Path(directory) / TOKENIZER_DIR  # the checkpoint was moved or copied
    return str(location)


def read_checkpoint_meta(directory: str | Path) -> dict:
    """``specialize.json`` of a checkpoint, with a clear error if this is not one of ours."""
    path = Path(directory) / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"{directory}: not a specialize megatron checkpoint (no {META_FILE}); "
            f"convert a Hugging Face checkpoint with `specialize convert hf-to-megatron`"
        ) from err
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON ({err})") from err
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: format is {meta.get('format')!r}, expected {FORMAT!r}")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {meta['format_version']} is newer than this specialize reads")
    return meta


def checkpoint_preset(directory: str | Path) -> ModelPreset:
    return ModelPreset.from_dict(read_checkpoint_meta(directory)["preset"])


def load_model_checkpoint(model, directory: str | Path) -> dict:
    """Load weights into ``model`` (any TP/PP layout; collective) and return ``specialize.json``."""
    from megatron.core import dist_checkpointing

    meta = read_checkpoint_meta(directory)
    sharded = model_sharded_state_dict(model)
    loaded = dist_checkpointing.load(sharded, str(directory), parallel_load_strategy(directory))
    missing, unexpected = unwrap_model(model).load_state_dict(loaded, strict=False)
    missing = [key for key in missing if not key.endswith("_extra_state")]
    if missing or unexpected:
        raise ValueError(f"{directory}: checkpoint does not fit the model (missing {missing}, unexpected {unexpected})")
    return meta


def _megatron_version() -> str:
    try:
        from megatron.core import package_info

        return package_info.__version__
    except Exception:  # pragma: no cover - version lookup must never break a save
        return "unknown"


def cast_dtype(name: str) -> torch.dtype:
    """``"bfloat16"`` -> ``torch.bfloat16`` (for the dtype recorded in ``specialize.json``)."""
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return dtype
