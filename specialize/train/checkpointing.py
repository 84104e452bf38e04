"""Training checkpoints: model + optimizer + schedule + RNG + data position, atomic, last K kept.

Layout of ``<output>/checkpoints``::

    latest                   text: the name of the newest complete checkpoint ("step-000100")
    step-000100/
      model/                 specialize model checkpoint (dist_checkpointing + specialize.json):
                             what ``specialize sft --from`` and the HF export read; any TP/PP
      optimizer/             dist_checkpointing of the (distributed) optimizer state in the run's
                             ``checkpoint.optimizer_format`` (see OPTIMIZER_FORMATS)
      rng/rank-00003.pt      python/numpy/torch/megatron-tracker RNG state of each rank
      state.json             step, consumed samples, LR-scheduler state, bad-step count, layout
      config.yaml            the resolved run config

Atomicity: everything is written into ``step-000100.partial``; only when every rank has finished is
it renamed to ``step-000100`` and ``latest`` replaced (``os.replace``), both by rank 0. A save killed
half-way leaves a ``.partial`` directory (removed by the next save) and ``latest`` on the previous one.

Asynchronous saves (``checkpoint.async_save``, Megatron-LM's ``--async-save``) keep that rule: the
tensors are handed to megatron's async writer (a forked process that writes a snapshot of them while
training goes on) and the rename to the final name and the ``latest`` switch are its finalize step, run
by every rank once every rank's writer has finished (``AsyncSaves.poll`` each step, ``wait`` before the
next save and at the end of the run).
"""

from __future__ import annotations

import functools
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
# How the distributed optimizer's state is laid out on disk (megatron's ``distrib_optim_sharding_type``).
# "dp_reshardable" (Megatron-LM's default): every rank writes its own flat shard, with no gather and no
# extra host memory; it reloads at another DP size but the same TP and PP. "fully_reshardable"
# (Megatron-LM's --dist-ckpt-optim-fully-reshardable): model-space tensors that reload at any layout,
# gathered over the DP group onto DP rank 0 through gloo first ("mem_efficient": the other DP ranks hold
# nothing extra), so DP rank 0 of each TP/PP group holds its slice's whole optimizer state while saving.
# megatron 0.16 refuses the old flat model-space format ("fully_sharded_model_space") for saving.
OPTIMIZER_FORMATS = {
    "dp_reshardable": {"distrib_optim_sharding_type": "dp_reshardable"},
    "fully_reshardable": {"distrib_optim_sharding_type": "fully_reshardable",
                          "distrib_optim_fully_reshardable_mem_efficient": True},
}
DEFAULT_OPTIMIZER_FORMAT = "dp_reshardable"


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


class AsyncSaves:
    """megatron's ``AsyncCallsQueue`` for this run's checkpoints (or nothing, when saves are synchronous).

    Every method is collective (an all-reduce decides whether every rank's writer has finished), so the
    training loop calls them at the same points on all ranks.
    """

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._queue = None
        self.save_arguments: dict = {}  # extra ``dist_checkpointing.save`` arguments of the chosen writer
        if enabled:
            queue_class, self.save_arguments = async_writer()
            self._queue = queue_class()

    @property
    def pending(self) -> int:
        return self._queue.get_num_unfinalized_calls() if self._queue is not None else 0

    def schedule(self, request) -> None:
        self._queue.schedule_async_request(request)

    def poll(self) -> None:
        """Publish the saves whose writers have finished on every rank; never waits for a writer."""
        if self.pending:
            self._queue.maybe_finalize_async_calls(blocking=False)

    def wait(self) -> None:
        """Wait for every pending save and publish it."""
        if self.pending:
            self._queue.maybe_finalize_async_calls(blocking=True)

    def abort(self) -> None:
        """After an error: stop the writers without publishing (their ``.partial`` directories stay
        unpublished, ``latest`` keeps naming the previous complete checkpoint). Not collective."""
        if self._queue is None:
            return
        while self._queue.async_calls:
            self._queue.async_calls.popleft().async_caller.close(abort=True)


