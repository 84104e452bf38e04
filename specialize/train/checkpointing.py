"""Training checkpoints: model + optimizer + schedule + RNG + data position, atomic, last K kept.

Layout of ``<output>/checkpoints``::

    latest                   text: the name of the newest complete checkpoint ("step-000100")
    step-000100/
      model/                 specialize model checkpoint (dist_checkpointing + specialize.json):
                             what ``specialize sft --from`` and the HF export read; any TP/PP
      optimizer/             dist_checkpointing of the (distributed) optimizer state, model-space
                             sharded so it too reloads at another TP/PP/DP layout
      rng/rank-00003.pt      python/numpy/torch/megatron-tracker RNG state of each rank
      state.json             step, consumed samples, LR-scheduler state, bad-step count, layout
      config.yaml            the resolved run config

Atomicity: everything is written into ``step-000100.partial``; only when every rank has finished is
it renamed to ``step-000100`` and ``latest`` replaced (``os.replace``), both by rank 0. A save killed
half-way leaves a ``.partial`` directory (removed by the next save) and ``latest`` on the previous one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

LATEST = "latest"
PARTIAL = ".partial"
STATE_FILE = "state.json"
# Gathers the distributed optimizer's state into model space (one tensor per parameter), so it reloads
# at another TP/PP/DP layout; megatron 0.16's default ("fully_sharded_model_space") no longer saves.
OPTIMIZER_SHARDING = {"distrib_optim_sharding_type": "fully_reshardable"}


def step_name(step: int) -> str:
    return f"step-{step:06d}"


def checkpoint_root(output: str | Path) -> Path:
    return Path(output) / "checkpoints"


def latest_checkpoint(output: str | Path) -> Path | None:
    """The newest complete checkpoint of a run directory, or None."""
    root = checkpoint_root(output)
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    path = root / pointer.read_text(encoding="utf-8").strip()
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"{pointer} names {path.name}, which is incomplete or missing: delete {pointer} to start over")
    return path


def _rng_state() -> dict:
    from megatron.core import tensor_parallel

    return {
        "python": random.getstate(),
        "numpy": _numpy_state_as_tensors(np.random.get_state()),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
        "tracker": tensor_parallel.get_cuda_rng_tracker().get_states(),
    }


def _numpy_state_as_tensors(state: tuple) -> tuple:
    """numpy's MT19937 state with its key array as a tensor, so the file loads with ``weights_only=True``
    (plain containers, numbers and tensors only: a checkpoint from elsewhere cannot run code on load)."""
    name, keys, position, has_gauss, cached_gaussian = state
    return name, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached_gaussian)


def _set_rng_state(state: dict) -> None:
    from megatron.core import tensor_parallel

    random.setstate(state["python"])
    name, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["tracker"])


def save_checkpoint(output: str | Path, step: int, *, model, optimizer, scheduler, preset, tokenizer_source,
                    state: dict, config_yaml: str, keep_last: int) -> Path:
    """Collective: every rank calls it. Returns the final checkpoint directory."""
    from megatron.core import dist_checkpointing

    from specialize.model.checkpoint import model_sharded_state_dict, parallel_save_strategy, save_model_checkpoint

    root = checkpoint_root(output)
    final = root / step_name(step)
    partial = root / (step_name(step) + PARTIAL)
    rank = dist.get_rank()
    if rank == 0:
        if partial.exists():
            shutil.rmtree(partial)
        (partial / "optimizer").mkdir(parents=True)
        (partial / "rng").mkdir()
    dist.barrier()
    save_model_checkpoint(model, partial / "model", preset, tokenizer_source, extra={"train_step": step})
    optimizer_state = optimizer.sharded_state_dict(model_sharded_state_dict(model), is_loading=False, metadata=OPTIMIZER_SHARDING)
    dist_checkpointing.save(optimizer_state, str(partial / "optimizer"), parallel_save_strategy())
    torch.save(_rng_state(), partial / "rng" / f"rank-{rank:05d}.pt")
    dist.barrier()
    if rank == 0:
        full_state = {**state, "step": step, "scheduler": scheduler.state_dict(), "world_size": dist.get_world_size()}
        (partial / STATE_FILE).write_text(json.dumps(full_state, indent=1) + "\n", encoding="utf-8")
        (partial / "config.yaml").write_text(config_yaml, encoding="utf-8")
        if final.exists():  # a re-save of the same step (e.g. SIGTERM right after a periodic save)
            shutil.rmtree(final)
        os.replace(partial, final)
        _relocate_paths(final / "model" / "specialize.json", str(partial), str(final))
        tmp = root / (LATEST + ".tmp")
        tmp.write_text(final.name + "\n", encoding="utf-8")
        os.replace(tmp, root / LATEST)
        _prune(root, keep_last, keep=final.name)
    dist.barrier()
    return final


def _relocate_paths(meta_file: Path, old: str, new: str) -> None:
    """The model checkpoint records absolute paths (its tokenizer copy) as written under ``.partial``;
    point them at the final directory (the rename happened after they were written)."""
    text = meta_file.read_text(encoding="utf-8")
    if old in text:
        tmp = meta_file.with_suffix(".tmp")
        tmp.write_text(text.replace(json.dumps(old)[1:-1], json.dumps(new)[1:-1]), encoding="utf-8")
        os.replace(tmp, meta_file)


def _prune(root: Path, keep_last: int, keep: str) -> None:
    """Remove stale partial saves and all but the newest ``keep_last`` complete checkpoints."""
    for stale in root.glob("step-*" + PARTIAL):
        shutil.rmtree(stale, ignore_errors=True)
    complete = sorted(p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(PARTIAL))
    for old in complete[: max(0, len(complete) - max(1, keep_last))]:
        if old.name != keep:
            shutil.rmtree(old, ignore_errors=True)


def _materialize_optimizer_state(optimizer) -> None:
    """Give a fresh optimizer its state tensors (and step) so a checkpoint can be loaded into them.

    megatron's distributed optimizer reads ``step`` from the torch AdamW state while building its
    sharded state dict, which a never-stepped optimizer lacks. One AdamW step with lr 0 and zero
    gradients creates every state tensor and leaves the parameters bit-for-bit unchanged
    (p - 0 * update, p * (1 - 0 * wd)); the load then overwrites the state and step.
    """
    for chained in getattr(optimizer, "chained_optimizers", [optimizer]):
        inner = chained.optimizer
        if inner is None or len(inner.state) > 0:
            continue
        saved = [group["lr"] for group in inner.param_groups]
        for group in inner.param_groups:
            group["lr"] = 0.0
            for param in group["params"]:
                param.grad = torch.zeros_like(param)
        inner.step()
        for group, lr in zip(inner.param_groups, saved):
            group["lr"] = lr
            for param in group["params"]:
                param.grad = None


def load_checkpoint(path: Path, *, model, optimizer, scheduler) -> dict:
    """Collective. Restores model, optimizer, scheduler and (same world size) RNG; returns state.json."""
    from megatron.core import dist_checkpointing

    from specialize.model.checkpoint import load_model_checkpoint, model_sharded_state_dict, parallel_load_strategy

    state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    load_model_checkpoint(model, path / "model")
    _materialize_optimizer_state(optimizer)
    sharded = optimizer.sharded_state_dict(model_sharded_state_dict(model), is_loading=True, metadata=OPTIMIZER_SHARDING)
    optimizer.load_state_dict(dist_checkpointing.load(sharded, str(path / "optimizer"), parallel_load_strategy(path / "optimizer")))
    scheduler.load_state_dict(state["scheduler"])
    rng_file = path / "rng" / f"rank-{dist.get_rank():05d}.pt"
    if state.get("world_size") == dist.get_world_size() and rng_file.is_file():
        _set_rng_state(torch.load(rng_file, weights_only=True))
    return state
