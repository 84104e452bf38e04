"""torch.distributed + megatron parallel state, the same way on a laptop CPU and on a GPU node.

``initialize_parallel`` reads the torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT) when it is there and otherwise starts a one-process group, so that a
script, a test and ``torchrun --nproc-per-node 8`` all go through the same call. The backend is
nccl when CUDA is available and gloo otherwise (with the CPU shims of ``cpu_compat``).
"""

from __future__ import annotations

import os
import random
import socket
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from specialize.model.cpu_compat import cpu_mode, enable_cpu_compat

_OWNS_PROCESS_GROUP = False


def free_port() -> int:
    """An unused TCP port on localhost (for single-process groups and spawned tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _init_process_group(timeout_minutes: float) -> None:
    global _OWNS_PROCESS_GROUP
    if dist.is_initialized():
        return
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    launched = "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ
    if world_size != 1 and not launched:
        raise RuntimeError("WORLD_SIZE > 1 but MASTER_ADDR is not set: launch with torchrun")
    # A one-process group rendezvouses on a fresh port given directly, not through MASTER_PORT in the
    # environment: an address left there (by a parent process or an earlier group) would be reused
    # by every child process and collide (EADDRINUSE).
    init_method = "env://" if launched else f"tcp://127.0.0.1:{free_port()}"
    backend = "gloo" if cpu_mode() else "nccl"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank % torch.cuda.device_count())))
    dist.init_process_group(
        backend=backend, init_method=init_method, rank=rank, world_size=world_size,
        timeout=timedelta(minutes=timeout_minutes),
    )
    _OWNS_PROCESS_GROUP = True


def set_seed(seed: int) -> None:
    """Seed python, numpy, torch and megatron's model-parallel RNG streams (Megatron-LM's recipe).

    Each pipeline stage gets its own base seed (different layers must not share init noise);
    megatron's tracker then derives a per-TP-rank stream for TP-split weights.
    """
    from megatron.core import parallel_state, tensor_parallel

    stage_seed = seed + 100 * parallel_state.get_pipeline_model_parallel_rank()
    random.seed(stage_seed)
    np.random.seed(stage_seed)
    torch.manual_seed(stage_seed)
    tensor_parallel.model_parallel_cuda_manual_seed(stage_seed)


def initialize_parallel(tp: int = 1, pp: int = 1, seed: int = 1234, *, cp: int = 1, timeout_minutes: float = 10.0) -> None:
    """Set up torch.distributed, megatron's parallel groups (TP x CP x DP x PP) and RNG seeding.

    DP is what is left: WORLD_SIZE / (tp * pp * cp). Safe to call again after ``destroy_parallel``.
    """
    enable_cpu_compat()
    from megatron.core import parallel_state

    _init_process_group(timeout_minutes)
    world_size = dist.get_world_size()
    if world_size % (tp * pp * cp):
        raise ValueError(f"world size {world_size} is not divisible by tp={tp} x pp={pp} x cp={cp}")
    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    parallel_state.initialize_model_parallel(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp,
                                             context_parallel_size=cp)
    set_seed(seed)


def destroy_parallel() -> None:
    """Tear down megatron's groups and the process group if ``initialize_parallel`` created it."""
    global _OWNS_PROCESS_GROUP
    from megatron.core import parallel_state

    parallel_state.destroy_model_parallel()
    if _OWNS_PROCESS_GROUP and dist.is_initialized():
        dist.destroy_process_group()
    _OWNS_PROCESS_GROUP = False


#: What torchrun (torchelastic) puts in a worker's environment.
LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE", "ROLE_RANK",
                      "ROLE_WORLD_SIZE", "ROLE_NAME", "MASTER_ADDR", "MASTER_PORT")


def launcher_free_environment() -> dict[str, str]:
    """This environment without torchrun's variables: for a single-process child of a launched worker.

    TORCHELASTIC_USE_AGENT_STORE and the rest of TORCHELASTIC_* would make the child connect to the
    launcher's store as if it were one of the job's ranks.
    """
    return {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES and not k.startswith("TORCHELASTIC_")}