def async_writer() -> tuple[type, dict]:
    """(the async-calls queue class, extra ``dist_checkpointing.save`` arguments) of this megatron-core.

    megatron-core 0.16 has one asynchronous writer (its own). 0.19 defaults to NVIDIA Resiliency
    Extension's (``nvidia-resiliency-ext`` >= 0.6, in NGC images), whose requests need its own queue,
    and keeps its own as ``async_strategy="mcore"`` (deprecated); we take NVRx when it is importable, as
    Megatron-LM's ``--async-strategy nvrx`` default does, and megatron's own writer otherwise.
    """
    from megatron.core.dist_checkpointing.strategies import torch as torch_strategy

    if not hasattr(torch_strategy, "get_async_strategy"):  # megatron-core 0.16
        from megatron.core.dist_checkpointing.strategies.async_utils import AsyncCallsQueue

        return AsyncCallsQueue, {}
    strategy = "nvrx" if _nvrx_available() else "mcore"
    _, queue_class = torch_strategy.get_async_strategy(strategy, "AsyncCallsQueue")
    return queue_class, {"async_strategy": strategy}


def _nvrx_available() -> bool:
    try:
        from megatron.core.dist_checkpointing.strategies.nvrx import has_nvrx_async_support

        return has_nvrx_async_support()
    except (ImportError, AssertionError):  # not installed, or older than megatron's minimum version
        return False


def parallel_layout() -> dict:
    from megatron.core import parallel_state

    return {"tp": parallel_state.get_tensor_model_parallel_world_size(),
            "pp": parallel_state.get_pipeline_model_parallel_world_size(),
            "dp": parallel_state.get_data_parallel_world_size()}


def save_checkpoint(output: str | Path, step: int, *, model, optimizer, scheduler, preset, tokenizer_source,
                    state: dict, config_yaml: str, keep_last: int, optimizer_format: str = DEFAULT_OPTIMIZER_FORMAT,
                    saves: AsyncSaves | None = None) -> Path:
    """Collective: every rank calls it. Returns the checkpoint's final directory.

    With ``saves`` enabled the tensors are written in the background and the directory exists (and
    ``latest`` names it) only once ``saves`` has published it; without, before this returns.
    """
    from megatron.core import dist_checkpointing

    from specialize.model.checkpoint import (
        model_sharded_state_dict,
        parallel_save_strategy,
        save_model_checkpoint,
        schedule_model_checkpoint,
    )

    asynchronous = saves is not None and saves.enabled
    if saves is not None:
        saves.wait()  # one save at a time: the previous one is published before this one starts
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
    extra = {"train_step": step}
    optimizer_state = optimizer.sharded_state_dict(model_sharded_state_dict(model), is_loading=False,
                                                   metadata=OPTIMIZER_FORMATS[optimizer_format])
    if asynchronous:
        saves.schedule(schedule_model_checkpoint(model, partial / "model", preset, tokenizer_source, extra=extra,
                                                 save_arguments=saves.save_arguments))
        request = dist_checkpointing.save(optimizer_state, str(partial / "optimizer"), parallel_save_strategy(),
                                          async_sharded_save=True, **saves.save_arguments)
    else:
        save_model_checkpoint(model, partial / "model", preset, tokenizer_source, extra=extra)
        dist_checkpointing.save(optimizer_state, str(partial / "optimizer"), parallel_save_strategy())
    del optimizer_state
    torch.save(_rng_state(), partial / "rng" / f"rank-{rank:05d}.pt")
    dist.barrier()
    if rank == 0:
        full_state = {**state, "step": step, "scheduler": scheduler.state_dict(), "world_size": dist.get_world_size(),
                      "layout": parallel_layout(), "optimizer_format": optimizer_format}
        (partial / STATE_FILE).write_text(json.dumps(full_state, indent=1) + "\n", encoding="utf-8")
        (partial / "config.yaml").write_text(config_yaml, encoding="utf-8")
    publish = functools.partial(_publish, root, partial, final, keep_last)
    if asynchronous:
        request.add_finalize_fn(publish)
        saves.schedule(request)
    else:
        publish()
    return final


