"""Hugging Face Qwen checkpoint -> specialize megatron checkpoint (dist_checkpointing).

Each of the ``tp * pp`` ranks builds its own stage/TP slice of the megatron model and fills it
from the HF files, reading one HF tensor (group) at a time and keeping only its slice; then all
ranks save collectively. The result loads at any TP/PP. Peak memory is this rank's share of the
model plus the largest tensor, never the whole model twice.

Called from one process, it converts in place (``tp * pp == 1``) or spawns the ranks itself. Called
from inside a running process group (a training job converting its ``--from`` on rank 0), it
spawns its own group of CPU processes and leaves the caller's parallel state untouched.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from specialize.convert.hf_io import CheckpointError, HFWeights
from specialize.model.architecture import ModelPreset
from specialize.model.families.tables import TIED_OUTPUT, ConversionTable, global_layer_name, megatron_shape
from specialize.model.source import hf_directory_preset, local_hf_model

_LAYER_INDEX = re.compile(r"\.\d+\.")


def check_tensor_names(weights: HFWeights, preset: ModelPreset, table: ConversionTable) -> None:
    """Every tensor the table needs is there with the shape the config implies, and nothing unknown is."""
    expected = set(table.expected_hf_names(preset))
    present = weights.names()
    missing = sorted(expected - present)
    if missing:
        raise CheckpointError(
            f"{weights.directory}: tensor {missing[0]} is missing from the checkpoint"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    for name, shape in table.hf_shapes(preset).items():
        if weights.shape(name) != shape:
            raise CheckpointError(
                f"{weights.file_of(name)}: tensor {name} has shape {list(weights.shape(name))}, "
                f"expected {list(shape)} for {preset.source or preset.name}"
            )
    # A tied checkpoint may still carry its LM head (a copy of the embedding): ignored, as transformers does.
    allowed_extra = {m.hf[0] for m in table.mappings if m.megatron == TIED_OUTPUT} if preset.tie_word_embeddings else set()
    unexpected = sorted(name for name in present - expected - allowed_extra if not table.is_ignored(name))
    if unexpected:
        raise CheckpointError(
            f"{weights.file_of(unexpected[0])}: unexpected tensor {unexpected[0]} for a {table.family} model "
            f"with {preset.num_layers} layers" + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else "")
        )


def tp_partition_dim(name: str, local_shape: tuple[int, ...], preset: ModelPreset, tp: int) -> int | None:
    """The dim along which megatron splits this parameter over TP ranks (None: replicated).

    Found by comparing this rank's shape with the full shape the table gives: exactly one dim is
    ``tp`` times smaller. This holds for megatron's own layers and Transformer Engine's alike, and
    does not depend on the ``partition_dim`` attributes megatron sets only while initialising.
    """
    full = megatron_shape(_LAYER_INDEX.sub(".*.", name, count=1), preset, tp)
    if tuple(local_shape) == tuple(full):
        return None
    split = [d for d, (mine, whole) in enumerate(zip(local_shape, full)) if mine * tp == whole and mine != whole]
    if len(local_shape) != len(full) or len(split) != 1:
        raise ValueError(f"{name}: shape {list(local_shape)} is not a TP={tp} slice of {list(full)}")
    return split[0]


def load_hf_weights(model, weights: HFWeights, preset: ModelPreset) -> None:
    """Copy HF tensors into this rank's megatron parameters (any TP rank / PP stage)."""
    from megatron.core import parallel_state

    from specialize.model.checkpoint import canonical_key, unwrap_model

    table = preset.spec.table
    core = unwrap_model(model)
    tp = parallel_state.get_tensor_model_parallel_world_size()
    tp_rank = parallel_state.get_tensor_model_parallel_rank()
    layer_numbers = [layer.layer_number for layer in core.decoder.layers] if hasattr(core, "decoder") else []
    for local_name, param in core.named_parameters():
        name = canonical_key(global_layer_name(local_name, layer_numbers))  # TE's fused-norm names too
        mapping, hf_names = table.hf_sources(name, preset)
        partition_dim = tp_partition_dim(name, tuple(param.shape), preset, tp)
        full_shape = list(param.shape)
        if partition_dim is not None:
            full_shape[partition_dim] *= tp
        expected = mapping.transform.hf_shapes(tuple(full_shape), preset)
        hf_tensors = [weights.get(hf_name, shape) for hf_name, shape in zip(hf_names, expected)]
        full = mapping.transform.to_megatron(hf_tensors, preset, tuple(full_shape))
        local = mapping.transform.tp_shard(full, tp_rank, tp, partition_dim)
        with torch.no_grad():
            param.copy_(local)
        del hf_tensors, full, local


