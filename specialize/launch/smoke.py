"""A distributed smoke check: every rank joins, all-reduce agrees, and the bus bandwidth is printed.

Run it through the launcher before a long job (``specialize launch torchrun ... -- launch smoke``, or
as the command of a k8s manifest) to catch a wrong rendezvous endpoint, a missing RDMA device or a
firewalled port in seconds instead of after the model has loaded. NCCL on GPUs, gloo on CPU.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from datetime import timedelta


@dataclass
class SmokeResult:
    rank: int
    world_size: int
    backend: str
    hosts: list[str]
    sum_ok: bool
    size_mb: float
    busbw_gbps: float | None  # all-reduce bus bandwidth (nccl-tests convention), None when size_mb == 0

    def summary(self) -> str:
        bw = f", all-reduce {self.size_mb:g} MiB busbw {self.busbw_gbps:.2f} GB/s" if self.busbw_gbps is not None else ""
        status = "ok" if self.sum_ok else "MISMATCH"
        return (f"smoke: {status}: world_size={self.world_size} backend={self.backend} "
                f"nodes={len(set(self.hosts))}{bw}")


def smoke_check(size_mb: float = 64.0, iters: int = 5, timeout_s: int = 120) -> SmokeResult:
    """Join the process group from torchrun's env, check an all-reduce of the ranks, time a big one."""
    import torch
    import torch.distributed as dist

    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise RuntimeError("launch smoke must run under torchrun (RANK/WORLD_SIZE are not set): "
                           "specialize launch torchrun --standalone --nproc-per-node 2 -- launch smoke")
    cuda = torch.cuda.is_available()
    backend = "nccl" if cuda else "gloo"
    device = torch.device("cpu")
    if cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        ranks = torch.tensor([float(rank)], device=device)
        dist.all_reduce(ranks)
        sum_ok = ranks.item() == world * (world - 1) / 2
        hosts: list[str] = [""] * world
        dist.all_gather_object(hosts, socket.gethostname())
        busbw = None
        if size_mb > 0:
            buf = torch.ones(int(size_mb * 2**20) // 4, dtype=torch.float32, device=device)
            dist.all_reduce(buf)  # warm-up (NCCL builds its rings here)
            if cuda:
                torch.cuda.synchronize()
            dist.barrier()
            start = time.perf_counter()
            for _ in range(iters):
                dist.all_reduce(buf)
            if cuda:
                torch.cuda.synchronize()
            elapsed = (time.perf_counter() - start) / iters
            algbw = buf.numel() * 4 / elapsed / 1e9
            busbw = algbw * 2 * (world - 1) / world
        return SmokeResult(rank, world, backend, hosts, sum_ok, size_mb, busbw)
    finally:
        dist.destroy_process_group()