def _publish(root: Path, partial: Path, final: Path, keep_last: int) -> None:
    """Collective: once every rank's files are written, rank 0 renames the save to its final name and
    points ``latest`` at it."""
    dist.barrier()
    if dist.get_rank() == 0:
        if final.exists():  # a re-save of the same step (e.g. SIGTERM right after a periodic save)
            shutil.rmtree(final)
        os.replace(partial, final)
        _relocate_paths(final / "model" / "specialize.json", str(partial), str(final))
        tmp = root / (LATEST + ".tmp")
        tmp.write_text(final.name + "\n", encoding="utf-8")
        os.replace(tmp, root / LATEST)
        _prune(root, keep_last, keep=final.name)
    dist.barrier()


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


class OptimizerLayoutError(ValueError):
    """A checkpoint's optimizer state cannot be loaded at this run's parallel layout."""


def load_checkpoint(path: Path, *, model, optimizer, scheduler, load_optimizer: bool = True) -> dict:
    """Collective. Restores model, optimizer (unless ``load_optimizer`` is off: fresh Adam moments from
    the loaded weights, Megatron-LM's ``--no-load-optim``), scheduler and (same world size) RNG;
    returns state.json."""
    from megatron.core import dist_checkpointing

    from specialize.model.checkpoint import load_model_checkpoint, model_sharded_state_dict, parallel_load_strategy

    state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    # Checkpoints from before the format was recorded were all "fully_reshardable".
    saved_format = state.get("optimizer_format", "fully_reshardable")
    if load_optimizer:
        check_optimizer_layout(path, saved_format, state.get("layout"), parallel_layout())
    load_model_checkpoint(model, path / "model")
    if load_optimizer:
        _materialize_optimizer_state(optimizer)
        sharded = optimizer.sharded_state_dict(model_sharded_state_dict(model), is_loading=True,
                                               metadata=OPTIMIZER_FORMATS[saved_format])
        optimizer.load_state_dict(dist_checkpointing.load(sharded, str(path / "optimizer"), parallel_load_strategy(path / "optimizer")))
    else:
        optimizer.reload_model_params()  # main (fp32) parameters from the loaded weights
    scheduler.load_state_dict(state["scheduler"])
    rng_file = path / "rng" / f"rank-{dist.get_rank():05d}.pt"
    if state.get("world_size") == dist.get_world_size() and rng_file.is_file():
        _set_rng_state(torch.load(rng_file, weights_only=True))
    return state


def check_optimizer_layout(path: Path, saved_format: str, saved: dict | None, current: dict) -> None:
    """A "dp_reshardable" optimizer state holds each TP/PP rank's flat buffers: it reloads at another DP
    size only. Say so before megatron fails somewhere inside the load."""
    if saved_format not in OPTIMIZER_FORMATS:
        raise OptimizerLayoutError(f"{path / STATE_FILE}: unknown optimizer_format {saved_format!r} "
                                   f"(known: {', '.join(OPTIMIZER_FORMATS)})")
    if saved_format != "dp_reshardable" or saved is None:
        return
    if (saved["tp"], saved["pp"]) != (current["tp"], current["pp"]):
        raise OptimizerLayoutError(
            f"{path}: its optimizer state was saved as dp_reshardable at TP={saved['tp']} PP={saved['pp']}, which "
            f"reloads only at that TP and PP (this run: TP={current['tp']} PP={current['pp']}). Resume at "
            f"TP={saved['tp']} PP={saved['pp']}; or set checkpoint.load_optimizer=false to keep the weights, "
            f"schedule and data position and restart the Adam moments; or, for the next time, save with "
            f"checkpoint.optimizer_format=fully_reshardable, which reloads at any layout")