def _checkpoint_dtype(weights: HFWeights, table: ConversionTable) -> torch.dtype:
    embedding = table.mappings[0].hf[0]
    return weights.dtype(embedding)


def convert_on_this_rank(source: Path, destination: Path, tp: int, pp: int, dtype: torch.dtype | None) -> None:
    """The collective part: build this rank's slice, fill it, save. Parallel state must be set up."""
    from specialize.model.build import build_gpt_model, transformer_config
    from specialize.model.checkpoint import save_model_checkpoint

    preset = hf_directory_preset(source)
    table = preset.spec.table
    weights = HFWeights(source)
    check_tensor_names(weights, preset, table)
    dtype = dtype or _checkpoint_dtype(weights, table)
    config = transformer_config(preset, tp=tp, pp=pp, params_dtype=dtype, perform_initialization=False)
    model = build_gpt_model(preset, config)
    load_hf_weights(model, weights, preset)
    save_model_checkpoint(
        model, destination, preset, preset.tokenizer,
        extra={"converted_from": {"source": str(source), "family": preset.family}},
    )


def _spawned_rank(rank: int, world_size: int, port: int, source: str, destination: str, tp: int, pp: int,
                  dtype: torch.dtype | None) -> None:
    from specialize.model.parallel import destroy_parallel, initialize_parallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    initialize_parallel(tp=tp, pp=pp)
    try:
        convert_on_this_rank(Path(source), Path(destination), tp, pp, dtype)
    finally:
        destroy_parallel()


def _spawn(world: int, source: Path, destination: Path, tp: int, pp: int, dtype, *, hide_cuda: bool) -> None:
    """Run ``world`` converter ranks in fresh processes (their own process group on a free port)."""
    import torch.multiprocessing as mp

    from specialize.model.parallel import free_port

    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    if hide_cuda:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # inherited by the children at spawn
    try:
        mp.spawn(_spawned_rank, args=(world, free_port(), str(source), str(destination), tp, pp, dtype), nprocs=world)
    finally:
        if hide_cuda:
            if saved is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = saved


def hf_to_megatron(
    src: str | Path, dst: str | Path, tp: int = 1, pp: int = 1, *, dtype: torch.dtype | None = None,
    collective: bool = False,
) -> Path:
    """Convert a HF Qwen checkpoint (directory or known name) into a megatron checkpoint at ``dst``.

    ``tp``/``pp`` set the layout the conversion runs at (and the vocabulary padding recorded);
    the checkpoint itself loads at any layout. ``dtype`` defaults to the checkpoint's.
    ``collective=True`` (implied under torchrun before any process group exists, e.g.
    ``torchrun --nproc-per-node 8 -m specialize.cli convert ... --tp 8``): every rank calls this and
    converts its own slice; otherwise a running group is left alone (see the module doc).
    """
    import torch.distributed as dist

    from specialize.model.parallel import destroy_parallel, initialize_parallel

    resolved = local_hf_model(src)
    source, preset, destination = resolved.hf_directory, resolved.preset, Path(dst)
    preset.validate_parallel(tp, pp)
    # Fail on a bad checkpoint here, before starting processes.
    check_tensor_names(HFWeights(source), preset, preset.spec.table)
    world = tp * pp
    launched = int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun
    if collective or (not dist.is_initialized() and launched > 1):
        current = dist.get_world_size() if dist.is_initialized() else launched
        if current != world:
            raise RuntimeError(f"collective conversion needs tp x pp = {world} ranks, this job has {current}")
        owns_group = not dist.is_initialized()
        initialize_parallel(tp, pp)
        try:
            convert_on_this_rank(source, destination, tp, pp, dtype)
        finally:
            if owns_group:
                destroy_parallel()
    elif dist.is_initialized():
        # Called from inside a running job (e.g. rank 0 of a training run): convert in a separate
        # process group so the caller's groups and RNG seeds are left alone. The converter ranks run
        # on CPU (CUDA hidden): the caller's GPUs are its own, and the result loads on any layout.
        _spawn(world, source, destination, tp, pp, dtype, hide_cuda=True)
    elif world == 1:
        initialize_parallel(1, 1)
        try:
            convert_on_this_rank(source, destination, tp, pp, dtype)
        finally:
            destroy_parallel()
    else:
        if torch.cuda.is_available() and torch.cuda.device_count() < world:
            raise RuntimeError(f"tp x pp = {world} needs {world} GPUs, found {torch.cuda.device_count()}")
        _spawn(world, source, destination, tp, pp, dtype, hide_cuda=False)
    return destination
