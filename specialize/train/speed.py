"""Megatron-LM's GPU throughput settings, on by default on GPU, off on CPU, each switchable.

``speed:`` in a run config; each key is ``null`` (auto: what Megatron-LM's GPU training scripts turn
on, where the kernels it needs exist) or true/false. An explicit true whose requirement is missing is an
error before the run, not a silent fallback.

| key | auto on GPU | needs |
|---|---|---|
| ``overlap_grad_reduce`` | on | (DDP hooks reduce each gradient bucket during the backward pass) |
| ``overlap_param_gather`` | on with the distributed optimizer | ``optimizer.distributed`` |
| ``gradient_accumulation_fusion`` | on when the kernel imports | apex's ``fused_weight_gradient_mlp_cuda`` |
| ``rope_fusion`` | on with Transformer Engine | TE's fused RoPE |
| ``cross_entropy_fusion`` | on | (megatron's native fused vocab-parallel cross entropy) |
| ``prefetch`` | on | next step's micro-batches collated in a thread, in pinned memory, copied without blocking |
| ``cuda_device_max_connections`` | 1 unless already set | (one hardware queue keeps TP/SP communication ordered before compute, as Megatron-LM's scripts export) |
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field


@dataclass
class SpeedConfig:
    overlap_grad_reduce: bool | None = None
    overlap_param_gather: bool | None = None
    gradient_accumulation_fusion: bool | None = None
    rope_fusion: bool | None = None
    cross_entropy_fusion: bool | None = None
    prefetch: bool | None = None
    cuda_device_max_connections: int | None = None


@dataclass(frozen=True)
class SpeedPlan:
    overlap_grad_reduce: bool
    overlap_param_gather: bool
    gradient_accumulation_fusion: bool
    rope_fusion: bool
    cross_entropy_fusion: bool
    prefetch: bool
    cuda_device_max_connections: int | None  # the value to export, None: leave the environment alone
    reasons: dict = field(default_factory=dict, compare=False)

    def transformer_overrides(self) -> dict:
        settings = {"gradient_accumulation_fusion": self.gradient_accumulation_fusion, "apply_rope_fusion": self.rope_fusion,
                    "cross_entropy_loss_fusion": self.cross_entropy_fusion}
        if self.cross_entropy_fusion:
            settings["cross_entropy_fusion_impl"] = "native"
        return settings

    def summary(self) -> str:
        on = [name for name in ("overlap_grad_reduce", "overlap_param_gather", "gradient_accumulation_fusion", "rope_fusion",
                                "cross_entropy_fusion", "prefetch") if getattr(self, name)]
        return "speed: " + (", ".join(on) if on else "no GPU speed settings") + (
            f"; CUDA_DEVICE_MAX_CONNECTIONS={self.cuda_device_max_connections}" if self.cuda_device_max_connections else "")


class SpeedSettingUnavailable(ValueError):
    pass


def fused_wgrad_available() -> bool:
    return importlib.util.find_spec("fused_weight_gradient_mlp_cuda") is not None


def plan_speed(config: SpeedConfig, *, on_gpu: bool, have_te: bool, have_fused_wgrad: bool, distributed_optimizer: bool,
               environment: dict | None = None) -> SpeedPlan:
    environment = os.environ if environment is None else environment
    reasons: dict[str, str] = {}

    def choose(name: str, auto: bool, requirement: bool = True, missing: str = "") -> bool:
        value = getattr(config, name)
        if value is None:
            reasons[name] = "auto (GPU)" if on_gpu else "auto (off on CPU)"
            return bool(auto and requirement)
        if value and not requirement:
            raise SpeedSettingUnavailable(f"speed.{name}=true needs {missing}")
        if value and not on_gpu and name not in ("overlap_grad_reduce", "overlap_param_gather", "prefetch"):
            raise SpeedSettingUnavailable(f"speed.{name}=true needs a GPU (a fused CUDA kernel)")
        reasons[name] = "set in the run config"
        return bool(value)

    connections = config.cuda_device_max_connections
    if connections is None and on_gpu and "CUDA_DEVICE_MAX_CONNECTIONS" not in environment:
        connections = 1
    return SpeedPlan(
        overlap_grad_reduce=choose("overlap_grad_reduce", on_gpu),
        overlap_param_gather=choose("overlap_param_gather", on_gpu, distributed_optimizer, "optimizer.distributed=true"),
        gradient_accumulation_fusion=choose("gradient_accumulation_fusion", on_gpu, have_fused_wgrad,
                                            "apex's fused_weight_gradient_mlp_cuda (the NGC PyTorch image has it)"),
        rope_fusion=choose("rope_fusion", on_gpu, have_te, "Transformer Engine (pip install 'specialize[gpu]')"),
        cross_entropy_fusion=choose("cross_entropy_fusion", on_gpu),
        prefetch=choose("prefetch", on_gpu),
        cuda_device_max_connections=connections if on_gpu or config.cuda_device_max_connections else None,
        reasons=reasons,
    )
